package main

import (
	"strings"
	"testing"

	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// TestDNSBLSafeModeThroughPostfix: a real rbldnsd lists 127.0.0.2 in a
// backscatter zone. In safe mode only <> and postmaster@ senders from that
// address are scored; with senders=any everyone is.
func TestDNSBLSafeModeThroughPostfix(t *testing.T) {
	mtatest.RequirePostfix(t)
	bl := startRbldnsd(t, "backscatter.test", ":127.0.0.2:Listed as a backscatter source\n127.0.0.2\n")
	for _, c := range []struct {
		scope        string
		normalScored bool
	}{{"bounce", false}, {"any", true}} {
		t.Run("senders="+c.scope, func(t *testing.T) {
			m := startMilter(t, `
local_domains: [example.org]
trusted_networks: [127.0.0.1/32]
resolver: `+bl+`
ndr_suppression: { enabled: false, strip_success_dsn: false }
dnsbl: { timeout: 2s, zones: ["backscatter.test=127.0.0.2*10 senders=`+c.scope+`"] }
`)
			pf := mtatest.StartPostfix(t, mtatest.PostfixOptions{MilterAddr: m.Spec})
			send := func(ip, from string) mtatest.MessageResult {
				r := pf.SendSession(t, mtatest.Session{LocalIP: ip, Helo: "mx.remote.test", Messages: []mtatest.SMTPMessage{{
					From: from, To: []string{"bob@example.org"},
					Data: plainMessage("x@remote.test", "bob@example.org", "m-"+ip+"-"+from+"@remote.test", "", "hi\n")}}})
				return r.Messages[0]
			}
			for _, from := range []string{"<>", "postmaster@remote.test", "MAILER-DAEMON@remote.test"} {
				mr := send("127.0.0.2", from)
				if mr.Rcpts[0].Code != 550 || !strings.Contains(mr.Rcpts[0].Text, "listed at backscatter.test") {
					t.Errorf("%s from listed 127.0.0.2: %s, want 550 naming the list", from, mr)
				}
			}
			if mr := send("127.0.0.3", "<>"); !mr.Accepted() {
				t.Errorf("<> from unlisted 127.0.0.3: %s", mr)
			}
			mr := send("127.0.0.2", "alice@remote.test")
			if scored := mr.Rcpts[0].Code == 550; scored != c.normalScored {
				t.Errorf("normal sender from listed address with senders=%s: %s (scored %v, want %v)", c.scope, mr, scored, c.normalScored)
			}
			v := m.waitVerdict(t, "dnsbl reject", func(v verdict) bool { return v.Stage == "rcpt" && v.has("dnsbl:backscatter.test") })
			if v.Sender != "<>" || v.ClientIP != "127.0.0.2" {
				t.Errorf("verdict %s", v)
			}
		})
	}
}
