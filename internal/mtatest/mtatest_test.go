package mtatest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/d--j/go-milter"
)

// testMilter adds "X-Test: 1" at end of message, rejects RCPT reject@...
// with 550 and quarantines a message to quarantine@...; it records the
// macros the MTA sent, to prove the macro lists in testdata/mta.
type testMilter struct {
	milter.NoOpMilter
	rec        *recorder
	quarantine bool
	from       string
}

// seen is what the milter saw of one message at end of message.
type seen struct {
	from                                          string
	queueID, clientAddr, daemonName, fqdn, mailer string
}

type recorder struct {
	mu   sync.Mutex
	msgs []seen
}

func (r *recorder) all() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seen(nil), r.msgs...)
}

func (r *recorder) byQueueID(id string) (seen, bool) {
	for _, s := range r.all() {
		if s.queueID == id {
			return s, true
		}
	}
	return seen{}, false
}

func (m *testMilter) MailFrom(from, _ string, _ milter.Modifier) (*milter.Response, error) {
	// Sendmail sends no abort between two messages on one connection.
	m.quarantine = false
	m.from = from
	return milter.RespContinue, nil
}

func (m *testMilter) RcptTo(rcpt, _ string, _ milter.Modifier) (*milter.Response, error) {
	switch {
	case strings.HasPrefix(rcpt, "reject@"):
		return milter.RejectWithCodeAndReason(550, "5.7.1 rejected by the test milter")
	case strings.HasPrefix(rcpt, "quarantine@"):
		m.quarantine = true
	}
	return milter.RespContinue, nil
}

func (m *testMilter) EndOfMessage(mod milter.Modifier) (*milter.Response, error) {
	m.rec.mu.Lock()
	m.rec.msgs = append(m.rec.msgs, seen{
		from:       m.from,
		queueID:    mod.Get(milter.MacroQueueId),
		clientAddr: mod.Get(milter.MacroClientAddr),
		daemonName: mod.Get(milter.MacroDaemonName),
		fqdn:       mod.Get(milter.MacroMTAFQDN),
		mailer:     mod.Get(milter.MacroMailMailer),
	})
	m.rec.mu.Unlock()
	if err := mod.AddHeader("X-Test", "1"); err != nil {
		return nil, err
	}
	if m.quarantine {
		if err := mod.Quarantine("test quarantine"); err != nil {
			return nil, err
		}
	}
	return milter.RespAccept, nil
}

func (m *testMilter) Abort(milter.Modifier) error {
	m.quarantine = false
	return nil
}

// startTestMilter serves testMilter on network "tcp" (returns
// "inet:127.0.0.1:PORT") or "unix" (returns "unix:/path").
func startTestMilter(t *testing.T, network string) (string, *recorder) {
	t.Helper()
	ln, spec := ListenMilter(t, network)
	return spec, serveTestMilter(t, ln)
}

// serveTestMilter serves testMilter on ln until the test ends.
func serveTestMilter(t *testing.T, ln net.Listener) *recorder {
	t.Helper()
	rec := &recorder{}
	srv := milter.NewServer(
		milter.WithMilter(func() milter.Milter { return &testMilter{rec: rec} }),
		milter.WithActions(milter.OptAddHeader|milter.OptQuarantine),
	)
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return rec
}

// mta is what the self-test needs of either MTA.
type mta interface {
	SendSession(testing.TB, Session) SessionResult
	Log() string
}

const testBody = "Line one.\n.A line starting with a dot.\n\nTrailing spaces stay.   \nLast line.\n"

func testMessage(subject string) []byte {
	return []byte("From: sender@example.net\nTo: ok@example.org\nSubject: " + subject + "\nMessage-ID: <" + subject + "@example.net>\n\n" + testBody)
}

