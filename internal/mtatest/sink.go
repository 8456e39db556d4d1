package mtatest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SinkOptions configures an smtp-sink.
type SinkOptions struct {
	// RejectRcpt answers every RCPT with RejectReply, so that a Postfix
	// relaying to this sink writes a bounce (non-delivery report).
	RejectRcpt bool
	// RejectReply is the 5xx reply for RejectRcpt; default
	// "550 5.1.1 Recipient address rejected: User unknown".
	RejectReply string
	// Hostname is the name in the greeting; default "sink.example.net".
	Hostname string
	// IP and Port say where to listen; default a free port on 127.0.0.1.
	// A given Port may be shared with a sink on another loopback IP: a
	// Sendmail whose mailers all use one port routes a domain to the other
	// sink by IP (TestSendmailNDRCaseVariant).
	IP   string
	Port int
}

// Sink is Postfix's smtp-sink on a loopback port, saving every message it
// accepts to a file in Dir.
type Sink struct {
	Addr string // 127.0.0.1:PORT
	Port int
	Dir  string // messages are files below Dir/msgs
	cmd  *exec.Cmd
	done chan struct{}
	werr error
}

// SinkMessage is one message the sink received.
type SinkMessage struct {
	File       string
	ClientAddr string
	Helo       string
	// MailArgs and RcptArgs are the MAIL and RCPT arguments as sent:
	// "FROM:<> SIZE=812", "TO:<u@example.org> ORCPT=rfc822;u@example.org".
	MailArgs string
	RcptArgs []string
	// Data is the message as received, header and body, with LF line ends
	// and dots unstuffed (smtp-sink stores lines, not the raw stream).
	Data []byte
}

// Sender returns the envelope sender from MailArgs, without brackets ("" for
// the null sender).
func (m SinkMessage) Sender() string { return envelopeAddr(m.MailArgs, "FROM:") }

// Recipients returns the envelope recipients from RcptArgs.
func (m SinkMessage) Recipients() []string {
	var r []string
	for _, a := range m.RcptArgs {
		r = append(r, envelopeAddr(a, "TO:"))
	}
	return r
}

// Body returns Data after the blank line that ends the header.
func (m SinkMessage) Body() []byte {
	if i := bytes.Index(m.Data, []byte("\n\n")); i >= 0 {
		return m.Data[i+2:]
	}
	return nil
}

// Header returns the header block of Data, including its final newline.
func (m SinkMessage) Header() []byte {
	if i := bytes.Index(m.Data, []byte("\n\n")); i >= 0 {
		return m.Data[:i+1]
	}
	return m.Data
}

func envelopeAddr(args, prefix string) string {
	args = strings.TrimSpace(args)
	if len(args) >= len(prefix) && strings.EqualFold(args[:len(prefix)], prefix) {
		args = args[len(prefix):]
	}
	f := strings.Fields(args)
	if len(f) == 0 {
		return ""
	}
	return strings.TrimSuffix(strings.TrimPrefix(f[0], "<"), ">")
}

// StartSink starts smtp-sink on a free loopback port; t.Cleanup stops it.
func StartSink(t testing.TB, o SinkOptions) *Sink {
	t.Helper()
	bin := mustLookPath(t, "smtp-sink")
	if o.RejectReply == "" {
		o.RejectReply = "550 5.1.1 Recipient address rejected: User unknown"
	}
	if o.Hostname == "" {
		o.Hostname = "sink.example.net"
	}
	s := &Sink{Dir: instanceDir(t, "sink"), done: make(chan struct{})}
	if err := os.Mkdir(filepath.Join(s.Dir, "msgs"), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"-4", "-h", o.Hostname}
	dump := filepath.Join(s.Dir, "msgs") + "/%Y%m%d%H%M%S."
	if os.Geteuid() == 0 {
		// As root smtp-sink insists on dropping privileges (-u); chrooting
		// into Dir (-R) spares the unprivileged user from needing access to
		// the test's private temporary directories above it.
		for _, d := range []string{s.Dir, filepath.Join(s.Dir, "msgs")} {
			if err := chownTo(d, "nobody", ""); err != nil {
				t.Fatalf("mtatest: smtp-sink as root: %v", err)
			}
		}
		args = append(args, "-R", s.Dir, "-u", "nobody")
		dump = "/msgs/%Y%m%d%H%M%S."
	}
	args = append(args, "-d", dump)
	if o.RejectRcpt {
		args = append(args, "-f", "RCPT", "-B", o.RejectReply)
	}
	for attempt := 0; ; attempt++ {
		s.Port = o.Port
		if s.Port == 0 {
			s.Port = FreePort(t)
		}
		if o.IP == "" {
			o.IP = "127.0.0.1"
		}
		s.Addr = net.JoinHostPort(o.IP, strconv.Itoa(s.Port))
		cmd := exec.Command(bin, append(args, s.Addr, "64")...)
		stderr := &LockedBuffer{}
		cmd.Stdout = stderr
		cmd.Stderr = stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("mtatest: start smtp-sink: %v", err)
		}
		s.cmd = cmd
		s.done = make(chan struct{})
		go func(done chan struct{}) { s.werr = cmd.Wait(); close(done) }(s.done)
		err := waitListening(s.Addr, 10*time.Second, s.exited)
		if err == nil {
			if o.Port != 0 {
				break // shared on purpose, see SinkOptions.Port
			}
			if err = soleListener(s.Port); err == nil {
				break
			}
		}
		s.stop()
		// Another test took the port between FreePort and bind.
		if attempt < 2 && (strings.Contains(stderr.String(), "in use") || strings.Contains(err.Error(), "sockets listen")) {
			continue
		}
		t.Fatalf("mtatest: smtp-sink on %s: %v: %s", s.Addr, err, stderr.String())
	}
	t.Cleanup(s.stop)
	return s
}

