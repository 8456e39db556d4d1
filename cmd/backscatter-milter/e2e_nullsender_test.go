package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// forgeTag changes the last MAC digit of a sub-address tag: the tag a
// forger would make up.
func forgeTag(tagged string) string {
	i := strings.LastIndexByte(tagged, '@')
	c := byte('0')
	if tagged[i-1] == '0' {
		c = '1'
	}
	return tagged[:i-1] + string(c) + tagged[i:]
}

// waitDelivered waits for a message to rcpt whose header or body contains
// needle to reach the sink.
func waitDelivered(t *testing.T, s *mtatest.Sink, rcpt, needle string) mtatest.SinkMessage {
	t.Helper()
	var found mtatest.SinkMessage
	if !await.True(30*time.Second, func() bool {
		msgs, err := s.Messages()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			whole := string(m.Header()) + string(m.Body())
			for _, r := range m.Recipients() {
				if r == rcpt && strings.Contains(whole, needle) {
					found = m
					return true
				}
			}
		}
		return false
	}) {
		t.Fatalf("no message to %s containing %q reached the sink", rcpt, needle)
	}
	return found
}

// readReceipt is an RFC 8098 MDN, as a mail client sends it to the header
// From of a message it displayed.
func readReceipt(to, origID string) []byte {
	return []byte(`From: Carol <carol@remote.test>
To: ` + to + `
Subject: Read: hello
Message-ID: <mdn-` + origID + `>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="MM"

--MM
Content-Type: text/plain

The message sent on 2026-12-01 to carol@remote.test was displayed.

--MM
Content-Type: message/disposition-notification

Reporting-UA: client.remote.test; Thunderbird
Final-Recipient: rfc822;carol@remote.test
Original-Message-ID: <` + origID + `>
Disposition: manual-action/MDN-sent-manually; displayed

--MM--
`)
}

// outOfOffice is an RFC 3834 auto-reply to the message inReplyTo.
func outOfOffice(to, inReplyTo string) []byte {
	return plainMessage("carol@remote.test", to, "ooo-"+inReplyTo,
		"Auto-Submitted: auto-replied\nIn-Reply-To: <"+inReplyTo+">\n", "I am away until Monday.\n")
}

