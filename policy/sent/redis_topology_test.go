package sent

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// Real Redis deployments on loopback: a three-master Cluster (with replicas
// for the failover test) and a primary + replica watched by three
// sentinels. Each runs the shared store suite; the failover tests kill the
// primary (Sentinel) or a master (Cluster) while lookups flow.

// cluster is a private Redis Cluster.
type cluster struct {
	nodes []*mtatest.RedisNode // masters first, then replicas
	seeds []string
}

// startCluster creates masters × (1 + replicas) nodes with redis-cli
// --cluster create and waits until every node reports cluster_state:ok.
func startCluster(t testing.TB, masters, replicas int) *cluster {
	t.Helper()
	mtatest.Require(t, "redis-cli")
	cli := "redis-cli"
	c := &cluster{}
	for i := 0; i < masters*(1+replicas); i++ {
		dir := t.TempDir()
		n := mtatest.StartRedisNode(t, dir, func(port int) []string {
			return []string{"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
				// Short, so a failover completes in seconds; not shorter, so a loaded
				// CI machine does not fail a node over by mistake.
				"--cluster-node-timeout", "2000", "--cluster-replica-validity-factor", "0"}
		})
		c.nodes = append(c.nodes, n)
		c.seeds = append(c.seeds, n.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.seeds...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	eventually(t, 30*time.Second, "cluster_state:ok on every node", func() error {
		for _, n := range c.nodes {
			info, err := exec.Command(cli, "-h", "127.0.0.1", "-p", strconv.Itoa(n.Port), "cluster", "info").Output()
			if err != nil {
				return err
			}
			if !strings.Contains(string(info), "cluster_state:ok") {
				return fmt.Errorf("%s not ok yet", n.Addr)
			}
		}
		return nil
	})
	return c
}

// sentinelSet is a primary, one replica and three sentinels.
type sentinelSet struct {
	primary, replica *mtatest.RedisNode
	sentinels        []string
	master           string
}

func startSentinels(t *testing.T) *sentinelSet {
	t.Helper()
	s := &sentinelSet{master: "bsm-primary"}
	s.primary = mtatest.StartRedisNode(t, t.TempDir(), func(int) []string { return nil })
	s.replica = mtatest.StartRedisNode(t, t.TempDir(), func(int) []string {
		return []string{"--replicaof", "127.0.0.1", strconv.Itoa(s.primary.Port)}
	})
	for i := 0; i < 3; i++ {
		dir := t.TempDir()
		// Sentinel rewrites its configuration file: one each.
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s 2000\n"+
			"sentinel failover-timeout %s 5000\n"+
			"sentinel parallel-syncs %s 1\n", s.master, s.primary.Port, s.master, s.master, s.master)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		n := mtatest.StartRedisNode(t, dir, func(int) []string { return []string{"--sentinel"} }, conf)
		s.sentinels = append(s.sentinels, n.Addr)
	}
	// Sentinels must know the replica before a failover can promote it.
	eventually(t, 30*time.Second, "sentinels see the replica", func() error {
		for _, a := range s.sentinels {
			c := redis.NewSentinelClient(&redis.Options{Addr: a, DialTimeout: time.Second, ReadTimeout: time.Second})
			reps, err := c.Replicas(context.Background(), s.master).Result()
			c.Close()
			if err != nil {
				return err
			}
			if len(reps) == 0 {
				return fmt.Errorf("sentinel %s: no replica yet", a)
			}
		}
		return nil
	})
	return s
}

// eventually polls f until it returns nil or the time is up. The bound is
// far above what a healthy run needs: it catches a hang, not slowness.
func eventually(t testing.TB, within time.Duration, what string, f func() error) {
	t.Helper()
	var err error
	if !await.True(within, func() bool { err = f(); return err == nil }) {
		t.Fatalf("%s: not within %s: %v", what, within, err)
	}
}

// replicated waits until every replica of the master at addr has acknowledged
// the master's whole replication stream (INFO replication offsets match).
func replicated(t *testing.T, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, DisableIdentity: true})
	defer c.Close()
	eventually(t, 20*time.Second, "replicas of "+addr+" caught up", func() error {
		info, err := c.Info(context.Background(), "replication").Result()
		if err != nil {
			return err
		}
		var master int64 = -1
		var replicas []int64
		sc := bufio.NewScanner(strings.NewReader(info))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if v, ok := strings.CutPrefix(line, "master_repl_offset:"); ok {
				master, _ = strconv.ParseInt(v, 10, 64)
			}
			if strings.HasPrefix(line, "slave") && strings.Contains(line, "offset=") {
				for _, f := range strings.Split(line, ",") {
					if v, ok := strings.CutPrefix(f, "offset="); ok {
						n, _ := strconv.ParseInt(v, 10, 64)
						replicas = append(replicas, n)
					}
				}
			}
		}
		if len(replicas) == 0 {
			return fmt.Errorf("no replica connected")
		}
		for _, r := range replicas {
			if r < master {
				return fmt.Errorf("replica at %d, master at %d", r, master)
			}
		}
		return nil
	})
}

