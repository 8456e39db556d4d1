package main

import (
	"context"
	"fmt"
	"os"

	gomilter "github.com/d--j/go-milter"
	"github.com/redis/go-redis/v9"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
)

// newLogger builds the zap logger the configuration asks for: JSON by
// default (one verdict per line, for `report` and log shippers), console
// for people at a terminal. Logs go to stderr unless log.file is set.
func newLogger(c config.Log) (*zap.Logger, error) {
	var level zapcore.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	ec.EncodeDuration = zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	if c.Format == "console" {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	var out zapcore.WriteSyncer = zapcore.Lock(os.Stderr)
	if c.File != "" {
		f, err := os.OpenFile(c.File, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("log.file: %w", err)
		}
		out = zapcore.Lock(f)
	}
	return zap.New(zapcore.NewCore(enc, out, level), zap.ErrorOutput(zapcore.Lock(os.Stderr))), nil
}

// routeLibraryLogs sends the warnings of go-milter and go-redis, which
// would print plain lines to stderr, into the structured log.
func routeLibraryLogs(log *zap.Logger) {
	gm := log.Named("go-milter").Sugar()
	gomilter.LogWarning = func(format string, v ...any) { gm.Warnf(format, v...) }
	redis.SetLogger(redisLogger{log.Named("redis").Sugar()})
}

type redisLogger struct{ s *zap.SugaredLogger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) { l.s.Warnf(format, v...) }
