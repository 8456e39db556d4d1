package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"text/tabwriter"

	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/dnsbl"
	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

// runDNSBL: dnsbl check IP [--sender ADDR] — what every configured zone says
// about a client, whether it applies to that sender, and the total score.
func runDNSBL(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: backscatter-milter dnsbl check IP [--sender ADDR] [--config FILE]")
		return exitUsage
	}
	fs := newFlags("dnsbl check", stderr)
	config.Flags(fs)
	sender := fs.String("sender", "", "envelope sender to judge the sender scope by (\"\" or <> is the null sender)")
	if done, code := parse(fs, args[1:]); done {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: backscatter-milter dnsbl check IP [--sender ADDR]")
		return exitUsage
	}
	ip, err := netip.ParseAddr(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "%q is not an IP address\n", fs.Arg(0))
		return exitUsage
	}
	cfg, comp, err := config.FromFlags(fs)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if len(comp.Zones) == 0 {
		fmt.Fprintln(stdout, "no DNSBL zones configured")
		return exitOK
	}
	r, err := resolver.New(cfg.Resolver, cfg.DNSBL.Timeout.D())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFail
	}
	c, err := dnsbl.New(comp.Zones, r, dnsbl.Options{Timeout: cfg.DNSBL.Timeout.D(), FetchTXT: true, Logger: zap.NewNop()})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFail
	}
	s := *sender
	if s == "<>" {
		s = ""
	}
	bounceClass := policy.IsBounceSender(s)
	ctx := context.Background()
	// Every zone is queried so the operator sees all answers; the scope
	// column says whether the milter would count it for this sender.
	all := c.Check(ctx, ip.Unmap(), true)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ZONE\tANSWER\tSTATUS\tSCOPE\tAPPLIES\tWEIGHT\n")
	score := 0
	for _, z := range all.Zones {
		applies := z.Zone.Senders == dnsbl.SendersAny || bounceClass
		w := 0
		if z.Listed && applies {
			w = z.Weight
			score += w
		}
		status := string(z.Status)
		if z.Err != nil {
			status += " (" + z.Err.Error() + ")"
		}
		ans := z.Detail()
		if len(z.Answers) == 0 {
			ans = "-" + ans
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%+d\n", z.Zone.Name, ans, status, z.Zone.Senders, applies, w)
	}
	tw.Flush()
	who := "<" + s + ">"
	fmt.Fprintf(stdout, "score %d for %s from %s (thresholds: tag %d, quarantine %d, reject %d)\n",
		score, who, ip, cfg.Thresholds.Tag, cfg.Thresholds.Quarantine, cfg.Thresholds.Reject)
	return exitOK
}
