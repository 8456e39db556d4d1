package sent_test

import (
	"context"
	"fmt"
	"time"

	"github.com/backscatter-milter/backscatter-milter/policy/sent"
)

func Example() {
	ctx := context.Background()
	// Production uses sent.OpenBolt or sent.NewRedis; all share the Store interface.
	var log sent.Store = sent.NewMemory(30 * 24 * time.Hour)
	defer log.Close()

	// Outbound: remember the Message-ID we sent.
	if err := log.Record(ctx, "<20250301.abc@Mail.Example.ORG>", time.Now()); err != nil {
		fmt.Println("record:", err) // fail open: log and carry on
	}

	// Inbound bounce: does the original's Message-ID come from us?
	ours, err := log.Seen(ctx, "20250301.abc@mail.example.org")
	fmt.Println(ours, err)
	forged, err := log.Seen(ctx, "<spam.123@example.org>")
	fmt.Println(forged, err)
	// Output:
	// true <nil>
	// false <nil>
}
