package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// TestOfflineTestMatchesPostfix: `backscatter-milter test` gives each sample
// message the verdict the milter gives it through a real Postfix.
func TestOfflineTestMatchesPostfix(t *testing.T) {
	mtatest.RequirePostfix(t)
	policyYAML := testPolicy(t) + "relays: []\n" // the same policy online and offline
	m := startMilter(t, policyYAML)
	pf := mtatest.StartPostfix(t, mtatest.PostfixOptions{MilterAddr: m.Spec})
	offlineCfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(offlineCfg, []byte(policyYAML+"sent_log: { backend: memory }\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// alice@example.org really sent the lunch message: it goes out through
	// Postfix (and is recorded); offline, --sent-id records it.
	const lunch = "20260303.lunch.1@example.org"
	r := pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.1", Messages: []mtatest.SMTPMessage{{
		From: "alice@example.org", To: []string{"carol@example.com"}, Data: plainMessage("alice@example.org", "carol@example.com", lunch, "", "lunch?\n")}}})
	if !r.Messages[0].Accepted() {
		t.Fatalf("outbound: %s", r.Messages[0])
	}
	m.waitVerdict(t, "outbound recorded", func(v verdict) bool { return v.Direction == "outbound" && v.Sender == "<alice@example.org>" })

	for _, c := range []struct{ file, from, rcpt string }{
		{"forged-bounce.eml", "<>", "alice@example.org"},
		{"real-bounce.eml", "<>", "alice@example.org"},
		{"ordinary.eml", "bob@example.net", "alice@example.org"},
		{"autoreply.eml", "ivan@example.net", "judy@example.org"},
	} {
		t.Run(c.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(emlDir, c.file))
			if err != nil {
				t.Fatal(err)
			}
			r := pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.2", Helo: "mx.remote.test", Messages: []mtatest.SMTPMessage{{
				From: c.from, To: []string{c.rcpt}, Data: data}}})
			qid := r.Messages[0].QueueID()
			if qid == "" {
				t.Fatalf("not queued: %s", r.Messages[0])
			}
			online := m.waitVerdict(t, c.file, func(v verdict) bool { return v.QueueID == qid && v.Stage == "eom" })
			_, offline, errs := runTestCmd(t, filepath.Join(emlDir, c.file), "--config", offlineCfg, "--sent-id", lunch,
				"--client-ip", "127.0.0.2", "--helo", "mx.remote.test", "--mail-from", c.from, "--rcpt", c.rcpt)
			if offline.Verdict == nil {
				t.Fatalf("offline test gave no verdict: %s", errs)
			}
			if offline.Action != online.Action || offline.Verdict.Score != online.Score {
				t.Errorf("offline %s score %d, through Postfix %s score %d (%s)", offline.Action, offline.Verdict.Score, online.Action, online.Score, online)
			}
			var names []string
			for _, e := range online.Evidence {
				names = append(names, e.Name)
			}
			if got := evidenceNames(offline.Verdict); !slices.Equal(got, names) {
				t.Errorf("offline evidence %v, through Postfix %v", got, names)
			}
		})
	}
}
