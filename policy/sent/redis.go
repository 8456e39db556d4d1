package sent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
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
//
// The topology follows from the fields: MasterName set → Sentinel (Addrs
// are the sentinels); Cluster set → Redis Cluster (Addrs are seed nodes);
// otherwise Addrs holds exactly one server.
type RedisOptions struct {
	Addrs      []string // host:port each
	MasterName string   // Sentinel: the monitored master's name
	Cluster    bool     // Redis Cluster
	Username   string   // ACL user, optional
	Password   string   // never printed
	// SentinelUsername and SentinelPassword authenticate to the sentinels
	// themselves, when they require it (never printed).
	SentinelUsername string
	SentinelPassword string
	TLS              *tls.Config // nil: plain TCP
	DB               int         // must be 0 with Cluster
	Prefix           string      // key prefix, so several services can share a server
	DialTimeout      time.Duration
	ReadTimeout      time.Duration
	WriteTimeout     time.Duration
	PoolSize         int // 0: go-redis default (10 per CPU)
}

// Topology names the kind of deployment the options describe.
func (o RedisOptions) Topology() string {
	switch {
	case o.MasterName != "":
		return "sentinel"
	case o.Cluster:
		return "cluster"
	}
	return "single"
}

// String describes the options with the passwords redacted.
func (o RedisOptions) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "redis %s addrs=%s", o.Topology(), strings.Join(o.Addrs, ","))
	if o.MasterName != "" {
		fmt.Fprintf(&b, " master=%s", o.MasterName)
	}
	fmt.Fprintf(&b, " db=%d prefix=%q", o.DB, o.Prefix)
	if o.TLS != nil {
		b.WriteString(" tls")
	}
	if o.Username != "" {
		b.WriteString(" user=" + o.Username)
	}
	if o.Password != "" {
		b.WriteString(" password=REDACTED")
	}
	if o.SentinelPassword != "" {
		b.WriteString(" sentinel_password=REDACTED")
	}
	return b.String()
}

// GoString keeps %#v from printing the password.
func (o RedisOptions) GoString() string { return o.String() }

func (o RedisOptions) withDefaults() RedisOptions {
	if len(o.Addrs) == 0 {
		o.Addrs = []string{DefaultRedisAddr}
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

// Validate reports the first inconsistency of the options.
func (o RedisOptions) Validate() error {
	switch {
	case o.DB < 0:
		return fmt.Errorf("sent: redis: db %d is negative", o.DB)
	case o.PoolSize < 0:
		return fmt.Errorf("sent: redis: pool size %d is negative", o.PoolSize)
	case o.Cluster && o.MasterName != "":
		return errors.New("sent: redis: cluster and master_name (Sentinel) exclude each other")
	case o.Cluster && o.DB != 0:
		return fmt.Errorf("sent: redis: db %d: Redis Cluster has only database 0", o.DB)
	case o.MasterName == "" && !o.Cluster && len(o.Addrs) > 1:
		return fmt.Errorf("sent: redis: %d addresses: several need cluster: true (seed nodes) or master_name (sentinels)", len(o.Addrs))
	}
	for _, a := range o.Addrs {
		if i := strings.LastIndexByte(a, ':'); i <= 0 || i == len(a)-1 {
			return fmt.Errorf("sent: redis: address %q: want host:port", a)
		}
	}
	return nil
}

// TLSFiles names the files of a TLS client configuration. Empty CA means the
// system roots; Cert and Key go together (client certificate, optional).
type TLSFiles struct {
	CA         string
	Cert       string
	Key        string
	ServerName string // overrides the name checked in the server certificate
}

// Config builds the tls.Config (TLS 1.2 or later).
func (f TLSFiles) Config() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca %s: no PEM certificate in the file", f.CA)
		}
		c.RootCAs = pool
	}
	switch {
	case f.Cert != "" && f.Key != "":
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			// The error names the files, never the key material.
			return nil, fmt.Errorf("tls cert/key: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	case f.Cert != "" || f.Key != "":
		return nil, errors.New("tls: cert and key go together: give both or neither")
	}
	return c, nil
}

// RedisStore keeps the log in Redis, for fleets of MTAs sharing one log.
// Each entry is a key (prefix + kind + {normalised ID}) set with an expiry,
// so Redis itself forgets expired entries. The braces are a hash tag: in a
// Cluster every key of one message lands in one slot.
type RedisStore struct {
	client  redis.UniversalClient
	cluster *redis.ClusterClient // the same client, when it is a Cluster
	opts    RedisOptions
	ttl     time.Duration
	now     func() time.Time
	closed  atomic.Bool
	// legacy: also look up the key form written before hash tags (single
	// server and Sentinel only: a Cluster never held it), so an upgrade
	// does not forget the mail sent in the last TTL.
	legacy bool
}

