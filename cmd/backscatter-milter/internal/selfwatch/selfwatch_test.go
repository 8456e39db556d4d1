package selfwatch

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/backscatter-milter/backscatter-milter/dnsbl"
	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

func TestExpand(t *testing.T) {
	ips, err := Expand([]netip.Prefix{netip.MustParsePrefix("192.0.2.8/30"), netip.MustParsePrefix("192.0.2.9/32"),
		netip.MustParsePrefix("2001:db8::1/128")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range ips {
		got = append(got, a.String())
	}
	if want := "192.0.2.8 192.0.2.9 192.0.2.10 192.0.2.11 2001:db8::1"; strings.Join(got, " ") != want {
		t.Errorf("Expand = %v, want %s", got, want)
	}
	for _, p := range []string{"10.0.0.0/8", "2001:db8::/64"} {
		if _, err := Expand([]netip.Prefix{netip.MustParsePrefix(p)}); err == nil {
			t.Errorf("%s: no error", p)
		}
	}
	if _, err := Expand([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/22"), netip.MustParsePrefix("10.1.0.0/30")}); err == nil {
		t.Error("1028 addresses: no error")
	}
}

// The zone: 192.0.2.10 listed, 192.0.2.11 not, 192.0.2.12 answered with
// the list's "refused" code (not a listing), 192.0.2.13 SERVFAIL.
const zone = `
10.2.0.192.bs.test. 60 IN A 127.0.0.2
10.2.0.192.bs.test. 60 IN TXT "listed for sending backscatter"
12.2.0.192.bs.test. 60 IN A 127.255.255.254
2.0.0.127.bs.test. 60 IN A 127.0.0.2
`

func newWatcher(t *testing.T, srv *dnstest.Server, ips ...string) *Watcher {
	t.Helper()
	r, err := resolver.New(srv.Addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	z, err := dnsbl.ParseZoneSpec("bs.test=127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	c, err := dnsbl.New([]dnsbl.Zone{z}, r, dnsbl.Options{Timeout: time.Second, FetchTXT: true, MaxTTL: time.Second, MinTTL: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w := &Watcher{Checker: c}
	for _, s := range ips {
		w.IPs = append(w.IPs, netip.MustParseAddr(s))
	}
	return w
}

func TestWatcherCheck(t *testing.T) {
	srv := dnstest.Start(t, zone)
	srv.SetFault("13.2.0.192.bs.test.", dnstest.Fault{Rcode: dns.RcodeServerFailure})
	w := newWatcher(t, srv, "192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13")
	states := w.Check(context.Background())
	if len(states) != 4 {
		t.Fatalf("%d states: %+v", len(states), states)
	}
	want := map[string]struct{ listed, known, err bool }{
		"192.0.2.10": {true, true, false},
		"192.0.2.11": {false, true, false},
		"192.0.2.12": {false, false, true}, // an error code is not a listing
		"192.0.2.13": {false, false, true},
	}
	for _, s := range states {
		w := want[s.IP.String()]
		if s.Zone != "bs.test" || s.Listed != w.listed || s.Known != w.known || (s.Err != nil) != w.err {
			t.Errorf("%s: %+v, want %+v", s.IP, s, w)
		}
	}
	if states[0].TXT != "listed for sending backscatter" {
		t.Errorf("TXT %q", states[0].TXT)
	}
}

// A DNS failure after a listing keeps the listing: an outage says nothing
// about the list, and a monitoring alert must not clear because DNS broke.
func TestWatcherKeepsStateOnError(t *testing.T) {
	srv := dnstest.Start(t, zone)
	w := newWatcher(t, srv, "192.0.2.10")
	if s := w.Check(context.Background()); !s[0].Listed {
		t.Fatalf("not listed: %+v", s)
	}
	srv.SetFault("*", dnstest.Fault{Rcode: dns.RcodeServerFailure})
	// The checker's cache holds the answer for up to MaxTTL (1 s here):
	// wait until a lookup really fails.
	var s []State
	if !await.True(10*time.Second, func() bool { s = w.Check(context.Background()); return s[0].Err != nil }) {
		t.Fatal("lookups never failed")
	}
	if !s[0].Listed || !s[0].Known {
		t.Fatalf("state after a failed lookup: %+v", s[0])
	}
}

func TestCountNDRs(t *testing.T) {
	since := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	log := strings.Join([]string{
		`{"level":"info","ts":"2026-11-30T23:00:00Z","msg":"verdict","stage":"internal-bounce","action":"accept","would":"accept","mode":"enforce","sender":"<>","auth":"unauthenticated"}`,
		`{"level":"info","ts":"2026-12-01T01:00:00Z","msg":"verdict","stage":"internal-bounce","action":"accept","would":"accept","mode":"enforce","sender":"<>","auth":"authenticated"}`,
		`{"level":"info","ts":"2026-12-01T02:00:00Z","msg":"verdict","stage":"internal-bounce","action":"quarantine","would":"quarantine","mode":"enforce","sender":"<>","auth":"forged"}`,
		`{"level":"info","ts":"2026-12-01T03:00:00Z","msg":"verdict","stage":"internal-bounce","action":"accept","would":"accept","mode":"enforce","sender":"<>","auth":"unauthenticated"}`,
		`{"level":"info","ts":"2026-12-01T03:30:00Z","msg":"verdict","stage":"internal-bounce","action":"accept","would":"accept","mode":"enforce","sender":"<>"}`,
		// local submissions the internal role also sees: not NDRs
		`{"level":"info","ts":"2026-12-01T04:00:00Z","msg":"verdict","stage":"internal-bounce","action":"accept","would":"accept","mode":"enforce","sender":"<root@example.org>"}`,
		`{"level":"info","ts":"2026-12-01T05:00:00Z","msg":"verdict","stage":"eom","action":"accept","would":"accept","mode":"enforce","sender":"<>","auth":"unauthenticated"}`,
		`{"level":"info","ts":"2026-12-01T05:00:00Z","msg":"configuration reloaded"}`,
		`{"msg":"verdict", broken`,
	}, "\n")
	c, err := CountNDRs(strings.NewReader(log), since)
	if err != nil {
		t.Fatal(err)
	}
	want := map[policy.AuthResult]int{policy.Authenticated: 1, policy.Forged: 1, policy.Unauthenticated: 1, policy.AuthUnknown: 1}
	for k, n := range want {
		if c.ByAuth[k] != n {
			t.Errorf("%s: %d, want %d (all: %v)", k, c.ByAuth[k], n, c.ByAuth)
		}
	}
	if len(c.ByAuth) != len(want) || c.Unauthenticated() != 2 || c.Bad != 1 || c.Lines != 7 {
		t.Errorf("count %+v unauthenticated %d", c, c.Unauthenticated())
	}
	if NDRAuth("") != policy.AuthUnknown || NDRAuth("garbage") != policy.AuthUnknown {
		t.Errorf("NDRAuth(\"\") = %q", NDRAuth(""))
	}
}
