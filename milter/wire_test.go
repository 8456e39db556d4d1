package milter_test

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
)

// packet frames one milter command: a 4-byte big-endian length (code
// included), the code, the data.
func packet(code byte, data ...[]byte) []byte {
	n := 1
	for _, d := range data {
		n += len(d)
	}
	b := binary.BigEndian.AppendUint32(nil, uint32(n))
	b = append(b, code)
	for _, d := range data {
		b = append(b, d...)
	}
	return b
}

func cstr(s string) []byte { return append([]byte(s), 0) }

// optneg is the MTA's negotiation packet: version 6, all actions, protocol.
func optneg(protocol uint32) []byte {
	d := binary.BigEndian.AppendUint32(nil, 6)
	d = binary.BigEndian.AppendUint32(d, uint32(gomilter.AllClientSupportedActionMasks))
	d = binary.BigEndian.AppendUint32(d, protocol)
	return packet('O', d)
}

// closedByServer reads until the server closes c, failing after timeout.
func closedByServer(t *testing.T, c net.Conn, timeout time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(timeout))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open after garbage")
	}
}

// TestGarbage: junk on the socket closes that connection only; the server
// keeps serving proper clients.
func TestGarbage(t *testing.T) {
	h := start(t, testEngine(), nil)
	cases := []struct {
		name string
		junk []byte
	}{
		{"HTTP request", []byte("GET / HTTP/1.0\r\nHost: x\r\n\r\n")},
		{"SMTP greeting", []byte("EHLO mx.remote.test\r\n")},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 'O'}},
		{"truncated optneg", optneg(uint32(mtaProtocols))[:9]},
		{"unknown command before negotiation", packet('Z', []byte("junk"))},
		{"command before negotiation", packet('M', cstr("<a@b>"))},
		{"unknown command after negotiation", append(optneg(uint32(mtaProtocols)), packet('Z', []byte("junk"))...)},
		{"second negotiation", append(optneg(uint32(mtaProtocols)), optneg(uint32(mtaProtocols))...)},
		{"connect with a bad IPv4 address", append(optneg(uint32(mtaProtocols)),
			packet('C', cstr("host"), []byte{'4', 0, 25}, cstr("not-an-ip"))...)},
		{"connect with a truncated body", append(optneg(uint32(mtaProtocols)), packet('C', cstr("host"), []byte{'4'})...)},
		{"header with one string", append(optneg(uint32(mtaProtocols)), packet('L', cstr("Subject"))...)},
		{"binary noise", []byte{0, 0, 0, 3, 'D', 0xff, 0xfe, 0x13, 0x37, 0, 0, 0, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(c.junk); err != nil {
				t.Fatal(err)
			}
			closedByServer(t, conn, 5*time.Second)
			r := h.deliver(cleanIP, message{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}}})
			wantAction(t, "proper client after garbage", r.end, gomilter.ActionAccept, "")
		})
	}
	if n := h.rec.errorCount("panic"); n != 0 {
		t.Errorf("%d panics recovered", n)
	}
}

// hostilePackets crash go-milter v0.10.1's server goroutine, and with it the
// whole process: a recover in the adapter's callbacks cannot catch them.
var hostilePackets = []struct {
	name string
	junk []byte
}{
	{"zero length at negotiation", []byte{0, 0, 0, 0}},
	{"zero length after negotiation", append(optneg(uint32(mtaProtocols)), 0, 0, 0, 0)},
	{"connect without NUL", append(optneg(uint32(mtaProtocols)), packet('C', []byte("host"))...)},
	{"connect without family", append(optneg(uint32(mtaProtocols)), packet('C', cstr("host"))...)},
	{"MAIL without NUL", append(optneg(uint32(mtaProtocols)), packet('M', []byte("<a@b>"))...)},
	{"RCPT without NUL", append(optneg(uint32(mtaProtocols)), packet('R', []byte("<a@b>"))...)},
	{"oversized length", append(optneg(uint32(mtaProtocols)), 0x01, 0, 0, 0, 'B')},
}

// TestHostilePackets sends each hostile packet to a server in a child
// process (so that a crash fails this test, not the whole run), then a
// proper transaction, against milter.Server as it runs in production
// (Serve puts every connection behind guardListener).
func TestHostilePackets(t *testing.T) {
	if mode := os.Getenv("BACKSCATTER_HOSTILE_CHILD"); mode != "" {
		h := start(t, testEngine(), nil)
		for _, c := range hostilePackets {
			conn, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			conn.Write(c.junk)
			closedByServer(t, conn, 5*time.Second)
			conn.Close()
			// A crash in the hostile connection's goroutine would take the
			// process down before this session has ended.
			if !await.True(10*time.Second, func() bool { return h.srv.Active() == 0 }) {
				t.Fatalf("the hostile session %s is still open", c.name)
			}
			r := h.deliver(cleanIP, message{from: "", rcpts: []rcpt{{batvOKRcpt, ""}}, headers: dsnHeaders(),
				body: append(dsnBody("sent-1@example.org", "mx1.example.org"), make([]byte, 300000)...)})
			wantAction(t, "proper client after "+c.name, r.end, gomilter.ActionAccept, "")
		}
		return
	}
	for _, mode := range []string{"production"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHostilePackets$", "-test.count=1")
			cmd.Env = append(os.Environ(), "BACKSCATTER_HOSTILE_CHILD="+mode)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("the milter process died: %v\n%s", err, firstLines(out, 12))
			}
		})
	}
}

func firstLines(b []byte, n int) string {
	ls := strings.SplitN(string(b), "\n", n+1)
	return strings.Join(ls[:min(n, len(ls))], "\n")
}
