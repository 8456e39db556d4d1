package sent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
)

// fakeClock is a settable clock for the backends that take one.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// harness is one backend under test.
type harness struct {
	store Store
	// now is the store's clock; advance moves it (or waits, for Redis).
	now     func() time.Time
	advance func(time.Duration)
	// reopen closes the store and opens it again on the same data; nil when
	// the backend keeps nothing.
	reopen func() Store
}

// opener makes a fresh, empty backend with the given TTL.
type opener func(t *testing.T, ttl time.Duration) harness

// testStore is the behaviour every backend shares.
// persistent backends also get the restart test.
func testStore(t *testing.T, open opener, ttl time.Duration, persistent bool) {
	ctx := context.Background()
	mustSeen := func(t *testing.T, s Store, id string, want bool) {
		t.Helper()
		got, err := s.Seen(ctx, id)
		if err != nil {
			t.Fatalf("Seen(%q): %v", id, err)
		}
		if got != want {
			t.Fatalf("Seen(%q) = %v, want %v", id, got, want)
		}
	}

	t.Run("record and seen", func(t *testing.T) {
		h := open(t, ttl)
		mustSeen(t, h.store, "<a1@example.org>", false)
		if err := h.store.Record(ctx, "<a1@example.org>", h.now()); err != nil {
			t.Fatal(err)
		}
		mustSeen(t, h.store, "<a1@example.org>", true)
		mustSeen(t, h.store, "a2@example.org", false)
	})

	t.Run("normalisation", func(t *testing.T) {
		h := open(t, ttl)
		if err := h.store.Record(ctx, "  <AbC.123@Mail.Example.ORG> ", h.now()); err != nil {
			t.Fatal(err)
		}
		mustSeen(t, h.store, "AbC.123@mail.example.org", true)
		mustSeen(t, h.store, "<AbC.123@MAIL.example.org>", true)
		mustSeen(t, h.store, "abc.123@mail.example.org", false) // left part is case-sensitive
	})

	t.Run("bad input", func(t *testing.T) {
		h := open(t, ttl)
		for _, id := range []string{"", "  ", "<>", "< >", "a b@example.org", "a\r\n@x", "\x00@x", strings.Repeat("x", MaxKeyLen+1)} {
			if err := h.store.Record(ctx, id, h.now()); err == nil {
				t.Errorf("Record(%.30q): no error", id)
			}
			if ok, err := h.store.Seen(ctx, id); err == nil || ok {
				t.Errorf("Seen(%.30q) = %v, %v; want error", id, ok, err)
			}
		}
	})

	t.Run("ttl expiry", func(t *testing.T) {
		h := open(t, ttl)
		if err := h.store.Record(ctx, "ttl@example.org", h.now()); err != nil {
			t.Fatal(err)
		}
		mustSeen(t, h.store, "ttl@example.org", true)
		h.advance(ttl + ttl/5)
		mustSeen(t, h.store, "ttl@example.org", false)
	})

	t.Run("send time counts", func(t *testing.T) {
		h := open(t, ttl)
		// Sent long ago: already expired, never seen.
		if err := h.store.Record(ctx, "old@example.org", h.now().Add(-2*ttl)); err != nil {
			t.Fatal(err)
		}
		mustSeen(t, h.store, "old@example.org", false)
		// Sent half a TTL ago: gone half a TTL from now, before a fresh one.
		if err := h.store.Record(ctx, "half@example.org", h.now().Add(-ttl/2)); err != nil {
			t.Fatal(err)
		}
		// A send time in the future counts as now.
		if err := h.store.Record(ctx, "future@example.org", h.now().Add(10*ttl)); err != nil {
			t.Fatal(err)
		}
		// The zero time counts as now.
		if err := h.store.Record(ctx, "zero@example.org", time.Time{}); err != nil {
			t.Fatal(err)
		}
		mustSeen(t, h.store, "half@example.org", true)
		h.advance(ttl/2 + ttl/5)
		mustSeen(t, h.store, "half@example.org", false)
		mustSeen(t, h.store, "future@example.org", true)
		mustSeen(t, h.store, "zero@example.org", true)
		h.advance(ttl / 2)
		mustSeen(t, h.store, "future@example.org", false)
	})

	t.Run("record again extends", func(t *testing.T) {
		h := open(t, ttl)
		if err := h.store.Record(ctx, "again@example.org", h.now()); err != nil {
			t.Fatal(err)
		}
		h.advance(ttl * 3 / 5)
		if err := h.store.Record(ctx, "again@example.org", h.now()); err != nil {
			t.Fatal(err)
		}
		h.advance(ttl * 3 / 5)
		mustSeen(t, h.store, "again@example.org", true)
	})

	t.Run("restart", func(t *testing.T) {
		if !persistent {
			return // nothing to test: the backend keeps nothing by design
		}
		h := open(t, ttl)
		if err := h.store.Record(ctx, "persist@example.org", h.now()); err != nil {
			t.Fatal(err)
		}
		s := h.reopen()
		mustSeen(t, s, "persist@example.org", true)
		mustSeen(t, s, "other@example.org", false)
	})

	t.Run("concurrent", func(t *testing.T) {
		h := open(t, ttl)
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					id := fmt.Sprintf("c%d.%d@example.org", g, i)
					if err := h.store.Record(ctx, id, h.now()); err != nil {
						errs <- err
						return
					}
					if ok, err := h.store.Seen(ctx, id); err != nil || !ok {
						errs <- fmt.Errorf("Seen(%s) = %v, %v", id, ok, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		h := open(t, ttl)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := h.store.Record(cctx, "ctx@example.org", h.now()); err == nil {
			t.Error("Record with cancelled context: no error")
		}
		if _, err := h.store.Seen(cctx, "ctx@example.org"); err == nil {
			t.Error("Seen with cancelled context: no error")
		}
	})

	t.Run("closed", func(t *testing.T) {
		h := open(t, ttl)
		if err := h.store.Close(); err != nil {
			t.Fatal(err)
		}
		if err := h.store.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if err := h.store.Record(ctx, "x@example.org", h.now()); !errors.Is(err, ErrClosed) {
			t.Errorf("Record after Close: %v", err)
		}
		if _, err := h.store.Seen(ctx, "x@example.org"); !errors.Is(err, ErrClosed) {
			t.Errorf("Seen after Close: %v", err)
		}
	})
}

// TestNormalID: stored IDs are bounce.NormalizeMessageID's form of one
// ID; lists, spaces and control characters are refused.
func TestNormalID(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		{"<abc@example.org>", "abc@example.org", nil},
		{"  <ABC@Example.ORG>\t", "ABC@example.org", nil},
		{"ABC@Example.ORG", "ABC@example.org", nil},
		{"<a@b@C.D>", "a@b@c.d", nil},
		{"no-domain", "no-domain", nil},
		{"<< x@Y >>", "", ErrInvalid},
		{"< x@Y >", "x@y", nil},
		{"<x@Ÿ.ORG>", "x@Ÿ.org", nil}, // ASCII letters only: the same bytes on both sides, whatever the encoding
		{"", "", ErrEmpty},
		{"<>", "", ErrEmpty},
		{"a b@c", "", ErrInvalid},
		{"a\x7f@c", "", ErrInvalid},
		{"<<>>", "", ErrInvalid},
		{"<a@b> <c@d>", "", ErrInvalid},
		{strings.Repeat("a", MaxKeyLen) + "@C", "", ErrTooLong},
	}
	for _, tt := range tests {
		got, err := normalID(tt.in)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("normalID(%.30q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
		if err == nil && got != bounce.NormalizeMessageID(tt.in) {
			t.Errorf("normalID(%q) = %q disagrees with bounce.NormalizeMessageID", tt.in, got)
		}
	}
}

// FuzzNormalID checks that normalisation never panics, is idempotent,
// bounded, and is bounce.NormalizeMessageID's form.
func FuzzNormalID(f *testing.F) {
	for _, s := range []string{"<abc@example.org>", " <A@B@C> ", "", "<>", "x", "a b@c", "<\x00@x>", "<x@Ÿ.ORG>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := normalID(in)
		if err != nil {
			return
		}
		if got == "" || len(got) > MaxKeyLen {
			t.Fatalf("%q → %q", in, got)
		}
		again, err := normalID(got)
		if err != nil || again != got {
			t.Fatalf("not idempotent: %q → %q → %q, %v", in, got, again, err)
		}
		if got != bounce.NormalizeMessageID(in) {
			t.Fatalf("%q → %q, bounce.NormalizeMessageID says %q", in, got, bounce.NormalizeMessageID(in))
		}
	})
}
