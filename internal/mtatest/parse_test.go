package mtatest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMilterSpec(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"inet:127.0.0.1:8899", "inet:8899@127.0.0.1", false},
		{"inet:[::1]:8899", "inet6:8899@::1", false},
		{"inet:8899@127.0.0.1", "inet:8899@127.0.0.1", false},
		{"unix:/run/milter.sock", "unix:/run/milter.sock", false},
		{"local:/run/milter.sock", "unix:/run/milter.sock", false},
		{"unix:relative.sock", "", true},
		{"inet:127.0.0.1", "", true},
		{"inet:127.0.0.1:99999", "", true},
		{"tcp:127.0.0.1:1", "", true},
		{"nocolon", "", true},
	}
	for _, tc := range tests {
		got, err := MilterSpec(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("MilterSpec(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func FuzzMilterSpec(f *testing.F) {
	for _, s := range []string{"inet:127.0.0.1:8899", "unix:/a", "inet:1@h", "inet:[::1]:1", ":", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := MilterSpec(s)
		if err == nil && !strings.HasPrefix(out, "inet") && !strings.HasPrefix(out, "unix:/") {
			t.Errorf("MilterSpec(%q) = %q", s, out)
		}
	})
}

func TestEnvelopeArg(t *testing.T) {
	tests := []struct {
		in     string
		sender bool
		want   string
		err    bool
	}{
		{"", true, "<>", false},
		{"<>", true, "<>", false},
		{"<> RET=HDRS", true, "<> RET=HDRS", false},
		{"a@example.net", true, "<a@example.net>", false},
		{"u@example.org NOTIFY=NEVER ORCPT=rfc822;u@example.org", false, "<u@example.org> NOTIFY=NEVER ORCPT=rfc822;u@example.org", false},
		{"<u@example.org>", false, "<u@example.org>", false},
		{"", false, "", true},
		{"<>", false, "", true},
		{"a<b@c", true, "", true},
	}
	for _, tc := range tests {
		got, err := envelopeArg(tc.in, tc.sender)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("envelopeArg(%q, %v) = %q, %v; want %q, error %v", tc.in, tc.sender, got, err, tc.want, tc.err)
		}
	}
}

func TestQueueID(t *testing.T) {
	tests := []struct{ final, want string }{
		{"2.0.0 Ok: queued as ABA939843C8", "ABA939843C8"},
		{"2.0.0 6AO0DWLH004381 Message accepted for delivery", "6AO0DWLH004381"},
		{"6AO0DWLH004381 Message accepted for delivery", "6AO0DWLH004381"},
		{"2.0.0 Ok", ""},
	}
	for _, tc := range tests {
		r := MessageResult{Final: Reply{Code: 250, Text: tc.final}}
		if got := r.QueueID(); got != tc.want {
			t.Errorf("QueueID(%q) = %q, want %q", tc.final, got, tc.want)
		}
	}
}

const sinkDump = "X-Client-Addr: 127.0.0.1\n" +
	"X-Client-Proto: ESMTP\n" +
	"X-Helo-Args: mx.example.org\n" +
	"X-Mail-Args: <> SIZE=120\n" +
	"X-Rcpt-Args: <u@example.org> ORCPT=rfc822;u@example.org\n" +
	"X-Rcpt-Args: <v@example.org>\n" +
	"Received: from mx.example.org ([127.0.0.1])\n" +
	"\tby sink.example.net (smtp-sink) with ESMTP id 12427d64;\n" +
	"\tMon, 23 Nov 2026 23:58:49 +0000 (UTC)\n" +
	"Subject: hi\n\nline1\n.dot\n\n"

func TestParseSinkDump(t *testing.T) {
	m, err := parseSinkDump([]byte(sinkDump))
	if err != nil {
		t.Fatal(err)
	}
	want := SinkMessage{
		ClientAddr: "127.0.0.1",
		Helo:       "mx.example.org",
		MailArgs:   "<> SIZE=120",
		RcptArgs:   []string{"<u@example.org> ORCPT=rfc822;u@example.org", "<v@example.org>"},
		Data:       []byte("Subject: hi\n\nline1\n.dot\n"),
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("parseSinkDump =\n%+v\nwant\n%+v", m, want)
	}
	if m.Sender() != "" || !reflect.DeepEqual(m.Recipients(), []string{"u@example.org", "v@example.org"}) {
		t.Errorf("Sender %q, Recipients %q", m.Sender(), m.Recipients())
	}
	if string(m.Header()) != "Subject: hi\n" || string(m.Body()) != "line1\n.dot\n" {
		t.Errorf("Header %q, Body %q", m.Header(), m.Body())
	}
	for _, bad := range []string{"", "X-Client-Addr: 1\n", "Bogus: x\nReceived: a\n\tb\n\tc\n", "Received: a\n"} {
		if _, err := parseSinkDump([]byte(bad)); err == nil {
			t.Errorf("parseSinkDump(%q): no error", bad)
		}
	}
}

