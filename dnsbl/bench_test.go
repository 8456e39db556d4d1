package dnsbl_test

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/dnsbl"
	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
)

// BenchmarkCachedVerdict is the common case: a client seen recently, every
// zone answered from the cache.
func BenchmarkCachedVerdict(b *testing.B) {
	s := dnstest.Start(b, testZone)
	c := newChecker(b, s.Addr, dnsbl.Options{},
		"bl.test=127.0.0.[2..3]*3", "allow.test=127.0.[0..255].[1..3]*-2", "any.test", "ips.backscatterer.test*6")
	a := ip("192.0.2.1")
	c.Check(ctx, a, true)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if r := c.Check(ctx, a, true); r.Score() != 8 {
			b.Fatalf("score %d", r.Score())
		}
	}
}

// BenchmarkFiveSlowZones checks that zones are asked concurrently: five
// zones that each take 50 ms should cost about what one does. slow/one is
// the ratio of the two (goal: at most 1.2).
func BenchmarkFiveSlowZones(b *testing.B) {
	s := dnstest.Start(b, testZone)
	s.SetFault("*", dnstest.Fault{Delay: 50 * time.Millisecond})
	one := newChecker(b, s.Addr, dnsbl.Options{}, "z1.test")
	five := newChecker(b, s.Addr, dnsbl.Options{}, "z1.test", "z2.test", "z3.test", "z4.test", "z5.test")
	var tOne, tFive time.Duration
	i := 0
	for b.Loop() {
		// A new IP each round: no cache hits.
		a := netip.AddrFrom4([4]byte{10, 3, byte(i >> 8), byte(i)})
		i++
		t0 := time.Now()
		one.Check(ctx, a, false)
		t1 := time.Now()
		r := five.Check(ctx, a, false)
		tFive += time.Since(t1)
		tOne += t1.Sub(t0)
		for _, zr := range r.Zones {
			if zr.Status != dnsbl.StatusNotListed || zr.Cached {
				b.Fatalf("%s: %s cached=%v", zr.Zone, zr.Status, zr.Cached)
			}
		}
	}
	b.ReportMetric(float64(tFive)/float64(tOne), "slow/one")
	b.ReportMetric(float64(tOne.Milliseconds())/float64(b.N), "ms-one/op")
	b.ReportMetric(float64(tFive.Milliseconds())/float64(b.N), "ms-five/op")
}

// BenchmarkSharedLookups runs 1,000 concurrent checks of 100 distinct IPs
// against two zones with a fresh cache and reports the queries each zone
// received (goal: at most 100).
func BenchmarkSharedLookups(b *testing.B) {
	s := dnstest.Start(b, testZone)
	s.SetFault("*", dnstest.Fault{Delay: 10 * time.Millisecond})
	maxPerZone := 0
	round := 0
	for b.Loop() {
		// A timeout no scheduler delay reaches: timed-out queries are not
		// cached and would be asked again, which is not what is counted here.
		c := newChecker(b, s.Addr, dnsbl.Options{Timeout: 30 * time.Second}, "bl.test", "any.test")
		var wg sync.WaitGroup
		for i := range 1000 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.Check(ctx, netip.AddrFrom4([4]byte{10, 4, byte(round), byte(i % 100)}), false)
			}()
		}
		wg.Wait()
		// Count what the server received, not what the checker thinks it sent.
		for _, z := range []string{"bl.test", "any.test"} {
			q := 0
			for i := range 100 {
				q += s.Queries(dnsbl.QueryName(netip.AddrFrom4([4]byte{10, 4, byte(round), byte(i)}), z), "A")
			}
			maxPerZone = max(maxPerZone, q)
		}
		round++
	}
	b.ReportMetric(float64(maxPerZone), "queries/zone")
	if maxPerZone > 100 {
		b.Errorf("%d queries per zone for 100 IPs", maxPerZone)
	}
}
