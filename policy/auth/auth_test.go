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

func TestSPFThenJudge(t *testing.T) {
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
			[]string{"spf=pass"}},
		{"SPF fail, aligned DKIM pass (forwarded mail)", bad, "alice@example.test", signed, Authenticated, "fail",
			[]string{"spf=fail", "dkim=pass(d=example.test aligned=true)"}},
		{"SPF fail, unaligned DKIM pass", bad, "alice@example.test", other, Forged, "fail",
			[]string{"spf=fail", "dkim=pass(d=other.test aligned=false)"}},
		{"SPF fail, no signature", bad, "alice@example.test", []byte(plainMessage), Forged, "fail",
			[]string{"spf=fail"}},
		{"SPF softfail, no signature", bad, "x@soft.test", []byte(plainMessage), Unauthenticated, "softfail", nil},
		{"SPF fail for a subdomain sender, parent domain's DKIM aligned", bad, "bounces@mail.example.test", signed, Authenticated, "fail", nil},
		{"SPF none, signature whose key is not published", bad, "x@notspf.test", sign(t, plainMessage, "notspf.test", "gone", ed), Unauthenticated, "none",
			[]string{"dkim=fail(d=notspf.test aligned=true)"}},
		{"SPF neutral, SPF only", bad, "alice@neutral.test", nil, Unauthenticated, "neutral", nil},
		{"SPF fail outranks an aligned DKIM temperror", bad, "alice@example.test", tempSig, Forged, "fail",
			[]string{"dkim=fail(d=example.test aligned=true)"}},
		{"SPF none, aligned DKIM temperror", bad, "x@nospf.example.test", tempSig, Unknown, "none",
			[]string{"spf=none"}},
		{"SPF temperror", bad, "x@temp.test", []byte(plainMessage), Unknown, "temperror",
			[]string{"spf=temperror"}},
		{"null sender: SPF of HELO, DKIM aligns with nothing", bad, "<>", signed, Unauthenticated, "none",
			[]string{"spf=none", "dkim=pass(d=example.test aligned=false)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := check(c, context.Background(), tt.ip, "client.test", tt.mailFrom, tt.raw)
			if v.Result != tt.want || v.SPF != tt.wantSPF {
				t.Fatalf("check = %v spf=%s, want %v spf=%s (%s)", v.Result, v.SPF, tt.want, tt.wantSPF, v.Why)
			}
			if v.Result != Combine(v.SPF, v.DKIM) {
				t.Errorf("Result %v disagrees with Combine of its own parts", v.Result)
			}
			if strings.ContainsAny(v.Why, "\r\n") {
				t.Errorf("Reason is not one line: %q", v.Why)
			}
			for _, w := range tt.wantReason {
				if !strings.Contains(v.Why, w) {
					t.Errorf("Reason %q lacks %q", v.Why, w)
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
	v := check(c, context.Background(), netip.MustParseAddr("192.0.2.10"), "client.test", "alice@example.test", raw)
	// Both halves gave up (temperror) rather than waiting for answers that
	// never come; no wall-clock bound: machines are shared.
	if v.Result != Unknown || v.SPF != SPFTempError || len(v.DKIM) != 1 || !v.DKIM[0].TempError {
		t.Fatalf("check = %+v, want unknown with SPF and DKIM temperror", v)
	}
}
