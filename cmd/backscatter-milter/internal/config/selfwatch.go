package config

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/selfwatch"
	"github.com/backscatter-milter/backscatter-milter/dnsbl"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

// SelfWatchPlan is the compiled self_watch section.
type SelfWatchPlan struct {
	IPs      []netip.Addr
	Zones    []dnsbl.Zone
	Interval Duration
}

// compileSelfWatch checks self_watch; it returns nil while egress is empty
// (the watch is off) or wrong.
func compileSelfWatch(c *SelfWatch, bad func(key, format string, a ...any)) *SelfWatchPlan {
	if c.Interval.D() < time.Minute && len(c.Egress) > 0 {
		bad("self_watch.interval", "%s: want at least 1m (each check queries every list for every address)", c.Interval)
	}
	var prefixes []netip.Prefix
	for i, e := range c.Egress {
		p, err := policy.ParseNetwork(e)
		if err != nil {
			bad(fmt.Sprintf("self_watch.egress[%d]", i), "%v", err)
			continue
		}
		prefixes = append(prefixes, p)
	}
	var zones []dnsbl.Zone
	for i, z := range c.Zones {
		zone, err := dnsbl.ParseZoneSpec(z)
		if err != nil {
			bad(fmt.Sprintf("self_watch.zones[%d]", i), "%v", err)
			continue
		}
		zones = append(zones, zone)
	}
	if len(c.Egress) > 0 && len(c.Zones) == 0 {
		bad("self_watch.zones", "egress is set but no zone to look it up in (e.g. %s)", selfwatch.DefaultZone)
	}
	ips, err := selfwatch.Expand(prefixes)
	if err != nil {
		bad("self_watch.egress", "%v", err)
		return nil
	}
	if len(ips) == 0 || len(zones) == 0 {
		return nil
	}
	return &SelfWatchPlan{IPs: ips, Zones: zones, Interval: c.Interval}
}
