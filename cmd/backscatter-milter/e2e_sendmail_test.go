package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// lastTo returns the newest sink message to rcpt.
func lastTo(t *testing.T, s *mtatest.Sink, rcpt string, timeout time.Duration) mtatest.SinkMessage {
	t.Helper()
	var found mtatest.SinkMessage
	if !await.True(timeout, func() bool {
		msgs, err := s.Messages()
		if err != nil {
			t.Fatal(err)
		}
		for i := len(msgs) - 1; i >= 0; i-- {
			for _, r := range msgs[i].Recipients() {
				if r == rcpt {
					found = msgs[i]
					return true
				}
			}
		}
		return false
	}) {
		t.Fatalf("no message to %s reached the sink", rcpt)
	}
	return found
}

// TestSendmailEndToEnd drives a private Sendmail attached to the real daemon.
func TestSendmailEndToEnd(t *testing.T) {
	mtatest.RequireSendmail(t)
	batvLine, signer := batvPolicy(t)
	m := startMilter(t, "mode: enforce\n"+testPolicy(t, "example.org", "other.example")+batvLine)
	sm := mtatest.StartSendmail(t, mtatest.SendmailOptions{MilterAddr: m.Spec, RelayDomains: []string{"example.org", "other.example"}})
	outside := func(msgs ...mtatest.SMTPMessage) mtatest.SessionResult {
		return sm.SendSession(t, mtatest.Session{LocalIP: "127.0.0.2", Helo: "mx.remote.test", Messages: msgs})
	}
	tagged, err := signer.Sign("bob@example.org")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("accepted mail arrives byte-identical; the verdict carries Sendmail's queue id", func(t *testing.T) {
		body := "line one\n.dot line\n\xe9t\xe9\n" + strings.Repeat(strings.Repeat("y", 70)+"\n", 50) + "end\n"
		r := outside(mtatest.SMTPMessage{From: "alice@pass.test", To: []string{"dora@example.org"},
			Data: plainMessage("alice@pass.test", "dora@example.org", "sm-plain-1@pass.test", "", body)})
		if !r.Messages[0].Accepted() {
			t.Fatalf("%s", r.Messages[0])
		}
		got := lastTo(t, sm.Sink, "dora@example.org", 30*time.Second)
		if !bytes.Equal(got.Body(), []byte(body)) {
			t.Errorf("body changed:\n%q", got.Body())
		}
		qid := r.Messages[0].QueueID()
		v := m.waitVerdict(t, "accepted", func(v verdict) bool { return v.Stage == "eom" && v.Sender == "<alice@pass.test>" })
		if qid == "" || v.QueueID != qid || v.Action != "accept" || v.ClientIP != "127.0.0.2" {
			t.Errorf("verdict %s, SMTP queue id %q", v, qid)
		}
	})

	t.Run("forged tag rejected at RCPT, tagged recipient accepted", func(t *testing.T) {
		r := outside(mtatest.SMTPMessage{From: "<>", To: []string{forgeTag(tagged), tagged},
			Data: dsnFor("bob@example.org", "unknown-1@example.org", "spam.remote.test", "198.51.100.9")})
		mr := r.Messages[0]
		if mr.Rcpts[0].Code != 550 || !strings.Contains(mr.Rcpts[0].Text, "BATV") {
			t.Errorf("forged tag: %s", mr.Rcpts[0])
		}
		if mr.Rcpts[1].Class() != 2 || !mr.Accepted() {
			t.Errorf("tagged recipient: %s", mr)
		}
	})

	t.Run("quarantine lands in Sendmail's quarantine with our reason; the next message on the connection is clean", func(t *testing.T) {
		r := outside(
			mtatest.SMTPMessage{From: "<>", To: []string{"carol@other.example"},
				Data: dsnFor("carol@other.example", "unknown-2@other.example", "spam.remote.test", "198.51.100.9")},
			mtatest.SMTPMessage{From: "erin@pass.test", To: []string{"frank@example.org"},
				Data: plainMessage("erin@pass.test", "frank@example.org", "sm-plain-2@pass.test", "", "second message\n")})
		if len(r.Messages) != 2 || !r.Messages[0].Accepted() || !r.Messages[1].Accepted() {
			t.Fatalf("%+v", r.Messages)
		}
		var q []mtatest.SendmailQueueEntry
		if !await.True(20*time.Second, func() bool {
			var err error
			if q, err = sm.Quarantined(); err != nil {
				t.Fatal(err)
			}
			return len(q) == 1 && strings.Contains(q[0].Reason, "bounce:not-ours")
		}) {
			t.Fatalf("quarantine: %+v", q)
		}
		second := m.waitVerdict(t, "second message", func(v verdict) bool { return v.Stage == "eom" && v.Sender == "<erin@pass.test>" })
		if second.Action != "accept" || len(second.Evidence) != 0 || len(second.Rcpts) != 1 {
			t.Errorf("state leaked into the second message: %s", second)
		}
		got := lastTo(t, sm.Sink, "frank@example.org", 30*time.Second)
		if strings.Contains(string(got.Header()), "X-Backscatter") {
			t.Errorf("second message tagged:\n%s", got.Header())
		}
	})

	t.Run("auto-reply to mail we never sent is tagged", func(t *testing.T) {
		outside(mtatest.SMTPMessage{From: "dave@remote.test", To: []string{"gina@example.org"},
			Data: plainMessage("dave@remote.test", "gina@example.org", "sm-ar-1@remote.test",
				"Auto-Submitted: auto-replied\nIn-Reply-To: <never-sent@example.org>\n", "Away.\n")})
		got := lastTo(t, sm.Sink, "gina@example.org", 30*time.Second)
		if !strings.Contains(string(got.Header()), "\nX-Backscatter: score=4 action=tag") {
			t.Errorf("no tag header:\n%s", got.Header())
		}
		// The sender is not authenticated (SPF ?all), but Sendmail keeps a
		// re-added recipient's old DSN parameters: the milter does not
		// pretend, and the verdict says why no suppression happened.
		v := m.waitVerdict(t, "auto-reply", func(v verdict) bool { return v.Stage == "eom" && v.Sender == "<dave@remote.test>" })
		if v.NDR != "not-possible-with-sendmail" || v.Auth != "unauthenticated" {
			t.Errorf("verdict %s", v)
		}
		for _, a := range got.RcptArgs {
			if strings.Contains(strings.ToUpper(a), "NOTIFY=NEVER") {
				t.Errorf("Sendmail now honours NOTIFY on re-added recipients (%q): enable the rewrite for it", a)
			}
		}
	})

	t.Run("milter down: Sendmail tempfails", func(t *testing.T) {
		m.stop()
		r := outside(mtatest.SMTPMessage{From: "alice@pass.test", To: []string{"bob@example.org"},
			Data: plainMessage("alice@pass.test", "bob@example.org", "sm-down-1@pass.test", "", "x\n")})
		mr := r.Messages[0]
		if !tempfailed(mr, "4.3.2") || mr.Accepted() {
			t.Errorf("with the milter down: %s, want 451 4.3.2", mr)
		}
	})
}