// TestPostfixNullSenderKinds: with BATV on, null-sender mail is judged by
// what it is, at the stage where that is known (issue 10). Answers to our
// users' mail that go to the header From (never tagged) arrive; callouts
// get 250; forged bounces are refused after DATA, or at RCPT for a
// no_bounces address; a tag proves only its own recipient (issue 11.4);
// an address literal of ours is a local recipient (issue 11.5); a verified
// tag is removed before delivery (issue 10.8).
func TestPostfixNullSenderKinds(t *testing.T) {
	mtatest.RequirePostfix(t)
	batvLine, signer := batvPolicy(t)
	m := startMilter(t, "mode: enforce\n"+testPolicy(t, "example.org", "other.example")+batvLine+
		"no_bounces: [noreply@example.org]\n")
	// local_transport local: Postfix delivers alice@[127.0.0.1] (an
	// address literal of its own interface) to the local alice.
	pf := mtatest.StartPostfix(t, mtatest.PostfixOptions{MilterAddr: m.Spec, RelayDomains: []string{"example.org", "other.example"},
		Main: map[string]string{"recipient_delimiter": "+", "local_transport": "local"}})
	outside := func(msg mtatest.SMTPMessage) mtatest.MessageResult {
		return pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.2", Helo: "mx.remote.test", Messages: []mtatest.SMTPMessage{msg}}).Messages[0]
	}
	eom := func(what string, mr mtatest.MessageResult) verdict {
		t.Helper()
		return m.waitVerdict(t, what, func(v verdict) bool { return v.Stage == "eom" && v.QueueID == mr.QueueID() && mr.QueueID() != "" })
	}
	// delivered waits for the message whose header or body holds needle.
	delivered := func(what string, mr mtatest.MessageResult, rcpt, needle string) mtatest.SinkMessage {
		t.Helper()
		if !mr.Accepted() {
			t.Fatalf("%s refused: %s", what, mr)
		}
		return waitDelivered(t, pf.Sink, rcpt, needle)
	}

	// Our user alice sends a message: signed, recorded.
	out := pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.1", Helo: "client.example.org", Messages: []mtatest.SMTPMessage{{
		From: "alice@example.org", To: []string{"carol@remote.test"},
		Data: plainMessage("alice@example.org", "carol@remote.test", "ns-out-1@example.org", "", "hello\n")}}}).Messages[0]
	if got := delivered("outbound", out, "carol@remote.test", "ns-out-1@example.org").Sender(); !strings.HasPrefix(got, "alice+prvs=") {
		t.Fatalf("outbound sender %q not signed", got)
	}

	t.Run("read receipt to the header From of our message is delivered", func(t *testing.T) {
		mr := outside(mtatest.SMTPMessage{From: "<>", To: []string{"alice@example.org"}, Data: readReceipt("alice@example.org", "ns-out-1@example.org")})
		got := delivered("read receipt", mr, "alice@example.org", "Read: hello")
		if v := eom("read receipt", mr); v.Action != "accept" || !v.has("mdn:ours") || v.has("batv:missing") {
			t.Errorf("verdict %s", v)
		}
		if strings.Contains(string(got.Header()), "X-Backscatter") {
			t.Errorf("read receipt tagged:\n%s", got.Header())
		}
	})

	t.Run("out-of-office to the header From is delivered", func(t *testing.T) {
		mr := outside(mtatest.SMTPMessage{From: "<>", To: []string{"alice@example.org"}, Data: outOfOffice("alice@example.org", "ns-out-1@example.org")})
		delivered("out-of-office", mr, "alice@example.org", "ooo-ns-out-1@example.org")
		if v := eom("out-of-office", mr); v.Action != "accept" || !v.has("autoreply:ours") {
			t.Errorf("verdict %s", v)
		}
	})

	t.Run("real DSN sent to the header From of our message is delivered", func(t *testing.T) {
		mr := outside(mtatest.SMTPMessage{From: "<>", To: []string{"alice@example.org"},
			Data: dsnFor("alice@example.org", "ns-out-1@example.org", "mx.example.org", "192.0.2.10")})
		delivered("real DSN", mr, "alice@example.org", "dsn-ns-out-1@example.org")
		if v := eom("real DSN", mr); v.Action != "accept" || !v.has("bounce:ours") {
			t.Errorf("verdict %s", v)
		}
	})

	t.Run("callout gets 250 and one callout line", func(t *testing.T) {
		before := len(m.verdicts(t))
		mr := outside(mtatest.SMTPMessage{From: "<>", To: []string{"dora@example.org"}, NoData: true})
		if len(mr.Rcpts) != 1 || mr.Rcpts[0].Code != 250 {
			t.Fatalf("callout: %s, want 250 at RCPT", mr)
		}
		m.waitVerdict(t, "callout", func(v verdict) bool {
			return v.Stage == "callout" && len(v.Rcpts) == 1 && v.Rcpts[0] == "dora@example.org"
		})
		var lines []verdict
		for _, v := range m.verdicts(t)[before:] {
			for _, r := range v.Rcpts {
				if r == "dora@example.org" {
					lines = append(lines, v)
				}
			}
		}
		if len(lines) != 1 || !lines[0].has("callout") || lines[0].Action != "accept" {
			t.Errorf("want one callout line, got %v", lines)
		}
	})

	t.Run("forged DSN to an untagged address is refused at end of DATA", func(t *testing.T) {
		mr := outside(mtatest.SMTPMessage{From: "<>", To: []string{"dora@example.org"},
			Data: dsnFor("dora@example.org", "ns-forged-1@example.org", "spam.remote.test", "198.51.100.9")})
		if len(mr.Rcpts) != 1 || mr.Rcpts[0].Class() != 2 || mr.Final.Code != 550 || !strings.Contains(mr.Final.Text, "BATV") {
			t.Fatalf("forged DSN: %s, want 250 at RCPT and 550 naming BATV after the body", mr)
		}
		m.waitVerdict(t, "forged DSN", func(v verdict) bool {
			return v.Stage == "eom" && v.Action == "reject" && v.has("batv:missing") && len(v.Rcpts) == 1 && v.Rcpts[0] == "dora@example.org"
		})
	})

	t.Run("forged DSN to a no_bounces address is refused at RCPT", func(t *testing.T) {
		mr := outside(mtatest.SMTPMessage{From: "<>", To: []string{"noreply@example.org"},
			Data: dsnFor("noreply@example.org", "ns-forged-2@example.org", "spam.remote.test", "198.51.100.9")})
		if len(mr.Rcpts) != 1 || mr.Rcpts[0].Code != 550 || mr.Accepted() {
			t.Fatalf("no_bounces: %s, want 550 at RCPT", mr)
		}
		v := m.waitVerdict(t, "no_bounces", func(v verdict) bool { return v.Stage == "rcpt" && v.has("rcpt:no-bounces") })
		if v.Action != "reject" {
			t.Errorf("verdict %s", v)
		}
	})

	t.Run("forged auto-reply is tagged", func(t *testing.T) {
		mr := outside(mtatest.SMTPMessage{From: "<>", To: []string{"erin@example.org"}, Data: outOfOffice("erin@example.org", "never-sent@example.org")})
		got := delivered("forged auto-reply", mr, "erin@example.org", "ooo-never-sent@example.org")
		if h := string(got.Header()); !strings.Contains(h, "\nX-Backscatter: score=4 action=tag") || !strings.Contains(h, "autoreply:not-ours") {
			t.Errorf("tag header missing:\n%s", h)
		}
	})

	t.Run("list mail with a VERP sender goes out signed; its DSN reaches the untagged VERP address", func(t *testing.T) {
		verp := "list-bounces+bob=remote.test@example.org"
		r := pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.1", Helo: "lists.example.org", Messages: []mtatest.SMTPMessage{{
			From: verp, To: []string{"bob@remote.test"},
			Data: plainMessage("list@example.org", "list@example.org", "ns-list-1@example.org", "List-Id: <list.example.org>\n", "post\n")}}}).Messages[0]
		signed := delivered("list message", r, "bob@remote.test", "ns-list-1@example.org").Sender()
		if !strings.HasPrefix(signed, "list-bounces+bob=remote.test+prvs=") || signer.Verify(signed).Status.String() != "ok" {
			t.Fatalf("VERP sender at the sink %q, want it signed", signed)
		}
		mr := outside(mtatest.SMTPMessage{From: "<>", To: []string{signed},
			Data: dsnFor(signed, "ns-list-1@example.org", "mx.example.org", "192.0.2.10")})
		got := delivered("DSN to the VERP address", mr, verp, "dsn-ns-list-1@example.org")
		for _, rc := range got.Recipients() {
			if strings.Contains(rc, "prvs=") {
				t.Errorf("the next hop got the tagged address %q", rc)
			}
		}
		if v := eom("VERP DSN", mr); v.Action != "accept" || !v.has("batv:ok") {
			t.Errorf("verdict %s", v)
		}
	})

	t.Run("a tag proves only its own recipient: forged DSN to a tag and 3 others is held", func(t *testing.T) {
		alice, err := signer.Sign("alice@example.org")
		if err != nil {
			t.Fatal(err)
		}
		n := len(pf.Sink.WaitMessages(t, 0, time.Second))
		mr := outside(mtatest.SMTPMessage{From: "<>", To: []string{alice, "v1@other.example", "v2@other.example", "v3@other.example"},
			Data: dsnFor("v1@other.example", "ns-forged-3@example.org", "spam.remote.test", "198.51.100.9")})
		if !mr.Accepted() {
			t.Fatalf("%s", mr)
		}
		qid := mr.QueueID()
		pf.WaitQueue(t, 20*time.Second, "message "+qid+" on hold", func(q []mtatest.QueueEntry) bool {
			for _, e := range q {
				if e.QueueID == qid && e.QueueName == "hold" {
					return true
				}
			}
			return false
		})
		if v := eom("four recipients", mr); v.Action != "quarantine" || !v.has("bounce:not-ours") {
			t.Errorf("verdict %s", v)
		}
		for _, msg := range pf.Sink.WaitMessages(t, n, time.Second)[n:] {
			t.Errorf("delivered to %v though held", msg.Recipients())
		}
	})

	t.Run("an address literal of ours is a local recipient: forged DSN refused", func(t *testing.T) {
		mr := outside(mtatest.SMTPMessage{From: "<>", To: []string{"alice@[127.0.0.1]"},
			Data: dsnFor("alice@[127.0.0.1]", "ns-forged-4@example.org", "spam.remote.test", "198.51.100.9")})
		if len(mr.Rcpts) != 1 || mr.Rcpts[0].Class() != 2 || mr.Final.Code != 550 {
			t.Fatalf("forged DSN to alice@[127.0.0.1]: %s, want 550 after the body", mr)
		}
		m.waitVerdict(t, "literal", func(v verdict) bool {
			return v.Stage == "eom" && v.has("batv:missing") && len(v.Rcpts) == 1 && v.Rcpts[0] == "alice@[127.0.0.1]"
		})
	})
}

