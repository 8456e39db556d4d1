package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// sendmailNDRSetup starts a private Sendmail that relays everything to an
// accepting sink, except nowhere.example, which goes to a sink on
// 127.0.0.2 (same port: Sendmail's mailers share one) that rejects every
// recipient, so Sendmail itself has to write a DSN; then the milter with
// ndr_suppression.sendmail: case-variant checking that Sendmail's EHLO.
func sendmailNDRSetup(t *testing.T, extraMC ...string) (*testMilter, *mtatest.Sendmail) {
	t.Helper()
	mtatest.RequireSendmail(t)
	relay := mtatest.StartSink(t, mtatest.SinkOptions{})
	mtatest.StartSink(t, mtatest.SinkOptions{RejectRcpt: true, IP: "127.0.0.2", Port: relay.Port})
	dir := mtatest.ShortDir(t)
	os.Chmod(dir, 0o755)
	sock := "unix:" + filepath.Join(dir, "m.sock")
	// The rule copies the domain as written: a rule that wrote it out in
	// one spelling would merge the case variant back (no suppression).
	mc := append([]string{
		"LOCAL_CONFIG",
		"C{Nowhere}nowhere",
		"LOCAL_NET_CONFIG",
		"R$* < @ $={Nowhere} . $+ > $*\t$#esmtp $@ [127.0.0.2] $: $1 < @ $2 . $3 > $4",
	}, extraMC...)
	sm := mtatest.StartSendmail(t, mtatest.SendmailOptions{MilterAddr: sock, Relay: relay,
		RelayDomains: []string{"example.org", "nowhere.example"}, ExtraMC: mc})
	m := startMilter(t, "listen: "+sock+"\nmode: enforce\n"+testPolicy(t, "example.org")+
		"ndr_suppression: { sendmail: case-variant, sendmail_smtp: \""+sm.SMTPAddr+"\", sendmail_check_interval: 1m }\n")
	return m, sm
}

// sendForged sends, from an untrusted client, a message from forger@fail.test
// (SPF fails) to a destination that rejects it and to one that accepts it.
func sendForged(t *testing.T, sm *mtatest.Sendmail, id string) string {
	t.Helper()
	r := sm.SendSession(t, mtatest.Session{LocalIP: "127.0.0.2", Helo: "mx.fail.test", Messages: []mtatest.SMTPMessage{{
		From: "forger@fail.test", To: []string{"nobody@nowhere.example", "carol@example.org"},
		Data: plainMessage("forger@fail.test", "carol@example.org", id, "", "please bounce\n")}}})
	mr := r.Messages[0]
	if !mr.Accepted() || mr.QueueID() == "" {
		t.Fatalf("message not accepted: %s", mr)
	}
	return mr.QueueID()
}

// waitLogLine waits until the milter's log file has a line containing s.
func (m *testMilter) waitLogLine(t *testing.T, s string) {
	t.Helper()
	var raw []byte
	if !await.True(20*time.Second, func() bool { raw, _ = os.ReadFile(m.LogFile); return strings.Contains(string(raw), s) }) {
		t.Fatalf("milter log has no %q:\n%s", s, raw)
	}
}

