package milter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
)

// guardListener hands go-milter only whole packets whose length and layout
// its parser survives, and closes a connection at the first other one.
//
// go-milter v0.10.1 (the newest release) has no recover in its connection
// goroutine and slices some packets without checking them: a zero-length
// packet, a CONNECT without the NUL after the host name or without a family
// byte, a MAIL or RCPT without a NUL. Any of them, from anything that can
// reach the socket, would end the whole process — every MTA session with
// it. It also allocates whatever length a packet claims (up to 512 MiB).
type guardListener struct{ net.Listener }

// maxPacket bounds one packet: body chunks of 1 MiB (the largest an MTA
// can negotiate) plus room for the header.
const maxPacket = 1<<20 + 1024

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardedConn{Conn: c}, nil
}

type guardedConn struct {
	net.Conn
	buf     []byte // reused between packets
	pending []byte // the rest of the checked packet, not yet read by go-milter
}

var errBadPacket = errors.New("milter: malformed packet from the MTA")

func (c *guardedConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		var hdr [4]byte
		if _, err := io.ReadFull(c.Conn, hdr[:]); err != nil {
			return 0, err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 || n > maxPacket {
			return 0, errBadPacket
		}
		if cap(c.buf) < int(4+n) {
			c.buf = make([]byte, 4+n, max(4+n, 4096))
		}
		pkt := c.buf[:4+n]
		copy(pkt, hdr[:])
		if _, err := io.ReadFull(c.Conn, pkt[4:]); err != nil {
			return 0, err
		}
		if !wellFormed(pkt[4], pkt[5:]) {
			return 0, errBadPacket
		}
		c.pending = pkt
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
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
