package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// TestStartupErrorOnStderrOnce: with log.file set, a daemon that cannot
// start says why on stderr (what systemctl status shows) and in the log
// file, once each, naming the bad path once.
func TestStartupErrorOnStderrOnce(t *testing.T) {
	dir := t.TempDir()
	// A directory where the sent log's file should be: the store cannot
	// be opened, even by root.
	sentPath := filepath.Join(dir, "sent.db")
	if err := os.Mkdir(sentPath, 0o700); err != nil {
		t.Fatal(err)
	}
	blocker := sentPath
	logFile := filepath.Join(dir, "milter.log")
	cfg := writeConfig(t, "listen: unix:"+filepath.Join(dir, "m.sock")+"\nmetrics: { listen: '' }\nlog: { file: "+logFile+" }\nsent_log: { path: "+sentPath+" }\n")
	var out, errb mtatest.LockedBuffer
	code := run([]string{"serve", "--config", cfg}, &out, &errb)
	if code != exitFail {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitFail, errb.String())
	}
	stderr := errb.String()
	if strings.Count(stderr, "cannot start") != 1 || !strings.Contains(stderr, "sent_log.path") {
		t.Errorf("stderr should carry the start-up error once:\n%s", stderr)
	}
	if n := strings.Count(stderr, blocker); n != 1 {
		t.Errorf("stderr names %s %d times, want once:\n%s", blocker, n, stderr)
	}
	logged, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(logged), "cannot start") != 1 {
		t.Errorf("log file should carry the start-up error once:\n%s", logged)
	}
}

// TestStartupErrorToStderrLogOnce: without log.file the log is stderr, and
// the error is there once (not logged and printed).
func TestStartupErrorToStderrLogOnce(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "notadir")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, "listen: unix:"+filepath.Join(dir, "m.sock")+"\nmetrics: { listen: '' }\nsent_log: { path: "+filepath.Join(blocker, "sent.db")+" }\n")
	// The log goes to the process's stderr, not to the writer run gets.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	var errb mtatest.LockedBuffer
	code := run([]string{"serve", "--config", cfg}, &mtatest.LockedBuffer{}, &errb)
	os.Stderr = saved
	w.Close()
	var logged bytes.Buffer
	logged.ReadFrom(r)
	if code != exitFail {
		t.Fatalf("exit %d", code)
	}
	all := errb.String() + logged.String()
	if strings.Count(all, "cannot start") != 1 {
		t.Errorf("want the error once on stderr, got:\n%s", all)
	}
}

// TestLogFileReopen: after the file is renamed (logrotate), reopen sends
// new lines to a new file under the configured name.
func TestLogFileReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "milter.log")
	l, err := newLogging(config.Log{Format: "json", Level: "info", File: path})
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	l.Info("before rotation")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	l.Info("still the old file")
	if err := l.reopen(); err != nil {
		t.Fatal(err)
	}
	l.Info("after rotation")
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), "before rotation") || !strings.Contains(string(old), "still the old file") || strings.Contains(string(old), "after rotation") {
		t.Errorf("rotated file:\n%s", old)
	}
	if !strings.Contains(string(cur), "after rotation") || strings.Contains(string(cur), "before rotation") {
		t.Errorf("new file:\n%s", cur)
	}
}

// TestServeSIGHUPReopensLogFile runs the binary, renames its log file and
// sends SIGHUP, as logrotate's postrotate does: the lines after the signal
// are in a new file under the configured name.
func TestServeSIGHUPReopensLogFile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := testBinary(t)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "milter.log")
	cfg := writeConfig(t, "listen: unix:"+filepath.Join(dir, "m.sock")+"\nmetrics: { listen: '' }\nlog: { file: "+logFile+" }\nsent_log: { backend: memory }\ndnsbl: { zones: [] }\nshutdown_timeout: 5s\n")
	cmd := exec.Command(bin, "serve", "--config", cfg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFileContains(t, logFile, `"msg":"started"`)
	if err := os.Rename(logFile, logFile+".1"); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitFileContains(t, logFile, `"msg":"configuration reloaded"`)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve: %v", err)
	}
	old, _ := os.ReadFile(logFile + ".1")
	if strings.Contains(string(old), "configuration reloaded") || !strings.Contains(string(old), `"msg":"started"`) {
		t.Errorf("rotated file got lines after SIGHUP:\n%s", old)
	}
	cur, _ := os.ReadFile(logFile)
	if !strings.Contains(string(cur), `"msg":"stopped"`) {
		t.Errorf("new file lacks the lines after SIGHUP:\n%s", cur)
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// testBinary builds the command once per test run.
func testBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bsm-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "backscatter-milter")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func waitFileContains(t *testing.T, path, substr string) {
	t.Helper()
	var b []byte
	if !await.True(20*time.Second, func() bool { b, _ = os.ReadFile(path); return strings.Contains(string(b), substr) }) {
		t.Fatalf("%s lacks %q:\n%s", path, substr, b)
	}
}

// TestSyslogMail: log.syslog: mail sends each line to the syslog socket
// with the mail facility and the line's severity, tagged with the program.
func TestSyslogMail(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	pc, err := net.ListenPacket("unixgram", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	saved := syslogPath
	syslogPath = sock
	defer func() { syslogPath = saved }()

	l, err := newLogging(config.Log{Format: "json", Level: "info", File: filepath.Join(t.TempDir(), "f.log"), Syslog: "mail"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	l.Info("verdict", zap.String("queue_id", "4XYZ123ABC"), zap.String("action", "quarantine"))
	l.Warn("dns trouble")
	l.Debug("not at info level")

	want := []struct{ pri, substr string }{
		{"<22>", `"msg":"verdict","queue_id":"4XYZ123ABC","action":"quarantine"`}, // mail (2)*8 + info (6)
		{"<20>", `"msg":"dns trouble"`},                                           // mail*8 + warning (4)
	}
	buf := make([]byte, 4096)
	for _, w := range want {
		pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no syslog datagram for %s: %v", w.substr, err)
		}
		line := string(buf[:n])
		if !strings.HasPrefix(line, w.pri) || !strings.Contains(line, " backscatter-milter[") || !strings.Contains(line, w.substr) {
			t.Errorf("syslog line %q: want priority %s and %s", line, w.pri, w.substr)
		}
		if strings.Contains(line, `"ts":`) || strings.HasSuffix(line, "\n") {
			t.Errorf("syslog line %q carries its own time stamp or a newline", line)
		}
	}
	pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, _, err := pc.ReadFrom(buf); err == nil {
		t.Errorf("debug line sent at level info: %q", buf[:n])
	}
}

// TestSyslogAbsentKeepsLogging: no syslog daemon (no socket) loses nothing
// from the log file.
func TestSyslogAbsentKeepsLogging(t *testing.T) {
	saved := syslogPath
	syslogPath = filepath.Join(t.TempDir(), "nothing-here")
	defer func() { syslogPath = saved }()
	file := filepath.Join(t.TempDir(), "f.log")
	l, err := newLogging(config.Log{Format: "json", Level: "info", File: file, Syslog: "mail"})
	if err != nil {
		t.Fatal(err)
	}
	l.Info("verdict", zap.String("queue_id", "Q1"))
	l.close()
	b, _ := os.ReadFile(file)
	if !strings.Contains(string(b), `"queue_id":"Q1"`) {
		t.Errorf("log file lost the line: %q", b)
	}
}
