package auth

import (
	"context"
	"strings"
	"testing"

	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/miekg/dns"
)

func TestDKIM(t *testing.T) {
	c, s := newChecker(t, dkimZone(t))
	s.SetFault("temp._domainkey.example.test", dnstest.Fault{Rcode: dns.RcodeServerFailure})
	ed, rk := testKeys(t)

	edSigned := string(sign(t, plainMessage, "example.test", "ed", ed))
	tests := []struct {
		name     string
		raw      string
		mailFrom string
		want     []DKIMSig // Err compared by substring
	}{
		{"ed25519 valid aligned", edSigned, "alice@example.test",
			[]DKIMSig{{Domain: "example.test", Aligned: true, Valid: true}}},
		{"rsa valid aligned, key in several strings", string(sign(t, plainMessage, "example.test", "rsa", rk)), "alice@example.test",
			[]DKIMSig{{Domain: "example.test", Aligned: true, Valid: true}}},
		{"LF line ends", strings.ReplaceAll(edSigned, "\r\n", "\n"), "alice@example.test",
			[]DKIMSig{{Domain: "example.test", Aligned: true, Valid: true}}},
		{"valid but unaligned", string(sign(t, plainMessage, "other.test", "ed", ed)), "alice@example.test",
			[]DKIMSig{{Domain: "other.test", Aligned: false, Valid: true}}},
		{"aligned: MAIL FROM in a subdomain", edSigned, "<bounces@mail.example.test>",
			[]DKIMSig{{Domain: "example.test", Aligned: true, Valid: true}}},
		{"aligned: d= a subdomain", string(sign(t, plainMessage, "mail.example.test", "ed", ed)), "alice@example.test",
			[]DKIMSig{{Domain: "mail.example.test", Aligned: true, Valid: true}}},
		{"unaligned: look-alike domain", edSigned, "alice@notexample.test",
			[]DKIMSig{{Domain: "example.test", Aligned: false, Valid: true}}},
		{"null sender aligns with nothing", edSigned, "<>",
			[]DKIMSig{{Domain: "example.test", Aligned: false, Valid: true}}},
		{"body modified in transit", strings.Replace(edSigned, "Noon", "Midnight", 1), "alice@example.test",
			[]DKIMSig{{Domain: "example.test", Aligned: true, Err: "body hash"}}},
		{"signed header modified", strings.Replace(edSigned, "Subject: lunch", "Subject: Lunch!", 1), "alice@example.test",
			[]DKIMSig{{Domain: "example.test", Aligned: true, Err: "signature"}}},
		{"no key published", string(sign(t, plainMessage, "example.test", "gone", ed)), "alice@example.test",
			[]DKIMSig{{Domain: "example.test", Aligned: true, Err: "no key"}}},
		{"key lookup SERVFAIL", string(sign(t, plainMessage, "example.test", "temp", ed)), "alice@example.test",
			[]DKIMSig{{Domain: "example.test", Aligned: true, TempError: true, Err: "key unavailable"}}},
		{"selector too long for DNS is no key, not a DNS failure", string(sign(t, plainMessage, "example.test", strings.Repeat("s", 70), ed)), "alice@example.test",
			[]DKIMSig{{Domain: "example.test", Aligned: true, Err: "invalid domain name"}}},
		{"malformed signature", "DKIM-Signature: v=1; garbage\r\n" + plainMessage, "alice@example.test",
			[]DKIMSig{{Err: "dkim"}}},
		{"two signatures, header order", string(sign(t, edSigned, "other.test", "ed", ed)), "alice@example.test",
			[]DKIMSig{{Domain: "other.test", Valid: true}, {Domain: "example.test", Aligned: true, Valid: true}}},
		{"no signature", plainMessage, "alice@example.test", nil},
		{"empty message", "", "alice@example.test", nil},
		{"not a message", "\x00\x01\x02 binary junk without header", "alice@example.test", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.DKIM(context.Background(), []byte(tt.raw), tt.mailFrom)
			if len(got) != len(tt.want) {
				t.Fatalf("DKIM = %+v, want %+v", got, tt.want)
			}
			for i, w := range tt.want {
				g := got[i]
				if g.Domain != w.Domain || g.Aligned != w.Aligned || g.Valid != w.Valid || g.TempError != w.TempError {
					t.Errorf("sig %d = %+v, want %+v", i, g, w)
				}
				if (w.Err == "") != (g.Err == "") || !strings.Contains(g.Err, w.Err) {
					t.Errorf("sig %d Err = %q, want it to contain %q", i, g.Err, w.Err)
				}
			}
		})
	}
}

// A message stuffed with signatures costs at most MaxSignatures verifications.
func TestDKIMMaxSignatures(t *testing.T) {
	c, s := newChecker(t, dkimZone(t))
	c.MaxSignatures = 2
	ed, _ := testKeys(t)
	raw := plainMessage
	for range 4 {
		raw = string(sign(t, raw, "example.test", "ed", ed))
	}
	got := c.DKIM(context.Background(), []byte(raw), "alice@example.test")
	if len(got) != 2 {
		t.Fatalf("verified %d signatures, want 2: %+v", len(got), got)
	}
	if n := s.Queries("ed._domainkey.example.test", "TXT"); n != 2 {
		t.Errorf("%d key lookups, want 2", n)
	}
}

func TestMayAlign(t *testing.T) {
	for _, c := range []struct {
		sigs []string
		from string
		want bool
	}{
		{[]string{"v=1; a=ed25519-sha256; d=example.test; s=ed; b=x"}, "alice@example.test", true},
		{[]string{"v=1; d=mail.example.test; s=k; b=x"}, "<alice@example.test>", true}, // same organizational domain
		{[]string{"v=1; d=Example.TEST.; s=k"}, "alice@sub.example.test", true},
		{[]string{"v=1; d=\r\n\texample.test; s=k"}, "alice@example.test", true}, // folded
		{[]string{"v=1; d=other.test; s=k", "v=1; d=example.test; s=k"}, "alice@example.test", true},
		{[]string{"v=1; d=other.test; s=k"}, "alice@example.test", false},
		{[]string{"v=1; s=k; b=x"}, "alice@example.test", false}, // no d=
		{[]string{"v=1; d=example.test"}, "", false},             // null sender aligns with nothing
		{nil, "alice@example.test", false},
		{[]string{"garbage"}, "alice@example.test", false},
	} {
		if got := MayAlign(c.sigs, c.from); got != c.want {
			t.Errorf("MayAlign(%q, %q) = %v, want %v", c.sigs, c.from, got, c.want)
		}
	}
}
