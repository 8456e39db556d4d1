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
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
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
// kernel picks it from the ephemeral range, so parallel tests rarely collide.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mtatest: find a free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatalf("mtatest: close port probe: %v", err)
	}
	return port
}

// ShortDir returns a new directory with a short absolute path, removed at the
// end of the test. Unix socket paths are limited to 107 bytes, which a
// t.TempDir path of a long subtest name can exceed. The directory is 0700 and
// owned by the caller, so Sendmail accepts a milter socket in it.
func ShortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "mt")
	if err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// testdataDir finds testdata/mta at the module root by walking up from the
// working directory, which go test sets to the package being tested.
func testdataDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.Contains(b, []byte("module github.com/backscatter-milter/backscatter-milter")) {
			return filepath.Join(dir, "testdata", "mta"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("mtatest: module root (go.mod of backscatter-milter) not found above the working directory")
		}
		dir = parent
	}
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
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if exited != nil {
			if perr := exited(); perr != nil {
				return perr
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %v: %v", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
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
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
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

// chownToUser gives path to a system user, for a daemon that drops to it.
func chownToUser(path, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("user %s: %w", name, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return err
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return err
	}
	return os.Chown(path, uid, gid)
}