// TestSendmailNullSenderKinds: the read receipt to the header From, and a
// verified tag removed before delivery, through Sendmail.
func TestSendmailNullSenderKinds(t *testing.T) {
	mtatest.RequireSendmail(t)
	batvLine, signer := batvPolicy(t)
	m := startMilter(t, "mode: enforce\n"+testPolicy(t, "example.org")+batvLine)
	sm := mtatest.StartSendmail(t, mtatest.SendmailOptions{MilterAddr: m.Spec, RelayDomains: []string{"example.org"}})
	send := func(ip string, msg mtatest.SMTPMessage) mtatest.MessageResult {
		return sm.SendSession(t, mtatest.Session{LocalIP: ip, Helo: "mx.remote.test", Messages: []mtatest.SMTPMessage{msg}}).Messages[0]
	}
	out := send("127.0.0.1", mtatest.SMTPMessage{From: "alice@example.org", To: []string{"carol@remote.test"},
		Data: plainMessage("alice@example.org", "carol@remote.test", "sm-ns-out-1@example.org", "", "hello\n")})
	if !out.Accepted() {
		t.Fatalf("outbound: %s", out)
	}
	signed := waitDelivered(t, sm.Sink, "carol@remote.test", "sm-ns-out-1@example.org").Sender()
	if signer.Verify(signed).Status.String() != "ok" {
		t.Fatalf("outbound sender %q not signed", signed)
	}

	t.Run("read receipt to the header From of our message is delivered", func(t *testing.T) {
		mr := send("127.0.0.2", mtatest.SMTPMessage{From: "<>", To: []string{"alice@example.org"}, Data: readReceipt("alice@example.org", "sm-ns-out-1@example.org")})
		if !mr.Accepted() {
			t.Fatalf("read receipt refused: %s", mr)
		}
		waitDelivered(t, sm.Sink, "alice@example.org", "Read: hello")
		v := m.waitVerdict(t, "read receipt", func(v verdict) bool { return v.Stage == "eom" && v.QueueID == mr.QueueID() })
		if v.Action != "accept" || !v.has("mdn:ours") {
			t.Errorf("verdict %s", v)
		}
	})

	t.Run("a real bounce to the tagged sender reaches the untagged address", func(t *testing.T) {
		mr := send("127.0.0.2", mtatest.SMTPMessage{From: "<>", To: []string{signed},
			Data: dsnFor(signed, "sm-ns-out-1@example.org", "mx.example.org", "192.0.2.10")})
		if !mr.Accepted() {
			t.Fatalf("real bounce refused: %s", mr)
		}
		got := waitDelivered(t, sm.Sink, "alice@example.org", "dsn-sm-ns-out-1@example.org")
		for _, rc := range got.Recipients() {
			if strings.Contains(rc, "prvs=") {
				t.Errorf("the next hop got the tagged address %q", rc)
			}
		}
	})
}