func (s *Sink) exited() error {
	select {
	case <-s.done:
		return fmt.Errorf("smtp-sink exited: %v", s.werr)
	default:
		return nil
	}
}

func (s *Sink) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	killGroup(s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(3 * time.Second):
		killGroup(s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// Messages returns the messages received completely so far, oldest first.
// smtp-sink keeps a message's file open until the final dot, so a file still
// open in its process is left out.
func (s *Sink) Messages() ([]SinkMessage, error) {
	dir := filepath.Join(s.Dir, "msgs")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	open := s.openFiles()
	type file struct {
		path string
		mod  time.Time
	}
	var files []file
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && open[st.Ino] {
			continue
		}
		files = append(files, file{p, fi.ModTime()})
	}
	sort.Slice(files, func(i, j int) bool {
		if !files[i].mod.Equal(files[j].mod) {
			return files[i].mod.Before(files[j].mod)
		}
		return files[i].path < files[j].path
	})
	var msgs []SinkMessage
	for _, f := range files {
		b, err := os.ReadFile(f.path)
		if err != nil {
			return nil, err
		}
		m, err := parseSinkDump(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.path, err)
		}
		m.File = f.path
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// openFiles returns the inode numbers of the files smtp-sink has open.
func (s *Sink) openFiles() map[uint64]bool {
	open := map[uint64]bool{}
	fdDir := fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return open
	}
	for _, e := range ents {
		fi, err := os.Stat(filepath.Join(fdDir, e.Name()))
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			open[st.Ino] = true
		}
	}
	return open
}

// WaitMessages waits until at least n messages arrived and returns them all;
// it fails the test after timeout.
func (s *Sink) WaitMessages(t testing.TB, n int, timeout time.Duration) []SinkMessage {
	t.Helper()
	var msgs []SinkMessage
	var err error
	ok := waitFor(timeout, func() bool {
		msgs, err = s.Messages()
		return err == nil && len(msgs) >= n
	})
	if err != nil {
		t.Fatalf("mtatest: read sink messages: %v", err)
	}
	if !ok {
		t.Fatalf("mtatest: sink %s has %d messages after %v, want %d", s.Addr, len(msgs), timeout, n)
	}
	return msgs
}

// parseSinkDump splits smtp-sink's dump format: its own X-Client-Addr,
// X-Helo-Args, X-Mail-Args, X-Rcpt-Args records and a three-line Received
// header, then the message, then one empty line.
func parseSinkDump(b []byte) (SinkMessage, error) {
	var m SinkMessage
	r := bufio.NewReader(bytes.NewReader(b))
	consumed := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return m, fmt.Errorf("smtp-sink dump ends inside its own header")
		}
		consumed += len(line)
		l := strings.TrimRight(line, "\r\n")
		name, val, _ := strings.Cut(l, ": ")
		switch name {
		case "X-Client-Addr":
			m.ClientAddr = val
		case "X-Client-Proto":
		case "X-Helo-Args":
			m.Helo = val
		case "X-Mail-Args":
			m.MailArgs = val
		case "X-Rcpt-Args":
			m.RcptArgs = append(m.RcptArgs, val)
		case "Received":
			// Two continuation lines follow ("by ..." and the date).
			for i := 0; i < 2; i++ {
				cont, err := r.ReadString('\n')
				if err != nil {
					return m, fmt.Errorf("smtp-sink dump: short Received header")
				}
				consumed += len(cont)
			}
			data := b[consumed:]
			// smtp-sink appends one empty line after the message.
			data = bytes.TrimSuffix(data, []byte("\n"))
			m.Data = data
			return m, nil
		default:
			return m, fmt.Errorf("smtp-sink dump: unexpected line %q", l)
		}
	}
}
