package sent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// Fleet sizing (docs/operations.md): lookup latency and throughput against
// a single Redis and a three-master Cluster, and the memory one recorded
// Message-ID costs in Redis and in bbolt. Run with
//
//	go test -run '^$' -bench 'Fleet' -benchtime 20000x ./policy/sent/
//
// (-benchtime Nx: the sizing benchmarks record N Message-IDs).

// realisticID looks like the Message-IDs MUAs and MTAs write (about 50
// bytes), so the sizes per entry are the ones a site will see.
func realisticID(i int) string {
	return fmt.Sprintf("<%016x.%08x.%d@mail.example.org>", uint64(i)*0x9e3779b97f4a7c15, i*7919, i)
}

// benchLatency runs Seen from 16 goroutines (an MTA's concurrent sessions)
// and reports p50/p99 per call besides the ns/op of the whole.
func benchLatency(b *testing.B, s Store) {
	ctx := context.Background()
	const n = 1000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = realisticID(i)
		if err := s.Record(ctx, ids[i], time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		i := 0
		for pb.Next() {
			t0 := time.Now()
			ok, err := s.Seen(ctx, ids[i%n])
			local = append(local, time.Since(t0))
			if err != nil || !ok {
				b.Error(ok, err)
				return
			}
			i++
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

func BenchmarkFleetSeen(b *testing.B) {
	b.Run("bolt", func(b *testing.B) {
		s, err := OpenBolt(filepath.Join(b.TempDir(), "sent.db"), time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchLatency(b, s)
	})
	b.Run("redis-single", func(b *testing.B) {
		s, err := NewRedis(RedisOptions{Addrs: []string{mtatest.StartRedis(b).Addr}}, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchLatency(b, s)
	})
	b.Run("redis-cluster", func(b *testing.B) {
		c := startCluster(b, 3, 0)
		s, err := NewRedis(RedisOptions{Addrs: c.seeds, Cluster: true}, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchLatency(b, s)
	})
}

// BenchmarkFleetSize records b.N Message-IDs and reports the bytes each
// costs: Redis's used_memory growth, and the bbolt file's growth.
func BenchmarkFleetSize(b *testing.B) {
	ctx := context.Background()
	b.Run("redis", func(b *testing.B) {
		addr := mtatest.StartRedis(b).Addr
		s, err := NewRedis(RedisOptions{Addrs: []string{addr}}, 30*24*time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
		defer c.Close()
		before := usedMemory(b, c)
		b.ResetTimer()
		// Pipelined writes of the same commands Record sends: the size is
		// what matters here, not the write latency.
		const batch = 1000
		for i := 0; i < b.N; i += batch {
			pipe := c.Pipeline()
			for j := i; j < min(i+batch, b.N); j++ {
				id, _ := normalID(realisticID(j))
				pipe.Set(ctx, s.key(kindMessageID, id), strconv.FormatInt(time.Now().Unix(), 10), 30*24*time.Hour)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if ok, err := s.Seen(ctx, realisticID(b.N-1)); err != nil || !ok {
			b.Fatalf("last entry not found: %v %v", ok, err)
		}
		b.ReportMetric(float64(usedMemory(b, c)-before)/float64(b.N), "bytes/id")
	})
	b.Run("bolt", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "sent.db")
		s, err := OpenBolt(path, 30*24*time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		before := fileSize(b, path)
		b.ResetTimer()
		var wg sync.WaitGroup
		// Concurrent writers, as an MTA's sessions are: bbolt batches them.
		const writers = 64
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < b.N; i += writers {
					if err := s.Record(ctx, realisticID(i), time.Now()); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		s.Close()
		b.ReportMetric(float64(fileSize(b, path)-before)/float64(b.N), "bytes/id")
	})
}

func usedMemory(b *testing.B, c *redis.Client) int64 {
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("no used_memory in INFO memory")
	return 0
}

func fileSize(b *testing.B, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}
