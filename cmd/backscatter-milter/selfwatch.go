package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/selfwatch"
	"github.com/backscatter-milter/backscatter-milter/dnsbl"
	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
)

// newSelfWatch builds the watcher of our egress addresses, with a DNSBL
// checker of its own (its zones are not the inbound ones) asking the
// configured resolver.
func newSelfWatch(cfg *config.Config, plan *config.SelfWatchPlan, r resolver.Resolver, log *zap.Logger) (*selfwatch.Watcher, error) {
	c, err := dnsbl.New(plan.Zones, r, dnsbl.Options{
		Timeout: cfg.DNSBL.Timeout.D(), FetchTXT: true, Logger: log.Named("self_watch"),
		// A listing must be seen at the next check, not an hour later.
		MaxTTL: min(plan.Interval.D()/2, dnsbl.DefaultMaxTTL),
	})
	if err != nil {
		return nil, err
	}
	return &selfwatch.Watcher{IPs: plan.IPs, Checker: c, Interval: plan.Interval.D(), Log: log.Named("self_watch")}, nil
}

// selfWatchCollector exports the watcher's last states:
// backscatter_milter_egress_listed{ip,zone} is 1 while listed, 0 while not;
// backscatter_milter_egress_check_ok{ip,zone} is 0 while the last lookup
// failed (the listed value is then the one from before).
type selfWatchCollector struct{ d *daemon }

var (
	egressListedDesc = prometheus.NewDesc(ns+"_egress_listed",
		"1 while our outbound address is listed on the backscatter zone (self_watch), 0 while it is not.", []string{"ip", "zone"}, nil)
	egressCheckOKDesc = prometheus.NewDesc(ns+"_egress_check_ok",
		"1 when the last self_watch lookup of the address in the zone got an answer, 0 when it failed.", []string{"ip", "zone"}, nil)
)

func (c *selfWatchCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- egressListedDesc
	ch <- egressCheckOKDesc
}

func (c *selfWatchCollector) Collect(ch chan<- prometheus.Metric) {
	if c.d == nil {
		return
	}
	rt := c.d.rt.Load()
	if rt == nil || rt.watch == nil {
		return
	}
	for _, s := range rt.watch.States() {
		ip := s.IP.String()
		if s.Known {
			ch <- prometheus.MustNewConstMetric(egressListedDesc, prometheus.GaugeValue, b2f(s.Listed), ip, s.Zone)
		}
		ch <- prometheus.MustNewConstMetric(egressCheckOKDesc, prometheus.GaugeValue, b2f(s.Err == nil), ip, s.Zone)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
