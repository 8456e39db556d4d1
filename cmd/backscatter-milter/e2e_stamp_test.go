package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
	"github.com/backscatter-milter/backscatter-milter/policy/batv"
	"github.com/backscatter-milter/backscatter-milter/policy/stamp"
)

// headersDSN is a bounce from mx.remote.test to to that returns only the
// original's header block (text/rfc822-headers), as Postfix and most MTAs do.
func headersDSN(to, dsnID string, original []byte) []byte {
	return []byte("From: Mail Delivery System <MAILER-DAEMON@mx.remote.test>\nTo: " + to +
		"\nSubject: Undelivered Mail Returned to Sender\nDate: Tue, 01 Dec 2026 14:05:00 +0000\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"BB\"\nMessage-ID: <" + dsnID + ">\n\n" +
		"--BB\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n" +
		"--BB\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.remote.test\n\n" +
		"Final-Recipient: rfc822; friend@remote.test\nAction: failed\nStatus: 5.1.1\n\n" +
		"--BB\nContent-Type: text/rfc822-headers\n\n" + strings.TrimRight(string(original), "\r\n") + "\n\n--BB--\n")
}

// TestPostfixStamp: outbound mail leaves Postfix with our stamp; with BATV
// off and a sent log that knows nothing, a DSN quoting the stamped headers
// is delivered on the stamp alone, and a forged DSN carrying that stamp on
// another Message-ID is held.
func TestPostfixStamp(t *testing.T) {
	mtatest.RequirePostfix(t)
	keyFile, signer := writeKey(t)
	conf := "mode: enforce\n" + testPolicy(t) + "batv: { enabled: false, keys: [{ id: 0, file: " + keyFile + " }] }\n" +
		"provenance: { stamp: { enabled: true } }\n"
	first := startMilter(t, conf)
	pf := mtatest.StartPostfix(t, mtatest.PostfixOptions{MilterAddr: first.Spec, RelayDomains: []string{"example.org"}})

	out := "From: Alice <alice@example.org>\nTo: friend@remote.test\nSubject: figures\nDate: Tue, 01 Dec 2026 14:00:00 +0000\n" +
		"Message-ID: <stamp-1@example.org>\n\nhello\n"
	r := pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.1", Helo: "client.example.org", Messages: []mtatest.SMTPMessage{{
		From: "alice@example.org", To: []string{"friend@remote.test"}, Data: []byte(out)}}})
	if !r.Messages[0].Accepted() {
		t.Fatalf("outbound: %s", r.Messages[0])
	}
	msgs := pf.Sink.WaitMessages(t, 1, 30*time.Second)
	hdr := msgs[len(msgs)-1].Header()
	if msgs[len(msgs)-1].Sender() != "alice@example.org" {
		t.Errorf("BATV is off, yet the sender became %q", msgs[len(msgs)-1].Sender())
	}
	check := &stamp.Stamper{Keys: &batv.Signer{Keys: signer.Keys, Lifetime: 30 * 24 * time.Hour}}
	if res, found := check.Check(hdr, stamp.DefaultHeader); !found || res.Status != stamp.StatusOK {
		t.Fatalf("no valid stamp at the sink (%+v, found %v):\n%s", res, found, hdr)
	}
	v := first.waitVerdict(t, "outbound", func(v verdict) bool { return v.QueueID == r.Messages[0].QueueID() && v.Stage == "eom" })
	if !strings.Contains(strings.Join(v.Notes, ";"), "stamped") {
		t.Errorf("outbound verdict does not say it stamped: %s", v)
	}

	// A message without Date and Message-ID: Postfix's cleanup adds both
	// before the milter sees the header (seen here), so the stamp covers
	// them and verifies against what arrives.
	r = pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.1", Helo: "client.example.org", Messages: []mtatest.SMTPMessage{{
		From: "alice@example.org", To: []string{"friend@remote.test"},
		Data: []byte("From: alice@example.org\nTo: friend@remote.test\nSubject: no date\n\nhello\n")}}})
	if !r.Messages[0].Accepted() {
		t.Fatalf("outbound without Date and Message-ID: %s", r.Messages[0])
	}
	msgs = pf.Sink.WaitMessages(t, 2, 30*time.Second)
	noDate := msgs[len(msgs)-1].Header()
	if res, found := check.Check(noDate, stamp.DefaultHeader); !found || res.Status != stamp.StatusOK {
		t.Errorf("message without Date and Message-ID: stamp %+v found %v:\n%s", res, found, noDate)
	}

	// The sent log is emptied: a new milter with a fresh store takes the
	// same socket.
	first.stop()
	second := startMilter(t, conf+"listen: "+first.Spec+"\n")
	os.Chmod(strings.TrimPrefix(first.Spec, "unix:"), 0o666)
	inbound := func(data []byte) mtatest.MessageResult {
		t.Helper()
		r := pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.2", Helo: "mx.remote.test", Messages: []mtatest.SMTPMessage{{
			From: "<>", To: []string{"alice@example.org"}, Data: data}}})
		return r.Messages[0]
	}

	t.Run("a DSN quoting the stamped headers is delivered on the stamp", func(t *testing.T) {
		n := len(pf.Sink.WaitMessages(t, 0, time.Second))
		mr := inbound(headersDSN("alice@example.org", "dsn-1@mx.remote.test", hdr))
		if !mr.Accepted() {
			t.Fatalf("real bounce refused: %s", mr)
		}
		pf.Sink.WaitMessages(t, n+1, 30*time.Second)
		v := second.waitVerdict(t, "real bounce", func(v verdict) bool { return v.QueueID == mr.QueueID() && v.Stage == "eom" })
		if v.Action != "accept" || !v.has("bounce:ours-stamp") || v.has("bounce:ours") {
			t.Errorf("verdict %s", v)
		}
		resp, err := http.Get("http://" + second.d.metrics.addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, want := range []string{`backscatter_milter_proved_by_total{proof="bounce:ours-stamp"} 1`,
			`backscatter_milter_proved_by_total{proof="bounce:ours"} 0`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("metrics lack %q", want)
			}
		}
	})

	t.Run("a forged DSN with the stamp copied onto another Message-ID is held", func(t *testing.T) {
		forged := bytes.Replace(hdr, []byte("<stamp-1@example.org>"), []byte("<forged-1@example.org>"), 1)
		mr := inbound(headersDSN("alice@example.org", "dsn-2@mx.remote.test", forged))
		qid := mr.QueueID()
		if !mr.Accepted() || qid == "" {
			t.Fatalf("%s", mr)
		}
		pf.WaitQueue(t, 20*time.Second, "message "+qid+" on hold", func(q []mtatest.QueueEntry) bool {
			for _, e := range q {
				if e.QueueID == qid && e.QueueName == "hold" {
					return true
				}
			}
			return false
		})
		v := second.waitVerdict(t, "forged bounce", func(v verdict) bool { return v.QueueID == qid && v.Stage == "eom" })
		if v.Action != "quarantine" || !v.has("bounce:stamp-bad") || v.has("bounce:ours-stamp") {
			t.Errorf("verdict %s", v)
		}
	})
}

