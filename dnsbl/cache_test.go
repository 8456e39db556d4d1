package dnsbl

import (
	"net/netip"
	"testing"
	"time"
)

func TestCacheEvictsExpiredFirst(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newCache(evictionSample)
	key := func(i int) cacheKey { return cacheKey{"bl.test", netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})} }
	// One entry soon to expire among long-lived ones: a full cache drops it.
	for i := range evictionSample {
		ttl := time.Hour
		if i == 3 {
			ttl = time.Minute
		}
		c.put(key(i), entry{expires: now.Add(ttl)}, now)
	}
	c.put(key(100), entry{expires: now.Add(time.Hour)}, now)
	if c.len() != evictionSample {
		t.Fatalf("len %d", c.len())
	}
	if _, ok := c.get(key(3), now); ok {
		t.Error("the entry closest to expiry survived eviction")
	}
	if _, ok := c.get(key(100), now); !ok {
		t.Error("the new entry is missing")
	}
	// Replacing an existing key evicts nothing.
	c.put(key(100), entry{expires: now.Add(2 * time.Hour)}, now)
	if c.len() != evictionSample {
		t.Errorf("len %d after replacing a key", c.len())
	}
	// Expired entries are dropped on read.
	if _, ok := c.get(key(0), now.Add(time.Hour)); ok || c.len() != evictionSample-1 {
		t.Errorf("expired entry returned or kept (len %d)", c.len())
	}
}
