package auth

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/miekg/dns"
)

func TestCombine(t *testing.T) {
	pass := DKIMSig{Domain: "example.test", Aligned: true, Valid: true}
	unalignedPass := DKIMSig{Domain: "other.test", Valid: true}
	broken := DKIMSig{Domain: "example.test", Aligned: true, Err: "dkim: body hash did not verify"}
	temp := DKIMSig{Domain: "example.test", Aligned: true, TempError: true, Err: "dkim: key unavailable"}
	unalignedTemp := DKIMSig{Domain: "other.test", TempError: true, Err: "dkim: key unavailable"}

	tests := []struct {
		spf  string
		sigs []DKIMSig
		want Result
	}{
		{"pass", nil, Authenticated},
		{"pass", []DKIMSig{broken}, Authenticated},
		{"pass", []DKIMSig{temp}, Authenticated},
		{"fail", nil, Forged},
		{"fail", []DKIMSig{pass}, Authenticated},
		{"fail", []DKIMSig{broken, pass}, Authenticated},
		{"fail", []DKIMSig{unalignedPass}, Forged},
		{"fail", []DKIMSig{temp}, Forged},
		{"softfail", nil, Unauthenticated},
		{"softfail", []DKIMSig{pass}, Authenticated},
		{"softfail", []DKIMSig{temp}, Unknown},
		{"neutral", []DKIMSig{unalignedPass}, Unauthenticated},
		{"none", nil, Unauthenticated},
		{"none", []DKIMSig{broken}, Unauthenticated},
		{"none", []DKIMSig{unalignedTemp}, Unauthenticated},
		{"none", []DKIMSig{broken, temp}, Unknown},
		{"temperror", nil, Unknown},
		{"temperror", []DKIMSig{broken}, Unknown},
		{"temperror", []DKIMSig{pass}, Authenticated},
		{"permerror", nil, Unauthenticated},
		{"permerror", []DKIMSig{temp}, Unknown},
		{"skipped", nil, Unauthenticated},
		{"skipped", []DKIMSig{pass}, Authenticated},
		{"", nil, Unauthenticated},
	}
	for _, tt := range tests {
		if got := Combine(tt.spf, tt.sigs); got != tt.want {
			t.Errorf("Combine(%q, %+v) = %v, want %v", tt.spf, tt.sigs, got, tt.want)
		}
	}
}

func TestRequire(t *testing.T) {
	tests := []struct {
		req  Require
		res  Result
		want bool
	}{
		{RequireSPFOrDKIM, Authenticated, true},
		{RequireSPFOrDKIM, Unauthenticated, false},
		{RequireSPFOrDKIM, Forged, false},
		{RequireSPFOrDKIM, Unknown, false},
		{RequireSPFFailOnly, Authenticated, true},
		{RequireSPFFailOnly, Unauthenticated, true},
		{RequireSPFFailOnly, Forged, false},
		{RequireSPFFailOnly, Unknown, true},
	}
	for _, tt := range tests {
		if got := tt.req.Authenticated(tt.res); got != tt.want {
			t.Errorf("%v.Authenticated(%v) = %v, want %v", tt.req, tt.res, got, tt.want)
		}
	}
	for _, s := range []string{"", "spf-or-dkim", " SPF-Fail-Only "} {
		r, err := ParseRequire(s)
		if err != nil {
			t.Errorf("ParseRequire(%q): %v", s, err)
		}
		if s != "" {
			if got := r.String(); !strings.EqualFold(got, strings.TrimSpace(s)) {
				t.Errorf("ParseRequire(%q).String() = %q", s, got)
			}
		}
	}
	if _, err := ParseRequire("dmarc"); err == nil || !strings.Contains(err.Error(), "dmarc") {
		t.Errorf("ParseRequire(dmarc) error = %v, want one naming the value", err)
	}
}

func TestResultString(t *testing.T) {
	want := map[Result]string{Authenticated: "authenticated", Unauthenticated: "unauthenticated",
		Forged: "forged", Unknown: "unknown", Result(42): "Result(42)"}
	for r, s := range want {
		if r.String() != s {
			t.Errorf("%d.String() = %q, want %q", int(r), r.String(), s)
		}
	}
}

