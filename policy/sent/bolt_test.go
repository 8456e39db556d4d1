package sent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
)

func openBoltHarness(t *testing.T, ttl time.Duration) harness {
	clock := newFakeClock()
	path := filepath.Join(t.TempDir(), "sent.db")
	s, err := openBolt(path, ttl, time.Hour, clock.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := harness{store: s, now: clock.Now, advance: clock.Advance}
	h.reopen = func() Store {
		if err := h.store.Close(); err != nil {
			t.Fatal(err)
		}
		s, err := openBolt(path, ttl, time.Hour, clock.Now, nil)
		if err != nil {
			t.Fatal(err)
		}
		h.store = s
		return s
	}
	t.Cleanup(func() { h.store.Close() })
	return h
}

func TestBolt(t *testing.T) {
	testStore(t, openBoltHarness, DefaultTTL, true)
}

func TestOpenBoltCreatesPrivateDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "sent.db")
	s, err := OpenBolt(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700, path: 0o600} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s mode %04o, want %04o", p, got, want)
		}
	}
	if s.ttl != DefaultTTL {
		t.Errorf("ttl %s, want default", s.ttl)
	}
	if !strings.Contains(s.String(), path) {
		t.Errorf("String() = %q", s.String())
	}
}

func TestOpenBoltErrors(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A file bbolt refuses (garbage.db) is not an error: see
	// TestBoltDamagedAtOpen.
	for _, path := range []string{"", filepath.Join(notDir, "sent.db"), dir} {
		if s, err := OpenBolt(path, 0); err == nil {
			s.Close()
			t.Errorf("OpenBolt(%q): no error", path)
		}
	}
}

func TestOpenBoltLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sent.db")
	s, err := OpenBolt(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan error, 1)
	go func() {
		s2, err := OpenBolt(path, 0)
		if err == nil {
			s2.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "locked") {
			t.Errorf("second OpenBolt: %v, want a lock error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("second OpenBolt hangs")
	}
}

func TestBoltPurge(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	s, err := openBolt(filepath.Join(t.TempDir(), "sent.db"), time.Hour, time.Hour, clock.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.batch = 3 // several transactions
	for i := 0; i < 10; i++ {
		if err := s.Record(ctx, fmt.Sprintf("old%d@x", i), clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// Re-recorded later: its first index row expires, the entry must stay.
	clock.Advance(40 * time.Minute)
	if err := s.Record(ctx, "old0@x", clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(ctx, "new@x", clock.Now()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Minute)
	n, err := s.Purge(ctx)
	if err != nil || n != 9 {
		t.Fatalf("Purge = %d, %v; want 9", n, err)
	}
	if l, err := s.Len(); err != nil || l != 2 {
		t.Errorf("Len = %d, %v; want 2", l, err)
	}
	for id, want := range map[string]bool{"old0@x": true, "new@x": true, "old1@x": false} {
		if ok, err := s.Seen(ctx, id); err != nil || ok != want {
			t.Errorf("Seen(%s) = %v, %v", id, ok, err)
		}
	}
	if n, err := s.Purge(ctx); err != nil || n != 0 {
		t.Errorf("second Purge = %d, %v", n, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Purge(cctx); err == nil {
		t.Error("Purge with cancelled context: no error")
	}
}

func TestBoltBackgroundPurge(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	s, err := openBolt(filepath.Join(t.TempDir(), "sent.db"), time.Hour, 5*time.Millisecond, clock.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Record(ctx, "bg@x", clock.Now()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Hour)
	if !await.True(20*time.Second, func() bool {
		n, err := s.Len()
		if err != nil {
			t.Fatal(err)
		}
		return n == 0
	}) {
		t.Fatal("background purge never removed the expired entry")
	}
}
