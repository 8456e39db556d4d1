package dnsbl

import (
	"net/netip"
	"time"
)

type cacheKey struct {
	zone string
	ip   netip.Addr
}

type entry struct {
	answers []netip.Addr // nil: not listed (negative answer)
	txt     string
	expires time.Time
}

// cache holds answers until their clamped TTL runs out, up to size entries.
// It is guarded by Checker.mu.
//
// When full, an insert evicts by sampling: it looks at a few entries (Go
// randomises where a map iteration starts), drops the first expired one or
// else the one closest to expiry. That approximates "evict what would go
// soonest anyway" at O(1) per insert, with no list to maintain per hit; a
// full cache means a flood of distinct IPs, where any choice is as good.
type cache struct {
	size int
	m    map[cacheKey]entry
}

const evictionSample = 8

func newCache(size int) cache {
	return cache{size: size, m: make(map[cacheKey]entry, min(size, 1024))}
}

func (c *cache) get(k cacheKey, now time.Time) (entry, bool) {
	e, ok := c.m[k]
	if !ok {
		return entry{}, false
	}
	if !now.Before(e.expires) {
		delete(c.m, k)
		return entry{}, false
	}
	return e, true
}

func (c *cache) put(k cacheKey, e entry, now time.Time) {
	if _, ok := c.m[k]; !ok && len(c.m) >= c.size {
		c.evict(now)
	}
	c.m[k] = e
}

func (c *cache) evict(now time.Time) {
	var victim cacheKey
	var soonest time.Time
	n := 0
	for k, e := range c.m {
		if !now.Before(e.expires) {
			victim = k
			break
		}
		if n == 0 || e.expires.Before(soonest) {
			victim, soonest = k, e.expires
		}
		n++
		if n == evictionSample {
			break
		}
	}
	delete(c.m, victim)
}

func (c *cache) len() int { return len(c.m) }
