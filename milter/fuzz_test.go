package milter_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/policy/sent"
)

// Pools the fuzzer picks from with a one-byte argument, so that short
// inputs reach deep states (bounce-class mail, listed clients, BATV tags,
// a parseable DSN); longer arguments are used as raw bytes.
var (
	fuzzIPs     = []string{cleanIP, backscatIP, tagIP, quarantineIP, "127.0.0.1", "::1", "IPv6:[::1]", "not-an-ip"}
	fuzzSenders = []string{"", "postmaster@remote.test", "alice@pass.test", "alice@example.org", "x@fail.test", "<>", "a\r\nb"}
	fuzzRcpts   = []string{"bob@example.org", batvOKRcpt, "bob+prvs=0000000000@example.org", "x@remote.test", "<bob@example.org>", ""}
	fuzzArgs    = []string{"", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.org", "RET=FULL ENVID=x SIZE=10", "NOTIFY=NEVER", "=", "NOTIFY"}
	fuzzHeaders = [][2]string{
		{"Content-Type", ` multipart/report; report-type=delivery-status; boundary="BB"`},
		{"Message-ID", " <out-1@example.org>"}, {"Auto-Submitted", " auto-replied"}, {"In-Reply-To", " <sent-1@example.org>"},
		{"DKIM-Signature", " v=1; d=pass.test"}, {"Subject", ""}, {"", ""},
	}
	fuzzBodies = [][]byte{dsnBody("sent-1@example.org", "mx1.example.org", "X-Postfix-Queue-ID: 4ORIG"),
		dsnBody("forged@example.org", "spam.remote.test"), {}, []byte("\r\n.\r\n"), make([]byte, 70000)}
	fuzzMacros = []string{"i", "{auth_authen}", "{client_addr}", "{rcpt_addr}", "j", "{mail_addr}"}
)

// fuzzScript turns fuzz input into milter packets: a flags byte (protocol
// version, offered features), then commands, each an opcode byte and
// length-prefixed arguments.
type fuzzScript struct{ data []byte }

func (s *fuzzScript) arg() []byte {
	if len(s.data) == 0 {
		return nil
	}
	n := min(int(s.data[0]), len(s.data)-1)
	a := s.data[1 : 1+n]
	s.data = s.data[1+n:]
	return a
}

func (s *fuzzScript) pick(pool []string) string {
	a := s.arg()
	if len(a) == 1 {
		return pool[int(a[0])%len(pool)]
	}
	return string(a)
}

func (s *fuzzScript) next() (pkt []byte, ok bool) {
	if len(s.data) == 0 {
		return nil, false
	}
	op := s.data[0]
	s.data = s.data[1:]
	switch op % 15 {
	case 0: // connect
		fam := []byte{'4', '6', 'L', 'U'}[int(op/15)%4]
		d := append(cstr("client.test"), fam)
		if fam != 'U' {
			d = append(binary.BigEndian.AppendUint16(d, 25), cstr(s.pick(fuzzIPs))...)
		}
		return packet('C', d), true
	case 1:
		return packet('H', cstr(s.pick([]string{"client.test", "localhost", ""}))), true
	case 2:
		return packet('M', cstr("<"+s.pick(fuzzSenders)+">"), cstr(s.pick(fuzzArgs))), true
	case 3:
		return packet('R', cstr("<"+s.pick(fuzzRcpts)+">"), cstr(s.pick(fuzzArgs))), true
	case 4:
		return packet('T'), true
	case 5:
		a := s.arg()
		if len(a) == 1 {
			h := fuzzHeaders[int(a[0])%len(fuzzHeaders)]
			return packet('L', cstr(h[0]), cstr(h[1])), true
		}
		return packet('L', cstr(string(a)), cstr(string(s.arg()))), true
	case 6:
		return packet('N'), true
	case 7:
		a := s.arg()
		if len(a) == 1 {
			a = fuzzBodies[int(a[0])%len(fuzzBodies)]
		}
		return packet('B', a), true
	case 8:
		return packet('E'), true
	case 9:
		return packet('A'), true
	case 10: // macros for a stage
		d := []byte{"CHMRTNELUB"[int(op/15)%10]}
		for range int(op/15)%3 + 1 {
			d = append(d, cstr(s.pick(fuzzMacros))...)
			d = append(d, cstr(s.pick([]string{"4QID", "alice", cleanIP}))...)
		}
		return packet('D', d), true
	case 11:
		return packet('U', cstr(string(s.arg()))), true
	case 12: // any command code with any data (but never length 0)
		code := byte('A')
		if a := s.arg(); len(a) > 0 {
			code = a[0]
		}
		return packet(code, s.arg()), true
	case 13:
		return packet('K'), true
	default: // a whole transaction at once: reach end of message often
		var b []byte
		b = append(b, packet('M', cstr("<"+s.pick(fuzzSenders)+">"))...)
		b = append(b, packet('R', cstr("<"+s.pick(fuzzRcpts)+">"), cstr(s.pick(fuzzArgs)))...)
		b = append(b, packet('T')...)
		b = append(b, packet('L', cstr("Content-Type"), cstr(fuzzHeaders[0][1]))...)
		b = append(b, packet('N')...)
		b = append(b, packet('B', fuzzBodies[int(op/15)%len(fuzzBodies)])...)
		return append(b, packet('E')...), true
	}
}

// fuzzSeeds adds the seeds both session fuzz targets start from.
func fuzzSeeds(f *testing.F) {
	full := []byte{0,
		0, 1, 0, 1, 1, 0, // connect clean IP, HELO
		2, 1, 0, 1, 0, // MAIL FROM:<>
		3, 1, 1, 1, 0, // RCPT TO: tagged
		3, 1, 0, 1, 0, // RCPT TO: untagged (rejected)
		4, 5, 1, 0, 6, // DATA, Content-Type, EOH
		7, 1, 0, 8} // DSN body, EOM
	f.Add(full)
	f.Add(append(append([]byte{}, full...), 2, 1, 2, 1, 1, 3, 1, 0, 1, 1, 8, 9))   // second message without abort
	f.Add([]byte{0, 10, 2, 1, 1, 1, 1, 0, 1, 1, 2, 1, 3, 1, 0, 3, 1, 3, 1, 1, 14}) // SASL outbound
	f.Add([]byte{8, 0, 1, 4, 1, 4, 1, 2, 1, 0, 1, 0, 3, 1, 3, 1, 0, 9})            // old MTA, abort after RCPT
	f.Add([]byte{3, 12, 1, 'O', 4, 1, 2, 3, 4, 8, 8, 9, 9})                        // renegotiation, EOM first
	f.Add([]byte{1, 0, 1, 7, 14, 29, 44, 5, 3, 'a', ':', 'b', 2, 0xff, 0xfe, 7, 3, 0, 0, 0, 8, 13, 0, 1, 5})
}

// FuzzSession feeds random command sequences to a server: it must never
// panic (not even a recovered one), never hang, and end every session.
func FuzzSession(f *testing.F) {
	fuzzSeeds(f)
	h := start(f, testEngine(), nil)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzSession(t, h, data, nil) })
}

