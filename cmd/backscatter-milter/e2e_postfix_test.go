package main

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// TestPostfixEndToEnd drives a private Postfix attached to the real daemon
// over SMTP and checks what reaches the sink, the hold queue and the log.
func TestPostfixEndToEnd(t *testing.T) {
	mtatest.RequirePostfix(t)
	batvLine, signer := batvPolicy(t)
	m := startMilter(t, "mode: enforce\n"+testPolicy(t, "example.org", "other.example")+batvLine)
	pf := mtatest.StartPostfix(t, mtatest.PostfixOptions{MilterAddr: m.Spec, RelayDomains: []string{"example.org", "other.example"},
		Main: map[string]string{"recipient_delimiter": "+"}})
	outside := func(msgs ...mtatest.SMTPMessage) mtatest.SessionResult {
		return pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.2", Helo: "mx.remote.test", Messages: msgs})
	}

	t.Run("accepted mail arrives byte-identical and its verdict carries the queue id", func(t *testing.T) {
		body := "line one\n.dot line\n\xe9t\xe9 latin-1 bytes\n" + strings.Repeat(strings.Repeat("x", 78)+"\n", 40) + "\nend\n"
		r := outside(mtatest.SMTPMessage{From: "alice@pass.test", To: []string{"bob@example.org"},
			Data: plainMessage("alice@pass.test", "bob@example.org", "plain-1@pass.test", "", body)})
		if !r.Messages[0].Accepted() {
			t.Fatalf("not accepted: %s", r.Messages[0])
		}
		qid := r.Messages[0].QueueID()
		msgs := pf.Sink.WaitMessages(t, 1, 30*time.Second)
		if got := msgs[len(msgs)-1].Body(); !bytes.Equal(got, []byte(body)) {
			t.Errorf("body changed:\n%q\nwant\n%q", got, body)
		}
		v := m.waitVerdict(t, "accepted message", func(v verdict) bool { return v.QueueID == qid && v.Stage == "eom" })
		if v.Action != "accept" || v.ClientIP != "127.0.0.2" || v.Helo != "mx.remote.test" || v.Sender != "<alice@pass.test>" || v.Auth != "authenticated" {
			t.Errorf("verdict %s", v)
		}
	})

	tagged, err := signer.Sign("bob@example.org")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("forged tag rejected at RCPT, tagged recipient of the same transaction accepted", func(t *testing.T) {
		forged := forgeTag(tagged)
		r := outside(mtatest.SMTPMessage{From: "<>", To: []string{forged, tagged},
			Data: dsnFor("bob@example.org", "unknown-1@example.org", "spam.remote.test", "198.51.100.9")})
		mr := r.Messages[0]
		if mr.Rcpts[0].Code != 550 || !strings.Contains(mr.Rcpts[0].Text, "BATV") {
			t.Errorf("forged tag: %s, want 550 naming BATV", mr.Rcpts[0])
		}
		if mr.Rcpts[1].Class() != 2 || !mr.Accepted() {
			t.Errorf("tagged recipient: %s", mr)
		}
		rej := m.waitVerdict(t, "rcpt reject", func(v verdict) bool { return v.Stage == "rcpt" && v.Action == "reject" })
		if !rej.has("batv:bad") || len(rej.Rcpts) != 1 || rej.Rcpts[0] != forged {
			t.Errorf("rcpt verdict %s", rej)
		}
		final := m.waitVerdict(t, "final of same session", func(v verdict) bool { return v.Session == rej.Session && v.Stage == "eom" })
		if final.QueueID != mr.QueueID() || !final.has("batv:ok") {
			t.Errorf("final verdict %s (queue id want %s)", final, mr.QueueID())
		}
	})

	t.Run("forged bounce to a domain without BATV is quarantined on the hold queue", func(t *testing.T) {
		r := outside(mtatest.SMTPMessage{From: "<>", To: []string{"carol@other.example"},
			Data: dsnFor("carol@other.example", "unknown-2@other.example", "spam.remote.test", "198.51.100.9")})
		qid := r.Messages[0].QueueID()
		if !r.Messages[0].Accepted() || qid == "" {
			t.Fatalf("%s", r.Messages[0])
		}
		pf.WaitQueue(t, 20*time.Second, "message "+qid+" on hold", func(q []mtatest.QueueEntry) bool {
			for _, e := range q {
				if e.QueueID == qid && e.QueueName == "hold" {
					return true
				}
			}
			return false
		})
		v := m.waitVerdict(t, "quarantine", func(v verdict) bool { return v.QueueID == qid && v.Stage == "eom" })
		if v.Action != "quarantine" || !v.has("bounce:not-ours") {
			t.Errorf("verdict %s", v)
		}
	})

	t.Run("auto-reply to mail we never sent is tagged", func(t *testing.T) {
		n := len(pf.Sink.WaitMessages(t, 0, time.Second))
		r := outside(mtatest.SMTPMessage{From: "dave@remote.test", To: []string{"bob@example.org"},
			Data: plainMessage("dave@remote.test", "bob@example.org", "ar-1@remote.test",
				"Auto-Submitted: auto-replied\nIn-Reply-To: <never-sent@example.org>\n", "I am away.\n")})
		if !r.Messages[0].Accepted() {
			t.Fatalf("%s", r.Messages[0])
		}
		msgs := pf.Sink.WaitMessages(t, n+1, 30*time.Second)
		hdr := string(msgs[len(msgs)-1].Header())
		if !strings.Contains(hdr, "\nX-Backscatter: score=4 action=tag") || !strings.Contains(hdr, "autoreply:not-ours") {
			t.Errorf("tag header missing:\n%s", hdr)
		}
	})

	t.Run("outbound mail is BATV-signed and recorded; its bounce and auto-reply come back in", func(t *testing.T) {
		n := len(pf.Sink.WaitMessages(t, 0, time.Second))
		r := pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.1", Helo: "client.example.org", Messages: []mtatest.SMTPMessage{{
			From: "alice@example.org", To: []string{"friend@remote.test"},
			Data: plainMessage("alice@example.org", "friend@remote.test", "out-1@example.org", "", "hello\n")}}})
		if !r.Messages[0].Accepted() {
			t.Fatalf("%s", r.Messages[0])
		}
		msgs := pf.Sink.WaitMessages(t, n+1, 30*time.Second)
		signed := msgs[len(msgs)-1].Sender()
		if !strings.HasPrefix(signed, "alice+prvs=") || !strings.HasSuffix(signed, "@example.org") {
			t.Fatalf("envelope sender at the sink %q, want a BATV-signed alice", signed)
		}
		if res := signer.Verify(signed); res.Status.String() != "ok" {
			t.Fatalf("signature does not verify: %v", res.Status)
		}
		// The remote side bounces it, to the signed address.
		r = outside(mtatest.SMTPMessage{From: "<>", To: []string{signed},
			Data: dsnFor(signed, "out-1@example.org", "mx.example.org", "192.0.2.10")})
		if !r.Messages[0].Accepted() {
			t.Fatalf("real bounce refused: %s", r.Messages[0])
		}
		v := m.waitVerdict(t, "real bounce", func(v verdict) bool { return v.QueueID == r.Messages[0].QueueID() && v.Stage == "eom" })
		if v.Action != "accept" || !v.has("bounce:ours") || !v.has("batv:ok") {
			t.Errorf("real bounce verdict %s", v)
		}
		// And the friend's vacation program answers it.
		r = outside(mtatest.SMTPMessage{From: "friend@remote.test", To: []string{"alice@example.org"},
			Data: plainMessage("friend@remote.test", "alice@example.org", "ar-2@remote.test",
				"Auto-Submitted: auto-replied\nIn-Reply-To: <out-1@example.org>\n", "Away.\n")})
		v = m.waitVerdict(t, "auto-reply to our mail", func(v verdict) bool { return v.QueueID == r.Messages[0].QueueID() && v.Stage == "eom" })
		if v.Action != "accept" || !v.has("autoreply:ours") {
			t.Errorf("auto-reply verdict %s", v)
		}
	})

	t.Run("sender-verification callout is logged", func(t *testing.T) {
		outside(mtatest.SMTPMessage{From: "<>", To: []string{tagged}, NoData: true})
		m.waitVerdict(t, "callout", func(v verdict) bool { return v.Stage == "callout" && v.has("callout") })
	})

	t.Run("metrics count what happened", func(t *testing.T) {
		resp, err := http.Get("http://" + m.d.metrics.addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, want := range []string{
			`backscatter_milter_messages_total{action="quarantine",direction="inbound",mode="enforce",role="smtpd"} 1`,
			`backscatter_milter_rcpt_rejects_total 1`,
			`backscatter_milter_evidence_total{name="bounce:ours"} 1`,
		} {
			if !strings.Contains(string(b), want) {
				t.Errorf("metrics lack %q", want)
			}
		}
	})

	t.Run("milter down: Postfix tempfails", func(t *testing.T) {
		m.stop()
		r := outside(mtatest.SMTPMessage{From: "alice@pass.test", To: []string{"bob@example.org"},
			Data: plainMessage("alice@pass.test", "bob@example.org", "down-1@pass.test", "", "x\n")})
		mr := r.Messages[0]
		if !tempfailed(mr, "4.7.1") || mr.Accepted() {
			t.Errorf("with the milter down: %s, want 451 4.7.1", mr)
		}
	})
}
