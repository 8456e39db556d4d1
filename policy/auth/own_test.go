package auth

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"mime/quotedprintable"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
	"github.com/emersion/go-msgauth/dkim"
)

// outbound is a message as one of our users sends it: signed by our MTA
// with go-msgauth, with a body long enough to be re-encoded by a bouncer.
const outbound = "From: Alice <alice@example.test>\r\n" +
	"To: bob@remote.example\r\n" +
	"Subject: figures for =?utf-8?q?Q4_=E2=82=AC?=\r\n" +
	"Date: Tue, 01 Dec 2026 14:00:00 +0000\r\n" +
	"Message-ID: <q4-1@example.test>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"The figures: 12 € up, 3 € down. A line long enough that a quoted-printable encoder must wrap it somewhere past seventy-six.\r\n"

func signWith(t testing.TB, msg, domain, selector string, key crypto.Signer, can dkim.Canonicalization) []byte {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: selector, Signer: key,
		HeaderCanonicalization: can, BodyCanonicalization: can,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"}})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func splitMsg(b []byte) (header, body []byte) {
	i := bytes.Index(b, []byte("\r\n\r\n"))
	return b[:i+2], b[i+4:]
}

func qp(t testing.TB, body []byte) []byte {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write(body)
	w.Close()
	return b.Bytes()
}

