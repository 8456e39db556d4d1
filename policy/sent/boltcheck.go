package sent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// checkTree walks the page tree of the bbolt file at path without bbolt and
// reports the damage that bbolt cannot survive: a page reached twice (a
// cycle makes bbolt's cursor descend forever: its recursive search
// overflows the stack, which no Go program can recover from, and its
// iterative first/last grows without bound), a child beyond the file's high
// water mark, or a page of the wrong kind. Other damage (garbage inside a
// page) makes bbolt panic, which the store recovers from. The walk is
// iterative and visits each page once, so it ends on any input.
//
// It reads the on-disk format of bbolt 1.x (go.etcd.io/bbolt, internal/common:
// Meta, Page, branchPageElement, leafPageElement, InBucket), which bbolt
// keeps stable across versions for compatibility. It runs while bbolt holds
// the file's lock, so no other writer changes it under the walk.
//
// Hand-written because bbolt's own tx.Check recurses the same way and would
// itself overflow on a cycle.
func checkTree(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return checkTreeAt(f, fi.Size())
}

// checkTreeAt is checkTree on a file's contents.
func checkTreeAt(r io.ReaderAt, size int64) error {
	m, err := readMeta(r)
	if err != nil || m == nil {
		return err // no valid meta page: bbolt refuses the file itself
	}
	w := &treeWalk{r: r, size: uint64(size), meta: m, seen: make(map[uint64]bool)}
	return w.walk(m.root)
}

// On-disk layout (little-endian on every platform bbolt supports here).
const (
	bMagic         = 0xED0CDAED
	bVersion       = 2
	bPageHeader    = 16 // id u64, flags u16, count u16, overflow u32
	bElement       = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	bBranchFlag    = 0x01
	bLeafFlag      = 0x02
	bBucketLeaf    = 0x01 // a leaf element that is a sub-bucket
	bInBucket      = 16   // root pgid u64, sequence u64
	bMetaChecksum  = 56   // offset of the checksum inside the meta
	bMetaSize      = 64
	bMaxDepth      = 64 // far beyond any real tree (fan-out ≥ 2)
	bMinPageSize   = 512
	bMaxPageSize   = 1 << 20
	bMaxPageSpan   = 256 << 20 // one page with its overflow: larger is damage
	bFirstDataPage = 2         // pages 0 and 1 are the meta pages
)

type boltMeta struct {
	pageSize uint32
	root     uint64 // root bucket's root page
	pgid     uint64 // high water mark: pages at or above it are not in use
	txid     uint64
}

// readMeta returns the meta page bbolt would use: the valid one (magic,
// version, checksum) with the higher transaction id; nil when neither is.
func readMeta(f io.ReaderAt) (*boltMeta, error) {
	var metas []*boltMeta
	// Meta 0 is at offset 0; meta 1 at one page size, which meta 0 gives
	// (or, when meta 0 is damaged, the common sizes are tried).
	buf := make([]byte, bPageHeader+bMetaSize)
	first, err := readMetaAt(f, 0, buf)
	if err != nil {
		return nil, err
	}
	sizes := []uint32{4096, 8192, 16384, 65536}
	if first != nil {
		metas = append(metas, first)
		sizes = []uint32{first.pageSize}
	}
	for _, ps := range sizes {
		if m, err := readMetaAt(f, int64(ps), buf); err != nil {
			return nil, err
		} else if m != nil && m.pageSize == ps {
			metas = append(metas, m)
			break
		}
	}
	var best *boltMeta
	for _, m := range metas {
		if best == nil || m.txid > best.txid {
			best = m
		}
	}
	return best, nil
}

func readMetaAt(f io.ReaderAt, off int64, buf []byte) (*boltMeta, error) {
	if _, err := f.ReadAt(buf, off); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	b := buf[bPageHeader:]
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != bMagic || le.Uint32(b[4:]) != bVersion {
		return nil, nil
	}
	h := fnv.New64a()
	h.Write(b[:bMetaChecksum])
	if h.Sum64() != le.Uint64(b[bMetaChecksum:]) {
		return nil, nil
	}
	m := &boltMeta{pageSize: le.Uint32(b[8:]), root: le.Uint64(b[16:]), pgid: le.Uint64(b[40:]), txid: le.Uint64(b[48:])}
	if m.pageSize < bMinPageSize || m.pageSize > bMaxPageSize || m.pageSize&(m.pageSize-1) != 0 {
		return nil, nil
	}
	return m, nil
}

type treeWalk struct {
	r    io.ReaderAt
	size uint64 // of the file
	meta *boltMeta
	seen map[uint64]bool
	buf  []byte
}

