package mtatest

import (
	"bytes"
	"net"
	"os"
	"sync"
)

// syslogSink receives syslog datagrams on a unix socket, which the Sendmail
// namespace mounts on /dev/log, and keeps them as text lines: Sendmail can
// log nowhere else.
type syslogSink struct {
	conn *net.UnixConn
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

func listenSyslog(path string) (*syslogSink, error) {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	// Sendmail's children may log after giving up root.
	if err := os.Chmod(path, 0o666); err != nil {
		_ = conn.Close()
		return nil, err
	}
	s := &syslogSink{conn: conn, done: make(chan struct{})}
	go s.loop()
	return s, nil
}

func (s *syslogSink) loop() {
	defer close(s.done)
	b := make([]byte, 64<<10)
	for {
		n, _, err := s.conn.ReadFrom(b)
		if err != nil {
			return
		}
		line := bytes.TrimRight(b[:n], "\x00\r\n")
		// Drop the "<priority>" prefix; keep "Mon DD HH:MM:SS tag[pid]: text".
		if len(line) > 0 && line[0] == '<' {
			if i := bytes.IndexByte(line, '>'); i > 0 && i < 5 {
				line = line[i+1:]
			}
		}
		s.mu.Lock()
		s.buf.Write(line)
		s.buf.WriteByte('\n')
		s.mu.Unlock()
	}
}

func (s *syslogSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func (s *syslogSink) close() {
	_ = s.conn.Close()
	<-s.done
}
