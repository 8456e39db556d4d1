package dnsbl

import (
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/internal/throttle"
)

// ZoneStats counts what happened to one zone name since the Checker was
// made. The counters only grow, as Prometheus counters expect.
type ZoneStats struct {
	Lookups   uint64               // checks that needed the zone (cached, shared or queried)
	CacheHits uint64               // answered from the cache
	Shared    uint64               // joined a query already in flight
	Queries   uint64               // A queries sent
	Positive  uint64               // queries answered with a 127.0.0.0/8 record
	Negative  uint64               // queries answered "no such record"
	Errors    map[ErrorKind]uint64 // failed queries by kind (every kind present)
}

type zoneStats struct {
	lookups, cacheHits, shared, queries, positive, negative atomic.Uint64
	errors                                                  [len(errorKinds)]atomic.Uint64
}

func (s *zoneStats) countError(k ErrorKind) {
	for i, e := range errorKinds {
		if e == k {
			s.errors[i].Add(1)
			return
		}
	}
}

// Stats returns the counters of every zone name, for metrics.
func (c *Checker) Stats() map[string]ZoneStats {
	out := make(map[string]ZoneStats, len(c.stats))
	for name, s := range c.stats {
		zs := ZoneStats{
			Lookups:   s.lookups.Load(),
			CacheHits: s.cacheHits.Load(),
			Shared:    s.shared.Load(),
			Queries:   s.queries.Load(),
			Positive:  s.positive.Load(),
			Negative:  s.negative.Load(),
			Errors:    make(map[ErrorKind]uint64, len(errorKinds)),
		}
		for i, k := range errorKinds {
			zs.Errors[k] = s.errors[i].Load()
		}
		out[name] = zs
	}
	return out
}

// CacheLen returns the number of cached answers.
func (c *Checker) CacheLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cache.len()
}

// logLimiter logs a zone's errors at most once per interval and kind: a
// dead list otherwise writes one line per message and buries the rest.
type logLimiter struct {
	throttle.Keyed[limitKey]
}

type limitKey struct {
	zone string
	kind ErrorKind
}

func (l *logLimiter) log(log *zap.Logger, now time.Time, interval time.Duration, zone string, kind ErrorKind, err error) {
	ok, held := l.Allow(limitKey{zone, kind}, now)
	if !ok {
		return
	}
	log.Warn("dnsbl lookup failed",
		zap.String("zone", zone),
		zap.String("kind", string(kind)),
		zap.Error(err),
		zap.Int("suppressed", held),
		zap.Duration("interval", interval))
}
