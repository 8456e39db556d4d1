package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func warningsFor(t *testing.T, body string, now time.Time) Problems {
	t.Helper()
	c, err := Load(write(t, body), nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c.Warnings(now)
}

func hasWarning(ws Problems, key, text string) bool {
	for _, w := range ws {
		if w.Key == key && strings.Contains(w.Msg, text) {
			return true
		}
	}
	return false
}

// TestWarningsTrustBoundary: an inet listener lets any local user pose as
// the MTA; config check says so, louder for a non-loopback address; a unix
// socket and loopback metrics give no warning.
func TestWarningsTrustBoundary(t *testing.T) {
	now := time.Now()
	if ws := warningsFor(t, "sent_log: { backend: memory }\n", now); len(ws) != 0 {
		t.Errorf("embedded defaults warn: %v", ws)
	}
	ws := warningsFor(t, "listen: inet:127.0.0.1:8899\nsent_log: { backend: memory }\n", now)
	if !hasWarning(ws, "listen", "every local user can connect and pose as the MTA") || !hasWarning(ws, "listen", DefaultSocket) {
		t.Errorf("loopback inet: %v", ws)
	}
	if hasWarning(ws, "listen", "every host") {
		t.Errorf("loopback inet called reachable by other hosts: %v", ws)
	}
	ws = warningsFor(t, "listen: inet:0.0.0.0:8899\nmetrics: { listen: \"0.0.0.0:9899\" }\ninternal_bounce: { listen: \"inet:[::1]:8898\" }\nsent_log: { backend: memory }\n", now)
	if !hasWarning(ws, "listen", "every host that can reach 0.0.0.0:8899") {
		t.Errorf("wildcard inet: %v", ws)
	}
	if !hasWarning(ws, "internal_bounce.listen", "every local user") {
		t.Errorf("internal_bounce inet: %v", ws)
	}
	if !hasWarning(ws, "metrics.listen", "reachable beyond this host") {
		t.Errorf("metrics on 0.0.0.0: %v", ws)
	}
	for _, l := range []string{"127.0.0.1:9899", "[::1]:9899", "localhost:9899"} {
		if ws := warningsFor(t, "metrics: { listen: \""+l+"\" }\nsent_log: { backend: memory }\n", now); hasWarning(ws, "metrics.listen", "") {
			t.Errorf("metrics on %s: %v", l, ws)
		}
	}
}

func batvConfig(t *testing.T, keys map[int]time.Time, current int) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("local_domains: [example.org]\nsent_log: { backend: memory }\nbatv:\n  enabled: true\n  current_key: ")
	b.WriteString(string(rune('0' + current)))
	b.WriteString("\n  keys:\n")
	for id, mtime := range keys {
		p := filepath.Join(dir, "batv"+string(rune('0'+id))+".key")
		if err := os.WriteFile(p, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		b.WriteString("    - { id: " + string(rune('0'+id)) + ", file: " + p + " }\n")
	}
	return b.String()
}

// TestWarningsBATVWrap: a key whose first tags come round again (1000
// days minus the lifetime) is named, with rotation as the cure.
func TestWarningsBATVWrap(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	young := now.Add(-100 * day)
	old := now.Add(-980 * day) // 7d lifetime: replays from day 993
	ws := warningsFor(t, batvConfig(t, map[int]time.Time{0: young}, 0), now)
	if len(ws) != 0 {
		t.Errorf("young key: %v", ws)
	}
	ws = warningsFor(t, batvConfig(t, map[int]time.Time{0: old}, 0), now)
	if !hasWarning(ws, "batv.keys[0].file", "it is the only key") || !hasWarning(ws, "batv.keys[0].file", "in 13 days") {
		t.Errorf("old only key: %v", ws)
	}
	ws = warningsFor(t, batvConfig(t, map[int]time.Time{0: now.Add(-1200 * day)}, 0), now)
	if !hasWarning(ws, "batv.keys[0].file", "verify again now") {
		t.Errorf("wrapped key: %v", ws)
	}
	// Rotated long ago: the new key is current, the old one still listed.
	ws = warningsFor(t, batvConfig(t, map[int]time.Time{0: old, 1: young}, 1), now)
	if len(ws) != 1 || !strings.Contains(ws[0].Msg, "key 0 is 980 days old") || !strings.Contains(ws[0].Msg, "retired key: remove it") {
		t.Errorf("old retired key: %v", ws)
	}
}

// TestKeyFileFIFODoesNotHang: config check on a key path that names a FIFO
// answers at once with an error.
func TestKeyFileFIFODoesNotHang(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "batv.key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Load(write(t, "local_domains: [example.org]\nsent_log: { backend: memory }\nbatv: { enabled: true, keys: [{id: 0, file: "+fifo+"}] }\n"), nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("FIFO key file: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("config load blocks on a FIFO key file")
	}
}
