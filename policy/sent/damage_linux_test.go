package sent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestBoltStartsOnFullDisk: with no room for a fresh sent log at start (a
// full file system, here a 64 KiB tmpfs filled up), the store still opens:
// lookups answer ErrUnavailable, the health check fails, and once there is
// room again the store makes its file and works. Refusing to start would
// stop all mail behind an MTA that tempfails without its milter.
func TestBoltStartsOnFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts a small tmpfs: needs root (CI runs as root)")
	}
	old := reopenEvery
	reopenEvery = 50 * time.Millisecond
	defer func() { reopenEvery = old }()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the tmpfs: %v", err)
			}
			break
		}
	}
	f.Close()

	h := NewHealth("embedded", nil)
	st, err := OpenBoltHealth(filepath.Join(dir, "sent.db"), time.Hour, h)
	if err != nil {
		t.Fatalf("start refused on a full disk: %v", err)
	}
	defer st.Close()
	s := Watch(st, h)
	ctx := context.Background()
	if _, err := s.Seen(ctx, "a@example.org"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Seen on a full disk: %v, want ErrUnavailable", err)
	}
	if _, bad := h.Failing(); !bad {
		t.Error("health not failing with no sent log")
	}
	time.Sleep(3 * reopenEvery) // retries while the disk is still full
	if _, err := s.Seen(ctx, "a@example.org"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Seen on a full disk: %v, want ErrUnavailable", err)
	}
	if aside, _ := filepath.Glob(filepath.Join(dir, "sent.db.damaged-*")); len(aside) > 0 {
		t.Errorf("retries on a full disk moved files aside: %v", aside)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	awaitRecovery(t, s, h)
}
