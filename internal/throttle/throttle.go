// Package throttle keeps a failing dependency from burying the log: one
// warning per interval, with the number held back since the last one. The
// sent log's health, go-redis's dial warnings and the DNSBL lookups use it,
// so they all count what they left out the same way.
package throttle

import (
	"sync"
	"time"
)

// Throttle lets one event through per interval. The zero value is ready;
// it is safe for concurrent use.
type Throttle struct {
	mu   sync.Mutex
	last time.Time
	held int
}

// Allow reports whether an event at now may be reported, every being the
// interval, and, when it may, how many events were held back since the
// last one reported.
func (t *Throttle) Allow(now time.Time, every time.Duration) (ok bool, held int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.last.IsZero() && now.Sub(t.last) < every {
		t.held++
		return false, 0
	}
	held, t.held, t.last = t.held, 0, now
	return true, held
}

// Keyed is a Throttle per key (a zone and an error kind, say).
type Keyed[K comparable] struct {
	Interval time.Duration

	mu sync.Mutex
	m  map[K]*Throttle
}

// Allow is Throttle.Allow for key.
func (k *Keyed[K]) Allow(key K, now time.Time) (ok bool, held int) {
	k.mu.Lock()
	t := k.m[key]
	if t == nil {
		if k.m == nil {
			k.m = map[K]*Throttle{}
		}
		t = &Throttle{}
		k.m[key] = t
	}
	k.mu.Unlock()
	return t.Allow(now, k.Interval)
}