// NewRedis returns a store using the Redis deployment in opts. It does not
// connect: go-redis dials on first use, so a Redis that is down at start-up
// only means "no evidence" until it is back. Call Ping to check the
// configuration.
func NewRedis(opts RedisOptions, ttl time.Duration) (*RedisStore, error) {
	opts = opts.withDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	uo := &redis.UniversalOptions{
		Addrs:            opts.Addrs,
		MasterName:       opts.MasterName,
		IsClusterMode:    opts.Cluster,
		Username:         opts.Username,
		Password:         opts.Password,
		SentinelUsername: opts.SentinelUsername,
		SentinelPassword: opts.SentinelPassword,
		TLSConfig:        opts.TLS,
		DB:               opts.DB,
		DialTimeout:      opts.DialTimeout,
		ReadTimeout:      opts.ReadTimeout,
		WriteTimeout:     opts.WriteTimeout,
		PoolSize:         opts.PoolSize,
		PoolTimeout:      opts.ReadTimeout + opts.WriteTimeout,
		// One attempt, no retries: a lookup must answer within its
		// timeouts, and a miss is only "no evidence". (Cluster clients
		// still follow MOVED/ASK redirects: MaxRedirects stays default.)
		MaxRetries:            -1,
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
		// RESP2 and no extras: works with any Redis-compatible server and
		// keeps the handshake to AUTH and SELECT.
		Protocol:                 2,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	s := &RedisStore{opts: opts, ttl: orDefault(ttl), now: time.Now, legacy: !opts.Cluster}
	if opts.Cluster {
		co := uo.Cluster()
		// go-redis learns a new slot map only from MOVED replies and a
		// periodic reload (60 s by default); a dead master answers
		// nothing. Reload often, and on every failed call (see wrap), so
		// a promoted replica is used within seconds of the failover.
		co.ClusterStateReloadInterval = clusterStateReload
		s.cluster = redis.NewClusterClient(co)
		s.client = s.cluster
	} else {
		s.client = redis.NewUniversalClient(uo)
	}
	return s, nil
}

// clusterStateReload is how often a Cluster client refreshes its slot map
// when nothing went wrong.
const clusterStateReload = 5 * time.Second

// String describes the store with the password redacted.
func (s *RedisStore) String() string { return "sent log on " + s.opts.String() }

// Ping checks that the deployment answers and accepts the credentials. On a
// Cluster it pings every master, so a missing node is noticed at start.
func (s *RedisStore) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.cluster != nil {
		return s.wrap("ping", s.cluster.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			return n.Ping(ctx).Err()
		}))
	}
	return s.wrap("ping", s.client.Ping(ctx).Err())
}

// Record notes a sent Message-ID.
func (s *RedisStore) Record(ctx context.Context, messageID string, at time.Time) error {
	id, err := normalID(messageID)
	if err != nil {
		return err
	}
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
	return s.wrap("record", s.client.Set(ctx, s.key(kindMessageID, id), val, left).Err())
}

// Seen reports whether a Message-ID was recorded and has not expired.
func (s *RedisStore) Seen(ctx context.Context, messageID string) (bool, error) {
	id, err := normalID(messageID)
	if err != nil {
		return false, err
	}
	if s.closed.Load() {
		return false, ErrClosed
	}
	keys := []string{s.key(kindMessageID, id)}
	if s.legacy {
		// One EXISTS for both forms: one round trip, as before.
		keys = append(keys, s.opts.Prefix+kindMessageID+id)
	}
	n, err := s.client.Exists(ctx, keys...).Result()
	if err != nil {
		return false, s.wrap("seen", err)
	}
	return n > 0, nil
}

// key is prefix + kind + "{" + id + "}". Redis hashes only what is between
// the first '{' and the next '}', so the prefix and kind never move a
// message's keys to another slot.
func (s *RedisStore) key(kind, id string) string {
	return s.opts.Prefix + kind + "{" + id + "}"
}

func (s *RedisStore) wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redis.ErrClosed):
		return ErrClosed
	}
	if s.cluster != nil {
		// A node may have failed over: refresh the slot map in the
		// background (go-redis coalesces these reloads).
		s.cluster.ReloadState(context.Background())
	}
	// go-redis errors name the address and the cause, never the password.
	return fmt.Errorf("sent: redis %s on %s %s: %w", op, s.opts.Topology(), strings.Join(s.opts.Addrs, ","), err)
}

// Close closes the connections; later calls return ErrClosed.
func (s *RedisStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.client.Close()
}
