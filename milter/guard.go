package milter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
)

// guardListener hands go-milter only whole packets whose length and layout
// its parser survives, and closes a connection at the first other one. It
// also enforces Options.MaxConnections.
//
// go-milter v0.10.1 (the newest release) has no recover in its connection
// goroutine and slices some packets without checking them: a zero-length
// packet, a CONNECT without the NUL after the host name or without a family
// byte, a MAIL or RCPT without a NUL. Any of them, from anything that can
// reach the socket, would end the whole process — every MTA session with
// it. It also allocates whatever length a packet claims (up to 512 MiB).
type guardListener struct {
	net.Listener
	srv *Server
}

// maxPacket bounds one packet: body chunks of 1 MiB (the largest an MTA
// can negotiate) plus room for the header.
const maxPacket = 1<<20 + 1024

// Memory held per connection between packets and while one arrives: a
// buffer up to keepBuf is kept for the next packet; a larger one is
// dropped once go-milter has read its packet, and a large packet gets its
// full buffer only once its first keepBuf bytes have arrived, so a
// connection that sends a length and stalls holds 64 KiB, not what it
// claimed.
const keepBuf = 64 << 10

func (l guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.srv == nil {
			return &guardedConn{Conn: c}, nil
		}
		if l.srv.conns.Add(1) > int64(l.srv.opts.MaxConnections) {
			l.srv.conns.Add(-1)
			c.Close()
			l.srv.capRefused()
			continue
		}
		return &guardedConn{Conn: c, srv: l.srv}, nil
	}
}

type guardedConn struct {
	net.Conn
	srv     *Server // nil: not counted
	once    sync.Once
	buf     []byte // reused between packets while small
	pending []byte // the rest of the checked packet, not yet read by go-milter
}

var errBadPacket = errors.New("milter: malformed packet from the MTA")

func (c *guardedConn) Close() error {
	c.once.Do(func() {
		if c.srv != nil {
			c.srv.conns.Add(-1)
		}
	})
	return c.Conn.Close()
}

func (c *guardedConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		var hdr [4]byte
		if _, err := io.ReadFull(c.Conn, hdr[:]); err != nil {
			return 0, err
		}
		n := int(binary.BigEndian.Uint32(hdr[:]))
		if n == 0 || n > maxPacket {
			return 0, errBadPacket
		}
		pkt, err := c.readPacket(hdr, n)
		if err != nil {
			return 0, err
		}
		if !wellFormed(pkt[4], pkt[5:]) {
			return 0, errBadPacket
		}
		c.pending = pkt
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	if len(c.pending) == 0 && cap(c.buf) > keepBuf {
		c.buf = nil
	}
	return n, nil
}

// readPacket reads the n bytes after hdr into the connection's buffer:
// first into a buffer of at most keepBuf, and only once that is full into
// one of the packet's size, so that memory follows the bytes received.
func (c *guardedConn) readPacket(hdr [4]byte, n int) ([]byte, error) {
	total := 4 + n
	pkt := c.buf[:0]
	if cap(pkt) < min(total, keepBuf) {
		pkt = make([]byte, 0, min(total, keepBuf))
	}
	pkt = append(pkt, hdr[:]...)
	for len(pkt) < total {
		if len(pkt) == cap(pkt) {
			grown := make([]byte, len(pkt), total)
			copy(grown, pkt)
			pkt = grown
		}
		m, err := c.Conn.Read(pkt[len(pkt):min(cap(pkt), total)])
		pkt = pkt[:len(pkt)+m]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	c.buf = pkt
	return pkt, nil
}

// wellFormed checks what go-milter slices without checking.
func wellFormed(code byte, data []byte) bool {
	switch code {
	case 'C': // host NUL family [port address NUL]
		i := bytes.IndexByte(data, 0)
		return i >= 0 && i+1 < len(data)
	case 'M', 'R': // address NUL [args NUL …]
		return bytes.IndexByte(data, 0) >= 0
	}
	return true
}
