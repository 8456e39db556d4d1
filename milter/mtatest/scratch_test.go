package mtatest

import (
	"testing"
	"time"
)

func TestScratchPostfix(t *testing.T) {
	t.Setenv("X","1"); p := StartPostfix(t, PostfixOptions{})
	r := p.SendSession(t, Session{LocalIP: "127.0.0.2", Messages: []SMTPMessage{{From: "a@example.net", To: []string{"u@example.org"}, Data: []byte("Subject: hi\n\nbody\n.dot\n")}}})
	t.Logf("%+v", r)
	msgs := p.Sink.WaitMessages(t, 1, 10*time.Second)
	t.Logf("%+v %q", msgs[0], msgs[0].Data)
	t.Log(p.Log())
}
