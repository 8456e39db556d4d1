package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/redis/go-redis/v9"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/internal/throttle"
)

// logging is the daemon's log: the zap logger and the outputs behind it
// that outlive one configuration (log.file is reopened on SIGHUP, after
// logrotate renamed it).
type logging struct {
	*zap.Logger
	file   *reopenFile // nil when logs go to stderr
	syslog *syslogWriter
}

// newLogger builds the logger the configuration asks for; see newLogging.
func newLogger(c config.Log) (*zap.Logger, error) {
	l, err := newLogging(c)
	if err != nil {
		return nil, err
	}
	return l.Logger, nil
}

// newLogging builds the zap logger the configuration asks for: JSON by
// default (one verdict per line, for `report` and log shippers), console
// for people at a terminal. Logs go to stderr unless log.file is set; with
// log.syslog they go to syslog as well.
func newLogging(c config.Log) (*logging, error) {
	var level zapcore.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	l := &logging{}
	var out zapcore.WriteSyncer = zapcore.Lock(os.Stderr)
	if c.File != "" {
		f, err := openReopenFile(c.File)
		if err != nil {
			return nil, fmt.Errorf("log.file: %w", err)
		}
		l.file = f
		out = f
	}
	core := zapcore.NewCore(newEncoder(c.Format, true), out, level)
	if c.Syslog != "" {
		fac, ok := config.SyslogFacility(c.Syslog)
		if !ok {
			l.close()
			return nil, fmt.Errorf("log.syslog: unknown facility %q", c.Syslog)
		}
		l.syslog = newSyslogWriter(syslogPath, fac, "backscatter-milter")
		// syslog stamps each line itself: no time in the message.
		core = zapcore.NewTee(core, &syslogCore{LevelEnabler: level, enc: newEncoder(c.Format, false), w: l.syslog})
	}
	l.Logger = zap.New(core, zap.ErrorOutput(zapcore.Lock(os.Stderr)))
	return l, nil
}

func newEncoder(format string, withTime bool) zapcore.Encoder {
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	if !withTime {
		ec.TimeKey = ""
	}
	ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	ec.EncodeDuration = zapcore.StringDurationEncoder
	if format == "console" {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		return zapcore.NewConsoleEncoder(ec)
	}
	return zapcore.NewJSONEncoder(ec)
}

// toStderr reports whether the log's own output is stderr, so a start-up
// error printed there too would show twice.
func (l *logging) toStderr() bool { return l.file == nil }

// reopen opens log.file again under its name: after logrotate renamed the
// old file, new lines go to the new one. A failure keeps the old file.
func (l *logging) reopen() error {
	if l.file == nil {
		return nil
	}
	return l.file.reopen()
}

func (l *logging) close() {
	if l.Logger != nil {
		_ = l.Sync()
	}
	if l.file != nil {
		l.file.close()
	}
	if l.syslog != nil {
		l.syslog.close()
	}
}

// reopenFile is an append-only log file that can be reopened by name.
type reopenFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

func openReopenFile(path string) (*reopenFile, error) {
	f, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	return &reopenFile{path: path, f: f}, nil
}

func openLogFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
}

func (r *reopenFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Write(p)
}

func (r *reopenFile) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Sync()
}

func (r *reopenFile) reopen() error {
	f, err := openLogFile(r.path)
	if err != nil {
		return err
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	return old.Close()
}

func (r *reopenFile) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.f.Close()
}

var _ io.Writer = (*reopenFile)(nil)

// routeLibraryLogs sends the warnings of go-milter and go-redis, which
// would print plain lines to stderr, into the structured log.
func routeLibraryLogs(log *zap.Logger) {
	gm := log.Named("go-milter").Sugar()
	gomilter.LogWarning = func(format string, v ...any) { gm.Warnf(format, v...) }
	redis.SetLogger(&redisLogger{s: log.Named("redis").Sugar()})
}

// redisLogger passes go-redis's warnings on, at most one a minute with the
// number left out: a Redis that is down makes go-redis warn at every dial,
// which is every lookup. The failures themselves are counted by the sent
// log's Health.
type redisLogger struct {
	s        *zap.SugaredLogger
	throttle throttle.Throttle
}

func (l *redisLogger) Printf(_ context.Context, format string, v ...any) {
	ok, n := l.throttle.Allow(time.Now(), time.Minute)
	if !ok {
		return
	}
	if n > 0 {
		l.s.With("more_since_last_warning", n).Warnf(format, v...)
		return
	}
	l.s.Warnf(format, v...)
}
