package main

import (
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// TestSenderChangeParamsThroughPostfix checks, at the next hop, the MAIL
// FROM parameters Postfix sends after the milter's sender change: a forged
// sender's RET=FULL becomes RET=HDRS (a change without RET would leave
// Postfix's copy of RET=FULL in place), ENVID survives, and neither the
// stripping nor the outbound BATV signing hands SIZE or BODY back to
// Postfix, which would log "Ignoring bad ESMTP parameter".
func TestSenderChangeParamsThroughPostfix(t *testing.T) {
	mtatest.RequirePostfix(t)
	batvLine, _ := batvPolicy(t)
	m := startMilter(t, "mode: enforce\n"+testPolicy(t)+batvLine)
	pf := mtatest.StartPostfix(t, mtatest.PostfixOptions{MilterAddr: m.Spec, RelayDomains: []string{"example.org", "remote.test"}})

	forged := pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.2", Helo: "mx.remote.test", Messages: []mtatest.SMTPMessage{{
		From: "victim@fail.test RET=FULL ENVID=env-forged-1 BODY=8BITMIME SIZE=900", To: []string{"dora@example.org NOTIFY=SUCCESS,FAILURE"},
		Data: plainMessage("victim@fail.test", "dora@example.org", "ret-1@fail.test", "", strings.Repeat("body line\n", 20))}}})
	if mr := forged.Messages[0]; !mr.Accepted() {
		t.Fatalf("forged sender's message: %s", mr)
	}
	outbound := pf.SendSession(t, mtatest.Session{Helo: "client.example.org", Messages: []mtatest.SMTPMessage{{
		From: "alice@example.org RET=FULL BODY=8BITMIME SIZE=111", To: []string{"ivan@remote.test"},
		Data: plainMessage("alice@example.org", "ivan@remote.test", "out-ret-1@example.org", "", "hello\n")}}})
	if mr := outbound.Messages[0]; !mr.Accepted() {
		t.Fatalf("outbound message: %s", mr)
	}

	params := func(mailArgs string) map[string]string {
		out := map[string]string{}
		for _, p := range strings.Fields(mailArgs)[1:] {
			k, v, _ := strings.Cut(p, "=")
			out[strings.ToUpper(k)] = v
		}
		return out
	}
	got := lastTo(t, pf.Sink, "dora@example.org", 30*time.Second)
	p := params(got.MailArgs)
	if p["RET"] != "HDRS" || p["ENVID"] != "env-forged-1" {
		t.Errorf("next hop got MAIL %q, want RET=HDRS and ENVID=env-forged-1", got.MailArgs)
	}
	for _, a := range got.RcptArgs {
		if strings.Contains(strings.ToUpper(a), "SUCCESS") {
			t.Errorf("next hop got RCPT %q: NOTIFY=SUCCESS not stripped", a)
		}
	}
	v := m.waitVerdict(t, "forged sender", func(v verdict) bool { return v.Stage == "eom" && v.Sender == "<victim@fail.test>" })
	if v.NDR != "suppressed" {
		t.Errorf("verdict %s", v)
	}

	out := lastTo(t, pf.Sink, "ivan@remote.test", 30*time.Second)
	if p := params(out.MailArgs); !strings.Contains(out.Sender(), "prvs=") || p["RET"] != "FULL" {
		t.Errorf("outbound next hop got MAIL %q, want a signed sender keeping the user's RET=FULL", out.MailArgs)
	}
	if log := pf.Log(); strings.Contains(log, "SMFI_CHGFROM") {
		t.Errorf("Postfix complained about a sender change:\n%s", log)
	}
}
