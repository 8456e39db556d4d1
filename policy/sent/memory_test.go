package sent

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func openMemory(t *testing.T, ttl time.Duration) harness {
	clock := newFakeClock()
	m := NewMemory(ttl)
	m.now = clock.Now
	t.Cleanup(func() { m.Close() })
	return harness{store: m, now: clock.Now, advance: clock.Advance}
}

func TestMemory(t *testing.T) {
	testStore(t, openMemory, DefaultTTL, false)
}

func TestMemoryBounded(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	m := NewMemorySize(time.Hour, 10)
	m.now = clock.Now
	for i := 0; i < 1000; i++ {
		if err := m.Record(ctx, fmt.Sprintf("id%d@x", i), clock.Now()); err != nil {
			t.Fatal(err)
		}
		// Re-recording the same keys must not grow the queue without bound.
		if err := m.Record(ctx, "hot@x", clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.Len(); n > 10 {
		t.Fatalf("Len = %d, want ≤ 10", n)
	}
	if len(m.order) > 2*10+64+2 {
		t.Errorf("order queue holds %d refs", len(m.order))
	}
	// The newest survive, the oldest are evicted.
	for id, want := range map[string]bool{"id999@x": true, "hot@x": true, "id0@x": false} {
		if ok, _ := m.Seen(ctx, id); ok != want {
			t.Errorf("Seen(%s) = %v, want %v", id, ok, want)
		}
	}
}

func TestMemoryEvictsExpiredFirst(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	m := NewMemorySize(time.Hour, 3)
	m.now = clock.Now
	m.Record(ctx, "keep@x", clock.Now())
	clock.Advance(30 * time.Minute)
	m.Record(ctx, "old1@x", clock.Now().Add(-50*time.Minute)) // expires in 10 min
	m.Record(ctx, "old2@x", clock.Now().Add(-50*time.Minute))
	clock.Advance(15 * time.Minute)
	m.Record(ctx, "new@x", clock.Now())
	for id, want := range map[string]bool{"keep@x": true, "new@x": true} {
		if ok, _ := m.Seen(ctx, id); ok != want {
			t.Errorf("Seen(%s) = %v, want %v", id, ok, want)
		}
	}
}

func TestMemoryPurge(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	m := NewMemory(time.Hour)
	m.now = clock.Now
	for i := 0; i < 5; i++ {
		m.Record(ctx, fmt.Sprintf("a%d@x", i), clock.Now())
	}
	clock.Advance(30 * time.Minute)
	m.Record(ctx, "b@x", clock.Now())
	clock.Advance(45 * time.Minute)
	n, err := m.Purge(ctx)
	if err != nil || n != 5 || m.Len() != 1 {
		t.Errorf("Purge = %d, %v; Len %d", n, err, m.Len())
	}
}
