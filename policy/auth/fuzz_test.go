package auth

import (
	"bytes"
	"context"
	"crypto"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// FuzzCheck feeds arbitrary messages and envelope senders through Check: no
// panic, a one-line reason, and a result consistent with its parts.
func FuzzCheck(f *testing.F) {
	c, _ := newChecker(f, dkimZone(f)+spfZone)
	c.Timeout = time.Second
	ed, rk := testKeys(f)
	signed := string(sign(f, plainMessage, "example.test", "ed", ed))
	seeds := []struct{ raw, from string }{
		{signed, "alice@example.test"},
		{string(sign(f, plainMessage, "example.test", "rsa", rk)), "<bounce@mail.example.test>"},
		{string(sign(f, signed, "other.test", "ed", ed)), "<>"},
		{strings.Replace(signed, "Noon", "Dusk", 1), "x@pass.test"},
		{plainMessage, "user@soft.test"},
		{"", ""},
		{"\r\n\r\n", "@"},
		{"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=ed; h=from; bh=; b=\r\n\r\n", "a@b@c"},
		{"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=; s=; h=From:From; l=99999; bh=AAAA; b=!!\r\nFrom: x\r\n\r\nbody", "<@r:x@example.test>"},
		{"DKIM-Signature:\r\n\t\r\nFrom: a\r\n", "x@" + strings.Repeat("a.", 200) + "test"},
		{strings.Repeat("DKIM-Signature: v=1; d=example.test\r\n", 50) + "\r\n", "x@example.test"},
		{"no header at all", "x@example.test"},
	}
	for _, s := range seeds {
		f.Add([]byte(s.raw), s.from)
	}
	ip := netip.MustParseAddr("198.51.100.1")
	f.Fuzz(func(t *testing.T, raw []byte, mailFrom string) {
		v := check(c, context.Background(), ip, "client.test", mailFrom, raw)
		if strings.ContainsAny(v.Why, "\r\n") {
			t.Fatalf("Reason not one line: %q", v.Why)
		}
		if v.Result != Combine(v.SPF, v.DKIM) {
			t.Fatalf("Result %v disagrees with Combine(%q, %+v)", v.Result, v.SPF, v.DKIM)
		}
		if v.Result == Forged && v.SPF != SPFFail {
			t.Fatalf("Forged without SPF fail: %+v", v)
		}
		if len(v.DKIM) > DefaultMaxSignatures {
			t.Fatalf("%d signatures verified, limit %d", len(v.DKIM), DefaultMaxSignatures)
		}
		for _, s := range v.DKIM {
			if s.Valid == (s.Err != "") {
				t.Fatalf("signature valid=%v with Err %q", s.Valid, s.Err)
			}
		}
	})
}

// FuzzVerifyOwn feeds arbitrary returned header blocks and bodies through
// the own-signature check: no panic, a pass only with a signature of ours,
// and a failure always explained.
func FuzzVerifyOwn(f *testing.F) {
	c, _ := newChecker(f, dkimZone(f))
	c.Timeout = time.Second
	ed, rk := testKeys(f)
	for _, k := range []struct {
		sel string
		key crypto.Signer
	}{{"ed", ed}, {"rsa", rk}} {
		h, body := splitMsg(signWith(f, outbound, "example.test", k.sel, k.key, dkim.CanonicalizationRelaxed))
		f.Add(h, body)
		f.Add(h, []byte(nil))
		f.Add(bytes.ReplaceAll(h, []byte("\r\n"), []byte("\n")), []byte("x"))
	}
	f.Add([]byte("DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=ed; h=from; bh=; b=\r\n\r\n"), []byte(nil))
	f.Add([]byte("DKIM-Signature: v=1; d=example.test; d=example.test\r\n"), []byte(nil))
	f.Add([]byte("DKIM-Signature:\r\n\t b=;\r\n \r\nFrom: a\r\n"), []byte("body"))
	f.Fuzz(func(t *testing.T, header, body []byte) {
		got := c.VerifyOwn(context.Background(), header, body, []string{"example.test"})
		switch got.Result {
		case OwnPass, OwnHeadersPass:
			if got.Domain != "example.test" || !bytes.Contains(bytes.ToLower(header), []byte("dkim-signature")) {
				t.Fatalf("%+v from %q", got, header)
			}
		case OwnFail:
			if got.Detail == "" {
				t.Fatalf("failure without detail: %q", header)
			}
		case OwnNone:
		default:
			t.Fatalf("result %q", got.Result)
		}
	})
}
