package sent

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltFile writes a sent log with n entries at dir/sent.db, in one
// transaction, and returns its path: with a few thousand, each bucket's
// root is a branch page.
func boltFile(t testing.TB, dir string, n int) string {
	t.Helper()
	return boltFilePaged(t, dir, n, 0)
}

// boltFilePaged is boltFile with bbolt's page size (0: the system's).
func boltFilePaged(t testing.TB, dir string, n, pageSize int) string {
	t.Helper()
	path := filepath.Join(dir, "sent.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: pageSize})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketEntries, bucketExpiry} {
			b, err := tx.CreateBucketIfNotExists(name)
			if err != nil {
				return err
			}
			for i := 0; i < n; i++ {
				if err := b.Put([]byte(fmt.Sprintf("<cycle-%d@example.org>", i)), make([]byte, 8)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// bucketRoot returns the page number and offset of the root page of the
// named top-level bucket in the bbolt file at path.
func bucketRoot(t *testing.T, path string, name []byte) (pgid uint64, ps int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := readMeta(f)
	if err != nil || m == nil {
		t.Fatalf("no meta page: %v", err)
	}
	page := make([]byte, m.pageSize)
	if _, err := f.ReadAt(page, int64(m.root)*int64(m.pageSize)); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	for i := 0; i < int(le.Uint16(page[10:])); i++ {
		e := bPageHeader + i*bElement
		pos, ksize := int(le.Uint32(page[e+4:])), int(le.Uint32(page[e+8:]))
		if bytes.Equal(page[e+pos:e+pos+ksize], name) {
			return le.Uint64(page[e+pos+ksize:]), int64(m.pageSize)
		}
	}
	t.Fatalf("no bucket %q in the root page", name)
	return 0, 0
}

// TestBoltPageCycle: a branch page that names itself as its first child
// sends bbolt's cursor down forever (first/last grow their stack without
// end; search recurses until the stack overflows, fatal to the process,
// at every restart). The tree check at open finds it: the file is moved
// aside and a fresh one serves.
func TestBoltPageCycle(t *testing.T) {
	dir := t.TempDir()
	path := boltFile(t, dir, 4000)
	root, ps := bucketRoot(t, path, bucketEntries)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, bPageHeader+bElement)
	if _, err := f.ReadAt(hdr, int64(root)*ps); err != nil {
		t.Fatal(err)
	}
	if binary.LittleEndian.Uint16(hdr[8:])&bBranchFlag == 0 {
		t.Fatalf("the entries bucket's root page %d is not a branch page: write more entries", root)
	}
	binary.LittleEndian.PutUint64(hdr[bPageHeader+8:], root) // child 0 := the page itself
	if _, err := f.WriteAt(hdr, int64(root)*ps); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := checkTree(path); err == nil {
		t.Fatal("checkTree found no fault in a page cycle")
	}

	h := NewHealth("embedded", nil)
	type opened struct {
		st  *BoltStore
		err error
	}
	done := make(chan opened, 1)
	go func() { st, err := OpenBoltHealth(path, time.Hour, h); done <- opened{st, err} }()
	var o opened
	select {
	case o = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("open of a file with a page cycle did not return")
	}
	if o.err != nil {
		t.Fatalf("open: %v", o.err)
	}
	defer o.st.Close()
	if h.Replacements() != 1 {
		t.Errorf("replacements %d, want 1", h.Replacements())
	}
	if aside, _ := filepath.Glob(path + ".damaged-*"); len(aside) != 1 {
		t.Errorf("files moved aside: %v", aside)
	}
	ctx := context.Background()
	if err := o.st.Record(ctx, "<after@example.org>", time.Now()); err != nil {
		t.Fatal(err)
	}
	if ok, err := o.st.Seen(ctx, "<after@example.org>"); !ok || err != nil {
		t.Errorf("fresh file: Seen = %v, %v", ok, err)
	}
}

// TestCheckTreeSound: a healthy file, large and small, passes the check.
func TestCheckTreeSound(t *testing.T) {
	for _, n := range []int{0, 1, 4000} {
		path := boltFile(t, t.TempDir(), n)
		if err := checkTree(path); err != nil {
			t.Errorf("%d entries: %v", n, err)
		}
	}
}

// FuzzCheckTree: whatever the file holds, the check returns (it never
// panics or loops). Seeds: small real sent logs (1 KiB pages, cut at their
// high water mark, so that the fuzzer's inputs stay small), one with branch
// pages.
func FuzzCheckTree(f *testing.F) {
	for _, n := range []int{1, 60} {
		b, err := os.ReadFile(boltFilePaged(f, f.TempDir(), n, 1024))
		if err != nil {
			f.Fatal(err)
		}
		m, err := readMeta(bytes.NewReader(b))
		if err != nil || m == nil {
			f.Fatalf("seed of %d entries: no meta (%v)", n, err)
		}
		if end := int(m.pgid) * int(m.pageSize); end < len(b) {
			b = b[:end]
		}
		if err := checkTreeAt(bytes.NewReader(b), int64(len(b))); err != nil {
			f.Fatalf("seed of %d entries: %v", n, err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = checkTreeAt(bytes.NewReader(data), int64(len(data)))
	})
}