// exerciseMilter runs the common checks over one session from an untrusted
// client carrying two messages: the first to an accepted and a rejected
// recipient, the second quarantined. It returns both results.
func exerciseMilter(t *testing.T, m mta, sink *Sink, rec *recorder) (first, second MessageResult) {
	t.Helper()
	res := m.SendSession(t, Session{LocalIP: "127.0.0.2", Helo: "client.example.net", Messages: []SMTPMessage{
		{From: "sender@example.net", To: []string{"ok@example.org", "reject@example.org"}, Data: testMessage("first")},
		{From: "sender@example.net", To: []string{"quarantine@example.org"}, Data: testMessage("second")},
	}})
	if len(res.Messages) != 2 {
		t.Fatalf("got %d message results, want 2: %+v\nlog:\n%s", len(res.Messages), res, m.Log())
	}
	first, second = res.Messages[0], res.Messages[1]
	if len(first.Rcpts) != 2 || first.Rcpts[0].Code != 250 || first.Rcpts[1].Code != 550 ||
		!strings.HasPrefix(first.Rcpts[1].Text, "5.7.1 ") || !strings.Contains(first.Rcpts[1].Text, "rejected by the test milter") {
		t.Errorf("first message RCPT replies = %+v, want 250 then 550 5.7.1 from the milter", first.Rcpts)
	}
	if !first.Accepted() || !second.Accepted() {
		t.Fatalf("messages not accepted: first %s; second %s\nlog:\n%s", first, second, m.Log())
	}
	if first.QueueID() == "" || second.QueueID() == "" {
		t.Errorf("no queue ID in final replies %q, %q", first.Final, second.Final)
	}

	msgs := sink.WaitMessages(t, 1, 20*time.Second)
	got := msgs[0]
	if rc := got.Recipients(); len(rc) != 1 || rc[0] != "ok@example.org" {
		t.Errorf("sink recipients = %q, want [ok@example.org]", rc)
	}
	if !bytes.Contains(got.Header(), []byte("\nX-Test: 1\n")) {
		t.Errorf("milter header X-Test missing in delivered header:\n%s", got.Header())
	}
	if !bytes.Contains(got.Header(), []byte("Subject: first\n")) {
		t.Errorf("delivered message is not the first one:\n%s", got.Data)
	}
	if string(got.Body()) != testBody {
		t.Errorf("body changed in transit:\ngot  %q\nwant %q", got.Body(), testBody)
	}

	s, ok := rec.byQueueID(first.QueueID())
	if !ok {
		t.Fatalf("milter saw no message with {i} = %q; saw %+v", first.QueueID(), rec.all())
	}
	if s.clientAddr != "127.0.0.2" || s.daemonName == "" || s.fqdn == "" || s.from != "sender@example.net" {
		t.Errorf("macros at end of message = %+v, want {client_addr} 127.0.0.2, {daemon_name} and j set", s)
	}
	return first, second
}

// checkReleased waits for the released second message at the sink.
func checkReleased(t *testing.T, sink *Sink) {
	t.Helper()
	msgs := sink.WaitMessages(t, 2, 20*time.Second)
	m := msgs[1]
	if !bytes.Contains(m.Header(), []byte("Subject: second\n")) || !bytes.Contains(m.Header(), []byte("\nX-Test: 1\n")) {
		t.Errorf("released message is not the second one with X-Test:\n%s", m.Header())
	}
	if rc := m.Recipients(); len(rc) != 1 || rc[0] != "quarantine@example.org" {
		t.Errorf("released message recipients = %q", rc)
	}
}

func TestPostfix(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			RequirePostfix(t)
			spec, rec := startTestMilter(t, network)
			p := StartPostfix(t, PostfixOptions{MilterAddr: spec})
			_, second := exerciseMilter(t, p, p.Sink, rec)

			held := p.WaitQueue(t, 10*time.Second, "held message", func(q []QueueEntry) bool {
				return len(q) == 1 && q[0].QueueName == "hold"
			})
			if held[0].QueueID != second.QueueID() || len(held[0].Recipients) != 1 || held[0].Recipients[0].Address != "quarantine@example.org" {
				t.Errorf("hold queue = %+v, want %s to quarantine@example.org", held, second.QueueID())
			}
			if n := len(p.Sink.WaitMessages(t, 1, time.Second)); n != 1 {
				t.Errorf("sink got %d messages, want only the first (the second is on hold)", n)
			}
			if err := p.Release(second.QueueID()); err != nil {
				t.Fatal(err)
			}
			checkReleased(t, p.Sink)
			p.WaitQueueEmpty(t, 10*time.Second)
		})
	}
}

