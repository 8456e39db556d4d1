// Package mtatest is test support that starts private, real MTAs on loopback
// ports: Postfix, Sendmail and Postfix's smtp-sink as the relay target.
// Integration tests attach them to a milter and talk SMTP to them.
//
// Every instance lives in its own directory and ports, so parallel tests do
// not share anything, and t.Cleanup tears it down. When a program is missing
// the test is skipped with a message naming it, unless the environment
// variable BACKSCATTER_REQUIRE_INTEGRATION=1 is set: then it fails, so that
// CI cannot pass by skipping. .ci/install-test-deps installs everything.
//
// The configuration templates are files in testdata/mta/ at the root of the
// module, so the documentation can quote exactly what is tested.
package mtatest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireEnv names the environment variable that turns a skip for a missing
// program into a failure.
const RequireEnv = "BACKSCATTER_REQUIRE_INTEGRATION"

// SendmailRootEnv names the environment variable that overrides where
// .ci/install-test-deps unpacked Sendmail.
const SendmailRootEnv = "BACKSCATTER_SENDMAIL_ROOT"

// DefaultSendmailRoot is where .ci/install-test-deps unpacks the Debian
// sendmail packages: they conflict with postfix, so they are not installed.
const DefaultSendmailRoot = "/opt/backscatter-test/sendmail"

// Require skips the test when a program is missing (or fails it when
// BACKSCATTER_REQUIRE_INTEGRATION=1). A name with a slash is a file path,
// anything else is looked up in PATH and in the sbin directories, which a
// non-login shell may lack in PATH.
func Require(t testing.TB, bins ...string) {
	t.Helper()
	var missing []string
	for _, b := range bins {
		if _, err := lookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		unavailable(t, fmt.Sprintf("missing %s", strings.Join(missing, ", ")))
	}
}

// requireRoot is needed because private Postfix and Sendmail instances
// start as root, like the system ones, and drop privileges themselves.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "private Postfix and Sendmail instances need root")
	}
}

func unavailable(t testing.TB, why string) {
	t.Helper()
	msg := fmt.Sprintf("integration test needs real MTAs: %s (run .ci/install-test-deps as root)", why)
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s; failing because %s=1", msg, RequireEnv)
	}
	t.Skip(msg)
}

var sbinDirs = []string{"/usr/sbin", "/sbin", "/usr/local/sbin"}

func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		fi, err := os.Stat(name)
		if err != nil {
			return "", err
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s is not an executable file", name)
		}
		return name, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range sbinDirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or %s", name, strings.Join(sbinDirs, ", "))
}

func mustLookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := lookPath(name)
	if err != nil {
		unavailable(t, err.Error())
	}
	return p
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// kernel picks it from the ephemeral range; a port is never handed out twice
// by one test process, since the kernel readily gives a just-closed port
// again and Postfix binds with SO_REUSEPORT, so two instances would share it.
func FreePort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("mtatest: find a free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if err := ln.Close(); err != nil {
			t.Fatalf("mtatest: close port probe: %v", err)
		}
		portsMu.Lock()
		seen := portsGiven[port]
		portsGiven[port] = true
		portsMu.Unlock()
		if !seen {
			return port
		}
	}
	t.Fatal("mtatest: no fresh free port after 100 tries")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// listeners counts the IPv4 TCP sockets listening on port, any address.
// Postfix and smtp-sink bind with SO_REUSEPORT, so a second instance on a
// port taken by another test process starts without error; the count is
// how a start notices that.
func listeners(port int) (int, error) {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) < 4 || f[3] != "0A" { // 0A: TCP_LISTEN
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
			n++
		}
	}
	return n, nil
}

// soleListener fails when another socket listens on port too.
func soleListener(port int) error {
	n, err := listeners(port)
	if err != nil {
		return nil // no /proc: cannot tell, trust the greeting check
	}
	if n > 1 {
		return fmt.Errorf("port %d: %d sockets listen on it (another server took it too)", port, n)
	}
	return nil
}

// pickPort chooses the SMTP port of an MTA instance; a test replaces it to
// hand out a taken port.
var pickPort = FreePort

// ShortDir returns a new directory with a short absolute path, removed at the
// end of the test, for unix sockets: their paths are limited to 107 bytes,
// which a t.TempDir path of a long subtest name can exceed. The directory
// is 0755 and owned by the caller: Sendmail refuses a milter socket in a
// group- or world-writable directory, and Postfix's smtpd (user postfix)
// must reach it.
func ShortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "mt")
	if err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	return d
}

// ListenMilter opens a listener for a milter under test: network "tcp"
// listens on a free port of 127.0.0.1, "unix" on a socket in a ShortDir,
// writable by all so that Postfix's smtpd (user postfix) may connect. spec
// is the address in Postfix's form, for PostfixOptions.MilterAddr or
// SendmailOptions.MilterAddr. t.Cleanup closes the listener.
func ListenMilter(t testing.TB, network string) (ln net.Listener, spec string) {
	t.Helper()
	var err error
	switch network {
	case "tcp":
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err == nil {
			spec = "inet:" + ln.Addr().String()
		}
	case "unix":
		path := filepath.Join(ShortDir(t), "milter.sock")
		if ln, err = net.Listen("unix", path); err == nil {
			spec = "unix:" + path
			err = os.Chmod(path, 0o666)
		}
	default:
		err = fmt.Errorf("network %q: want tcp or unix", network)
	}
	if err != nil {
		t.Fatalf("mtatest: milter listener: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln, spec
}

// testdataDir finds testdata/mta beside this package's source: the
// templates live two levels up (internal/mtatest → module root), wherever
// the test binary runs from.
func testdataDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("mtatest: cannot locate the package source to find testdata/mta")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "..", "testdata", "mta")
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("mtatest: templates not found: %w", err)
	}
	return dir, nil
}