type pending struct {
	pgid  uint64
	depth int
}

// walk visits the tree of every bucket under the root bucket's root page.
func (w *treeWalk) walk(root uint64) error {
	stack := []pending{{root, 0}}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if p.depth > bMaxDepth {
			return fmt.Errorf("page %d: tree deeper than %d", p.pgid, bMaxDepth)
		}
		if p.pgid < bFirstDataPage || p.pgid >= w.meta.pgid {
			return fmt.Errorf("page %d: outside the data pages (2 to %d)", p.pgid, w.meta.pgid-1)
		}
		if w.seen[p.pgid] {
			return fmt.Errorf("page %d: reached twice (a cycle or a shared page)", p.pgid)
		}
		w.seen[p.pgid] = true
		page, err := w.read(p.pgid)
		if err != nil {
			return err
		}
		children, err := pageChildren(page, p.pgid)
		if err != nil {
			return err
		}
		for _, c := range children {
			stack = append(stack, pending{c, p.depth + 1})
		}
	}
	return nil
}

// read returns page pgid with its overflow pages.
func (w *treeWalk) read(pgid uint64) ([]byte, error) {
	ps := uint64(w.meta.pageSize)
	if cap(w.buf) < int(ps) {
		w.buf = make([]byte, ps)
	}
	buf := w.buf[:ps]
	if _, err := w.r.ReadAt(buf, int64(pgid*ps)); err != nil {
		return nil, fmt.Errorf("page %d: %v", pgid, err)
	}
	overflow := uint64(binary.LittleEndian.Uint32(buf[12:]))
	if overflow == 0 {
		return buf, nil
	}
	if pgid+overflow >= w.meta.pgid || (overflow+1)*ps > bMaxPageSpan || (pgid+overflow+1)*ps > w.size {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the data pages", pgid, overflow)
	}
	for i := uint64(1); i <= overflow; i++ {
		w.seen[pgid+i] = true // part of this page: never a tree page of its own
	}
	big := make([]byte, (overflow+1)*ps)
	if _, err := w.r.ReadAt(big, int64(pgid*ps)); err != nil {
		return nil, fmt.Errorf("page %d: %v", pgid, err)
	}
	return big, nil
}

// pageChildren checks one branch or leaf page (on disk, or inline in a
// bucket value) and returns the pages it points to: a branch page's
// children, a leaf page's sub-bucket roots (inline sub-buckets are walked
// here, their nesting bounded).
func pageChildren(page []byte, pgid uint64) ([]uint64, error) {
	return pageChildrenDepth(page, pgid, 0)
}

func pageChildrenDepth(page []byte, pgid uint64, inline int) ([]uint64, error) {
	if len(page) < bPageHeader {
		return nil, fmt.Errorf("page %d: shorter than its header", pgid)
	}
	le := binary.LittleEndian
	flags, count := le.Uint16(page[8:]), int(le.Uint16(page[10:]))
	if bPageHeader+count*bElement > len(page) {
		return nil, fmt.Errorf("page %d: %d elements do not fit", pgid, count)
	}
	var out []uint64
	switch {
	case flags&bBranchFlag != 0:
		if count == 0 {
			return nil, fmt.Errorf("page %d: empty branch page", pgid)
		}
		for i := 0; i < count; i++ {
			out = append(out, le.Uint64(page[bPageHeader+i*bElement+8:]))
		}
	case flags&bLeafFlag != 0:
		for i := 0; i < count; i++ {
			e := bPageHeader + i*bElement
			if le.Uint32(page[e:])&bBucketLeaf == 0 {
				continue
			}
			pos, ksize, vsize := int(le.Uint32(page[e+4:])), int(le.Uint32(page[e+8:])), int(le.Uint32(page[e+12:]))
			start := e + pos + ksize
			if pos < 0 || ksize < 0 || vsize < bInBucket || start < 0 || start+vsize > len(page) || start+vsize < start {
				return nil, fmt.Errorf("page %d: sub-bucket %d outside the page", pgid, i)
			}
			v := page[start : start+vsize]
			if root := le.Uint64(v); root != 0 {
				out = append(out, root)
				continue
			}
			if inline >= bMaxDepth {
				return nil, fmt.Errorf("page %d: inline buckets nested deeper than %d", pgid, bMaxDepth)
			}
			sub, err := pageChildrenDepth(v[bInBucket:], pgid, inline+1)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
	default:
		return nil, fmt.Errorf("page %d: neither a branch nor a leaf page (flags %#x)", pgid, flags)
	}
	return out, nil
}