// TestPostfixRelativeSocket runs the socket setting the docs give,
// unix:backscatter-milter/milter.sock (relative to the queue directory, as
// Debian's opendkim package does), with Debian's default chrooted
// master.cf and without chroot: both reach the milter, and the chrooted
// smtpd really is chrooted in the queue directory.
func TestPostfixRelativeSocket(t *testing.T) {
	for _, chroot := range []bool{true, false} {
		t.Run(fmt.Sprintf("chroot=%v", chroot), func(t *testing.T) {
			t.Parallel()
			RequirePostfix(t)
			p := StartPostfix(t, PostfixOptions{MilterAddr: "unix:backscatter-milter/milter.sock", Chroot: chroot})
			dir := filepath.Join(p.QueueDir, "backscatter-milter")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(dir, "milter.sock")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			os.Chmod(sock, 0o666)
			rec := serveTestMilter(t, ln)
			_, second := exerciseMilter(t, p, p.Sink, rec)
			p.WaitQueue(t, 10*time.Second, "held message", func(q []QueueEntry) bool {
				return len(q) == 1 && q[0].QueueName == "hold" && q[0].QueueID == second.QueueID()
			})

			want := "/"
			if chroot {
				want = p.QueueDir
			}
			var roots []string
			for _, pid := range processesWithEnv("MAIL_CONFIG=" + p.ConfigDir) {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				if strings.TrimSpace(string(comm)) != "smtpd" {
					continue
				}
				root, _ := os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
				roots = append(roots, root)
			}
			if len(roots) == 0 {
				t.Fatal("no smtpd process of this instance found")
			}
			for _, r := range roots {
				if r != want {
					t.Errorf("smtpd root is %q, want %s", r, want)
				}
			}
		})
	}
}

func TestSendmail(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			RequireSendmail(t)
			spec, rec := startTestMilter(t, network)
			s := StartSendmail(t, SendmailOptions{MilterAddr: spec})
			_, second := exerciseMilter(t, s, s.Sink, rec)

			q, err := s.Quarantined()
			if err != nil {
				t.Fatal(err)
			}
			if len(q) != 1 || q[0].QueueID != second.QueueID() || q[0].Reason != "test quarantine" ||
				len(q[0].Recipients) != 1 || q[0].Recipients[0] != "quarantine@example.org" {
				out, _ := s.MailQ(true)
				t.Errorf("quarantine = %+v, want %s to quarantine@example.org for \"test quarantine\"; mailq -qQ:\n%s", q, second.QueueID(), out)
			}
			s.WaitLog(t, "quarantine=test quarantine", 5*time.Second)
			if q, err := s.Queue(); err != nil || len(q) != 0 {
				t.Errorf("queue outside quarantine = %+v, %v; want empty", q, err)
			}
			if err := s.Release(second.QueueID()); err != nil {
				t.Fatal(err)
			}
			checkReleased(t, s.Sink)
		})
	}
}

// TestMilterDown checks fail-closed behaviour: nothing listens on the
// milter address and the MTA answers 451.
func TestMilterDown(t *testing.T) {
	msg := SMTPMessage{From: "sender@example.net", To: []string{"ok@example.org"}, Data: testMessage("down")}
	tests := []struct {
		name  string
		start func(t *testing.T, spec string) mta
		want  string
	}{
		{"postfix", func(t *testing.T, spec string) mta {
			return StartPostfix(t, PostfixOptions{MilterAddr: spec, MilterDefaultAction: "tempfail"})
		}, "451 4.7.1"},
		{"sendmail", func(t *testing.T, spec string) mta {
			return StartSendmail(t, SendmailOptions{MilterAddr: spec, MilterFlags: "T"})
		}, "451 4.3.2"},
	}
	for _, tc := range tests {
		for _, network := range []string{"tcp", "unix"} {
			t.Run(tc.name+"/"+network, func(t *testing.T) {
				t.Parallel()
				spec := "inet:127.0.0.1:" + strconv.Itoa(FreePort(t))
				if network == "unix" {
					spec = "unix:" + filepath.Join(ShortDir(t), "absent.sock")
				}
				m := tc.start(t, spec)
				res := m.SendSession(t, Session{LocalIP: "127.0.0.2", Messages: []SMTPMessage{msg}})
				all := res.Greeting.String() + "\n" + res.Ehlo.String()
				for _, mr := range res.Messages {
					all += "\n" + mr.String()
					if mr.Accepted() {
						t.Errorf("message accepted with the milter down: %s", mr)
					}
				}
				if !strings.Contains(all, tc.want) {
					t.Errorf("replies lack %q:\n%s\nlog:\n%s", tc.want, all, m.Log())
				}
			})
		}
	}
}

