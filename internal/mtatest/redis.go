package mtatest

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RedisNode is one private redis-server (or sentinel) process on loopback.
type RedisNode struct {
	Addr string // 127.0.0.1:port
	Port int
	// Stop kills the process (idempotent); it also runs at test cleanup.
	Stop func()
}

// StartRedis runs a private redis-server on a random loopback port without
// persistence, in its own temporary directory, with extra arguments
// appended, and stops it when the test ends.
func StartRedis(t testing.TB, extra ...string) *RedisNode {
	t.Helper()
	return StartRedisNode(t, t.TempDir(), func(int) []string { return extra })
}

// StartRedisNode starts redis-server in dir: leading arguments first (a
// configuration file), then the common ones (port, loopback, no
// persistence), then args(port). A port taken meanwhile is retried.
func StartRedisNode(t testing.TB, dir string, args func(port int) []string, leading ...string) *RedisNode {
	t.Helper()
	Require(t, "redis-server")
	bin := mustLookPath(t, "redis-server")
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := FreePort(t)
		all := append(append([]string{}, leading...), "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir)
		all = append(all, args(port)...)
		cmd := exec.Command(bin, all...)
		var out LockedBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				cmd.Process.Kill()
				<-exited
			})
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := waitRedis(addr, exited); err != nil {
			stop()
			lastErr = fmt.Errorf("%v\n%s", err, out.String())
			continue // most likely the port was taken meanwhile
		}
		t.Cleanup(stop)
		return &RedisNode{Addr: addr, Port: port, Stop: stop}
	}
	t.Fatalf("redis-server did not start: %v", lastErr)
	return nil
}

// waitRedis waits until addr answers PING (any answer: an auth error counts).
func waitRedis(addr string, exited <-chan error) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("redis-server exited: %v", err)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			_, werr := c.Write([]byte("PING\r\n"))
			buf := make([]byte, 64)
			n, rerr := c.Read(buf)
			c.Close()
			if werr == nil && rerr == nil && n > 0 && strings.ContainsAny(string(buf[:1]), "+-") {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("no answer within 10s")
}
