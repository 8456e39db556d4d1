package sent

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func benchSeen(b *testing.B, s Store) {
	ctx := context.Background()
	const n = 10_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("<%d.%d@mail.example.org>", i, i*7919)
		if err := s.Record(ctx, ids[i], time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		ok, err := s.Seen(ctx, ids[i%n])
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		i++
	}
}

func BenchmarkSeen(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		s := NewMemory(time.Hour)
		defer s.Close()
		benchSeen(b, s)
	})
	b.Run("bolt", func(b *testing.B) {
		s, err := OpenBolt(filepath.Join(b.TempDir(), "sent.db"), time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchSeen(b, s)
	})
}

// BenchmarkRecordBolt shows the cost of a durable write (one fsync per
// batch), which lands on every outbound message.
func BenchmarkRecordBolt(b *testing.B) {
	s, err := OpenBolt(filepath.Join(b.TempDir(), "sent.db"), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.Record(ctx, fmt.Sprintf("<%d@example.org>", i), time.Now()); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkRecordBoltParallel(b *testing.B) {
	s, err := OpenBolt(filepath.Join(b.TempDir(), "sent.db"), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := s.Record(ctx, fmt.Sprintf("<%p.%d@example.org>", pb, i), time.Now()); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
