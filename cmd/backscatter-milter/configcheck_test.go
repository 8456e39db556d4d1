package main

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigCheckSuggestsKeys: a mistyped key gets "did you mean", at the
// top level and nested; a word far from every key gets no guess.
func TestConfigCheckSuggestsKeys(t *testing.T) {
	cfg := writeConfig(t, "treshold: 5\ndnsbl: { timout: 1s }\nlog: { sylog: mail }\nzzzzzz: 1\n")
	code, out, _ := runCLI("config", "check", "--config", cfg)
	if code != exitUsage {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{
		"treshold: unknown key; did you mean thresholds?",
		"dnsbl.timout: unknown key; did you mean dnsbl.timeout?",
		"log.sylog: unknown key; did you mean log.syslog?",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "zzzzzz: unknown key; did you mean") {
		t.Errorf("a guess for a key like no other:\n%s", out)
	}
}

// TestConfigCheckNoCascades: one mistake, one error. A missing key file is
// not also "current_key is not among batv.keys"; an undecodable duration
// is not also "must be a positive duration". Every independent error is
// still listed at once.
func TestConfigCheckNoCascades(t *testing.T) {
	cfg := writeConfig(t, `
local_domains: [example.org]
mode: loud
dnsbl: { timeout: soon }
batv: { enabled: true, keys: [{ id: 0, file: /nonexistent/batv.key }] }
`)
	code, out, _ := runCLI("config", "check", "--config", cfg)
	if code != exitUsage {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "3 configuration errors") {
		t.Errorf("want exactly 3 errors (mode, dnsbl.timeout, batv.keys[0].file):\n%s", out)
	}
	for _, want := range []string{"mode:", "dnsbl.timeout:", "batv.keys[0].file:"} {
		if strings.Count(out, "\n  "+want) != 1 {
			t.Errorf("want %s once:\n%s", want, out)
		}
	}
	if strings.Contains(out, "current_key") {
		t.Errorf("cascading current_key error:\n%s", out)
	}
}

// TestConfigCheckFileErrors: a YAML error and a missing file are reported
// once, naming the file once, the YAML error with its line.
func TestConfigCheckFileErrors(t *testing.T) {
	cfg := writeConfig(t, "mode: observe\nlocal_domains: [example.org]\nlisten: unix: /x\n")
	code, out, _ := runCLI("config", "check", "--config", cfg)
	if code != exitUsage {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if strings.Count(out, cfg) != 1 || strings.Count(out, "YAML") != 1 || !strings.Contains(out, cfg+":3: not valid YAML") {
		t.Errorf("want %s:3: not valid YAML, once:\n%s", cfg, out)
	}
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	code, out, _ = runCLI("config", "check", "--config", missing)
	if code != exitUsage || strings.Count(out, missing) != 1 || !strings.Contains(out, "cannot read: no such file or directory") {
		t.Errorf("missing file: exit %d:\n%s", code, out)
	}
}

// TestConfigCheckAccess: check opens nothing as root that the service user
// could not; --as USER checks with that user's rights (the key file and
// sent-log directory here are root's alone).
func TestConfigCheckAccess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to check as another user")
	}
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skip("no user nobody")
	}
	bin := testBinary(t)
	os.Chmod(filepath.Dir(bin), 0o755)
	top := t.TempDir()
	os.Chmod(top, 0o755)
	os.Chmod(filepath.Dir(top), 0o755)
	dir := mustMkdir(t, top, "cfg", 0o755)
	private := mustMkdir(t, dir, "private", 0o700)
	key := filepath.Join(dir, "batv.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yaml")
	body := "local_domains: [example.org]\nlisten: unix:" + filepath.Join(dir, "m.sock") +
		"\nsent_log: { path: " + filepath.Join(private, "sent.db") + " }\nbatv: { enabled: true, keys: [{ id: 0, file: " + key + " }] }\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "config", "check", "--config", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": ok (") {
		t.Fatalf("as root: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "config", "check", "--as", "nobody", "--config", cfg).CombinedOutput()
	if err == nil {
		t.Fatalf("as nobody: accepted\n%s", out)
	}
	for _, want := range []string{"checking as nobody", "batv.keys[0].file:", "sent_log.path: cannot reach " + filepath.Join(private, "sent.db") + ": permission denied", "listen: cannot create files in " + dir} {
		if !strings.Contains(string(out), want) {
			t.Errorf("as nobody: want %q in:\n%s", want, out)
		}
	}
}

func mustMkdir(t *testing.T, parent, name string, mode os.FileMode) string {
	t.Helper()
	d := filepath.Join(parent, name)
	if err := os.Mkdir(d, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, mode); err != nil {
		t.Fatal(err)
	}
	return d
}