// TestPostfixBounce makes Postfix write a non-delivery report: the next hop
// for reject.example.net rejects every recipient. The bounce reaches the
// default sink, and passes the non_smtpd_milters milter on the way.
func TestPostfixBounce(t *testing.T) {
	t.Parallel()
	RequirePostfix(t)
	spec, rec := startTestMilter(t, "unix")
	rejecting := StartSink(t, SinkOptions{RejectRcpt: true})
	p := StartPostfix(t, PostfixOptions{
		NonSMTPDMilterAddr: spec,
		Transports:         map[string]string{"reject.example.net": "smtp:[127.0.0.1]:" + strconv.Itoa(rejecting.Port)},
	})
	r := p.Send(t, SMTPMessage{
		From: "user@example.org",
		To:   []string{"nobody@reject.example.net NOTIFY=FAILURE"},
		Data: []byte("From: user@example.org\nTo: nobody@reject.example.net\nSubject: will bounce\nMessage-ID: <bounce-me@example.org>\n\nHello.\n"),
	})
	if !r.Accepted() {
		t.Fatalf("not accepted: %s", r)
	}
	msgs := p.Sink.WaitMessages(t, 1, 20*time.Second)
	ndr := msgs[0]
	if ndr.Sender() != "" || len(ndr.Recipients()) != 1 || ndr.Recipients()[0] != "user@example.org" {
		t.Errorf("bounce envelope = %q → %q, want <> → user@example.org", ndr.MailArgs, ndr.RcptArgs)
	}
	for _, want := range []string{"Content-Type: multipart/report; report-type=delivery-status", "\nX-Test: 1\n", "bounce-me@example.org", "550 5.1.1"} {
		if !bytes.Contains(ndr.Data, []byte(want)) {
			t.Errorf("bounce lacks %q:\n%s", want, ndr.Data)
		}
	}
	seen := rec.all()
	if len(seen) != 1 || seen[0].from != "" || seen[0].queueID == "" {
		t.Errorf("non_smtpd milter saw %+v, want one null-sender message with {i}", seen)
	}
	p.WaitLog(t, "sender non-delivery notification", 5*time.Second)
	if err := p.Flush(); err != nil {
		t.Errorf("Flush: %v", err)
	}
	p.WaitQueueEmpty(t, 10*time.Second)
}

// TestTakenPort hands each MTA a port that a stranger already listens on:
// the start must notice that the greeting is not its own, and retry on
// another port. Not parallel: it replaces pickPort.
func TestTakenPort(t *testing.T) {
	RequirePostfix(t)
	RequireSendmail(t)
	stranger, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	go func() {
		for {
			c, err := stranger.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("220 stranger.example.net ESMTP not yours\r\n"))
			_ = c.Close()
		}
	}()
	// Postfix binds with SO_REUSEPORT, so a second Postfix on the port of
	// a first one starts without error, and must notice all the same.
	first := StartPostfix(t, PostfixOptions{})
	defer func() { pickPort = FreePort }()
	for _, tc := range []struct {
		taken int
		start func() string
	}{
		{stranger.Addr().(*net.TCPAddr).Port, func() string { return StartPostfix(t, PostfixOptions{}).SMTPAddr }},
		{stranger.Addr().(*net.TCPAddr).Port, func() string { return StartSendmail(t, SendmailOptions{}).SMTPAddr }},
		{first.Port, func() string { return StartPostfix(t, PostfixOptions{}).SMTPAddr }},
	} {
		taken, start := tc.taken, tc.start
		calls := 0
		pickPort = func(t testing.TB) int {
			calls++
			if calls == 1 {
				return taken
			}
			return FreePort(t)
		}
		addr := start()
		if portOf(addr) == taken || calls != 2 {
			t.Errorf("instance on %s after %d port picks, want a second port after %d", addr, calls, taken)
		}
	}
	if n, err := listeners(first.Port); err != nil || n != 1 {
		t.Errorf("first Postfix's port has %d listeners (%v), want 1", n, err)
	}
	if r := first.Send(t, SMTPMessage{From: "a@example.net", To: []string{"b@example.org"}, Data: []byte("Subject: still here\n\nhi\n")}); !r.Accepted() {
		t.Errorf("first Postfix no longer accepts mail: %s", r)
	}
}
