package mtatest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SendmailOptions configures a private Sendmail.
type SendmailOptions struct {
	// MilterAddr is the milter socket, in Postfix form
	// ("inet:127.0.0.1:8899", "unix:/path/sock") or Sendmail's
	// ("inet:8899@127.0.0.1"); empty: no milter. Sendmail refuses a unix
	// socket in a group- or world-writable directory: use ShortDir.
	MilterAddr string
	// MilterFlags is the F= of INPUT_MAIL_FILTER; default "T" (tempfail
	// when the milter is unreachable).
	MilterFlags string
	// MilterTimeouts is the T= of INPUT_MAIL_FILTER; default
	// "C:2s;S:10s;R:10s;E:30s".
	MilterTimeouts string
	// Hostname is the fully qualified host name; default "mta.example.org".
	Hostname string
	// RelayDomains are accepted from any client and relayed; default
	// example.org. Mail from 127.0.0.1 may go anywhere.
	RelayDomains []string
	// Relay receives all relayed mail (SMART_HOST); nil starts a new Sink.
	Relay *Sink
	// ExtraMC are extra lines for sendmail.mc, before the MAILER lines.
	ExtraMC []string
}

// Sendmail is a running private Sendmail.
type Sendmail struct {
	Dir      string // sendmail.mc, sendmail.cf, mqueue/, ...
	SMTPAddr string // 127.0.0.1:PORT
	Port     int
	Sink     *Sink
	Hostname string

	cf    string
	token string // in the SMTP greeting, to recognise this instance
	cmd   *exec.Cmd
	done  chan struct{}
	werr  error
	ns    *namespace
	mntNS *mountNS
}

// SendmailRoot returns where Sendmail was unpacked: $BACKSCATTER_SENDMAIL_ROOT
// or DefaultSendmailRoot.
func SendmailRoot() string {
	if r := os.Getenv(SendmailRootEnv); r != "" {
		return r
	}
	return DefaultSendmailRoot
}

func sendmailBin() string { return filepath.Join(SendmailRoot(), "usr/libexec/sendmail/sendmail") }
func sendmailCFDir() string {
	return filepath.Join(SendmailRoot(), "usr/share/sendmail/cf")
}

// RequireSendmail skips (or fails, see Require) when a private Sendmail
// cannot run here.
func RequireSendmail(t testing.TB) {
	t.Helper()
	Require(t, append([]string{sendmailBin(), "m4", "smtp-sink"}, namespaceTools...)...)
	if _, err := os.Stat(filepath.Join(sendmailCFDir(), "m4", "cf.m4")); err != nil {
		unavailable(t, fmt.Sprintf("sendmail-cf files: %v", err))
	}
	requireRoot(t)
}

