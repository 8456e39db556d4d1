package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// sentLogDamage are the ways a sent.db gets damaged under a running milter:
// both meta pages overwritten, every data page overwritten (branch pages
// among them), the file truncated.
var sentLogDamage = []struct {
	name   string
	damage func(t *testing.T, path string)
}{
	{"meta pages", func(t *testing.T, path string) { scribble(t, path, 0, 2*4096, 1) }},
	{"branch and leaf pages", func(t *testing.T, path string) {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		scribble(t, path, 2*4096, st.Size(), 2)
	}},
	{"truncation", func(t *testing.T, path string) {
		if err := os.Truncate(path, 3*4096); err != nil {
			t.Fatal(err)
		}
	}},
}

// scribble overwrites [from, to) of path with seeded random bytes.
func scribble(t *testing.T, path string, from, to int64, seed uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, to-from)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	if _, err := f.WriteAt(b, from); err != nil {
		t.Fatal(err)
	}
}

// TestSentLogDamageKeepsMailFlowing damages the embedded sent log of the
// running daemon in each way while real Postfix sends it mail, and checks
// that every message is still accepted and delivered, that the damaged
// file is moved aside and reported (error log line, metric), that the
// fresh log proves a later bounce ours, and that the daemon never stops.
func TestSentLogDamageKeepsMailFlowing(t *testing.T) {
	mtatest.RequirePostfix(t)
	batvLine, signer := batvPolicy(t)
	m := startMilter(t, "mode: enforce\n"+testPolicy(t)+batvLine)
	pf := mtatest.StartPostfix(t, mtatest.PostfixOptions{MilterAddr: m.Spec, RelayDomains: []string{"example.org", "remote.test"},
		Main: map[string]string{"recipient_delimiter": "+"}})
	dbPath := filepath.Join(m.Dir, "sent.db")
	delivered := 0
	for round, dmg := range sentLogDamage {
		t.Run(dmg.name, func(t *testing.T) {
			// Enough entries for branch pages; concurrent writes share
			// a commit.
			st := m.d.rt.Load().store
			var wg sync.WaitGroup
			for w := 0; w < 50; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < 3000; i += 50 {
						if err := st.Record(context.Background(), fmt.Sprintf("fill%d.%d.%s@example.org", round, i, strings.Repeat("x", 30)), time.Now()); err != nil {
							t.Error(err)
						}
					}
				}()
			}
			wg.Wait()
			before := m.d.sentHealth.Replacements()
			dmg.damage(t, dbPath)

			// Outbound (from the trusted 127.0.0.1: signed and recorded),
			// then ordinary inbound mail: all of it goes through.
			out := fmt.Sprintf("out-%d@example.org", round)
			r := pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.1", Messages: []mtatest.SMTPMessage{
				{From: "alice@example.org", To: []string{"dave@remote.test"}, Data: plainMessage("alice@example.org", "dave@remote.test", out, "", "hi\n")},
				{From: "alice@example.org", To: []string{"dave@remote.test"}, Data: plainMessage("alice@example.org", "dave@remote.test", out+".2", "", "hi\n")},
			}})
			in := pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.2", Helo: "mx.remote.test", Messages: []mtatest.SMTPMessage{
				{From: "carol@pass.test", To: []string{"bob@example.org"}, Data: plainMessage("carol@pass.test", "bob@example.org", fmt.Sprintf("in-%d@pass.test", round), "", "hi\n")},
			}})
			for _, mr := range append(r.Messages, in.Messages...) {
				if !mr.Accepted() {
					t.Errorf("not accepted after damage: %s", mr)
				}
			}
			delivered += 3
			pf.Sink.WaitMessages(t, delivered, 30*time.Second)
			if got := m.d.sentHealth.Replacements(); got <= before {
				t.Errorf("damage not replaced (replacements %d)", got)
			}
			moved, _ := filepath.Glob(dbPath + ".damaged-*")
			if len(moved) < round+1 {
				t.Errorf("damaged files %v", moved)
			}
			// The fresh log works: a bounce of the second message (sent
			// after the replacement) is ours.
			tagged, err := signer.Sign("alice@example.org")
			if err != nil {
				t.Fatal(err)
			}
			bounce := pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.2", Helo: "mx.remote.test", Messages: []mtatest.SMTPMessage{
				{From: "<>", To: []string{tagged}, Data: dsnFor(tagged, out+".2", "mx.remote.test", "198.51.100.1")},
			}})
			if !bounce.Messages[0].Accepted() {
				t.Errorf("real bounce after damage: %s", bounce.Messages[0])
			}
			qid := bounce.Messages[0].QueueID()
			fv := m.waitVerdict(t, "bounce verdict", func(v verdict) bool { return v.QueueID == qid && v.Stage == "eom" })
			if !fv.has("bounce:ours") {
				t.Errorf("bounce of mail sent after the replacement not proved ours: %s", fv)
			}
			delivered++
		})
	}
	select {
	case err := <-m.d.errs:
		t.Fatalf("the daemon stopped: %v", err)
	default:
	}
	raw, _ := os.ReadFile(m.LogFile)
	if n := bytes.Count(raw, []byte(`"sent log damaged: moved aside`)); n < len(sentLogDamage) {
		t.Errorf("%d error lines about the damaged sent log, want %d", n, len(sentLogDamage))
	}
	if !bytes.Contains(raw, []byte(`"level":"error"`)) {
		t.Error("no error-level line")
	}
}