func FuzzParseSinkDump(f *testing.F) {
	f.Add([]byte(sinkDump))
	f.Add([]byte("Received: a\n\tb\n\tc\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseSinkDump(b)
		if err == nil && len(m.Data) > len(b) {
			t.Errorf("data longer than input")
		}
		_, _, _ = m.Sender(), m.Header(), m.Body()
	})
}

const mailq = `		/tmp/sm1/mqueue (2 requests)
-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------
6AO0DWLH004381      612 Tue Nov 24 00:13 <sender@example.net>
     QUARANTINE: test quarantine
					 <quarantine@example.org>
6AO0DWLH004382*     100 Tue Nov 24 00:13 <>
					 <a@example.org>
					 <b@example.org>
		Total requests: 2
`

func TestParseMailQ(t *testing.T) {
	got := parseMailQ(mailq)
	want := []SendmailQueueEntry{
		{QueueID: "6AO0DWLH004381", Sender: "sender@example.net", Recipients: []string{"quarantine@example.org"}, Reason: "test quarantine"},
		{QueueID: "6AO0DWLH004382", Sender: "", Recipients: []string{"a@example.org", "b@example.org"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseMailQ =\n%+v\nwant\n%+v", got, want)
	}
	if got := parseMailQ("		/tmp/sm1/mqueue is empty\n		Total requests: 0\n"); len(got) != 0 {
		t.Errorf("empty queue parsed as %+v", got)
	}
}

func FuzzParseMailQ(f *testing.F) {
	f.Add(mailq)
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) { _ = parseMailQ(s) })
}

func TestSetMainCF(t *testing.T) {
	main := "# c\na = 1\nb = 2\n  continued\n"
	got := setMainCF(main, map[string]string{"b": "3", "z": "9", "c": "x"}, "test")
	want := "# c\na = 1\nb = 3\n  continued\n# test\nc = x\nz = 9\n"
	if got != want {
		t.Errorf("setMainCF =\n%q\nwant\n%q", got, want)
	}
	if got := ParseMainCF("# x = 1\na=1\n b = 2\nc = 3 4\n"); !reflect.DeepEqual(got, map[string]string{"a": "1", "c": "3 4"}) {
		t.Errorf("ParseMainCF = %v", got)
	}
}

// fakeTB records how Require ends a test; Skip and Fatal stop the
// goroutine like the real ones.
type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skip(args ...any) {
	f.skipped, f.msg = true, fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestRequire(t *testing.T) {
	tests := []struct {
		name        string
		env         string
		bins        []string
		skip, fatal bool
	}{
		{"present", "", []string{"sh"}, false, false},
		{"present strict", "1", []string{"sh"}, false, false},
		{"missing", "", []string{"sh", "no-such-program-mtatest"}, true, false},
		{"missing strict", "1", []string{"no-such-program-mtatest"}, false, true},
		{"missing path", "", []string{"/nonexistent/mtatest"}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(RequireEnv, tc.env)
			f := &fakeTB{TB: t}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); Require(f, tc.bins...) }()
			wg.Wait()
			if f.skipped != tc.skip || f.failed != tc.fatal {
				t.Errorf("skipped %v, failed %v (%q); want skipped %v, failed %v", f.skipped, f.failed, f.msg, tc.skip, tc.fatal)
			}
			if (tc.skip || tc.fatal) && !strings.Contains(f.msg, "no-such-program-mtatest") && !strings.Contains(f.msg, "/nonexistent/mtatest") {
				t.Errorf("message %q does not name the missing program", f.msg)
			}
		})
	}
}

// TestSinkPartialMessage checks that a message still being received is not
// reported: smtp-sink writes the file as lines arrive.
func TestSinkPartialMessage(t *testing.T) {
	Require(t, "smtp-sink")
	s := StartSink(t, SinkOptions{})
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for _, cmd := range []string{"", "EHLO a.example.net", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>", "DATA", "Subject: partial\r\n\r\nfirst line"} {
		if cmd != "" {
			if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
				t.Fatal(err)
			}
		}
		if strings.HasPrefix(cmd, "Subject") {
			break
		}
		for { // read a possibly multi-line reply
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("after %q: %v", cmd, err)
			}
			if len(l) < 4 || l[3] != '-' {
				break
			}
		}
	}
	// Wait until smtp-sink created the file, then check it is not listed.
	waitFor(5*time.Second, func() bool {
		ents, _ := os.ReadDir(s.Dir + "/msgs")
		return len(ents) > 0
	})
	if msgs, err := s.Messages(); err != nil || len(msgs) != 0 {
		t.Fatalf("Messages() during DATA = %d messages, %v; want none", len(msgs), err)
	}
	if _, err := c.Write([]byte(".\r\n")); err != nil {
		t.Fatal(err)
	}
	msgs := s.WaitMessages(t, 1, 5*time.Second)
	if string(msgs[0].Data) != "Subject: partial\n\nfirst line\n" {
		t.Errorf("Data = %q", msgs[0].Data)
	}
}
