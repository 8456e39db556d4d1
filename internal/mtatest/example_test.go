package mtatest_test

import (
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// A test attaches a real Postfix to its milter, sends from an untrusted
// client and looks at what arrived at the sink. (Not run: it needs a
// testing.T; copy the body into a test.)
func ExampleStartPostfix() {
	var t *testing.T // the test's own

	ln, spec := mtatest.ListenMilter(t, "unix")
	_ = ln // serve the milter under test on ln

	p := mtatest.StartPostfix(t, mtatest.PostfixOptions{MilterAddr: spec})
	res := p.SendSession(t, mtatest.Session{
		LocalIP: "127.0.0.2", // outside mynetworks
		Messages: []mtatest.SMTPMessage{{
			From: "<>",
			To:   []string{"user@example.org NOTIFY=NEVER"},
			Data: []byte("Subject: Undelivered Mail Returned to Sender\n\n...\n"),
		}},
	})
	if rc := res.Messages[0].Rcpts[0]; rc.Code != 550 {
		t.Errorf("RCPT got %s, want 550", rc)
	}
	held, _ := p.Held() // quarantined messages
	_ = held
	msgs := p.Sink.WaitMessages(t, 1, 10*time.Second)
	_ = msgs[0].Header()
}

// The same with Sendmail; its quarantine keeps the reason.
func ExampleStartSendmail() {
	var t *testing.T // the test's own

	_, spec := mtatest.ListenMilter(t, "tcp")
	s := mtatest.StartSendmail(t, mtatest.SendmailOptions{MilterAddr: spec})
	r := s.Send(t, mtatest.SMTPMessage{From: "a@example.net", To: []string{"b@example.org"}, Data: []byte("Subject: hi\n\nhi\n")})
	q, _ := s.Quarantined()
	for _, e := range q {
		t.Logf("%s quarantined: %s", e.QueueID, e.Reason)
	}
	_ = r.QueueID()
}
