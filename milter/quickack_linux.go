package milter

import (
	"bufio"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// quickAckListener acknowledges every segment from the MTA at once.
//
// Sendmail writes a macro packet and the command it belongs to as two
// small writes with Nagle's algorithm on: the second waits until the
// first is acknowledged. A milter that has nothing to answer to a macro
// packet lets its kernel delay that ACK (up to 40 ms on Linux), so every
// macro packet costs a delayed-ACK timeout and a transaction through
// Sendmail over TCP takes hundreds of milliseconds. TCP_QUICKACK turns
// the delay off; Linux clears it again after some reads, so it is set
// after every read.
//
// Reads go through a small buffer: go-milter reads a packet's length and
// then its body, and the guard in front of it does the same, so without
// one every packet would cost two reads and two setsockopt calls; with it,
// the packets the MTA has written so far come in with one of each.
type quickAckListener struct{ net.Listener }

func (l quickAckListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c, nil
	}
	q := &quickAckConn{TCPConn: tc, rc: rc}
	q.r = bufio.NewReaderSize(quickAckReader{q}, 4096)
	q.quickAck()
	return q, nil
}

type quickAckConn struct {
	*net.TCPConn
	rc syscall.RawConn
	r  *bufio.Reader // over quickAckReader
}

func (c *quickAckConn) quickAck() {
	c.rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
	})
}

func (c *quickAckConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// quickAckReader reads from the socket and acknowledges at once.
type quickAckReader struct{ c *quickAckConn }

func (r quickAckReader) Read(b []byte) (int, error) {
	n, err := r.c.TCPConn.Read(b)
	r.c.quickAck()
	return n, err
}
