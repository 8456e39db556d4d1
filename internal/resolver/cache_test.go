package resolver

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
)

const cacheZone = `
pass.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
zero.test. 0 IN TXT "v=spf1 -all"
long.test. 86400 IN TXT "v=spf1 -all"
a.test. 60 IN TXT "a"
b.test. 60 IN TXT "b"
c.test. 60 IN TXT "c"
mx.pass.test. 300 IN A 192.0.2.1
sel._domainkey.pass.test. 300 IN TXT "v=DKIM1; p=abc"
`

// testCache returns a Cache on a test server, with a clock the test moves.
func testCache(t *testing.T, size int, maxTTL time.Duration) (*Cache, *dnstest.Server, *time.Time) {
	t.Helper()
	srv := dnstest.Start(t, cacheZone)
	c, err := New(srv.Addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	k := NewCache(c, size, maxTTL)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	k.now = func() time.Time { return now }
	return k, srv, &now
}

func TestCacheKeepsAnswersForTheirTTL(t *testing.T) {
	k, srv, now := testCache(t, 0, 0)
	ctx := context.Background()
	for i, name := range []string{"pass.test", "PASS.test.", "pass.test"} {
		txt, ttl, err := k.LookupTXT(ctx, name)
		if err != nil || len(txt) != 1 || txt[0] != "v=spf1 ip4:192.0.2.0/24 -all" {
			t.Fatalf("lookup %d: %q %v", i, txt, err)
		}
		if ttl != 300*time.Second {
			t.Errorf("lookup %d: ttl %v", i, ttl)
		}
	}
	if n := srv.Queries("pass.test", "TXT"); n != 1 {
		t.Errorf("%d queries for three lookups, want 1", n)
	}
	*now = now.Add(299 * time.Second)
	if _, ttl, _ := k.LookupTXT(ctx, "pass.test"); ttl != time.Second || srv.Queries("pass.test", "TXT") != 1 {
		t.Errorf("before expiry: ttl %v, %d queries", ttl, srv.Queries("pass.test", "TXT"))
	}
	*now = now.Add(2 * time.Second)
	k.LookupTXT(ctx, "pass.test")
	if n := srv.Queries("pass.test", "TXT"); n != 2 {
		t.Errorf("after expiry: %d queries, want 2", n)
	}
	// Another type of the same name is another question.
	if ips, err := k.LookupIP(ctx, "mx.pass.test"); err != nil || len(ips) != 1 {
		t.Fatalf("LookupIP: %v %v", ips, err)
	}
	k.LookupIP(ctx, "mx.pass.test")
	if srv.Queries("mx.pass.test", "A") != 1 || srv.Queries("mx.pass.test", "AAAA") != 1 {
		t.Errorf("A %d, AAAA %d queries, want 1 each (NODATA is kept too)", srv.Queries("mx.pass.test", "A"), srv.Queries("mx.pass.test", "AAAA"))
	}
	st := k.Stats()
	if st.Misses != 4 || st.Hits != 5 || st.Len != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestCacheNegativeAndFailures(t *testing.T) {
	k, srv, now := testCache(t, 0, 0)
	ctx := context.Background()
	for range 2 {
		if _, _, err := k.LookupTXT(ctx, "nx.test"); !IsNotFound(err) {
			t.Fatalf("nx.test: %v", err)
		}
	}
	if n := srv.Queries("nx.test", "TXT"); n != 1 {
		t.Errorf("NXDOMAIN asked %d times, want 1 (kept for the SOA minimum)", n)
	}
	*now = now.Add(61 * time.Second)
	k.LookupTXT(ctx, "nx.test")
	if n := srv.Queries("nx.test", "TXT"); n != 2 {
		t.Errorf("NXDOMAIN after its TTL: %d queries, want 2", n)
	}

	srv.SetFault("fail.test", dnstest.Fault{Rcode: dns.RcodeServerFailure})
	for range 2 {
		if _, _, err := k.LookupTXT(ctx, "fail.test"); !IsTemporary(err) {
			t.Fatalf("SERVFAIL: %v", err)
		}
	}
	if n := srv.Queries("fail.test", "TXT"); n != 2 {
		t.Errorf("SERVFAIL asked %d times, want 2 (failures are not kept)", n)
	}
	for range 2 {
		k.LookupTXT(ctx, "zero.test")
	}
	if n := srv.Queries("zero.test", "TXT"); n != 2 {
		t.Errorf("TTL 0 asked %d times, want 2", n)
	}
}

func TestCacheBounds(t *testing.T) {
	k, srv, now := testCache(t, 2, time.Hour)
	ctx := context.Background()
	for _, n := range []string{"a.test", "b.test", "a.test", "c.test"} { // c evicts b, the least recently used
		k.LookupTXT(ctx, n)
	}
	k.LookupTXT(ctx, "a.test")
	k.LookupTXT(ctx, "b.test")
	if a, b, c := srv.Queries("a.test", "TXT"), srv.Queries("b.test", "TXT"), srv.Queries("c.test", "TXT"); a != 1 || b != 2 || c != 1 {
		t.Errorf("queries a %d b %d c %d, want 1 2 1", a, b, c)
	}
	if st := k.Stats(); st.Len != 2 {
		t.Errorf("%d entries kept, want at most 2", st.Len)
	}
	k.LookupTXT(ctx, "long.test")
	*now = now.Add(time.Hour + time.Second)
	if _, ttl, _ := k.LookupTXT(ctx, "long.test"); ttl != time.Hour || srv.Queries("long.test", "TXT") != 2 {
		t.Errorf("a day's TTL is kept an hour at most: ttl %v, %d queries", ttl, srv.Queries("long.test", "TXT"))
	}
}

func TestCacheSharesAQueryInFlight(t *testing.T) {
	k, srv, _ := testCache(t, 0, 0)
	srv.SetFault("sel._domainkey.pass.test", dnstest.Fault{Delay: 200 * time.Millisecond})
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			txt, _, err := k.LookupTXT(context.Background(), "sel._domainkey.pass.test")
			if err == nil && (len(txt) != 1 || txt[0] != "v=DKIM1; p=abc") {
				err = context.Canceled
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Queries("sel._domainkey.pass.test", "TXT"); n != 1 {
		t.Errorf("%d queries for 10 concurrent lookups, want 1", n)
	}
	// A caller that gives up does not wait for the query it joined.
	k2, srv2, _ := testCache(t, 0, 0)
	srv2.SetFault("pass.test", dnstest.Fault{Delay: 300 * time.Millisecond})
	go k2.LookupTXT(context.Background(), "pass.test")
	if !await.True(10*time.Second, func() bool { return k2.Stats().Misses > 0 }) {
		t.Fatal("the first lookup never started")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := k2.LookupTXT(ctx, "pass.test"); err == nil {
		t.Error("a cancelled caller got an answer")
	}
}
