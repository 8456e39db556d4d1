package dnsbl_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backscatter-milter/backscatter-milter/dnsbl"
	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
)

// testZone is served by dnstest in every test. 192.0.2.0/24 clients:
// .1 listed (127.0.0.2), .3 an odd code, .10 a PBL-like code, .20 two codes.
const testZone = `
$TTL 300
2.0.0.127.bl.test.       A   127.0.0.2
2.0.0.127.bl.test.       TXT "test point"
1.2.0.192.bl.test.       A   127.0.0.2
1.2.0.192.bl.test.       TXT "listed: see http://bl.test/1"
3.2.0.192.bl.test.       A   127.0.1.5
10.2.0.192.bl.test.      A   127.0.0.10
20.2.0.192.bl.test.      A   127.0.0.2
20.2.0.192.bl.test.      A   127.0.0.10
1.2.0.192.allow.test.    A   127.0.2.1
10.2.0.192.allow.test.   A   127.0.2.9
1.2.0.192.any.test.      A   127.0.0.77
1.2.0.192.ips.backscatterer.test. A 127.0.0.2
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.v6.test. A 127.0.0.4
30.2.0.192.bl.test.      A   127.255.255.254
31.2.0.192.bl.test.      A   192.0.2.99
32.2.0.192.bl.test. 5    A   127.0.0.2
`

// clock is a settable time source for TTL and log-interval tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func zones(t testing.TB, specs ...string) []dnsbl.Zone {
	t.Helper()
	var out []dnsbl.Zone
	for _, s := range specs {
		z, err := dnsbl.ParseZoneSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, z)
	}
	return out
}