func TestOrgDomain(t *testing.T) {
	tests := map[string]string{
		"example.test":             "example.test",
		"mail.example.test":        "example.test",
		"A.B.Example.TEST.":        "example.test",
		"example.co.uk":            "example.co.uk",
		"mx.example.co.uk":         "example.co.uk",
		"co.uk":                    "co.uk", // a public suffix only matches itself
		"foo.bar.github.io":        "bar.github.io",
		"localhost":                "localhost",
		"":                         "",
		"bad..example.test":        "bad..example.test",
		"xn--bcher-kva.example.de": "example.de",
	}
	for in, want := range tests {
		if got := OrgDomain(in); got != want {
			t.Errorf("OrgDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitSender(t *testing.T) {
	tests := []struct{ in, local, domain string }{
		{"user@Example.TEST", "user", "example.test"},
		{"<user@example.test>", "user", "example.test"},
		{" <user@example.test.> ", "user", "example.test"},
		{"<>", "", ""},
		{"", "", ""},
		{"postmaster", "postmaster", ""},
		{`"a@b"@example.test`, `"a@b"`, "example.test"},
		{"<@r1.test,@r2.test:user@example.test>", "user", "example.test"},
	}
	for _, tt := range tests {
		l, d := splitSender(tt.in)
		if l != tt.local || d != tt.domain {
			t.Errorf("splitSender(%q) = %q, %q, want %q, %q", tt.in, l, d, tt.local, tt.domain)
		}
	}
}

func TestCheck(t *testing.T) {
	c, s := newChecker(t, dkimZone(t)+spfZone)
	s.SetFault("temp._domainkey.example.test", dnstest.Fault{Rcode: dns.RcodeServerFailure})
	s.SetFault("temp.test", dnstest.Fault{Rcode: dns.RcodeServerFailure})
	ed, _ := testKeys(t)
	signed := sign(t, plainMessage, "example.test", "ed", ed)
	other := sign(t, plainMessage, "other.test", "ed", ed)
	tempSig := sign(t, plainMessage, "example.test", "temp", ed)
	good := netip.MustParseAddr("192.0.2.10")
	bad := netip.MustParseAddr("198.51.100.1")

	tests := []struct {
		name       string
		ip         netip.Addr
		mailFrom   string
		raw        []byte
		want       Result
		wantSPF    string
		wantReason []string
	}{
		{"SPF pass, SPF only", good, "alice@example.test", nil, Authenticated, "pass",
			[]string{"authenticated: spf=pass (example.test)", "dkim=not checked"}},
		{"SPF fail, aligned DKIM pass (forwarded mail)", bad, "alice@example.test", signed, Authenticated, "fail",
			[]string{"spf=fail", "dkim=pass d=example.test aligned"}},
		{"SPF fail, unaligned DKIM pass", bad, "alice@example.test", other, Forged, "fail",
			[]string{"forged:", "dkim=pass d=other.test unaligned"}},
		{"SPF fail, no signature", bad, "alice@example.test", []byte(plainMessage), Forged, "fail",
			[]string{"forged:", "dkim=none"}},
		{"SPF softfail, no signature", bad, "x@soft.test", []byte(plainMessage), Unauthenticated, "softfail", nil},
		{"SPF fail for a subdomain sender, parent domain's DKIM aligned", bad, "bounces@mail.example.test", signed, Authenticated, "fail", nil},
		{"SPF none, signature whose key is not published", bad, "x@notspf.test", sign(t, plainMessage, "notspf.test", "gone", ed), Unauthenticated, "none",
			[]string{"dkim=fail d=notspf.test aligned [dkim: no key"}},
		{"SPF neutral, SPF only", bad, "alice@neutral.test", nil, Unauthenticated, "neutral", nil},
		{"SPF fail outranks an aligned DKIM temperror", bad, "alice@example.test", tempSig, Forged, "fail",
			[]string{"dkim=temperror d=example.test aligned"}},
		{"SPF none, aligned DKIM temperror", bad, "x@nospf.example.test", tempSig, Unknown, "none",
			[]string{"unknown: spf=none (nospf.example.test) [no SPF record]"}},
		{"SPF temperror", bad, "x@temp.test", []byte(plainMessage), Unknown, "temperror",
			[]string{"unknown: spf=temperror (temp.test) [spf: "}},
		{"null sender: SPF of HELO, DKIM aligns with nothing", bad, "<>", signed, Unauthenticated, "none",
			[]string{"spf=none (client.test)", "dkim=pass d=example.test unaligned"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := c.Check(context.Background(), tt.ip, "client.test", tt.mailFrom, tt.raw)
			if v.Result != tt.want || v.SPF != tt.wantSPF {
				t.Fatalf("Check = %v spf=%s, want %v spf=%s (%s)", v.Result, v.SPF, tt.want, tt.wantSPF, v.Reason)
			}
			if v.Result != Combine(v.SPF, v.DKIM) {
				t.Errorf("Result %v disagrees with Combine of its own parts", v.Result)
			}
			if strings.ContainsAny(v.Reason, "\r\n") {
				t.Errorf("Reason is not one line: %q", v.Reason)
			}
			for _, w := range tt.wantReason {
				if !strings.Contains(v.Reason, w) {
					t.Errorf("Reason %q lacks %q", v.Reason, w)
				}
			}
		})
	}
}

// Every lookup hangs: Check still returns, within its one timeout, with no
// positive or negative evidence.
func TestCheckTimeout(t *testing.T) {
	c, s := newChecker(t, dkimZone(t))
	s.SetFault("*", dnstest.Fault{Drop: true})
	c.Timeout = 200 * time.Millisecond
	ed, _ := testKeys(t)
	raw := sign(t, plainMessage, "example.test", "ed", ed)
	v := c.Check(context.Background(), netip.MustParseAddr("192.0.2.10"), "client.test", "alice@example.test", raw)
	// Both halves gave up (temperror) rather than waiting for answers that
	// never come; no wall-clock bound: machines are shared.
	if v.Result != Unknown || v.SPF != SPFTempError || len(v.DKIM) != 1 || !v.DKIM[0].TempError {
		t.Fatalf("Check = %+v, want unknown with SPF and DKIM temperror", v)
	}
}