// TestSendmailNDRCaseVariant: with DSN offered, a forged sender's message
// is delivered where it can be, refused by the failing destination, and
// Sendmail writes no DSN; with DSN switched off in Sendmail the milter
// leaves the recipients alone and the sender gets the normal DSN.
func TestSendmailNDRCaseVariant(t *testing.T) {
	t.Run("DSN offered: no DSN to the forged sender", func(t *testing.T) {
		m, sm := sendmailNDRSetup(t)
		m.waitLogLine(t, "Sendmail offers DSN")
		wantDSNMetrics(t, m, 1, 1)
		q := sendForged(t, sm, "smf-1@fail.test")
		v := m.waitVerdict(t, "forged", func(v verdict) bool { return v.Stage == "eom" && v.Sender == "<forger@fail.test>" })
		if v.Action != "accept" || v.NDR != "suppressed" || v.Auth != "forged" {
			t.Fatalf("verdict %s", v)
		}
		// The accepted copy arrives, addressed in the other case with NOTIFY=NEVER.
		got := lastTo(t, sm.Sink, "carol@EXAMPLE.ORG", 30*time.Second)
		if len(got.RcptArgs) != 1 || !strings.Contains(strings.ToUpper(got.RcptArgs[0]), "NOTIFY=NEVER") {
			t.Errorf("rcpt args %q", got.RcptArgs)
		}
		if !strings.Contains(string(got.Body()), "please bounce") || !strings.Contains(string(got.Header()), "Message-ID: <smf-1@fail.test>") {
			t.Errorf("message changed:\n%s", got.Data)
		}
		// The failing destination refused it, and no DSN was written.
		sm.WaitLog(t, q+": to=<nobody@NOWHERE.EXAMPLE>", 30*time.Second)
		waitSendmailQueueEmpty(t, sm)
		log := sm.Log()
		if !strings.Contains(log, "User unknown") {
			t.Fatalf("the failing destination did not refuse the message:\n%s", log)
		}
		if regexp.MustCompile(q + `: \w+: DSN:`).MatchString(log) {
			t.Errorf("Sendmail wrote a DSN:\n%s", log)
		}
		if b := bounceTo(t, sm.Sink, "forger@fail.test"); len(b) != 0 {
			t.Errorf("a DSN reached the forged sender: %s", b[0].Data)
		}
	})

	t.Run("DSN off in Sendmail: recipients left alone, the sender gets the DSN", func(t *testing.T) {
		m, sm := sendmailNDRSetup(t, "define(`confPRIVACY_FLAGS', `authwarnings,noexpn,novrfy,noreceipts')dnl")
		m.waitLogLine(t, "Sendmail's DSN offer is not proven")
		wantDSNMetrics(t, m, 0, 0)
		q := sendForged(t, sm, "smf-2@fail.test")
		v := m.waitVerdict(t, "forged", func(v verdict) bool { return v.Stage == "eom" && v.Sender == "<forger@fail.test>" })
		if v.Action != "accept" || v.NDR != "sendmail-dsn-unproven" {
			t.Fatalf("verdict %s", v)
		}
		got := lastTo(t, sm.Sink, "carol@example.org", 30*time.Second)
		if !strings.Contains(string(got.Body()), "please bounce") {
			t.Errorf("message changed:\n%s", got.Data)
		}
		if !await.True(60*time.Second, func() bool { return len(bounceTo(t, sm.Sink, "forger@fail.test")) > 0 }) {
			t.Fatalf("no DSN for %s reached the sender; sendmail log:\n%s", q, sm.Log())
		}
	})
}

// waitSendmailQueueEmpty waits until Sendmail's queue holds nothing.
func waitSendmailQueueEmpty(t *testing.T, sm *mtatest.Sendmail) {
	t.Helper()
	var q []mtatest.SendmailQueueEntry
	var err error
	if !await.True(30*time.Second, func() bool { q, err = sm.Queue(); return err == nil && len(q) == 0 }) {
		t.Fatalf("Sendmail queue not empty: %+v (%v)", q, err)
	}
}

// wantDSNMetrics checks the self-check's gauge and switch counter.
func wantDSNMetrics(t *testing.T, m *testMilter, offered, switches float64) {
	t.Helper()
	fams := scrape(t, "http://"+m.d.metrics.addr+"/metrics")
	o, sw := fams["backscatter_milter_sendmail_dsn_offered"], fams["backscatter_milter_sendmail_dsn_switches_total"]
	if o == nil || sw == nil || o.values[""] != offered || sw.values[""] != switches {
		t.Errorf("metrics: offered %v, switches %v; want %v, %v", o, sw, offered, switches)
	}
}
