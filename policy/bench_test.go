package policy_test

import (
	"context"
	"testing"

	"github.com/backscatter-milter/backscatter-milter/policy"
)

// BenchmarkRcptVerdict is the RCPT-time decision for a bounce to a tagged
// address from a listed client: DNSBL listings (fake, already answered),
// BATV evidence, multi-recipient rule, thresholds.
func BenchmarkRcptVerdict(b *testing.B) {
	e := testEngine()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		tx := begin(e, listedIP, "")
		if v := e.Rcpt(ctx, tx, "bob+prvs=0123abcdef@example.org", ""); v.Action != policy.Accept {
			b.Fatalf("action %v", v.Action)
		}
	}
}

// BenchmarkEndOfMessageBounce is the end-of-message decision for a DSN: the
// bounce is parsed, its Message-ID looked up, its relays matched.
func BenchmarkEndOfMessageBounce(b *testing.B) {
	e := testEngine()
	e.Tagger = nil
	ctx := context.Background()
	headers := dsn("sent-1@example.org", "spam.remote.test")
	body := dsnBody("sent-1@example.org", "spam.remote.test")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		tx := begin(e, cleanIP, "")
		e.Rcpt(ctx, tx, "bob@example.org", "")
		tx.Headers, tx.Body = headers, body
		if v := e.End(ctx, tx); !v.Evidence.Has(policy.EvBounceOurs) {
			b.Fatalf("evidence %v", v.Evidence)
		}
	}
}

// BenchmarkEndOfMessageOrdinary is the common case: inbound mail that is not
// bounce-class, with the NDR-suppression check (fake SPF).
func BenchmarkEndOfMessageOrdinary(b *testing.B) {
	e := testEngine()
	ctx := context.Background()
	headers := []policy.Header{{"From", " alice@pass.test"}, {"Subject", " hello"}, {"Message-ID", " <m1@pass.test>"}}
	b.ReportAllocs()
	for b.Loop() {
		tx := e.Begin(ctx, "s1", policy.Connection{ClientIP: cleanIP, Helo: "h.test"}, "alice@pass.test", "", "")
		e.Rcpt(ctx, tx, "bob@example.org", "")
		tx.Headers = headers
		if v := e.End(ctx, tx); v.Action != policy.Accept {
			b.Fatalf("action %v", v.Action)
		}
	}
}
