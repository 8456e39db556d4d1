package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigCheckCommand(t *testing.T) {
	code, out, _ := runCLI("config", "check")
	if code != exitOK || !strings.Contains(out, "embedded defaults: ok") {
		t.Errorf("defaults: %d %q", code, out)
	}
	bad := writeConfig(t, "mode: loud\ninternal_bounce: { listen: 'unix:/run/ib.sock', action: reject }\ndnsbl: { zones: ['bl.example=127.0.0.2*x'] }\n")
	code, out, _ = runCLI("config", "check", "--config", bad)
	if code != exitUsage {
		t.Errorf("bad config: exit %d", code)
	}
	for _, key := range []string{"mode:", "internal_bounce.action:", "dnsbl.zones[0]:"} {
		if !strings.Contains(out, key) {
			t.Errorf("config check does not name %s:\n%s", key, out)
		}
	}
	code, out, _ = runCLI("config", "show", "--config", writeConfig(t, "sent_log: { backend: redis, redis: { password: s3cret } }\n"))
	if code != exitOK || strings.Contains(out, "s3cret") || !strings.Contains(out, "lifetime: 7d") {
		t.Errorf("config show: %d\n%s", code, out)
	}
}

func TestDNSBLCheckCommand(t *testing.T) {
	dns := dnstest.Start(t, `
2.0.0.127.bs.test. 60 IN A 127.0.0.2
2.0.0.127.bs.test. 60 IN TXT "backscatter source"
2.0.0.127.any.test. 60 IN A 127.0.0.4
`)
	cfg := writeConfig(t, "resolver: "+dns.Addr+"\ndnsbl: { zones: ['bs.test=127.0.0.2*6 senders=bounce', 'any.test=127.0.0.[2..5]*2 senders=any'] }\n")
	code, out, errs := runCLI("dnsbl", "check", "127.0.0.2", "--sender", "<>", "--config", cfg)
	if code != exitOK || !strings.Contains(out, "score 8 for <> from 127.0.0.2") || !strings.Contains(out, "backscatter source") {
		t.Errorf("null sender: %d\n%s%s", code, out, errs)
	}
	_, out, _ = runCLI("dnsbl", "check", "127.0.0.2", "--sender", "alice@remote.test", "--config", cfg)
	if !strings.Contains(out, "score 2 for <alice@remote.test>") {
		t.Errorf("normal sender: safe-mode zone must not count:\n%s", out)
	}
	if code, _, _ := runCLI("dnsbl", "check", "not-an-ip", "--config", cfg); code != exitUsage {
		t.Errorf("bad IP: exit %d", code)
	}
}

func TestBATVCommands(t *testing.T) {
	keyFile, _ := writeKey(t)
	cfg := writeConfig(t, "local_domains: [example.org]\nbatv: { enabled: true, keys: [{ id: 0, file: "+keyFile+" }] }\n")
	code, out, errs := runCLI("batv", "sign", "alice@example.org", "--config", cfg)
	signed := strings.TrimSpace(out)
	if code != exitOK || !strings.HasPrefix(signed, "alice+prvs=0") {
		t.Fatalf("sign: %d %q %q", code, out, errs)
	}
	if code, out, _ := runCLI("batv", "verify", signed, "--config", cfg); code != exitOK || !strings.Contains(out, "ok (original alice@example.org)") {
		t.Errorf("verify: %d %q", code, out)
	}
	if code, out, _ := runCLI("batv", "verify", "alice+prvs=0000000000@example.org", "--config", cfg); code != exitFail || !strings.Contains(out, "bad") {
		t.Errorf("verify forged: %d %q", code, out)
	}
	raw, _ := os.ReadFile(keyFile)
	if strings.Contains(out+errs, string(raw)) {
		t.Error("the key appeared in output")
	}
}

func TestVersionAndUsage(t *testing.T) {
	if code, out, _ := runCLI("version"); code != exitOK || !strings.HasPrefix(out, "backscatter-milter ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, _, errs := runCLI("frobnicate"); code != exitUsage || !strings.Contains(errs, "unknown command") {
		t.Errorf("unknown command: %d %q", code, errs)
	}
}

// TestServeSignals runs the real binary: SIGHUP with a broken config keeps
// the running one, SIGHUP with a good one applies it, and SIGTERM lets an
// open MTA session finish before the process exits 0.
func TestServeSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "backscatter-milter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "m.sock")
	cfgPath := filepath.Join(dir, "config.yaml")
	base := "listen: unix:" + sock + "\nsent_log: { backend: memory }\ndnsbl: { zones: [] }\nmetrics: { listen: '' }\nresolver: 127.0.0.1:9\n"
	if err := os.WriteFile(cfgPath, []byte(base+"mode: enforce\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitLine := func(substr string) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					err := cmd.Wait()
					t.Fatalf("process ended (%v) before logging %q", err, substr)
				}
				if strings.Contains(l, substr) {
					return
				}
			case <-timeout:
				t.Fatalf("no log line with %q", substr)
			}
		}
	}
	waitLine(`"msg":"started"`)

	os.WriteFile(cfgPath, []byte(base+"mode: sideways\n"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLine("reload refused: the running configuration stays")
	os.WriteFile(cfgPath, []byte(base+"mode: observe\n"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLine(`"msg":"configuration reloaded"`)

	// An MTA session is open when SIGTERM arrives: it still completes.
	c := gomilter.NewClient("unix", sock, gomilter.WithActions(gomilter.AllClientSupportedActionMasks))
	s, err := c.Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Conn("client.test", gomilter.FamilyInet, 25, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Helo("client.test"); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	waitLine("shutting down: draining sessions")
	if _, err := s.Mail("<alice@remote.test>", ""); err != nil {
		t.Fatalf("session in flight broken by SIGTERM: %v", err)
	}
	if _, err := s.Rcpt("<bob@example.org>", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DataStart(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HeaderEnd(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BodyChunk([]byte("hello\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, act, err := s.End(); err != nil || act.Type != gomilter.ActionAccept {
		t.Fatalf("end: %v %v", act, err)
	}
	s.Close()
	waitLine(`"msg":"stopped"`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("process did not exit after SIGTERM")
	}
}

// TestConfigCheckWarnsAboutTCP: config check passes a TCP listener but
// says loudly who can pose as the MTA through it; the defaults say nothing.
func TestConfigCheckWarnsAboutTCP(t *testing.T) {
	code, out, _ := runCLI("config", "check")
	if code != exitOK || strings.Contains(out, "WARNING") {
		t.Errorf("defaults: %d %q", code, out)
	}
	code, out, _ = runCLI("config", "check", "--config", writeConfig(t, "sent_log: { backend: memory }\n"), "--listen", "inet:127.0.0.1:8899")
	if code != exitOK || !strings.Contains(out, "WARNING listen: inet:127.0.0.1:8899 is TCP: every local user can connect and pose as the MTA") {
		t.Errorf("TCP listener: %d %q", code, out)
	}
}