// StartSendmail builds sendmail.cf with m4, starts Sendmail as a daemon in
// its own mount and UTS namespaces and waits until it answers SMTP.
// t.Cleanup stops it.
func StartSendmail(t testing.TB, o SendmailOptions) *Sendmail {
	t.Helper()
	RequireSendmail(t)
	start := time.Now()
	if o.MilterFlags == "" {
		o.MilterFlags = "T"
	}
	if o.MilterTimeouts == "" {
		o.MilterTimeouts = "C:2s;S:10s;R:10s;E:30s"
	}
	if o.Hostname == "" {
		o.Hostname = "mta.example.org"
	}
	if !strings.Contains(o.Hostname, ".") {
		t.Fatalf("mtatest: Sendmail hostname %q must be fully qualified", o.Hostname)
	}
	if o.RelayDomains == nil {
		o.RelayDomains = []string{"example.org"}
	}
	milter := ""
	if o.MilterAddr != "" {
		var err error
		if milter, err = MilterSpec(o.MilterAddr); err != nil {
			t.Fatalf("mtatest: %v", err)
		}
	}
	s := &Sendmail{Dir: instanceDir(t, "sm"), Sink: o.Relay, Hostname: o.Hostname, token: instanceToken()}
	if s.Sink == nil {
		s.Sink = StartSink(t, SinkOptions{})
	}
	s.cf = filepath.Join(s.Dir, "sendmail.cf")
	if err := os.Mkdir(filepath.Join(s.Dir, "mqueue"), 0o700); err != nil {
		t.Fatal(err)
	}
	s.ns = newNamespace(t, s.Dir, o.Hostname)
	writeFile(t, filepath.Join(s.Dir, "service.switch"), "hosts\tfiles\naliases\tfiles\n")
	writeFile(t, filepath.Join(s.Dir, "aliases"), "postmaster: root\n")
	writeFile(t, filepath.Join(s.Dir, "helpfile"), "")

	td, err := testdataDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("mtatest: syslog of the Sendmail on %s:\n%s", s.SMTPAddr, s.Log())
		}
	})
	for attempt := 1; ; attempt++ {
		s.Port = pickPort(t)
		s.SMTPAddr = fmt.Sprintf("127.0.0.1:%d", s.Port)
		mc := render(t, "sendmail/sendmail.mc.tmpl", map[string]any{
			"Dir":            s.Dir,
			"Hostname":       o.Hostname,
			"Port":           s.Port,
			"RelayPort":      s.Sink.Port,
			"RelayDomains":   o.RelayDomains,
			"MilterMacros":   filepath.Join(td, "sendmail", "milter.m4"),
			"MilterSocket":   milter,
			"MilterFlags":    o.MilterFlags,
			"MilterTimeouts": o.MilterTimeouts,
			"ExtraMC":        o.ExtraMC,
			"Token":          s.token,
		})
		writeFile(t, filepath.Join(s.Dir, "sendmail.mc"), mc)
		cf, err := runCmd(30*time.Second, nil, mustPath("m4"), "-D_CF_DIR_="+sendmailCFDir()+"/",
			filepath.Join(sendmailCFDir(), "m4", "cf.m4"), filepath.Join(s.Dir, "sendmail.mc"))
		if err != nil {
			t.Fatalf("mtatest: m4 sendmail.mc: %v", err)
		}
		// One listening daemon only: a stray empty DaemonPortOptions (an
		// m4 slip) adds Sendmail's default daemon on port 25 of every
		// address.
		if n := strings.Count(cf, "\nO DaemonPortOptions="); n != 1 {
			t.Fatalf("mtatest: sendmail.cf has %d DaemonPortOptions lines, want 1", n)
		}
		writeFile(t, s.cf, cf)
		if attempt == 1 {
			// newaliases, in the same namespaces as the daemon.
			if out, err := s.run(30*time.Second, "-bi"); err != nil {
				t.Fatalf("mtatest: sendmail -bi: %v\n%s\nlog:\n%s", err, out, s.Log())
			}
		}
		out, err := s.startDaemon()
		if err == nil {
			break
		}
		// Sendmail sleeping between bind attempts ignores SIGTERM. Its
		// group is killed only while the daemon is not yet reaped (see
		// stop).
		select {
		case <-s.done:
		default:
			killGroup(s.cmd.Process.Pid, syscall.SIGKILL)
		}
		s.stop()
		// Another test may take the port between FreePort and bind.
		if attempt < 3 && strings.Contains(err.Error(), "cannot bind") {
			continue
		}
		t.Fatalf("mtatest: sendmail: %v\n%s\nlog:\n%s", err, out, s.Log())
	}
	t.Logf("mtatest: Sendmail on %s (dir %s, relay %s) started in %v", s.SMTPAddr, s.Dir, s.Sink.Addr, time.Since(start).Round(time.Millisecond))
	return s
}

// command returns sendmail with args, to run inside fresh private namespaces.
func (s *Sendmail) command(args ...string) *exec.Cmd {
	return s.ns.command(append([]string{sendmailBin(), "-C", s.cf}, args...)...)
}

// CommandLine returns the argv that runs this instance's sendmail, with
// its sendmail.cf, in the instance's namespaces: for programs under test
// that call Sendmail's own tools (mailq, sendmail -qQ).
func (s *Sendmail) CommandLine() []string { return s.command().Args }

// QueueDir is the instance's QUEUE_DIR.
func (s *Sendmail) QueueDir() string { return filepath.Join(s.Dir, "mqueue") }

// run runs a short sendmail command (mailq, newaliases) in its own
// namespaces, like the daemon.
func (s *Sendmail) run(timeout time.Duration, args ...string) (string, error) {
	cmd := s.command(args...)
	return runCmd(timeout, nil, cmd.Path, cmd.Args[1:]...)
}

