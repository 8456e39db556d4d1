package sent

import (
	"context"
	"sync"
	"time"
)

// DefaultMemoryEntries bounds a MemoryStore made by NewMemory.
const DefaultMemoryEntries = 100_000

// MemoryStore keeps the log in memory, bounded: when full it drops expired
// entries, then the oldest. It is for tests and offline runs; nothing
// survives a restart.
type MemoryStore struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	now     func() time.Time
	entries map[string]memEntry
	order   []memRef // insertion order, may hold stale refs
	head    int
	seq     uint64
	closed  bool
}

type memEntry struct {
	expires time.Time
	seq     uint64
}

type memRef struct {
	key string
	seq uint64
}

// NewMemory returns a MemoryStore holding at most DefaultMemoryEntries.
func NewMemory(ttl time.Duration) *MemoryStore {
	return NewMemorySize(ttl, DefaultMemoryEntries)
}

// NewMemorySize returns a MemoryStore holding at most maxEntries (at least 1).
func NewMemorySize(ttl time.Duration, maxEntries int) *MemoryStore {
	return &MemoryStore{
		ttl:     orDefault(ttl),
		max:     max(maxEntries, 1),
		now:     time.Now,
		entries: make(map[string]memEntry),
	}
}

// String describes the store.
func (m *MemoryStore) String() string { return "memory sent log" }

// Record notes a sent Message-ID.
func (m *MemoryStore) Record(ctx context.Context, messageID string, at time.Time) error {
	key, err := messageIDKey(messageID)
	if err != nil {
		return err
	}
	return m.record(ctx, key, at)
}

// Seen reports whether a Message-ID was recorded and has not expired.
func (m *MemoryStore) Seen(ctx context.Context, messageID string) (bool, error) {
	key, err := messageIDKey(messageID)
	if err != nil {
		return false, err
	}
	return m.seen(ctx, key)
}

func (m *MemoryStore) record(ctx context.Context, key string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	now := m.now()
	exp := expiry(at, now, m.ttl)
	if !exp.After(now) {
		return nil // already expired: nothing to remember
	}
	m.seq++
	m.entries[key] = memEntry{expires: exp, seq: m.seq}
	m.order = append(m.order, memRef{key: key, seq: m.seq})
	if len(m.entries) > m.max {
		m.purgeLocked(now)
	}
	for len(m.entries) > m.max {
		m.evictOldestLocked()
	}
	if len(m.order) > 2*m.max+64 {
		m.compactLocked()
	}
	return nil
}

func (m *MemoryStore) seen(ctx context.Context, key string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, ErrClosed
	}
	e, ok := m.entries[key]
	return ok && e.expires.After(m.now()), nil
}

func (m *MemoryStore) evictOldestLocked() {
	for m.head < len(m.order) {
		ref := m.order[m.head]
		m.order[m.head] = memRef{}
		m.head++
		if e, ok := m.entries[ref.key]; ok && e.seq == ref.seq {
			delete(m.entries, ref.key)
			return
		}
	}
}

// compactLocked drops stale refs (re-recorded or deleted keys) so that order
// stays proportional to the number of entries.
func (m *MemoryStore) compactLocked() {
	kept := make([]memRef, 0, len(m.entries))
	for _, ref := range m.order[m.head:] {
		if e, ok := m.entries[ref.key]; ok && e.seq == ref.seq {
			kept = append(kept, ref)
		}
	}
	m.order, m.head = kept, 0
}

func (m *MemoryStore) purgeLocked(now time.Time) int {
	n := 0
	for k, e := range m.entries {
		if !e.expires.After(now) {
			delete(m.entries, k)
			n++
		}
	}
	return n
}

// Purge drops expired entries and reports how many.
func (m *MemoryStore) Purge(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	n := m.purgeLocked(m.now())
	m.compactLocked()
	return n, nil
}

// Len returns the number of entries held, expired or not.
func (m *MemoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// Close empties the store; later calls return ErrClosed.
func (m *MemoryStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.entries, m.order, m.head = nil, nil, 0
	return nil
}
