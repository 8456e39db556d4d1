package resolver

import (
	"container/list"
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Cache is a Resolver in front of a Client that keeps each answer for its
// TTL, in at most a fixed number of entries (least recently used go first).
// SPF and DKIM ask the same few names again and again — the sender domain's
// SPF record for every inbound message, a signer's key for each of its
// messages — and without it every one is a query. Concurrent questions for
// the same name and type share one query. Negative answers (NXDOMAIN,
// NODATA) are kept for their SOA minimum; failures are never kept.
//
// DNSBL lookups do not go through a Cache: package dnsbl keeps its own, with
// the zones' TTL clamps.
type Cache struct {
	c      *Client
	max    int
	maxTTL time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[cacheKey]*cacheEntry
	lru     list.List // of *cacheEntry, most recently used first

	hits, misses, shared atomic.Uint64
}

// DefaultCacheSize and DefaultCacheMaxTTL bound a Cache made by NewCache
// with zero arguments: about a hundred bytes of records per entry, and no
// answer older than an hour, whatever its TTL says.
const (
	DefaultCacheSize   = 10_000
	DefaultCacheMaxTTL = time.Hour
)

type cacheKey struct {
	name  string // lower-case FQDN
	qtype uint16
}

type cacheEntry struct {
	key     cacheKey
	elem    *list.Element // nil while the query is in flight
	ready   chan struct{} // closed when the fields below are set
	rrs     []dns.RR
	err     error
	expires time.Time
}

// NewCache returns a Cache of c with room for size entries, none kept longer
// than maxTTL; zero values take the defaults.
func NewCache(c *Client, size int, maxTTL time.Duration) *Cache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	if maxTTL <= 0 {
		maxTTL = DefaultCacheMaxTTL
	}
	return &Cache{c: c, max: size, maxTTL: maxTTL, now: time.Now, entries: map[cacheKey]*cacheEntry{}}
}

// CacheStats counts how questions were answered.
type CacheStats struct {
	Hits   uint64 // from a kept answer
	Shared uint64 // by joining a query in flight
	Misses uint64 // by a query
	Len    int    // answers kept now
}

// Stats returns the counters so far.
func (k *Cache) Stats() CacheStats {
	k.mu.Lock()
	n := k.lru.Len()
	k.mu.Unlock()
	return CacheStats{Hits: k.hits.Load(), Shared: k.shared.Load(), Misses: k.misses.Load(), Len: n}
}

// answers is Client.answers through the cache.
func (k *Cache) answers(ctx context.Context, name string, qtype uint16) ([]dns.RR, time.Duration, error) {
	key := cacheKey{strings.ToLower(dns.Fqdn(name)), qtype}
	now := k.now()
	k.mu.Lock()
	if e, ok := k.entries[key]; ok {
		select {
		case <-e.ready:
			if now.Before(e.expires) {
				k.lru.MoveToFront(e.elem)
				k.mu.Unlock()
				k.hits.Add(1)
				return e.rrs, e.expires.Sub(now).Truncate(time.Second), e.err
			}
			k.remove(e)
		default:
			k.mu.Unlock()
			k.shared.Add(1)
			select {
			case <-e.ready:
				return e.rrs, max(e.expires.Sub(k.now()), 0).Truncate(time.Second), e.err
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			}
		}
	}
	e := &cacheEntry{key: key, ready: make(chan struct{})}
	k.entries[key] = e
	k.mu.Unlock()
	k.misses.Add(1)

	rrs, ttl, err := k.c.answers(ctx, name, qtype)
	ttl = min(ttl, k.maxTTL)
	k.mu.Lock()
	e.rrs, e.err, e.expires = rrs, err, k.now().Add(ttl)
	close(e.ready)
	if ttl <= 0 || err != nil && !IsNotFound(err) {
		delete(k.entries, key) // a failure or a TTL of 0: answer this once only
	} else {
		e.elem = k.lru.PushFront(e)
		for k.lru.Len() > k.max {
			k.remove(k.lru.Back().Value.(*cacheEntry))
		}
	}
	k.mu.Unlock()
	return rrs, ttl, err
}

// remove forgets e; k.mu is held.
func (k *Cache) remove(e *cacheEntry) {
	if k.entries[e.key] == e {
		delete(k.entries, e.key)
	}
	if e.elem != nil {
		k.lru.Remove(e.elem)
		e.elem = nil
	}
}

// LookupA implements Resolver.
func (k *Cache) LookupA(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	return lookupA(ctx, k.answers, name)
}

// LookupTXT implements Resolver.
func (k *Cache) LookupTXT(ctx context.Context, name string) ([]string, time.Duration, error) {
	return lookupTXT(ctx, k.answers, name)
}

// LookupIP implements Resolver.
func (k *Cache) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	return lookupIP(ctx, k.answers, host)
}

// LookupMX implements Resolver.
func (k *Cache) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return lookupMX(ctx, k.answers, name)
}

// LookupPTR implements Resolver.
func (k *Cache) LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error) {
	return lookupPTR(ctx, k.answers, addr)
}

var _ Resolver = (*Cache)(nil)