// startDaemon starts sendmail -bD (a daemon in the foreground, our child)
// and waits until it listens.
func (s *Sendmail) startDaemon() (string, error) {
	s.cmd = s.command("-bD", "-q5s", "-L", "sm-mta")
	out := &LockedBuffer{}
	s.cmd.Stdout = out
	s.cmd.Stderr = out
	if err := s.cmd.Start(); err != nil {
		s.cmd = nil
		return "", fmt.Errorf("start sendmail: %w", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { s.werr = cmd.Wait(); close(done) }(s.cmd, s.done)
	logStart := len(s.Log())
	err := waitGreeting(s.SMTPAddr, s.token, 30*time.Second, func() error {
		if err := s.exited(); err != nil {
			return err
		}
		// Sendmail retries a failed bind every 5 seconds, forever.
		if l := s.Log(); len(l) > logStart && strings.Contains(l[logStart:], "cannot bind") {
			return errors.New("sendmail cannot bind its port")
		}
		return nil
	})
	if err == nil {
		// It answered with our token, so it runs in its namespaces now.
		s.mntNS = pinMountNS(s.cmd.Process.Pid)
	}
	return out.String(), err
}

func (s *Sendmail) exited() error {
	select {
	case <-s.done:
		return fmt.Errorf("sendmail exited: %v", s.werr)
	default:
		return nil
	}
}

// stop ends the daemon, then any process left in its mount namespace
// (connection handlers, queue runners): see stopInstance.
func (s *Sendmail) stop() {
	if s.cmd == nil {
		return
	}
	stopInstance(s.cmd, s.done, s.mntNS, nil)
	s.cmd, s.mntNS = nil, nil
}

// Send sends one message from 127.0.0.1 in its own session; see
// Postfix.Send.
func (s *Sendmail) Send(t testing.TB, m SMTPMessage) MessageResult {
	t.Helper()
	return sendOne(t, s.SMTPAddr, Session{Messages: []SMTPMessage{m}})
}

// SendSession runs a whole session; see SendSession.
func (s *Sendmail) SendSession(t testing.TB, ss Session) SessionResult {
	t.Helper()
	return sendSession(t, s.SMTPAddr, ss)
}

// Log returns what Sendmail logged to syslog so far.
func (s *Sendmail) Log() string { return s.ns.syslog.String() }

// WaitLog waits until the log contains substr and returns the log.
func (s *Sendmail) WaitLog(t testing.TB, substr string, timeout time.Duration) string {
	t.Helper()
	return waitLog(t, "Sendmail", s.Log, substr, timeout)
}

// MailQ returns the output of mailq (sendmail -bp); with quarantined set,
// it lists the quarantined messages instead (mailq -qQ).
func (s *Sendmail) MailQ(quarantined bool) (string, error) {
	args := []string{"-bp"}
	if quarantined {
		args = append(args, "-qQ")
	}
	return s.run(30*time.Second, args...)
}

// Release lifts the quarantine of a message (sendmail -Q -qI<id>) and runs
// it, so it is delivered now.
func (s *Sendmail) Release(queueID string) error {
	if _, err := s.run(30*time.Second, "-Q", "-qQ", "-qI"+queueID); err != nil {
		return err
	}
	_, err := s.run(60*time.Second, "-qI"+queueID)
	return err
}

// SendmailQueueEntry is one message in a mailq listing.
type SendmailQueueEntry struct {
	QueueID    string
	Sender     string
	Recipients []string
	// Reason is the quarantine reason ("" when not quarantined).
	Reason string
}

// Quarantined lists the quarantined messages with their reasons.
func (s *Sendmail) Quarantined() ([]SendmailQueueEntry, error) {
	out, err := s.MailQ(true)
	if err != nil {
		return nil, err
	}
	return parseMailQ(out), nil
}

// Queue lists the messages waiting in the queue (not quarantined).
func (s *Sendmail) Queue() ([]SendmailQueueEntry, error) {
	out, err := s.MailQ(false)
	if err != nil {
		return nil, err
	}
	return parseMailQ(out), nil
}

var (
	mailqEntry  = regexp.MustCompile(`^([0-9A-Za-z]{8,})[*X-]?\s+\d+\s+.*?(<[^>]*>)\s*$`)
	mailqReason = regexp.MustCompile(`^\s+QUARANTINE:\s*(.*)$`)
	mailqRcpt   = regexp.MustCompile(`^\s+(<[^>]*>)\s*$`)
)

// parseMailQ reads sendmail's mailq format:
//
//	4AO0x1cK012345     12 Tue Nov 24 00:01 <sender@example.net>
//	     QUARANTINE: reason
//						 <rcpt@example.org>
func parseMailQ(out string) []SendmailQueueEntry {
	var es []SendmailQueueEntry
	for _, l := range strings.Split(out, "\n") {
		if m := mailqEntry.FindStringSubmatch(l); m != nil {
			es = append(es, SendmailQueueEntry{QueueID: m[1], Sender: strings.Trim(m[2], "<>")})
			continue
		}
		if len(es) == 0 {
			continue
		}
		e := &es[len(es)-1]
		if m := mailqReason.FindStringSubmatch(l); m != nil {
			e.Reason = m[1]
		} else if m := mailqRcpt.FindStringSubmatch(l); m != nil {
			e.Recipients = append(e.Recipients, strings.Trim(m[1], "<>"))
		}
	}
	return es
}
