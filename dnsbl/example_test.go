package dnsbl_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/backscatter-milter/backscatter-milter/dnsbl"
	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
)

func ExampleParseZoneSpec() {
	for _, spec := range []string{
		"zen.spamhaus.org=127.0.0.[2..11]*3",
		"ips.backscatterer.org=127.0.0.2*6",
		"list.dnswl.org=127.0.[0..255].[1..3]*-2",
		"zen.spamhaus.org*x",
	} {
		z, err := dnsbl.ParseZoneSpec(spec)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Printf("%s: filter %q weight %d senders %s\n", z.Name, z.Filter, z.Weight, z.Senders)
	}
	// Output:
	// zen.spamhaus.org: filter "127.0.0.[2..11]" weight 3 senders any
	// ips.backscatterer.org: filter "127.0.0.2" weight 6 senders bounce
	// list.dnswl.org: filter "127.0.[0..255].[1..3]" weight -2 senders any
	// error: zone spec "zen.spamhaus.org*x": weight "x" is not an integer
}

func ExampleChecker() {
	// A local DNS server standing in for the lists.
	srv, err := dnstest.New(`
1.2.0.192.bl.example.      300 IN A 127.0.0.2
1.2.0.192.backscatter.example. 300 IN A 127.0.0.2
`)
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	r, _ := resolver.New(srv.Addr, time.Second)

	var zones []dnsbl.Zone
	for _, spec := range []string{"bl.example=127.0.0.[2..11]*3", "backscatter.example*6"} {
		z, _ := dnsbl.ParseZoneSpec(spec)
		zones = append(zones, z)
	}
	c, err := dnsbl.New(zones, r, dnsbl.Options{Timeout: 2 * time.Second})
	if err != nil {
		panic(err)
	}

	ctx := context.Background()
	client := netip.MustParseAddr("192.0.2.1")
	// At MAIL FROM <>: start the lookups, bounce-class sender.
	p := c.Start(ctx, client, true)
	// ... at RCPT: collect them.
	res := p.Wait(ctx)
	for _, zr := range res.Zones {
		fmt.Println(zr.Zone.Name, zr.Status, zr.Weight)
	}
	fmt.Println("score", res.Score())

	// A normal sender: the backscatter list is not asked (safe mode).
	res = c.Check(ctx, client, false)
	fmt.Println(res.Zones[1].Status, "score", res.Score())
	// Output:
	// bl.example listed 3
	// backscatter.example listed 6
	// score 9
	// skipped-sender-scope score 3
}
