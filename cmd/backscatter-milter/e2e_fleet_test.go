package main

import (
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// TestFleetSharedSentLog runs two milter processes in front of two private
// Postfix instances that share one Redis sent log and one BATV key: the
// outbound relay (A) records what it sends, the inbound MX (B), which never
// saw the original, proves the bounce ours from the shared log.
func TestFleetSharedSentLog(t *testing.T) {
	mtatest.RequirePostfix(t)
	redis := mtatest.StartRedis(t)
	keyFile, signer := writeKey(t)
	shared := "mode: enforce\n" + testPolicy(t, "example.org", "other.example") +
		"batv: { enabled: true, keys: [{ id: 0, file: " + keyFile + " }], domains: [example.org] }\n" +
		"sent_log: { backend: redis, redis: { addrs: [\"" + redis.Addr + "\"], prefix: \"fleet:\" } }\n"
	relayMilter := startMilter(t, shared)
	mxMilter := startMilter(t, shared)
	domains := []string{"example.org", "other.example", "remote.test"}
	relay := mtatest.StartPostfix(t, mtatest.PostfixOptions{MilterAddr: relayMilter.Spec, RelayDomains: domains,
		Hostname: "out.example.org", Main: map[string]string{"recipient_delimiter": "+"}})
	mx := mtatest.StartPostfix(t, mtatest.PostfixOptions{MilterAddr: mxMilter.Spec, RelayDomains: domains,
		Hostname: "mx.example.org", Main: map[string]string{"recipient_delimiter": "+"}})

	// Outbound through A: our users' mail, one signed (example.org), one
	// unsigned (other.example has no BATV), both recorded in Redis.
	send := func(from, to, id string) string {
		t.Helper()
		n := len(relay.Sink.WaitMessages(t, 0, time.Second))
		r := relay.SendSession(t, mtatest.Session{LocalIP: "127.0.0.1", Helo: "client.example.org", Messages: []mtatest.SMTPMessage{{
			From: from, To: []string{to}, Data: plainMessage(from, to, id, "", "hello\n")}}})
		if !r.Messages[0].Accepted() {
			t.Fatalf("outbound %s: %s", id, r.Messages[0])
		}
		msgs := relay.Sink.WaitMessages(t, n+1, 30*time.Second)
		relayMilter.waitVerdict(t, "outbound "+id, func(v verdict) bool {
			return v.QueueID == r.Messages[0].QueueID() && strings.Contains(strings.Join(v.Notes, ";"), "recorded message-id")
		})
		return msgs[len(msgs)-1].Sender()
	}
	signed := send("alice@example.org", "friend@remote.test", "fleet-1@example.org")
	if res := signer.Verify(signed); res.Status.String() != "ok" {
		t.Fatalf("sender at the sink %q does not verify: %v", signed, res.Status)
	}
	unsigned := send("carol@other.example", "friend@remote.test", "fleet-2@other.example")
	if unsigned != "carol@other.example" {
		t.Fatalf("other.example sender changed to %q", unsigned)
	}

	// Inbound through B, from an outside client.
	inbound := func(to string, data []byte) (string, verdict) {
		t.Helper()
		r := mx.SendSession(t, mtatest.Session{LocalIP: "127.0.0.2", Helo: "mx.remote.test",
			Messages: []mtatest.SMTPMessage{{From: "<>", To: []string{to}, Data: data}}})
		if !r.Messages[0].Accepted() {
			t.Fatalf("bounce to %s refused: %s", to, r.Messages[0])
		}
		qid := r.Messages[0].QueueID()
		return qid, mxMilter.waitVerdict(t, "bounce to "+to, func(v verdict) bool { return v.QueueID == qid && v.Stage == "eom" })
	}
	t.Run("DSN of mail sent through the other MTA is ours (BATV tag and shared log)", func(t *testing.T) {
		_, v := inbound(signed, dsnFor(signed, "fleet-1@example.org", "mx.remote.test", "198.51.100.20"))
		if v.Action != "accept" || !v.has("bounce:ours") || !v.has("batv:ok") {
			t.Errorf("verdict %s", v)
		}
	})
	t.Run("DSN of unsigned mail is proved ours by the shared log alone", func(t *testing.T) {
		_, v := inbound("carol@other.example", dsnFor("carol@other.example", "fleet-2@other.example", "mx.remote.test", "198.51.100.20"))
		if v.Action != "accept" || !v.has("bounce:ours") {
			t.Errorf("verdict %s", v)
		}
	})
	t.Run("a forged DSN is still held", func(t *testing.T) {
		qid, v := inbound("dave@other.example", dsnFor("dave@other.example", "never-sent@other.example", "spam.remote.test", "198.51.100.9"))
		if v.Action != "quarantine" || !v.has("bounce:not-ours") {
			t.Errorf("verdict %s", v)
		}
		mx.WaitQueue(t, 20*time.Second, "forged DSN "+qid+" on hold", func(q []mtatest.QueueEntry) bool {
			for _, e := range q {
				if e.QueueID == qid && e.QueueName == "hold" {
					return true
				}
			}
			return false
		})
	})
}