func TestVerifyOwn(t *testing.T) {
	c, _ := newChecker(t, dkimZone(t))
	ed, rk := testKeys(t)
	ours := []string{"example.test"}
	ctx := context.Background()
	for _, can := range []dkim.Canonicalization{dkim.CanonicalizationRelaxed, dkim.CanonicalizationSimple} {
		for _, k := range []struct {
			sel string
			key crypto.Signer
		}{{"ed", ed}, {"rsa", rk}} {
			signed := signWith(t, outbound, "example.test", k.sel, k.key, can)
			h, body := splitMsg(signed)
			name := string(can) + "/" + k.sel
			refolded := bytes.Replace(h, []byte("Subject: figures"), []byte("Subject:\r\n\tfigures"), 1)
			cases := []struct {
				what       string
				header     []byte
				body       []byte
				want       string
				simpleFail bool // simple canonicalisation does not survive this
			}{
				{"full original", h, body, OwnPass, false},
				{"LF line ends", bytes.ReplaceAll(h, []byte("\r\n"), []byte("\n")), bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")), OwnPass, false},
				{"headers only", h, nil, OwnHeadersPass, false},
				{"re-encoded body", h, qp(t, body), OwnHeadersPass, false},
				{"refolded header, headers only", refolded, nil, OwnHeadersPass, true},
				{"signed header altered", bytes.Replace(h, []byte("Message-ID: <q4-1@"), []byte("Message-ID: <q4-2@"), 1), nil, OwnFail, false},
				{"signed header altered, full", bytes.Replace(h, []byte("Message-ID: <q4-1@"), []byte("Message-ID: <q4-2@"), 1), body, OwnFail, false},
				{"From added below the signed one", append(bytes.Clone(h), "From: mallory@evil.example\r\n"...), nil, OwnFail, false},
			}
			for _, tc := range cases {
				want := tc.want
				if tc.simpleFail && can == dkim.CanonicalizationSimple {
					want = OwnFail
				}
				got := c.VerifyOwn(ctx, tc.header, tc.body, ours)
				if got.Result != want {
					t.Errorf("%s, %s: %+v, want %s", name, tc.what, got, want)
				}
				if got.Result == OwnPass || got.Result == OwnHeadersPass {
					if got.Domain != "example.test" || got.Detail == "" {
						t.Errorf("%s, %s: %+v", name, tc.what, got)
					}
				}
			}
		}
	}
	// Not ours: another domain's valid signature proves nothing here.
	h, _ := splitMsg(signWith(t, outbound, "other.test", "ed", ed, dkim.CanonicalizationRelaxed))
	if got := c.VerifyOwn(ctx, h, nil, ours); got.Result != OwnNone {
		t.Errorf("other domain: %+v", got)
	}
	if got := c.VerifyOwn(ctx, []byte(outbound), nil, ours); got.Result != OwnNone {
		t.Errorf("unsigned: %+v", got)
	}
	// d= matches whatever its case.
	if got := c.VerifyOwn(ctx, h, nil, []string{"OTHER.test"}); got.Result != OwnHeadersPass {
		t.Errorf("case of d=: %+v", got)
	}
}

// TestVerifyOwnFailures: a key that cannot be had, a revoked key, a
// signature by a key we do not hold: a failure, never a pass.
func TestVerifyOwnFailures(t *testing.T) {
	zone := dkimZone(t) + "revoked._domainkey.example.test. 300 IN TXT \"v=DKIM1; k=ed25519; p=\"\n"
	c, _ := newChecker(t, zone)
	ed, _ := testKeys(t)
	for _, sel := range []string{"gone", "revoked"} {
		h, body := splitMsg(signWith(t, outbound, "example.test", sel, ed, dkim.CanonicalizationRelaxed))
		for _, b := range [][]byte{nil, body} {
			if got := c.VerifyOwn(context.Background(), h, b, []string{"example.test"}); got.Result != OwnFail || got.Detail == "" {
				t.Errorf("selector %s: %+v", sel, got)
			}
		}
	}
}

// cachedChecker is newChecker behind the resolver cache the milter uses.
func cachedChecker(t testing.TB, zone string) (*Checker, *dnstest.Server) {
	t.Helper()
	c, s := newChecker(t, zone)
	r, err := resolver.New(s.Addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Resolver = resolver.NewCache(r, 0, 0)
	return c, s
}

// TestVerifyOwnCachedKeys: behind the milter's caching resolver, a burst of
// bounces of our mail costs one key lookup.
func TestVerifyOwnCachedKeys(t *testing.T) {
	c, s := cachedChecker(t, dkimZone(t))
	ed, _ := testKeys(t)
	h, _ := splitMsg(signWith(t, outbound, "example.test", "ed", ed, dkim.CanonicalizationRelaxed))
	for range 3 {
		if got := c.VerifyOwn(context.Background(), h, nil, []string{"example.test"}); got.Result != OwnHeadersPass {
			t.Fatalf("%+v", got)
		}
	}
	if n := s.Queries("ed._domainkey.example.test", "TXT"); n != 1 {
		t.Errorf("key asked %d times within its TTL, want 1", n)
	}
}

func TestWithoutB(t *testing.T) {
	for in, want := range map[string]string{
		"DKIM-Signature: v=1; bh=abc; b=sig\r\n":            "DKIM-Signature: v=1; bh=abc; b=\r\n",
		"DKIM-Signature: v=1; b = s i g ; bh=abc\r\n":       "DKIM-Signature: v=1; b =; bh=abc\r\n",
		"DKIM-Signature: v=1; bh=abc;\r\n\tb=si\r\n\tg\r\n": "DKIM-Signature: v=1; bh=abc;\r\n\tb=\r\n",
		"DKIM-Signature: v=1; s=selb=x; b=sig\r\n":          "DKIM-Signature: v=1; s=selb=x; b=\r\n",
	} {
		if got := withoutB(in); got != want {
			t.Errorf("withoutB(%q) = %q, want %q", in, got, want)
		}
	}
}

// bounceOf wraps an original in an RFC 3464 report: part is
// "message/rfc822" (whole original, with the given transfer encoding of
// the part) or "text/rfc822-headers".
func bounceOf(part, cte string, original []byte) []byte {
	var b bytes.Buffer
	b.WriteString("From: MAILER-DAEMON@mx.remote.example\r\nTo: alice@example.test\r\nSubject: Undelivered Mail\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"BB\"\r\n\r\n" +
		"--BB\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n\r\n" +
		"--BB\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.remote.example\r\n\r\n" +
		"Final-Recipient: rfc822; bob@remote.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n" +
		"--BB\r\nContent-Type: " + part + "\r\n")
	if cte != "" {
		b.WriteString("Content-Transfer-Encoding: " + cte + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(original)
	b.WriteString("\r\n--BB--\r\n")
	return b.Bytes()
}

// TestVerifyOwnThroughBounce: an outbound message signed by go-msgauth with
// a key published in the test DNS server comes back inside a bounce; what
// the bounce parser extracts is what VerifyOwn judges.
func TestVerifyOwnThroughBounce(t *testing.T) {
	c, _ := newChecker(t, dkimZone(t))
	ed, _ := testKeys(t)
	signed := signWith(t, outbound, "example.test", "ed", ed, dkim.CanonicalizationRelaxed)
	h, body := splitMsg(signed)
	reencoded := append(bytes.Replace(h, []byte("Content-Transfer-Encoding: 8bit"), []byte("Content-Transfer-Encoding: quoted-printable"), 1), "\r\n"...)
	reencoded = append(reencoded, qp(t, body)...)
	for _, tc := range []struct {
		name string
		msg  []byte
		want string
	}{
		{"full original", bounceOf("message/rfc822", "", signed), OwnPass},
		{"full original, the part base64-encoded", bounceOf("message/rfc822", "base64", []byte(b64lines(signed))), OwnPass},
		{"headers only", bounceOf("text/rfc822-headers", "", h), OwnHeadersPass},
		// The bouncer re-encoded the body as quoted-printable (and said so in
		// Content-Transfer-Encoding, which the signer did not sign): the
		// body hash breaks, the header signature still holds.
		{"re-encoded body", bounceOf("message/rfc822", "", reencoded), OwnHeadersPass},
		{"re-encoded body and a signed header altered", bounceOf("message/rfc822", "",
			bytes.Replace(reencoded, []byte("Subject: figures"), []byte("Subject: Figures"), 1)), OwnFail},
	} {
		rep, err := bounce.Parse(tc.msg, bounce.DefaultLimits())
		if err != nil || len(rep.OriginalHeader) == 0 {
			t.Fatalf("%s: parse: %v %+v", tc.name, err, rep)
		}
		got := c.VerifyOwn(context.Background(), rep.OriginalHeader, rep.OriginalBody, []string{"example.test"})
		if got.Result != tc.want {
			t.Errorf("%s: %+v, want %s", tc.name, got, tc.want)
		}
	}
}

func b64lines(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	out.WriteString(s)
	return out.String()
}

// TestVerifyOwnAsksOnlyOurKeys: the other signatures of a returned
// original (any d= a forger likes) cost no DNS lookup.
func TestVerifyOwnAsksOnlyOurKeys(t *testing.T) {
	c, s := newChecker(t, dkimZone(t))
	ed, _ := testKeys(t)
	ours := signWith(t, outbound, "example.test", "ed", ed, dkim.CanonicalizationRelaxed)
	both := sign(t, string(ours), "other.test", "ed", ed)
	h, body := splitMsg(both)
	if got := c.VerifyOwn(context.Background(), h, body, []string{"example.test"}); got.Result != OwnPass {
		t.Fatalf("%+v", got)
	}
	if n := s.Queries("ed._domainkey.other.test", "TXT"); n != 0 {
		t.Errorf("a foreign signature's key was asked %d times", n)
	}
}
