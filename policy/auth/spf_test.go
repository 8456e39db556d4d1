package auth

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
	"github.com/miekg/dns"
)

func TestSPF(t *testing.T) {
	c, s := newChecker(t, spfZone)
	s.SetFault("temp.test", dnstest.Fault{Rcode: dns.RcodeServerFailure})
	s.SetFault("broken.test", dnstest.Fault{Rcode: dns.RcodeServerFailure})

	good := netip.MustParseAddr("192.0.2.10")
	bad := netip.MustParseAddr("198.51.100.1")
	tests := []struct {
		name             string
		ip               netip.Addr
		helo, mailFrom   string
		want, wantDomain string
		wantErr          bool
	}{
		{"pass", good, "mx.pass.test", "user@pass.test", "pass", "pass.test", false},
		{"pass, brackets and case", good, "x", "<User@PASS.test.>", "pass", "pass.test", false},
		{"pass ipv6", netip.MustParseAddr("2001:db8::5"), "x", "user@pass.test", "pass", "pass.test", false},
		{"pass ipv4-mapped", netip.MustParseAddr("::ffff:192.0.2.10"), "x", "user@pass.test", "pass", "pass.test", false},
		{"fail", bad, "mx.pass.test", "user@pass.test", "fail", "pass.test", false},
		{"softfail", bad, "x", "user@soft.test", "softfail", "soft.test", false},
		{"neutral", bad, "x", "user@neutral.test", "neutral", "neutral.test", false},
		{"neutral: empty record", bad, "x", "user@empty.test", "neutral", "empty.test", false},
		{"none: no such domain", bad, "x", "user@missing.test", "none", "missing.test", true},
		{"none: TXT but no SPF", bad, "x", "user@notspf.test", "none", "notspf.test", true},
		{"none: single-label domain", bad, "x", "user@localhost", "none", "localhost", true},
		{"temperror: SERVFAIL", bad, "x", "user@temp.test", "temperror", "temp.test", true},
		{"temperror: include SERVFAIL", bad, "x", "user@inctemp.test", "temperror", "inctemp.test", true},
		{"permerror: unknown mechanism", bad, "x", "user@perm.test", "permerror", "perm.test", true},
		{"permerror: two records", bad, "x", "user@multi.test", "permerror", "multi.test", true},
		{"permerror: void lookup limit", bad, "x", "user@voids.test", "permerror", "voids.test", true},
		{"permerror: lookup limit", bad, "x", "user@loop.test", "permerror", "loop.test", true},
		{"a mechanism via null sender HELO", netip.MustParseAddr("192.0.2.25"), "mx.helo.test", "", "pass", "mx.helo.test", false},
		{"null sender <> HELO fail", bad, "MX.helo.test", "<>", "fail", "mx.helo.test", false},
		{"null sender, no HELO", good, "", "<>", "skipped", "", true},
		{"null sender, HELO is an address literal", good, "[192.0.2.10]", "", "none", "[192.0.2.10]", true},
		{"mx mechanism", netip.MustParseAddr("198.51.100.7"), "x", "user@mxmech.test", "pass", "mxmech.test", false},
		{"ptr mechanism", netip.MustParseAddr("203.0.113.7"), "x", "user@ptr.test", "pass", "ptr.test", false},
		{"ptr mechanism, no PTR", bad, "x", "user@ptr.test", "fail", "ptr.test", false},
		{"quoted local part with @", good, "x", `"a@b"@pass.test`, "pass", "pass.test", false},
		{"source route", good, "x", "<@relay.test:user@pass.test>", "pass", "pass.test", false},
		{"macro expanding to a name DNS cannot carry", bad, "x", strings.Repeat("l", 70) + "@macro.test", "fail", "macro.test", false},
		{"no client IP", netip.Addr{}, "x", "user@pass.test", "skipped", "pass.test", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, domain, err := c.SPF(context.Background(), tt.ip, tt.helo, tt.mailFrom)
			if got != tt.want || domain != tt.wantDomain {
				t.Errorf("SPF = %q, %q (err %v), want %q, %q", got, domain, err, tt.want, tt.wantDomain)
			}
			if (err != nil) != tt.wantErr {
				t.Errorf("err = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}

// A resolver that never answers must end in temperror within the Checker's
// timeout, not hang the milter.
func TestSPFTimeout(t *testing.T) {
	c, s := newChecker(t, spfZone)
	s.SetFault("*", dnstest.Fault{Drop: true})
	c.Timeout = 200 * time.Millisecond
	start := time.Now()
	got, _, err := c.SPF(context.Background(), netip.MustParseAddr("192.0.2.10"), "x", "user@pass.test")
	if got != SPFTempError || err == nil {
		t.Fatalf("SPF = %q, %v; want temperror with an error", got, err)
	}
	t.Logf("SPF gave %q after %v: %v", got, time.Since(start), err)
	// The check ended because its deadline passed, not for another reason:
	// asserted on the error, never on elapsed time (machines are shared).
	// The SPF library keeps only the text of the resolver's error.
	if !strings.Contains(err.Error(), "timeout") && !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("SPF error %v does not show the timeout", err)
	}
}

// The caller's deadline also bounds the check.
func TestSPFCallerContext(t *testing.T) {
	c, _ := newChecker(t, spfZone)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got, _, _ := c.SPF(ctx, netip.MustParseAddr("192.0.2.10"), "x", "user@pass.test")
	if got != SPFTempError {
		t.Fatalf("SPF with a cancelled context = %q, want temperror", got)
	}
}

func TestSPFOfOriginal(t *testing.T) {
	c, _ := newChecker(t, spfZone)
	ctx := context.Background()
	if got, d, _ := c.SPFOfOriginal(ctx, netip.MustParseAddr("198.51.100.1"), "victim@pass.test"); got != "fail" || d != "pass.test" {
		t.Errorf("forged original = %q %q, want fail pass.test", got, d)
	}
	if got, _, _ := c.SPFOfOriginal(ctx, netip.MustParseAddr("192.0.2.1"), "user@pass.test"); got != "pass" {
		t.Errorf("genuine original = %q, want pass", got)
	}
	if got, _, err := c.SPFOfOriginal(ctx, netip.MustParseAddr("192.0.2.1"), ""); got != "skipped" || err == nil {
		t.Errorf("null original = %q %v, want skipped with a reason", got, err)
	}
}

// The adapter must hand the SPF library exactly the *net.DNSError shapes it
// type-asserts, or resolver trouble turns into permerror.
func TestDNSErrorMapping(t *testing.T) {
	nf := dnsError(resolver.ErrNotFound, "a.test")
	if de, ok := nf.(*net.DNSError); !ok || !de.IsNotFound || de.Temporary() {
		t.Errorf("not found → %#v", nf)
	}
	tmp := dnsError(resolver.ErrTemporary, "a.test")
	if de, ok := tmp.(*net.DNSError); !ok || de.IsNotFound || !de.Temporary() {
		t.Errorf("temporary → %#v", tmp)
	}
	if dnsError(nil, "a.test") != nil {
		t.Error("nil → non-nil")
	}
	if !strings.Contains(tmp.Error(), "a.test") {
		t.Errorf("error %q does not name the query", tmp)
	}
}

func TestValidName(t *testing.T) {
	long := strings.Repeat("a", 64)
	tests := map[string]bool{
		"example.test": true, "example.test.": true, "localhost": true, "_spf.example.test": true,
		"": false, ".": false, "a..b": false, long + ".test": false, strings.Repeat("a.", 127) + "te": false,
	}
	for in, want := range tests {
		if got := validName(in); got != want {
			t.Errorf("validName(%q) = %v, want %v", in, got, want)
		}
	}
}
