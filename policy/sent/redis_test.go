package sent

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// startRedis runs a private redis-server on a random loopback port and
// returns host:port.
func startRedis(t *testing.T, extraArgs ...string) string {
	t.Helper()
	return mtatest.StartRedis(t, extraArgs...).Addr
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int { return mtatest.FreePort(t) }

func TestRedis(t *testing.T) {
	var n atomic.Int64
	// Short TTL, because Redis cannot be fast-forwarded; long enough that a
	// loaded machine does not expire entries before the test looks.
	testStore(t, redisOpener(RedisOptions{Addrs: []string{startRedis(t)}}, &n), 2*time.Second, true)
}

func TestRedisKeysAndPrefix(t *testing.T) {
	addr := startRedis(t)
	ctx := context.Background()
	s, err := NewRedis(RedisOptions{Addrs: []string{addr}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Record(ctx, "<K@Example.ORG>", time.Now()); err != nil {
		t.Fatal(err)
	}
	// The Message-ID is a hash tag: a Cluster keeps one message's keys in
	// one slot.
	key := DefaultRedisPrefix + "m:{K@example.org}"
	ttl, err := s.client.TTL(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("TTL of %s = %s, want about 1h", key, ttl)
	}
	other, err := NewRedis(RedisOptions{Addrs: []string{addr}, Prefix: "other:"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if ok, err := other.Seen(ctx, "K@example.org"); err != nil || ok {
		t.Errorf("other prefix sees the entry: %v, %v", ok, err)
	}
}

func TestRedisAuth(t *testing.T) {
	const password = "correct-horse-battery-staple"
	addr := startRedis(t, "--requirepass", password)
	ctx := context.Background()

	good, err := NewRedis(RedisOptions{Addrs: []string{addr}, Password: password, DB: 1}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if err := good.Record(ctx, "auth@x", time.Now()); err != nil {
		t.Fatal(err)
	}
	if ok, err := good.Seen(ctx, "auth@x"); err != nil || !ok {
		t.Fatalf("Seen = %v, %v", ok, err)
	}

	const wrong = "wrong-password-4711"
	bad, err := NewRedis(RedisOptions{Addrs: []string{addr}, Password: wrong}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	_, err = bad.Seen(ctx, "auth@x")
	if err == nil {
		t.Fatal("wrong password: no error")
	}
	out := []string{err.Error(), bad.Ping(ctx).Error(), bad.String(), fmt.Sprintf("%v %+v %#v", bad.opts, bad.opts, bad.opts), good.String()}
	for _, o := range out {
		if strings.Contains(o, wrong) || strings.Contains(o, password) {
			t.Errorf("password shown: %s", o)
		}
	}
}

// deadRedisCases are servers that never answer properly.
func deadRedisCases(t *testing.T) map[string]string {
	// Nothing listens: connection refused.
	refused := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	// Accepts and never answers: must hit the read timeout, not hang.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return map[string]string{"refused": refused, "silent": l.Addr().String()}
}

func TestRedisDeadFailsFast(t *testing.T) {
	const password = "never-shown-password"
	for name, addr := range deadRedisCases(t) {
		t.Run(name, func(t *testing.T) {
			s, err := NewRedis(RedisOptions{
				Addrs: []string{addr}, Password: password,
				DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond,
			}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			done := make(chan error, 2)
			go func() {
				_, err := s.Seen(context.Background(), "dead@x")
				done <- err
				done <- s.Record(context.Background(), "dead@x", time.Now())
			}()
			for i := 0; i < 2; i++ {
				select {
				case err := <-done:
					if err == nil {
						t.Fatal("no error from a dead Redis")
					}
					if strings.Contains(err.Error(), password) {
						t.Errorf("password in error: %v", err)
					}
				case <-time.After(15 * time.Second):
					// Far above the 200 ms timeouts: this catches a hang,
					// it does not measure speed.
					t.Fatal("Redis call hangs instead of failing")
				}
			}
		})
	}
}

func TestNewRedisErrors(t *testing.T) {
	for _, o := range []RedisOptions{
		{DB: -1}, {PoolSize: -3},
		{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}}, // several addresses, no topology
		{Cluster: true, MasterName: "m"},
		{Cluster: true, DB: 2},
		{Addrs: []string{"no-port"}},
	} {
		if s, err := NewRedis(o, 0); err == nil {
			s.Close()
			t.Errorf("NewRedis(%v): no error", o)
		}
	}
	s, err := NewRedis(RedisOptions{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(s.opts.Addrs) != 1 || s.opts.Addrs[0] != DefaultRedisAddr || s.opts.Prefix != DefaultRedisPrefix || s.ttl != DefaultTTL {
		t.Errorf("defaults not applied: %v ttl %s", s.opts, s.ttl)
	}
}

// An upgrade from the key form without hash tags must not forget the mail
// sent in the last TTL: single and Sentinel stores look up both forms.
func TestRedisReadsLegacyKeys(t *testing.T) {
	addr := startRedis(t)
	ctx := context.Background()
	s, err := NewRedis(RedisOptions{Addrs: []string{addr}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.client.Set(ctx, DefaultRedisPrefix+"m:old@example.org", "1", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Seen(ctx, "<old@Example.ORG>"); err != nil || !ok {
		t.Fatalf("legacy key not found: %v, %v", ok, err)
	}
	if ok, err := s.Seen(ctx, "new@example.org"); err != nil || ok {
		t.Fatalf("unknown id seen: %v, %v", ok, err)
	}
}

func TestRedisOptionsString(t *testing.T) {
	o := RedisOptions{Addrs: []string{"a:1", "b:2"}, MasterName: "mymaster", Password: "pw-1234", SentinelPassword: "spw-5678", Username: "bsm"}
	s := fmt.Sprintf("%v %+v %#v %s", o, o, o, o)
	if strings.Contains(s, "pw-1234") || strings.Contains(s, "spw-5678") {
		t.Fatalf("password shown: %s", s)
	}
	for _, want := range []string{"sentinel", "a:1,b:2", "master=mymaster", "user=bsm"} {
		if !strings.Contains(o.String(), want) {
			t.Errorf("%q lacks %q", o.String(), want)
		}
	}
}
