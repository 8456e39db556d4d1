package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/emersion/go-msgauth/dkim"
)

// provenanceDSN is a bounce to alice@example.org returning only the
// original's headers.
func provenanceDSN(original string) []byte {
	return headersDSN("alice@example.org", "dsn-p@mx.remote.test", []byte(original))
}

// TestTestCommandProvenance runs `test` with the wiring of the provenance
// ladder against a DNS server on loopback: our DKIM key and our SPF record.
func TestTestCommandProvenance(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv := dnstest.Start(t, `$ORIGIN .
$TTL 300
example.org.                 TXT "v=spf1 ip4:192.0.2.0/24 -all"
s1._domainkey.example.org.   TXT "v=DKIM1; k=ed25519; p=`+base64.StdEncoding.EncodeToString(pub)+`"
`)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	body := "local_domains: [example.org]\nsent_log: { backend: memory }\nresolver: \"" + srv.Addr + "\"\ndnsbl: { zones: [] }\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(name, original string, extra ...string) testResult {
		t.Helper()
		p := filepath.Join(dir, name+".eml")
		if err := os.WriteFile(p, provenanceDSN(original), 0o644); err != nil {
			t.Fatal(err)
		}
		_, r, stderr := runTestCmd(t, append([]string{p, "--config", cfg}, extra...)...)
		if r.Verdict == nil {
			t.Fatalf("%s: no verdict; stderr %s", name, stderr)
		}
		return r
	}

	forged := "Received: from bot.example (bot.example [198.51.100.77])\n\tby mx.remote.test with ESMTP id 1; Tue, 01 Dec 2026 14:00:00 +0000\n" +
		"From: alice@example.org\nTo: victim@remote.test\nSubject: cheap\nMessage-ID: <spam-1@bot.example>\n"
	r := run("forged", forged)
	if ev := evidenceNames(r.Verdict); !slices.Contains(ev, "bounce:origin-spf-fail") || r.Verdict.Action != "quarantine" {
		t.Errorf("forged original: %s %v notes %v", r.Verdict.Action, ev, r.Verdict.Notes)
	}

	var signed bytes.Buffer
	orig := "Received: from mail.example.org (mail.example.org [192.0.2.1])\n\tby mx.remote.test with ESMTPS id 2; Tue, 01 Dec 2026 14:00:00 +0000\n" +
		"From: alice@example.org\r\nTo: friend@remote.test\r\nSubject: hi\r\nDate: Tue, 01 Dec 2026 14:00:00 +0000\r\nMessage-ID: <real-1@example.org>\r\n\r\nhello\r\n"
	if err := dkim.Sign(&signed, strings.NewReader(strings.ReplaceAll(strings.ReplaceAll(orig, "\r\n", "\n"), "\n", "\r\n")),
		&dkim.SignOptions{Domain: "example.org", Selector: "s1", Signer: priv, HeaderCanonicalization: dkim.CanonicalizationRelaxed}); err != nil {
		t.Fatal(err)
	}
	hdr, _, _ := strings.Cut(signed.String(), "\r\n\r\n")
	r = run("ours", hdr)
	if ev := evidenceNames(r.Verdict); !slices.Contains(ev, "bounce:ours-dkim-headers") || r.Verdict.Action != "accept" {
		t.Errorf("our own signed original: %s %v notes %v", r.Verdict.Action, ev, r.Verdict.Notes)
	}

	r = run("offline", forged, "--offline")
	if ev := evidenceNames(r.Verdict); slices.Contains(ev, "bounce:origin-spf-fail") ||
		!strings.Contains(strings.Join(r.Verdict.Notes, ";"), "origin SPF and own DKIM: skipped (offline)") {
		t.Errorf("offline: %v notes %v", ev, r.Verdict.Notes)
	}
}
