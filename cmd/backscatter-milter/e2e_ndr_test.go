package main

import (
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// ndrSetup starts Postfix with reject.example.net routed to a sink that
// rejects every recipient, so Postfix itself has to write a bounce.
func ndrSetup(t *testing.T, m *testMilter, internal bool) *mtatest.Postfix {
	rejecting := mtatest.StartSink(t, mtatest.SinkOptions{RejectRcpt: true})
	o := mtatest.PostfixOptions{MilterAddr: m.Spec, RelayDomains: []string{"example.org", "reject.example.net"},
		Transports: map[string]string{"reject.example.net": "smtp:" + rejecting.Addr}}
	if internal {
		o.NonSMTPDMilterAddr = m.ISpec
	}
	return mtatest.StartPostfix(t, o)
}

func sendFrom(t *testing.T, pf *mtatest.Postfix, from, to, id string) string {
	t.Helper()
	r := pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.2", Helo: "mx.remote.test", Messages: []mtatest.SMTPMessage{{
		From: from, To: []string{to}, Data: plainMessage(from, to, id, "", "please bounce\n")}}})
	mr := r.Messages[0]
	if !mr.Accepted() || mr.QueueID() == "" {
		t.Fatalf("message from %s not accepted: %s", from, mr)
	}
	return mr.QueueID()
}

// bounceTo returns the sink messages that are bounces to rcpt.
func bounceTo(t *testing.T, s *mtatest.Sink, rcpt string) []mtatest.SinkMessage {
	msgs, err := s.Messages()
	if err != nil {
		t.Fatal(err)
	}
	var out []mtatest.SinkMessage
	for _, m := range msgs {
		if m.Sender() == "" && len(m.Recipients()) > 0 && m.Recipients()[0] == rcpt {
			out = append(out, m)
		}
	}
	return out
}

// waitBounceTo waits until a bounce to rcpt reaches the relay sink.
func waitBounceTo(t *testing.T, pf *mtatest.Postfix, rcpt, what string) {
	t.Helper()
	if !await.True(30*time.Second, func() bool { return len(bounceTo(t, pf.Sink, rcpt)) > 0 }) {
		t.Fatalf("%s; postfix log:\n%s", what, pf.Log())
	}
}

// TestNoNDRToForgedSender: the milter rewrites the recipients of mail from
// an unauthenticated sender with NOTIFY=NEVER, so when the next hop rejects
// it Postfix writes no bounce; an SPF-authenticated sender still gets one.
func TestNoNDRToForgedSender(t *testing.T) {
	mtatest.RequirePostfix(t)
	m := startMilter(t, testPolicy(t))
	pf := ndrSetup(t, m, false)

	forgedQ := sendFrom(t, pf, "victim@fail.test", "nobody@reject.example.net", "f-1@fail.test")
	realQ := sendFrom(t, pf, "sender@pass.test", "nobody@reject.example.net", "p-1@pass.test")

	// The real sender's bounce reaches it (through the relay sink)...
	waitBounceTo(t, pf, "sender@pass.test", "no bounce for the authenticated sender")
	// ...and the forged one was rejected by the next hop with no bounce.
	pf.WaitLog(t, forgedQ+": to=<nobody@reject.example.net>", 30*time.Second)
	pf.WaitQueueEmpty(t, 30*time.Second)
	log := pf.Log()
	if !strings.Contains(log, forgedQ+": to=<nobody@reject.example.net>") || !strings.Contains(log, "status=bounced") {
		t.Fatalf("the forged message was not rejected by the next hop:\n%s", log)
	}
	if strings.Contains(log, forgedQ+": sender non-delivery notification") {
		t.Errorf("Postfix wrote an NDR for the forged sender:\n%s", log)
	}
	if !strings.Contains(log, realQ+": sender non-delivery notification") {
		t.Errorf("no NDR logged for the authenticated sender:\n%s", log)
	}
	if n := len(bounceTo(t, pf.Sink, "victim@fail.test")); n != 0 {
		t.Errorf("%d bounces reached the forged sender", n)
	}
	v := m.waitVerdict(t, "forged sender", func(v verdict) bool { return v.QueueID == forgedQ && v.Stage == "eom" })
	if v.NDR != "suppressed" || v.Auth != "forged" {
		t.Errorf("verdict %s", v)
	}
	v = m.waitVerdict(t, "real sender", func(v verdict) bool { return v.QueueID == realQ && v.Stage == "eom" })
	if v.NDR != "" || v.Auth != "authenticated" {
		t.Errorf("verdict %s", v)
	}
}

// TestInternalBounceRole: with the first line (NDR suppression) off, the
// milter on non_smtpd_milters sees Postfix's own bounces: the one to a
// forged sender is held, the legitimate one goes out.
func TestInternalBounceRole(t *testing.T) {
	mtatest.RequirePostfix(t)
	m := startMilter(t, testPolicy(t)+`
ndr_suppression: { enabled: false, strip_success_dsn: false }
internal_bounce: { listen: ILISTEN, action: quarantine }
`)
	pf := ndrSetup(t, m, true)
	sendFrom(t, pf, "victim@fail.test", "nobody@reject.example.net", "f-2@fail.test")
	sendFrom(t, pf, "sender@pass.test", "nobody@reject.example.net", "p-2@pass.test")

	waitBounceTo(t, pf, "sender@pass.test", "the legitimate NDR did not go out")
	held := pf.WaitQueue(t, 30*time.Second, "NDR to the forged sender on hold", func(q []mtatest.QueueEntry) bool {
		for _, e := range q {
			if e.QueueName == "hold" {
				return true
			}
		}
		return false
	})
	for _, e := range held {
		if e.QueueName == "hold" && (e.Sender != "" && e.Sender != "MAILER-DAEMON" || len(e.Recipients) != 1 || e.Recipients[0].Address != "victim@fail.test") {
			t.Errorf("held entry %+v, want the NDR <> → victim@fail.test", e)
		}
	}
	if n := len(bounceTo(t, pf.Sink, "victim@fail.test")); n != 0 {
		t.Errorf("%d bounces reached the forged sender", n)
	}
	v := m.waitVerdict(t, "internal bounce", func(v verdict) bool { return v.Stage == "internal-bounce" && v.Action == "quarantine" })
	if !v.has("ndr:forged-sender") {
		t.Errorf("verdict %s", v)
	}
	m.waitVerdict(t, "legitimate internal bounce", func(v verdict) bool {
		return v.Stage == "internal-bounce" && v.Action == "accept" && v.has("ndr:authenticated-sender")
	})
	// The metrics tell the two NDRs apart by the original's return path
	// (the self-watch alert) and count the hold under the internal-bounce
	// role, not as an inbound quarantine.
	fams := scrape(t, "http://"+m.d.metrics.addr+"/metrics")
	gen := fams["backscatter_milter_ndr_generated_total"]
	msgs := fams["backscatter_milter_messages_total"]
	switch {
	case gen == nil || msgs == nil:
		t.Fatal("ndr_generated_total or messages_total missing")
	case gen.values["auth=forged"]+gen.values["auth=unauthenticated"] != 1 || gen.values["auth=authenticated"] != 1:
		t.Errorf("ndr_generated_total %v, want one authenticated and one forged", gen.values)
	case msgs.values["action=quarantine,direction=inbound,mode=enforce,role=internal-bounce"]+
		msgs.values["action=quarantine,direction=outbound,mode=enforce,role=internal-bounce"] != 1 ||
		msgs.values["action=quarantine,direction=inbound,mode=enforce,role=smtpd"] != 0:
		t.Errorf("messages_total %v: the hold must count under role=internal-bounce", msgs.values)
	}
}
