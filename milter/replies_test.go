package milter_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/milter"
)

// replyCounter sits between go-milter's client (the MTA) and the milter and
// counts every packet the milter sends, by code, whether or not the client
// reads it: a reply the MTA did not ask for is counted too.
type replyCounter struct {
	mu     sync.Mutex
	counts map[byte]int
}

// dialer returns a go-milter Dialer whose connections pass through c.
func (c *replyCounter) dialer(tb testing.TB) gomilter.Dialer {
	return dialFunc(func(network, addr string) (net.Conn, error) {
		up, err := net.Dial(network, addr)
		if err != nil {
			return nil, err
		}
		client, proxy := net.Pipe()
		go func() { io.Copy(up, proxy); up.Close() }()
		go func() { c.count(io.TeeReader(up, proxy)); proxy.Close() }()
		return client, nil
	})
}

type dialFunc func(network, addr string) (net.Conn, error)

func (f dialFunc) Dial(network, addr string) (net.Conn, error) { return f(network, addr) }

// count reads milter packets (4-byte length, code, data) until EOF.
func (c *replyCounter) count(r io.Reader) {
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n == 0 {
			return
		}
		c.mu.Lock()
		c.counts[hdr[4]]++
		c.mu.Unlock()
		if _, err := io.CopyN(io.Discard, r, int64(n-1)); err != nil {
			return
		}
	}
}

// take returns the counts so far and starts again from zero.
func (c *replyCounter) take() map[byte]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.counts
	c.counts = map[byte]int{}
	return out
}

// waits sums the packets the MTA waits for: every answer to a command
// (continue, accept, reject, tempfail, reply code, discard, skip), not the
// modifications that precede the end-of-message answer.
func waits(counts map[byte]int) int {
	n := 0
	for _, code := range []byte{'c', 'a', 'r', 't', 'y', 'd', 's'} {
		n += counts[code]
	}
	return n
}

// TestRepliesPerMessage counts what the MTA waits for per message when it
// offers every no-reply flag (Postfix and Sendmail both do): one answer per
// RCPT and one at end of message — none for MAIL, DATA, headers or body
// chunks, however long the body and whether or not the policy reads it.
func TestRepliesPerMessage(t *testing.T) {
	h := start(t, testEngine(), nil)
	rc := &replyCounter{counts: map[byte]int{}}
	macros := gomilter.NewMacroBag()
	cl := h.client(gomilter.WithDialer(rc.dialer(t)))
	s, err := cl.Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := rc.take(); got['O'] != 1 || len(got) != 1 {
		t.Fatalf("negotiation: packets %v, want one OPTNEG reply", got)
	}
	if _, err := s.Conn("client.test", gomilter.FamilyInet, 25, cleanIP); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Helo("client.test"); err != nil {
		t.Fatal(err)
	}
	bigBody := bytes.Repeat([]byte("a line of an ordinary message, long enough\r\n"), 6000) // 264 KB: 5 chunks
	cases := []struct {
		name      string
		m         message
		wantWaits int
		wantCodes map[byte]int
	}{
		{"ordinary mail, two recipients, 264 KB body",
			message{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}, {"carol@example.org", ""}},
				headers: [][2]string{{"Subject", " hi"}}, body: bigBody},
			3, map[byte]int{'c': 2, 'a': 1}},
		{"bounce whose body the policy reads",
			message{from: "", rcpts: []rcpt{{batvOKRcpt, ""}}, headers: dsnHeaders(), body: dsnBody("sent-1@example.org", "mx1.example.org")},
			2, map[byte]int{'c': 1, 'a': 1}},
		{"unauthenticated sender: recipients rewritten at end of message",
			message{from: "forger@fail.test", rcpts: []rcpt{{"bob@example.org", ""}},
				headers: [][2]string{{"Subject", " hi"}}, body: []byte("hello\r\n")},
			2, map[byte]int{'c': 1, 'a': 1, '-': 1, '2': 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.send(s, macros, c.m)
			if r.end == nil || r.end.Type != gomilter.ActionAccept {
				t.Fatalf("end %+v", r.end)
			}
			// The end-of-message answer is the last packet: every packet before
			// it has passed the counter once the client has read it.
			await.True(5*time.Second, func() bool {
				rc.mu.Lock()
				defer rc.mu.Unlock()
				return rc.counts['a'] > 0
			})
			got := rc.take()
			if waits(got) != c.wantWaits {
				t.Errorf("the MTA waited %d times (%v), want %d", waits(got), got, c.wantWaits)
			}
			for code, n := range c.wantCodes {
				if got[code] != n {
					t.Errorf("%d packets %q, want %d (all: %v)", got[code], code, n, got)
				}
			}
		})
	}
}

// TestQuickAckListener runs messages through milter.Listen's TCP listener,
// whose reads go through a buffer (quickack_linux.go): packets that arrive
// together, split or large come out whole and in order.
func TestQuickAckListener(t *testing.T) {
	ln, err := milter.Listen("inet:127.0.0.1:0", milter.SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := startOn(t, ln, testEngine(), nil)
	macros := gomilter.NewMacroBag()
	s := h.conn(macros, cleanIP, "client.test")
	defer s.Close()
	big := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 3000) // 192 KB
	for i, m := range []message{
		{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}, {"carol@example.org", ""}}, headers: [][2]string{{"Subject", " one"}}, body: big},
		{from: "", rcpts: []rcpt{{batvOKRcpt, ""}}, headers: dsnHeaders(), body: dsnBody("sent-1@example.org", "mx1.example.org")},
		{from: "forger@fail.test", rcpts: []rcpt{{"bob@example.org", ""}}, headers: [][2]string{{"Subject", " three"}}, body: []byte("x\r\n")},
	} {
		r := h.send(s, macros, m)
		if r.end == nil || r.end.Type != gomilter.ActionAccept {
			t.Fatalf("message %d: end %+v", i, r.end)
		}
	}
	seen := h.rec.all()
	if len(seen) != 3 || len(seen[0].rcpts) != 2 || seen[1].body == 0 || seen[2].rcpts[0] != "bob@example.org" {
		t.Fatalf("verdicts %+v", seen)
	}
	if v := h.waitVerdicts(3)[2]; v.str("ndr") != "suppressed" {
		t.Errorf("third message: ndr %q", v.str("ndr"))
	}
}