func newChecker(t testing.TB, addr string, opts dnsbl.Options, specs ...string) *dnsbl.Checker {
	t.Helper()
	// Each exchange may take as long as the whole check: tests that give a
	// long Options.Timeout must not fail on a busy machine's slow answer.
	r, err := resolver.New(addr, max(time.Second, opts.Timeout))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dnsbl.New(zones(t, specs...), r, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var ctx = context.Background()

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestCheckListings(t *testing.T) {
	s := dnstest.Start(t, testZone)
	c := newChecker(t, s.Addr, dnsbl.Options{},
		"bl.test=127.0.0.[2..3]*3",
		"bl.test=127.0.[0;1;4..6].[5;10]*2",
		"allow.test=127.0.[0..255].[1..3]*-2",
		"any.test",
	)
	L, N := dnsbl.StatusListed, dnsbl.StatusNotListed
	tests := []struct {
		ip     string
		status []dnsbl.Status
		score  int
	}{
		{"192.0.2.1", []dnsbl.Status{L, N, L, L}, 3 - 2 + 1},
		{"192.0.2.3", []dnsbl.Status{N, L, N, N}, 2},
		{"192.0.2.10", []dnsbl.Status{N, L, N, N}, 2},
		{"192.0.2.20", []dnsbl.Status{L, L, N, N}, 5},
		{"192.0.2.99", []dnsbl.Status{N, N, N, N}, 0},
		{"::ffff:192.0.2.1", []dnsbl.Status{L, N, L, L}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			r := c.Check(ctx, ip(tt.ip), false)
			if len(r.Zones) != 4 {
				t.Fatalf("%d zone results", len(r.Zones))
			}
			for i, zr := range r.Zones {
				if zr.Status != tt.status[i] || zr.Listed != (tt.status[i] == L) || zr.Err != nil {
					t.Errorf("zone %s: %s listed=%v err=%v, want %s", zr.Zone, zr.Status, zr.Listed, zr.Err, tt.status[i])
				}
				if (zr.Listed && zr.Weight != zr.Zone.Weight) || (!zr.Listed && zr.Weight != 0) {
					t.Errorf("zone %s: weight %d", zr.Zone, zr.Weight)
				}
			}
			listed := 0
			for _, st := range tt.status {
				if st == L {
					listed++
				}
			}
			if r.Score() != tt.score {
				t.Errorf("score %d, want %d", r.Score(), tt.score)
			}
			if len(r.Listed()) != listed {
				t.Errorf("Listed() = %v", r.Listed())
			}
		})
	}
	// Both bl.test entries share one query per IP; the mapped IPv6 form is
	// the same cache entry as the IPv4 one.
	if n := s.Queries("1.2.0.192.bl.test", "A"); n != 1 {
		t.Errorf("bl.test asked %d times for 192.0.2.1, want 1", n)
	}
	r := c.Check(ctx, ip("192.0.2.20"), false)
	if !r.Zones[0].Cached || len(r.Zones[0].Answers) != 2 {
		t.Errorf("second check: cached=%v answers=%v", r.Zones[0].Cached, r.Zones[0].Answers)
	}
	st := c.Stats()["bl.test"]
	if st.Queries != 5 || st.CacheHits != 2 || st.Positive != 4 || st.Negative != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestQueryName(t *testing.T) {
	for _, a := range []string{"192.0.2.1", "10.20.30.40", "2001:db8::1", "::1", "fe80::abcd:ef01"} {
		want, err := dns.ReverseAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		want = strings.TrimSuffix(strings.TrimSuffix(want, "in-addr.arpa."), "ip6.arpa.") + "bl.test"
		if got := dnsbl.QueryName(ip(a), "bl.test"); got != want {
			t.Errorf("QueryName(%s) = %q, want %q", a, got, want)
		}
	}
	if got := dnsbl.QueryName(ip("::ffff:192.0.2.1"), "bl.test"); got != "1.2.0.192.bl.test" {
		t.Errorf("mapped address: %q", got)
	}
}

func TestIPv6(t *testing.T) {
	s := dnstest.Start(t, testZone)
	c := newChecker(t, s.Addr, dnsbl.Options{}, "v6.test=127.0.0.4*2")
	if r := c.Check(ctx, ip("2001:db8::1"), false); !r.Zones[0].Listed || r.Score() != 2 {
		t.Errorf("2001:db8::1: %+v", r.Zones[0])
	}
	if r := c.Check(ctx, ip("2001:db8::2"), false); r.Zones[0].Status != dnsbl.StatusNotListed {
		t.Errorf("2001:db8::2: %+v", r.Zones[0])
	}
}

func TestSenderScope(t *testing.T) {
	s := dnstest.Start(t, testZone)
	c := newChecker(t, s.Addr, dnsbl.Options{}, "ips.backscatterer.test=127.0.0.2*6", "bl.test*1")
	name := "1.2.0.192.ips.backscatterer.test"

	r := c.Check(ctx, ip("192.0.2.1"), false)
	if r.Zones[0].Status != dnsbl.StatusSkippedScope || r.Zones[0].Weight != 0 || r.Score() != 1 {
		t.Errorf("normal sender: %+v score %d", r.Zones[0], r.Score())
	}
	if n := s.Queries(name, "A"); n != 0 {
		t.Errorf("bounce-only zone asked %d times for a normal sender", n)
	}
	r = c.Check(ctx, ip("192.0.2.1"), true)
	if !r.Zones[0].Listed || r.Score() != 7 {
		t.Errorf("bounce sender: %+v score %d", r.Zones[0], r.Score())
	}
}

func TestTTLClamp(t *testing.T) {
	s := dnstest.Start(t, testZone)
	clk := newClock()
	c := newChecker(t, s.Addr, dnsbl.Options{MinTTL: 90 * time.Second, MaxTTL: 120 * time.Second, Now: clk.Now}, "bl.test")
	tests := []struct {
		name   string
		ip     string
		expiry time.Duration // clamped TTL
	}{
		{"ttl 300 clamped down", "192.0.2.1", 120 * time.Second},
		{"ttl 5 clamped up", "192.0.2.32", 90 * time.Second},
		{"negative ttl 60 clamped up", "192.0.2.77", 90 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			qname := dnsbl.QueryName(ip(tt.ip), "bl.test")
			c.Check(ctx, ip(tt.ip), false)
			clk.Advance(tt.expiry - time.Second)
			if r := c.Check(ctx, ip(tt.ip), false); !r.Zones[0].Cached {
				t.Errorf("not cached 1s before expiry")
			}
			if n := s.Queries(qname, "A"); n != 1 {
				t.Errorf("%d queries before expiry, want 1", n)
			}
			clk.Advance(2 * time.Second)
			if r := c.Check(ctx, ip(tt.ip), false); r.Zones[0].Cached {
				t.Errorf("still cached 1s after expiry")
			}
			if n := s.Queries(qname, "A"); n != 2 {
				t.Errorf("%d queries after expiry, want 2", n)
			}
		})
	}
}

func TestCacheBound(t *testing.T) {
	s := dnstest.Start(t, testZone)
	c := newChecker(t, s.Addr, dnsbl.Options{CacheSize: 10}, "bl.test", "any.test")
	for i := range 50 {
		c.Check(ctx, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), false)
		if n := c.CacheLen(); n > 10 {
			t.Fatalf("cache holds %d entries, bound 10", n)
		}
	}
	if n := c.CacheLen(); n != 10 {
		t.Errorf("cache holds %d entries, want 10", n)
	}
}