// FuzzSessionRealStore is FuzzSession against a real bbolt sent log in a
// temporary directory (watched as serve watches it), so outbound mail is
// really recorded and bounces really looked up. Two bits of the flags byte
// damage the file before the session: its meta pages (16) or its length
// (32). The store must recover and no panic may reach the session.
func FuzzSessionRealStore(f *testing.F) {
	fuzzSeeds(f)
	f.Add([]byte{16, 0, 10, 2, 1, 1, 1, 1, 0, 1, 1, 2, 1, 3, 1, 0, 3, 1, 3, 1, 1, 14})
	f.Add([]byte{32, 0, 1, 0, 1, 1, 0, 2, 1, 0, 1, 0, 3, 1, 1, 1, 0, 4, 5, 1, 0, 6, 7, 1, 0, 8})
	f.Add([]byte{48, 14, 29, 44})
	path := filepath.Join(f.TempDir(), "sent.db")
	health := sent.NewHealth("embedded", nil)
	st, err := sent.OpenBoltHealth(path, time.Hour, health)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	eng := testEngine()
	eng.Sent = sent.Watch(st, health)
	h := start(f, eng, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzSession(t, h, data, func(flags byte) {
			if flags&16 != 0 {
				damageFile(t, path, 0, 8192)
			}
			if flags&32 != 0 {
				os.Truncate(path, 4096+int64(len(data)))
			}
		})
	})
}

// damageFile overwrites [from, to) of path with bytes that are not bbolt.
func damageFile(t *testing.T, path string, from, to int64) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return // replaced and not yet recreated: nothing to damage
	}
	defer f.Close()
	f.WriteAt(bytes.Repeat([]byte{0xa5, 0x5a, 0x13}, int(to-from)/3+1)[:to-from], from)
}

// fuzzSession runs one fuzz input as one MTA connection; damage, if not
// nil, is called with the flags byte before the connection opens.
func fuzzSession(t *testing.T, h *harness, data []byte, damage func(flags byte)) {
	if len(data) == 0 {
		return
	}
	flags := data[0]
	if damage != nil {
		damage(flags)
	}
	protocol := uint32(mtaProtocols)
	if flags&1 != 0 {
		protocol &^= uint32(gomilter.OptHeaderLeadingSpace)
	}
	if flags&2 != 0 {
		protocol &^= uint32(gomilter.OptSkip | gomilter.OptNoReplies)
	}
	neg := optneg(protocol)
	if flags&4 != 0 { // an MTA that offers only some actions
		binary.BigEndian.PutUint32(neg[9:], uint32(gomilter.OptAddHeader|gomilter.OptQuarantine))
	}
	if flags&8 != 0 { // protocol version 2
		binary.BigEndian.PutUint32(neg[5:], 2)
		binary.BigEndian.PutUint32(neg[13:], protocol&0x7f)
	}
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	drained := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, conn)
		drained <- err
	}()
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	s := &fuzzScript{data: data[1:]}
	out := neg
	for p, ok := s.next(); ok; p, ok = s.next() {
		out = append(out, p...)
	}
	out = append(out, packet('Q')...)
	if _, err := conn.Write(out); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the server stopped reading")
		}
	}
	conn.(*net.TCPConn).CloseWrite()
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not end the session after QUIT")
	}
	if !await.True(10*time.Second, func() bool { return h.srv.Active() == 0 }) {
		t.Fatalf("%d sessions still active", h.srv.Active())
	}
	if n := h.rec.errorCount("panic"); n != 0 {
		t.Fatalf("%d panics recovered in the session:\n%s", n, h.json.String())
	}
}