func TestRedisCluster(t *testing.T) {
	c := startCluster(t, 3, 0)
	var n atomic.Int64
	testStore(t, redisOpener(RedisOptions{Addrs: c.seeds, Cluster: true}, &n), 2*time.Second, true)

	// Keys spread over the three masters, each in the slot of its tag.
	s, err := NewRedis(RedisOptions{Addrs: c.seeds[:1], Cluster: true}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	masters := map[string]bool{}
	cc := s.cluster
	for i := 0; i < 30; i++ {
		id := fmt.Sprintf("spread%d@example.org", i)
		if err := s.Record(ctx, id, time.Now()); err != nil {
			t.Fatal(err)
		}
		m, err := cc.MasterForKey(ctx, s.key(kindMessageID, id))
		if err != nil {
			t.Fatal(err)
		}
		masters[m.Options().Addr] = true
		if ok, err := s.Seen(ctx, "<"+id+">"); err != nil || !ok {
			t.Fatalf("Seen(%s) = %v, %v", id, ok, err)
		}
	}
	if len(masters) < 2 {
		t.Errorf("30 Message-IDs landed on %d master(s): hash tags do not spread them", len(masters))
	}
}

func TestRedisSentinel(t *testing.T) {
	ss := startSentinels(t)
	var n atomic.Int64
	testStore(t, redisOpener(RedisOptions{Addrs: ss.sentinels, MasterName: ss.master}, &n), 2*time.Second, true)
}

// redisOpener adapts a deployment to the shared store suite: a prefix per
// harness keeps subtests apart.
func redisOpener(base RedisOptions, n *atomic.Int64) opener {
	return func(t *testing.T, ttl time.Duration) harness {
		opts := base
		opts.Prefix = fmt.Sprintf("test%d:", n.Add(1))
		s, err := NewRedis(opts, ttl)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
		h := harness{store: s, now: time.Now, advance: func(d time.Duration) { time.Sleep(d) }}
		h.reopen = func() Store {
			h.store.Close()
			s2, err := NewRedis(opts, ttl)
			if err != nil {
				t.Fatal(err)
			}
			h.store = s2
			return s2
		}
		t.Cleanup(func() { h.store.Close() })
		return h
	}
}

// failoverRun drives lookups and writes while kill() takes a node down, and
// reports what the MTA would have seen. A failed call is "no evidence"
// (the policy fails open); what matters is that every call returns within
// its timeout and that the log works again, with its old entries, after
// the failover.
type failoverRun struct {
	calls, failed int
	slowest       time.Duration
	recovered     time.Duration // from the kill to the first write that succeeded on the dead node's keys
}

func (r failoverRun) String() string {
	return fmt.Sprintf("%d calls during failover, %d failed (no evidence), slowest %s, writes back after %s",
		r.calls, r.failed, r.slowest.Round(time.Millisecond), r.recovered.Round(10*time.Millisecond))
}

func runFailover(t *testing.T, s *RedisStore, before []string, probe string, kill func()) failoverRun {
	t.Helper()
	ctx := context.Background()
	var r failoverRun
	kill()
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("writes did not resume within 60 s of the kill (%s)", r)
		}
		t0 := time.Now()
		_, errSeen := s.Seen(ctx, before[i%len(before)])
		errRec := s.Record(ctx, fmt.Sprintf("during%d-%s", i, probe), time.Now())
		d := time.Since(t0)
		r.calls += 2
		if errSeen != nil {
			r.failed++
		}
		if errRec != nil {
			r.failed++
		}
		r.slowest = max(r.slowest, d)
		// Both calls together are bounded by dial + read + write timeouts
		// of two attempts; far beyond that is a hang.
		if d > 10*time.Second {
			t.Fatalf("a Redis call took %s during the failover: it must fail within its timeout", d)
		}
		if errRec == nil && s.Record(ctx, probe, time.Now()) == nil {
			r.recovered = time.Since(start)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Old entries survive: the replica had them before the kill.
	eventually(t, 30*time.Second, "entries recorded before the failover are found", func() error {
		for _, id := range before {
			ok, err := s.Seen(ctx, id)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%s lost in the failover", id)
			}
		}
		return nil
	})
	return r
}

func TestRedisSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("failover test: starts five Redis processes and waits for a failover")
	}
	ss := startSentinels(t)
	s, err := NewRedis(RedisOptions{Addrs: ss.sentinels, MasterName: ss.master}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var before []string
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("before%d@example.org", i)
		if err := s.Record(ctx, id, time.Now()); err != nil {
			t.Fatal(err)
		}
		before = append(before, id)
	}
	replicated(t, ss.primary.Addr)
	r := runFailover(t, s, before, "probe@example.org", ss.primary.Stop)
	t.Logf("Sentinel failover (primary killed): %s", r)
}

func TestRedisClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("failover test: starts six Redis processes and waits for a failover")
	}
	c := startCluster(t, 3, 1)
	s, err := NewRedis(RedisOptions{Addrs: c.seeds, Cluster: true}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	cc := s.cluster
	// Entries on the master we are going to kill.
	const probe = "probe@example.org"
	victim, err := cc.MasterForKey(ctx, s.key(kindMessageID, probe))
	if err != nil {
		t.Fatal(err)
	}
	victimAddr := victim.Options().Addr
	var before []string
	for i := 0; len(before) < 10 && i < 10000; i++ {
		id := fmt.Sprintf("before%d@example.org", i)
		m, err := cc.MasterForKey(ctx, s.key(kindMessageID, id))
		if err != nil {
			t.Fatal(err)
		}
		if m.Options().Addr != victimAddr {
			continue
		}
		if err := s.Record(ctx, id, time.Now()); err != nil {
			t.Fatal(err)
		}
		before = append(before, id)
	}
	replicated(t, victimAddr)
	var kill func()
	for _, n := range c.nodes {
		if n.Addr == victimAddr {
			kill = n.Stop
		}
	}
	if kill == nil {
		t.Fatalf("master %s is not one of ours", victimAddr)
	}
	r := runFailover(t, s, before, probe, kill)
	t.Logf("Cluster failover (master %s killed): %s", victimAddr, r)
	// The other masters never stopped answering.
	var others []string
	for _, n := range c.nodes {
		if n.Addr != victimAddr {
			others = append(others, n.Addr)
		}
	}
	sort.Strings(others)
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping after failover (every master, %v): %v", others, err)
	}
}
