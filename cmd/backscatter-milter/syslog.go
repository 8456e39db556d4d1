package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"go.uber.org/zap/zapcore"
)

// syslogPath is the local syslog socket (log.syslog); tests point it at a
// socket of their own.
var syslogPath = "/dev/log"

// syslogWriter sends lines to the local syslog daemon in the format glibc's
// syslog(3) uses on /dev/log, so that with log.syslog: mail the verdicts
// land in mail.log beside Postfix's own lines. Syslog is a copy: when the
// daemon is away the line is dropped and the next write dials again.
type syslogWriter struct {
	mu       sync.Mutex
	path     string
	facility int
	tag      string
	conn     net.Conn
}

func newSyslogWriter(path string, facility int, tag string) *syslogWriter {
	return &syslogWriter{path: path, facility: facility, tag: tag}
}

// write sends one message with severity sev (RFC 5424 numbers).
func (w *syslogWriter) write(sev int, msg []byte) error {
	msg = bytes.TrimRight(msg, "\n")
	w.mu.Lock()
	defer w.mu.Unlock()
	line := fmt.Appendf(nil, "<%d>%s %s[%d]: %s", w.facility*8+sev, time.Now().Format(time.Stamp), w.tag, os.Getpid(), msg)
	for attempt := 0; attempt < 2; attempt++ {
		if w.conn == nil {
			c, err := net.Dial("unixgram", w.path)
			if err != nil {
				return err
			}
			w.conn = c
		}
		if _, err := w.conn.Write(line); err == nil {
			return nil
		}
		// syslogd restarted: its socket is new, dial again once.
		w.conn.Close()
		w.conn = nil
	}
	return fmt.Errorf("syslog %s: not delivered", w.path)
}

func (w *syslogWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// syslogCore is a zap core writing each entry to syslog with the severity
// of its level.
type syslogCore struct {
	zapcore.LevelEnabler
	enc zapcore.Encoder
	w   *syslogWriter
}

func (c *syslogCore) With(fields []zapcore.Field) zapcore.Core {
	enc := c.enc.Clone()
	for _, f := range fields {
		f.AddTo(enc)
	}
	return &syslogCore{LevelEnabler: c.LevelEnabler, enc: enc, w: c.w}
}

func (c *syslogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *syslogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	buf, err := c.enc.EncodeEntry(e, fields)
	if err != nil {
		return err
	}
	defer buf.Free()
	// A syslog outage must not look like a failure of the log as a whole:
	// the primary output (file or stderr) has the line.
	_ = c.w.write(syslogSeverity(e.Level), buf.Bytes())
	return nil
}

func (c *syslogCore) Sync() error { return nil }

// syslogSeverity maps a zap level to a syslog severity (RFC 5424 6.2.1).
func syslogSeverity(l zapcore.Level) int {
	switch {
	case l >= zapcore.DPanicLevel:
		return 2 // crit
	case l == zapcore.ErrorLevel:
		return 3 // err
	case l == zapcore.WarnLevel:
		return 4 // warning
	case l == zapcore.InfoLevel:
		return 6 // info
	}
	return 7 // debug
}