// TestSendmailStamp: Sendmail carries the stamp too, added at end of
// message. Sendmail adds a missing Message-ID or Date after the milter has
// seen the header (seen here), so such mail goes unstamped, never wrongly
// stamped, and the verdict says why.
func TestSendmailStamp(t *testing.T) {
	mtatest.RequireSendmail(t)
	keyFile, signer := writeKey(t)
	m := startMilter(t, "mode: enforce\n"+testPolicy(t)+"batv: { keys: [{ id: 0, file: "+keyFile+" }] }\n"+
		"provenance: { stamp: { enabled: true } }\n")
	sm := mtatest.StartSendmail(t, mtatest.SendmailOptions{MilterAddr: m.Spec})
	check := &stamp.Stamper{Keys: &batv.Signer{Keys: signer.Keys, Lifetime: 30 * 24 * time.Hour}}
	for _, c := range []struct {
		rcpt, data, note string // note: why it is not stamped; "" when it must be
	}{
		{"friend1@remote.test", "From: Alice <alice@example.org>\nTo: friend1@remote.test\nSubject: figures\n" +
			"Date: Tue, 01 Dec 2026 14:00:00 +0000\nMessage-ID: <sm-stamp-1@example.org>\n\nhello\n", ""},
		{"friend2@remote.test", "From: alice@example.org\nTo: friend2@remote.test\nSubject: bare\n\nhello\n", "no Message-ID: not stamped"},
		{"friend3@remote.test", "From: alice@example.org\nTo: friend3@remote.test\nSubject: no date\nMessage-ID: <sm-stamp-3@example.org>\n\nhello\n",
			"no Date: not stamped"},
	} {
		r := sm.SendSession(t, mtatest.Session{LocalIP: "127.0.0.1", Helo: "client.example.org", Messages: []mtatest.SMTPMessage{{
			From: "alice@example.org", To: []string{c.rcpt}, Data: []byte(c.data)}}})
		if !r.Messages[0].Accepted() {
			t.Fatalf("outbound to %s: %s", c.rcpt, r.Messages[0])
		}
		hdr := lastTo(t, sm.Sink, c.rcpt, 30*time.Second).Header()
		res, found := check.Check(hdr, stamp.DefaultHeader)
		if c.note == "" && (!found || res.Status != stamp.StatusOK) {
			t.Errorf("to %s: stamp %+v found %v:\n%s", c.rcpt, res, found, hdr)
		}
		if c.note != "" {
			if found {
				t.Errorf("to %s: stamped (%+v):\n%s", c.rcpt, res, hdr)
			}
			m.waitVerdict(t, "unstamped outbound to "+c.rcpt, func(v verdict) bool {
				return v.Stage == "eom" && strings.Contains(strings.Join(v.Notes, ";"), c.note)
			})
		}
	}
}
