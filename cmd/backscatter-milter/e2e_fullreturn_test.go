package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// TestPostfixFullReturnProof: a real remote Postfix bounces our outbound
// message and returns it whole (message/rfc822, no RET=HDRS), the way most
// MTAs answer a message sent without RET. Our mail left with our stamp and a
// DKIM signature of example.org (signed as opendkim would, before it left).
// With BATV off and a sent log that knows nothing, the DSN is delivered on
// the stamp and our own DKIM over the whole original; the same DSN with the
// returned original's Message-ID changed is held.
func TestPostfixFullReturnProof(t *testing.T) {
	mtatest.RequirePostfix(t)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dns := dnstest.Start(t, `$ORIGIN .
$TTL 300
example.org.                 TXT "v=spf1 ip4:127.0.0.1 -all"
remote.test.                 TXT "v=spf1 ?all"
s1._domainkey.example.org.   TXT "v=DKIM1; k=ed25519; p=`+base64.StdEncoding.EncodeToString(pub)+`"
`)
	keyFile, _ := writeKey(t)
	conf := "mode: enforce\nlocal_domains: [example.org]\ntrusted_networks: [127.0.0.1/32]\nresolver: " + dns.Addr +
		"\ndnsbl: { zones: [] }\nbatv: { enabled: false, keys: [{ id: 0, file: " + keyFile + " }] }\n" +
		"provenance: { stamp: { enabled: true } }\n"
	first := startMilter(t, conf)
	ours := mtatest.StartPostfix(t, mtatest.PostfixOptions{MilterAddr: first.Spec, RelayDomains: []string{"example.org"}})

	// The remote MX accepts the message, and its next hop (a mailbox
	// server) refuses the recipient: the MX's own bounce daemon writes the
	// DSN and sends it to our Postfix from 127.0.0.2, an untrusted address.
	mailbox := mtatest.StartSink(t, mtatest.SinkOptions{RejectRcpt: true})
	remote := mtatest.StartPostfix(t, mtatest.PostfixOptions{
		Hostname:     "mx.remote.test",
		RelayDomains: []string{"remote.test"},
		Transports: map[string]string{
			"remote.test": "smtp:[127.0.0.1]:" + strconv.Itoa(mailbox.Port),
			"example.org": "smtp:[127.0.0.1]:" + strconv.Itoa(ours.Port),
		},
		Main: map[string]string{"smtp_bind_address": "127.0.0.2"},
	})

	original := "From: Alice <alice@example.org>\r\nTo: friend@remote.test\r\nSubject: the figures\r\n" +
		"Date: Tue, 01 Dec 2026 14:00:00 +0000\r\nMessage-ID: <full-1@example.org>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\n\r\nHere are the figures.\r\nAlice\r\n"
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, strings.NewReader(original), &dkim.SignOptions{Domain: "example.org", Selector: "s1",
		Signer: priv, HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed}); err != nil {
		t.Fatal(err)
	}
	r := ours.SendSession(t, mtatest.Session{LocalIP: "127.0.0.1", Helo: "client.example.org", Messages: []mtatest.SMTPMessage{{
		From: "alice@example.org", To: []string{"friend@remote.test"}, Data: bytes.ReplaceAll(signed.Bytes(), []byte("\r\n"), []byte("\n"))}}})
	if !r.Messages[0].Accepted() {
		t.Fatalf("outbound: %s", r.Messages[0])
	}
	out := ours.Sink.WaitMessages(t, 1, 30*time.Second)[0]
	if !bytes.Contains(out.Header(), []byte("X-Backscatter-Stamp:")) {
		t.Fatalf("outbound message left unstamped:\n%s", out.Header())
	}

	// The sent log is emptied (a new milter with a fresh store takes the
	// socket), so only what the returned original carries can prove it.
	first.stop()
	second := startMilter(t, conf+"listen: "+first.Spec+"\n")
	if err := os.Chmod(strings.TrimPrefix(first.Spec, "unix:"), 0o666); err != nil { // Postfix's smtpd is not root
		t.Fatal(err)
	}

	// Our outbound mail, as it left, reaches the remote MX.
	r = remote.SendSession(t, mtatest.Session{LocalIP: "127.0.0.1", Helo: "mx.example.org", Messages: []mtatest.SMTPMessage{{
		From: out.Sender(), To: []string{"friend@remote.test"}, Data: out.Data}}})
	if !r.Messages[0].Accepted() {
		t.Fatalf("remote MX refused our message: %s", r.Messages[0])
	}

	dsn := lastTo(t, ours.Sink, "alice@example.org", 60*time.Second)
	if dsn.Sender() != "" || !bytes.Contains(dsn.Data, []byte("message/rfc822")) || !bytes.Contains(dsn.Data, []byte("Here are the figures.")) {
		t.Fatalf("the remote Postfix's DSN did not return the whole original (sender %q):\n%s", dsn.Sender(), dsn.Data)
	}
	v := second.waitVerdict(t, "the real DSN", func(v verdict) bool { return v.Stage == "eom" && v.has("bounce:ours-stamp") })
	if v.Action != "accept" || v.has("bounce:ours") {
		t.Errorf("real DSN with the whole original: %s", v)
	}

	// resend sends a variant of the real DSN from the remote MX's address
	// and returns its verdict.
	resend := func(what string, data []byte) verdict {
		t.Helper()
		if bytes.Equal(data, dsn.Data) {
			t.Fatalf("%s: the DSN is unchanged", what)
		}
		data = bytes.Replace(data, []byte("Message-Id: <"), []byte("Message-Id: <"+strings.Fields(what)[0]), 1) // a DSN of its own
		r := ours.SendSession(t, mtatest.Session{LocalIP: "127.0.0.2", Helo: "mx.remote.test", Messages: []mtatest.SMTPMessage{{
			From: "<>", To: []string{"alice@example.org"}, Data: data}}})
		qid := r.Messages[0].QueueID()
		if !r.Messages[0].Accepted() || qid == "" {
			t.Fatalf("%s: %s", what, r.Messages[0])
		}
		return second.waitVerdict(t, what, func(v verdict) bool { return v.QueueID == qid && v.Stage == "eom" })
	}

	// A bouncer that drops X- fields from what it returns leaves our
	// DKIM signature, which does not cover the stamp: the whole original
	// verifies.
	var stripped [][]byte
	for _, line := range bytes.SplitAfter(dsn.Data, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte("X-Backscatter-Stamp:")) {
			stripped = append(stripped, line)
		}
	}
	v = resend("stripped stamp", bytes.Join(stripped, nil))
	if v.Action != "accept" || !v.has("bounce:ours-dkim") || v.has("bounce:ours-stamp") {
		t.Errorf("DSN returning the whole original without the stamp: %s", v)
	}

	// Forged: the returned original's Message-ID is another, so neither
	// the stamp nor the signature holds.
	v = resend("forged Message-ID", bytes.Replace(dsn.Data, []byte("<full-1@example.org>"), []byte("<full-forged@example.org>"), -1))
	if v.Action != "quarantine" || !v.has("bounce:stamp-bad") || v.has("bounce:ours-stamp") || v.has("bounce:ours-dkim") {
		t.Errorf("forged DSN with the whole original: %s", v)
	}
}