// TestInternalRoleDroppedNDR: with NDR suppression on, Postfix starts an NDR
// through the internal-bounce role and drops it before its content
// (NOTIFY=NEVER). That is logged as what it is, never as a callout.
func TestInternalRoleDroppedNDR(t *testing.T) {
	mtatest.RequirePostfix(t)
	// 127.0.0.1 untrusted, as on a site whose trusted_networks name only
	// its LAN: Postfix's own NDR is then inbound null-sender mail.
	pol := strings.Replace(testPolicy(t), "trusted_networks: [127.0.0.1/32]", "trusted_networks: [192.0.2.0/24]", 1)
	m := startMilter(t, pol+"internal_bounce: { listen: ILISTEN, action: quarantine }\n")
	pf := ndrSetup(t, m, true)
	qid := sendFrom(t, pf, "victim@fail.test", "nobody@reject.example.net", "drop-1@fail.test")
	pf.WaitLog(t, qid+": to=<nobody@reject.example.net>", 30*time.Second)
	pf.WaitQueueEmpty(t, 30*time.Second)
	if v := m.waitVerdict(t, "suppression", func(v verdict) bool { return v.QueueID == qid && v.Stage == "eom" }); v.NDR != "suppressed" {
		t.Fatalf("verdict %s: the NDR was not suppressed, the test does not test what it should", v)
	}
	var raw []byte
	if !await.True(20*time.Second, func() bool {
		var err error
		if raw, err = os.ReadFile(m.LogFile); err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(raw), "ndr dropped by the MTA before its content")
	}) {
		t.Fatalf("no dropped-NDR line; log:\n%s", raw)
	}
	for _, v := range m.verdicts(t) {
		if v.Stage == "callout" || v.Stage == "internal-bounce" {
			t.Errorf("the dropped NDR was judged: %s", v)
		}
	}
}
