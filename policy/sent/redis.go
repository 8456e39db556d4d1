package sent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults for RedisOptions. Timeouts are short because a lookup sits in the
// SMTP transaction: a slow Redis must cost little, and an error is only "no
// evidence".
const (
	DefaultRedisAddr    = "127.0.0.1:6379"
	DefaultRedisPrefix  = "bsm:sent:"
	DefaultDialTimeout  = time.Second
	DefaultRedisTimeout = 500 * time.Millisecond
)

// RedisOptions configures a RedisStore; zero fields take the defaults above.
type RedisOptions struct {
	Addr         string // host:port
	Username     string // ACL user, optional
	Password     string // never printed
	DB           int
	Prefix       string // key prefix, so several services can share a server
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	PoolSize     int // 0: go-redis default (10 per CPU)
}

// String describes the options with the password redacted.
func (o RedisOptions) String() string {
	pw := ""
	if o.Password != "" {
		pw = " password=REDACTED"
	}
	user := ""
	if o.Username != "" {
		user = " user=" + o.Username
	}
	return fmt.Sprintf("redis addr=%s db=%d prefix=%q%s%s", o.Addr, o.DB, o.Prefix, user, pw)
}

// GoString keeps %#v from printing the password.
func (o RedisOptions) GoString() string { return o.String() }

func (o RedisOptions) withDefaults() RedisOptions {
	if o.Addr == "" {
		o.Addr = DefaultRedisAddr
	}
	if o.Prefix == "" {
		o.Prefix = DefaultRedisPrefix
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultRedisTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultRedisTimeout
	}
	return o
}

// RedisStore keeps the log in Redis, for fleets of MTAs sharing one log.
// Each entry is a key (prefix + kind + normalised ID) set with an expiry, so
// Redis itself forgets expired entries.
type RedisStore struct {
	client *redis.Client
	opts   RedisOptions
	ttl    time.Duration
	now    func() time.Time
	closed atomic.Bool
}

// NewRedis returns a store using the Redis server in opts. It does not
// connect: go-redis dials on first use, so a Redis that is down at start-up
// only means "no evidence" until it is back. Call Ping to check the
// configuration.
func NewRedis(opts RedisOptions, ttl time.Duration) (*RedisStore, error) {
	opts = opts.withDefaults()
	if opts.DB < 0 {
		return nil, fmt.Errorf("sent: redis: db %d is negative", opts.DB)
	}
	if opts.PoolSize < 0 {
		return nil, fmt.Errorf("sent: redis: pool size %d is negative", opts.PoolSize)
	}
	client := redis.NewClient(&redis.Options{
		Addr:         opts.Addr,
		Username:     opts.Username,
		Password:     opts.Password,
		DB:           opts.DB,
		DialTimeout:  opts.DialTimeout,
		ReadTimeout:  opts.ReadTimeout,
		WriteTimeout: opts.WriteTimeout,
		PoolSize:     opts.PoolSize,
		PoolTimeout:  opts.ReadTimeout + opts.WriteTimeout,
		// One attempt, no retries: a lookup must answer within its
		// timeouts, and a miss is only "no evidence".
		MaxRetries:            -1,
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
		// RESP2 and no extras: works with any Redis-compatible server and
		// keeps the handshake to AUTH and SELECT.
		Protocol:                 2,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	return &RedisStore{client: client, opts: opts, ttl: orDefault(ttl), now: time.Now}, nil
}

// String describes the store with the password redacted.
func (s *RedisStore) String() string { return "sent log on " + s.opts.String() }

// Ping checks that the server answers and accepts the credentials.
func (s *RedisStore) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return s.wrap("ping", s.client.Ping(ctx).Err())
}

// Record notes a sent Message-ID.
func (s *RedisStore) Record(ctx context.Context, messageID string, at time.Time) error {
	key, err := messageIDKey(messageID)
	if err != nil {
		return err
	}
	return s.record(ctx, key, at)
}

// Seen reports whether a Message-ID was recorded and has not expired.
func (s *RedisStore) Seen(ctx context.Context, messageID string) (bool, error) {
	key, err := messageIDKey(messageID)
	if err != nil {
		return false, err
	}
	return s.seen(ctx, key)
}

// RecordSender notes an envelope sender we used.
func (s *RedisStore) RecordSender(ctx context.Context, addr string, at time.Time) error {
	key, err := senderKey(addr)
	if err != nil {
		return err
	}
	return s.record(ctx, key, at)
}

// SeenSender reports whether an envelope sender was recorded and has not
// expired.
func (s *RedisStore) SeenSender(ctx context.Context, addr string) (bool, error) {
	key, err := senderKey(addr)
	if err != nil {
		return false, err
	}
	return s.seen(ctx, key)
}

func (s *RedisStore) record(ctx context.Context, key string, at time.Time) error {
	if s.closed.Load() {
		return ErrClosed
	}
	now := s.now()
	left := expiry(at, now, s.ttl).Sub(now).Truncate(time.Millisecond)
	if left <= 0 {
		return nil // already expired: nothing to remember
	}
	// The value is the send time, for whoever inspects the keys by hand.
	// go-redis sends EX for whole seconds and PX otherwise.
	if at.IsZero() || at.After(now) {
		at = now
	}
	val := strconv.FormatInt(at.Unix(), 10)
	return s.wrap("record", s.client.Set(ctx, s.opts.Prefix+key, val, left).Err())
}

func (s *RedisStore) seen(ctx context.Context, key string) (bool, error) {
	if s.closed.Load() {
		return false, ErrClosed
	}
	n, err := s.client.Exists(ctx, s.opts.Prefix+key).Result()
	if err != nil {
		return false, s.wrap("seen", err)
	}
	return n > 0, nil
}

func (s *RedisStore) wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redis.ErrClosed):
		return ErrClosed
	}
	// go-redis errors name the address and the cause, never the password.
	return fmt.Errorf("sent: redis %s on %s: %w", op, s.opts.Addr, err)
}

// Close closes the connections; later calls return ErrClosed.
func (s *RedisStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.client.Close()
}
