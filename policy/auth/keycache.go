package auth

import (
	"context"
	"sync"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
)

// KeyCache keeps DKIM key records for their DNS TTL, so that a burst of
// bounces of our mail costs one key lookup. It is bounded: when full, the
// entry closest to expiry is dropped. A record that does not exist is
// remembered for a few minutes (a forged signature can name any selector of
// our domain); a failed lookup is asked again next time. It is safe for
// concurrent use.
type KeyCache struct {
	mu     sync.Mutex
	max    int
	maxTTL time.Duration
	m      map[string]keyEntry
	now    func() time.Time
}

type keyEntry struct {
	txt      []string
	notFound bool
	expires  time.Time
}

// negativeTTL is how long a missing key record is remembered.
const negativeTTL = 5 * time.Minute

// DefaultKeyCacheSize bounds a KeyCache made with size 0.
const DefaultKeyCacheSize = 1024

// maxKeyTTL caps a key record's TTL: a rotated key is picked up within a day
// whatever the zone says.
const maxKeyTTL = 24 * time.Hour

// NewKeyCache returns a cache of at most size key records.
func NewKeyCache(size int) *KeyCache {
	if size <= 0 {
		size = DefaultKeyCacheSize
	}
	return &KeyCache{max: size, maxTTL: maxKeyTTL, m: make(map[string]keyEntry), now: time.Now}
}

func (k *KeyCache) get(name string) (e keyEntry, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok = k.m[name]
	if !ok {
		return keyEntry{}, false
	}
	if !k.now().Before(e.expires) {
		delete(k.m, name)
		return keyEntry{}, false
	}
	return e, true
}

func (k *KeyCache) put(name string, txt []string, notFound bool, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	ttl = min(ttl, k.maxTTL)
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	if _, ok := k.m[name]; !ok && len(k.m) >= k.max {
		victim, soonest := "", time.Time{}
		for n, e := range k.m {
			if !now.Before(e.expires) {
				victim = n
				break
			}
			if victim == "" || e.expires.Before(soonest) {
				victim, soonest = n, e.expires
			}
		}
		delete(k.m, victim)
	}
	k.m[name] = keyEntry{txt: txt, notFound: notFound, expires: now.Add(ttl)}
}

// Len is the number of records held.
func (k *KeyCache) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}

// keyLookup returns the TXT lookup both DKIM verifiers use: through the
// resolver seam, via the KeyCache when there is one, with errors in the
// shapes go-msgauth tests for.
func (c *Checker) keyLookup(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		if !validName(name) {
			return nil, invalidName(name)
		}
		if c.KeyCache != nil {
			if e, ok := c.KeyCache.get(name); ok {
				if e.notFound {
					return nil, dnsError(resolver.ErrNotFound, name)
				}
				return e.txt, nil
			}
		}
		txt, ttl, err := c.Resolver.LookupTXT(ctx, name)
		if c.KeyCache != nil {
			switch {
			case err == nil:
				c.KeyCache.put(name, txt, false, ttl)
			case resolver.IsNotFound(err):
				c.KeyCache.put(name, nil, true, negativeTTL)
			}
		}
		return txt, dnsError(err, name)
	}
}