func TestInflightSharing(t *testing.T) {
	s := dnstest.Start(t, testZone)
	// The delay keeps every query in flight while all checks start, so
	// sharing, not the cache, is what is tested.
	s.SetFault("*", dnstest.Fault{Delay: 50 * time.Millisecond})
	// A timeout no scheduler delay reaches: this tests sharing, and a
	// timed-out query (not cached) would be asked again.
	c := newChecker(t, s.Addr, dnsbl.Options{Timeout: 30 * time.Second}, "bl.test", "any.test")
	var wg sync.WaitGroup
	errs := make(chan string, 2*1000) // room for every zone of every check: a full channel would hang the test
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := c.Check(ctx, netip.AddrFrom4([4]byte{10, 1, 0, byte(i % 100)}), false)
			for _, zr := range r.Zones {
				if zr.Status != dnsbl.StatusNotListed {
					errs <- fmt.Sprintf("%s: %s %v", zr.Zone, zr.Status, zr.Err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
		break
	}
	if n := s.TotalQueries(); n > 200 {
		t.Errorf("%d queries for 100 IPs in 2 zones, want at most 200", n)
	}
	for i := range 100 {
		for _, z := range []string{"bl.test", "any.test"} {
			if n := s.Queries(dnsbl.QueryName(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), z), "A"); n != 1 {
				t.Fatalf("%s asked %d times for 10.1.0.%d", z, n, i)
			}
		}
	}
	st := c.Stats()["bl.test"]
	if st.Lookups != 1000 || st.Queries != 100 || st.Shared+st.CacheHits != 900 || st.Shared == 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestDeadline(t *testing.T) {
	s := dnstest.Start(t, testZone)
	s.SetFault("1.2.0.192.any.test", dnstest.Fault{Delay: 3 * time.Second})
	const timeout = 300 * time.Millisecond
	c := newChecker(t, s.Addr, dnsbl.Options{Timeout: timeout}, "bl.test*3", "any.test*5")

	p := c.Start(ctx, ip("192.0.2.1"), false)
	r := p.Wait(ctx)
	if !r.Zones[0].Listed {
		t.Errorf("fast zone: %+v", r.Zones[0])
	}
	slow := r.Zones[1]
	if slow.Status != dnsbl.StatusError || slow.ErrKind != dnsbl.KindTimeout || !errors.Is(slow.Err, dnsbl.ErrTimeout) || slow.Weight != 0 {
		t.Errorf("slow zone: %+v", slow)
	}
	if r.Score() != 3 {
		t.Errorf("score %d, want 3", r.Score())
	}
	// The 3 s zone did not hold the check: had Wait waited for it, the zone
	// would be listed, not timed out (checked above without a clock).

	// The caller's context ends the wait too.
	cctx, cancel := context.WithCancel(ctx)
	p = c.Start(ctx, ip("192.0.2.1"), false)
	cancel()
	r = p.Wait(cctx)
	if r.Zones[1].Status != dnsbl.StatusError || !errors.Is(r.Zones[1].Err, context.Canceled) {
		t.Errorf("canceled wait: %+v", r.Zones[1])
	}
}

func TestFailures(t *testing.T) {
	tests := []struct {
		name  string
		ip    string
		fault dnstest.Fault
		kind  dnsbl.ErrorKind
		err   error
	}{
		{"servfail", "192.0.2.1", dnstest.Fault{Rcode: dns.RcodeServerFailure}, dnsbl.KindTemporary, resolver.ErrTemporary},
		{"refused", "192.0.2.1", dnstest.Fault{Rcode: dns.RcodeRefused}, dnsbl.KindTemporary, resolver.ErrTemporary},
		{"garbage", "192.0.2.1", dnstest.Fault{Garbage: true}, dnsbl.KindTemporary, resolver.ErrTemporary},
		{"no answer", "192.0.2.1", dnstest.Fault{Drop: true}, dnsbl.KindTimeout, dnsbl.ErrTimeout},
		{"error code 127.255.255.254", "192.0.2.30", dnstest.Fault{}, dnsbl.KindRefused, dnsbl.ErrRefusedAnswer},
		{"answer outside 127/8", "192.0.2.31", dnstest.Fault{}, dnsbl.KindBadAnswer, dnsbl.ErrBadAnswer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := dnstest.Start(t, testZone)
			qname := dnsbl.QueryName(ip(tt.ip), "bl.test")
			s.SetFault(qname, tt.fault)
			c := newChecker(t, s.Addr, dnsbl.Options{Timeout: 300 * time.Millisecond}, "bl.test*5")
			for i := range 2 {
				zr := c.Check(ctx, ip(tt.ip), false).Zones[0]
				if zr.Status != dnsbl.StatusError || zr.Listed || zr.Weight != 0 || zr.Cached || zr.ErrKind != tt.kind || !errors.Is(zr.Err, tt.err) {
					t.Fatalf("%+v", zr)
				}
				// A timed-out query may end just after the check gave up;
				// wait for it so the next check does not join it.
				waitFor(t, func() bool { return c.Stats()["bl.test"].Errors[tt.kind] == uint64(i+1) })
			}
			// Errors are not cached: the second check asked again.
			if n := s.Queries(qname, "A"); n < 2 {
				t.Errorf("%d queries, want 2 (errors are not cached)", n)
			}
			if n := c.Stats()["bl.test"].Errors[tt.kind]; n != 2 {
				t.Errorf("error counter %s = %d, want 2", tt.kind, n)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	if !await.True(5*time.Second, cond) {
		t.Fatal("condition not reached within 5s")
	}
}

func TestTruncatedAnswer(t *testing.T) {
	s := dnstest.Start(t, testZone)
	s.SetFault("1.2.0.192.bl.test", dnstest.Fault{Truncate: true})
	c := newChecker(t, s.Addr, dnsbl.Options{}, "bl.test")
	if zr := c.Check(ctx, ip("192.0.2.1"), false).Zones[0]; !zr.Listed {
		t.Fatalf("%+v", zr)
	}
	if n := s.Queries("1.2.0.192.bl.test", "A"); n != 2 {
		t.Errorf("%d queries, want UDP then TCP", n)
	}
}

func TestResolverDown(t *testing.T) {
	s := dnstest.Start(t, testZone)
	addr := s.Addr
	s.Close()
	c := newChecker(t, addr, dnsbl.Options{Timeout: 300 * time.Millisecond}, "bl.test*5", "any.test")
	r := c.Check(ctx, ip("192.0.2.1"), true)
	for _, zr := range r.Zones {
		if zr.Status != dnsbl.StatusError || zr.Err == nil {
			t.Errorf("%s: %+v", zr.Zone, zr)
		}
	}
	if r.Score() != 0 {
		t.Errorf("score %d with a dead resolver", r.Score())
	}
}

func TestTXT(t *testing.T) {
	s := dnstest.Start(t, testZone)
	c := newChecker(t, s.Addr, dnsbl.Options{FetchTXT: true}, "bl.test=127.0.0.2")
	if zr := c.Check(ctx, ip("192.0.2.1"), false).Zones[0]; zr.TXT != "listed: see http://bl.test/1" {
		t.Errorf("TXT = %q", zr.TXT)
	}
	if zr := c.Check(ctx, ip("192.0.2.1"), false).Zones[0]; !zr.Cached || zr.TXT != "listed: see http://bl.test/1" {
		t.Errorf("cached TXT = %q (cached %v)", zr.TXT, zr.Cached)
	}
	// 127.0.0.10 does not pass the filter: no TXT query.
	if zr := c.Check(ctx, ip("192.0.2.10"), false).Zones[0]; zr.Listed || zr.TXT != "" {
		t.Errorf("%+v", zr)
	}
	if n := s.Queries("10.2.0.192.bl.test", "TXT"); n != 0 {
		t.Errorf("TXT asked for an answer the filter rejects")
	}
	c = newChecker(t, s.Addr, dnsbl.Options{}, "bl.test")
	if zr := c.Check(ctx, ip("192.0.2.20"), false).Zones[0]; zr.TXT != "" || s.Queries("20.2.0.192.bl.test", "TXT") != 0 {
		t.Errorf("TXT fetched without FetchTXT")
	}
}

func TestErrorLogRateLimit(t *testing.T) {
	s := dnstest.Start(t, testZone)
	s.SetFault("*", dnstest.Fault{Rcode: dns.RcodeServerFailure})
	core, logs := observer.New(zap.WarnLevel)
	clk := newClock()
	c := newChecker(t, s.Addr, dnsbl.Options{Logger: zap.New(core), LogInterval: time.Minute, Now: clk.Now}, "bl.test")
	for i := range 5 {
		c.Check(ctx, netip.AddrFrom4([4]byte{10, 2, 0, byte(i)}), false)
	}
	if n := logs.Len(); n != 1 {
		t.Fatalf("%d log lines for 5 errors in one interval, want 1", n)
	}
	clk.Advance(61 * time.Second)
	c.Check(ctx, ip("10.2.0.99"), false)
	all := logs.All()
	if len(all) != 2 {
		t.Fatalf("%d log lines after the interval, want 2", len(all))
	}
	f := all[1].ContextMap()
	if f["zone"] != "bl.test" || f["kind"] != "temporary" || f["suppressed"] != int64(4) {
		t.Errorf("log fields %v", f)
	}
	if n := c.Stats()["bl.test"].Errors[dnsbl.KindTemporary]; n != 6 {
		t.Errorf("error counter %d, want 6", n)
	}
}

func TestNewErrors(t *testing.T) {
	r, _ := resolver.New("127.0.0.1:1", time.Second)
	if _, err := dnsbl.New(nil, nil, dnsbl.Options{}); err == nil {
		t.Error("nil resolver accepted")
	}
	if _, err := dnsbl.New([]dnsbl.Zone{{Name: "bad..zone"}}, r, dnsbl.Options{}); err == nil {
		t.Error("bad zone name accepted")
	}
	if _, err := dnsbl.New([]dnsbl.Zone{{Name: "bl.test", Senders: "x"}}, r, dnsbl.Options{}); err == nil {
		t.Error("bad senders accepted")
	}
	if _, err := dnsbl.New(nil, r, dnsbl.Options{MinTTL: time.Hour, MaxTTL: time.Minute}); err == nil {
		t.Error("max TTL below min TTL accepted")
	}
	c, err := dnsbl.New([]dnsbl.Zone{{Name: "ips.backscatterer.org"}}, r, dnsbl.Options{})
	if err != nil || c.Zones()[0].Senders != dnsbl.SendersBounce {
		t.Errorf("default senders: %v %v", c.Zones(), err)
	}
	if zr := c.Check(ctx, netip.Addr{}, true).Zones[0]; zr.Status != dnsbl.StatusError {
		t.Errorf("invalid IP: %+v", zr)
	}
}