func readTestdata(t testing.TB, name string) string {
	t.Helper()
	dir, err := testdataDir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	return string(b)
}

// waitListening polls until addr accepts TCP connections, the process behind
// it exits (exited returns non-nil) or the timeout passes.
func waitListening(addr string, timeout time.Duration, exited func() error) error {
	return waitGreeting(addr, "", timeout, exited)
}

// waitGreeting polls until a connection to addr gets a greeting containing
// token, the process behind it exits (exited returns non-nil) or the timeout
// passes. The token tells our instance from a stranger that took the port
// between FreePort and our bind: nothing may be trusted, or killed, on the
// strength of a connection alone.
func waitGreeting(addr, token string, timeout time.Duration, exited func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := greetingHas(addr, token)
		if err == nil {
			return nil
		}
		if exited != nil {
			if perr := exited(); perr != nil {
				return perr
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no SMTP server of ours on %s after %v: %v", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func greetingHas(addr, token string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	if token == "" {
		return nil
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if !strings.Contains(line, token) {
		return fmt.Errorf("greeting %q is not from this instance (lacks %q)", strings.TrimSpace(line), token)
	}
	_, _ = c.Write([]byte("QUIT\r\n"))
	return nil
}

// instanceToken returns a random word that goes into an instance's SMTP
// greeting, so waitGreeting recognises it.
func instanceToken() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "mtatest-" + hex.EncodeToString(b[:])
}

// killGroup kills the process group led by pid, one of our children.
func killGroup(pid int, sig syscall.Signal) {
	if pid > 1 {
		_ = syscall.Kill(-pid, sig)
	}
}

// killPID kills one process found to belong to an instance; never init or
// this test process.
func killPID(pid int) {
	if pid > 1 && pid != os.Getpid() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// runCmd runs a short-lived command with a time limit and returns its
// combined output; the error includes that output.
func runCmd(timeout time.Duration, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
		}
		return out.String(), nil
	case <-time.After(timeout):
		killGroup(cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return out.String(), fmt.Errorf("%s %s: still running after %v, killed: %s", name, strings.Join(args, " "), timeout, strings.TrimSpace(out.String()))
	}
}

// waitFor polls cond every 50 ms until it is true or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MilterSpec converts a milter socket spec in Postfix form
// ("inet:127.0.0.1:8899", "unix:/path/sock") to Sendmail's form
// ("inet:8899@127.0.0.1", "unix:/path/sock"). A spec already in Sendmail's
// form is returned as it is.
func MilterSpec(postfixForm string) (sendmailForm string, err error) {
	kind, rest, ok := strings.Cut(postfixForm, ":")
	if !ok {
		return "", fmt.Errorf("milter spec %q: want inet:HOST:PORT or unix:PATH", postfixForm)
	}
	switch kind {
	case "unix", "local":
		if !strings.HasPrefix(rest, "/") {
			return "", fmt.Errorf("milter spec %q: unix socket path must be absolute", postfixForm)
		}
		return "unix:" + rest, nil
	case "inet", "inet6":
		if strings.Contains(rest, "@") {
			return postfixForm, nil
		}
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return "", fmt.Errorf("milter spec %q: %v", postfixForm, err)
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return "", fmt.Errorf("milter spec %q: bad port %q", postfixForm, port)
		}
		if kind == "inet" && strings.Contains(host, ":") {
			kind = "inet6"
		}
		return kind + ":" + port + "@" + host, nil
	}
	return "", fmt.Errorf("milter spec %q: unknown socket type %q", postfixForm, kind)
}

// chownTo gives path to a system user and group (the user's own group when
// group is empty), for a daemon that drops privileges to them.
func chownTo(path, owner, group string) error {
	u, err := user.Lookup(owner)
	if err != nil {
		return fmt.Errorf("user %s: %w", owner, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return err
	}
	gidStr := u.Gid
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return fmt.Errorf("group %s: %w", group, err)
		}
		gidStr = g.Gid
	}
	gid, err := strconv.Atoi(gidStr)
	if err != nil {
		return err
	}
	return os.Chown(path, uid, gid)
}

// instanceDir makes a new directory for one MTA instance, removed at the end
// of the test. Unlike t.TempDir it is 0755, because the daemons drop root
// privileges and must still reach their files, and its path is short (unix
// socket paths inside it must stay below 108 bytes).
func instanceDir(t testing.TB, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	return d
}

// backdate sets the modification time of every file in dir a minute back.
func backdate(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute)
	for _, e := range ents {
		if err := os.Chtimes(filepath.Join(dir, e.Name()), past, past); err != nil {
			t.Fatal(err)
		}
	}
}

// LockedBuffer is an io.Writer (and zap WriteSyncer) that goroutines may
// write while a test reads it: a child's output, a daemon's log.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Sync is a no-op, so a LockedBuffer can back a zap core.
func (l *LockedBuffer) Sync() error { return nil }

// String returns what was written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
