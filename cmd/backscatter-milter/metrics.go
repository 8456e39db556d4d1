package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

// metricsServer serves /metrics and /healthz on its own listener, bound to
// loopback by default: the numbers describe our users' mail.
type metricsServer struct {
	reg      *prometheus.Registry
	srv      *http.Server
	messages *prometheus.CounterVec
	evidence *prometheus.CounterVec
	rcptRej  prometheus.Counter
	ndr      *prometheus.CounterVec
	sessions prometheus.Gauge
	errors   *prometheus.CounterVec
	reloads  *prometheus.CounterVec
	addr     string
}

const ns = "backscatter_milter"

func startMetrics(listen string, d *daemon, log *zap.Logger) (*metricsServer, error) {
	m := &metricsServer{reg: prometheus.NewRegistry()}
	m.messages = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "messages_total",
		Help: "Messages decided at end of message, by action taken, direction and mode."}, []string{"action", "direction", "mode"})
	m.evidence = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "evidence_total",
		Help: "Evidence that fired, by name (dnsbl:<zone> included)."}, []string{"name"})
	m.rcptRej = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "rcpt_rejects_total",
		Help: "Recipients rejected at RCPT."})
	m.ndr = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "ndr_rewrites_total",
		Help: "Messages whose recipients were rewritten so no NDR goes to a possibly forged sender."}, []string{"kind"})
	m.sessions = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "sessions_in_flight",
		Help: "Open MTA connections."})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "errors_total",
		Help: "Milter errors: panic (recovered), internal, negotiation."}, []string{"kind"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "config_reloads_total",
		Help: "Configuration reloads (SIGHUP), by result."}, []string{"result"})
	m.reg.MustRegister(m.messages, m.evidence, m.rcptRej, m.ndr, m.sessions, m.errors, m.reloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&dnsblCollector{d: d}, &selfWatchCollector{d: d}, &sendmailDSNCollector{d: d})
	if listen == "" || d == nil {
		return m, nil
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	m.addr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		var bad []string
		if rt := d.rt.Load(); rt != nil && rt.lists != nil {
			for zone, err := range rt.lists.Health() {
				if err != nil {
					bad = append(bad, zone+": "+err.Error())
				}
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if len(bad) > 0 {
			// The milter works without an unhealthy zone (it is skipped):
			// report it without failing the probe.
			w.Write([]byte("ok (degraded)\nunhealthy zones:\n  " + strings.Join(bad, "\n  ") + "\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", zap.Error(err))
		}
	}()
	log.Info("metrics listening", zap.String("listen", m.addr))
	return m, nil
}

func (m *metricsServer) close() {
	if m != nil && m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m.srv.Shutdown(ctx)
	}
}

func (m *metricsServer) reloaded(ok bool) {
	if ok {
		m.reloads.WithLabelValues("ok").Inc()
	} else {
		m.reloads.WithLabelValues("refused").Inc()
	}
}

func (m *metricsServer) observer() milter.Observer { return metricsObserver{m} }

type metricsObserver struct{ m *metricsServer }

func (o metricsObserver) Verdict(t *policy.Transaction, v *policy.Verdict) {
	for _, e := range v.Evidence {
		o.m.evidence.WithLabelValues(e.Name).Inc()
	}
	switch v.Stage {
	case policy.StageRcpt:
		if v.Action == policy.Reject {
			o.m.rcptRej.Inc()
		}
		return
	case policy.StageCallout:
		return
	}
	o.m.messages.WithLabelValues(v.Action.String(), t.Direction.String(), v.Mode.String()).Inc()
	if v.NDR != "" {
		o.m.ndr.WithLabelValues(string(v.NDR)).Inc()
	}
}
func (o metricsObserver) SessionStart()     { o.m.sessions.Inc() }
func (o metricsObserver) SessionEnd()       { o.m.sessions.Dec() }
func (o metricsObserver) Error(kind string) { o.m.errors.WithLabelValues(kind).Inc() }

// dnsblCollector reads the DNSBL checker's counters at scrape time.
type dnsblCollector struct{ d *daemon }

var (
	descQueries = prometheus.NewDesc(ns+"_dnsbl_queries_total", "DNSBL queries sent, by zone.", []string{"zone"}, nil)
	descErrors  = prometheus.NewDesc(ns+"_dnsbl_errors_total", "DNSBL lookups that gave no evidence, by zone and kind.", []string{"zone", "kind"}, nil)
	descHealthy = prometheus.NewDesc(ns+"_dnsbl_zone_healthy", "1 when the zone passed its last health check.", []string{"zone"}, nil)
	descCache   = prometheus.NewDesc(ns+"_dnsbl_cache_entries", "Entries in the DNSBL answer cache.", nil, nil)
	descLookups = prometheus.NewDesc(ns+"_dnsbl_lookups_total", "DNSBL checks that needed the zone, by zone and how they were answered (cache, shared, query).", []string{"zone", "source"}, nil)
)

func (c *dnsblCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descQueries
	ch <- descErrors
	ch <- descHealthy
	ch <- descCache
	ch <- descLookups
}

func (c *dnsblCollector) Collect(ch chan<- prometheus.Metric) {
	if c.d == nil {
		return
	}
	rt := c.d.rt.Load()
	if rt == nil || rt.lists == nil {
		return
	}
	for zone, st := range rt.lists.Stats() {
		ch <- prometheus.MustNewConstMetric(descQueries, prometheus.CounterValue, float64(st.Queries), zone)
		ch <- prometheus.MustNewConstMetric(descLookups, prometheus.CounterValue, float64(st.CacheHits), zone, "cache")
		ch <- prometheus.MustNewConstMetric(descLookups, prometheus.CounterValue, float64(st.Shared), zone, "shared")
		ch <- prometheus.MustNewConstMetric(descLookups, prometheus.CounterValue, float64(st.Lookups-st.CacheHits-st.Shared), zone, "query")
		for kind, n := range st.Errors {
			ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(n), zone, string(kind))
		}
	}
	for zone, err := range rt.lists.Health() {
		v := 1.0
		if err != nil {
			v = 0
		}
		ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, v, zone)
	}
	ch <- prometheus.MustNewConstMetric(descCache, prometheus.GaugeValue, float64(rt.lists.CacheLen()))
}

// sendmailDSNCollector reads the Sendmail DSN self-check at scrape time
// (ndr_suppression.sendmail: case-variant; absent when that is off).
type sendmailDSNCollector struct{ d *daemon }

var (
	descDSNOffered  = prometheus.NewDesc(ns+"_sendmail_dsn_offered", "1 while the last self-check saw DSN in Sendmail's EHLO, so NDR suppression re-adds recipients as case variants.", nil, nil)
	descDSNSwitches = prometheus.NewDesc(ns+"_sendmail_dsn_switches_total", "Changes of the Sendmail DSN self-check's result.", nil, nil)
)

func (c *sendmailDSNCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDSNOffered
	ch <- descDSNSwitches
}

func (c *sendmailDSNCollector) Collect(ch chan<- prometheus.Metric) {
	if c.d == nil {
		return
	}
	rt := c.d.rt.Load()
	if rt == nil || rt.dsn == nil {
		return
	}
	v := 0.0
	if rt.dsn.Offered() {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(descDSNOffered, prometheus.GaugeValue, v)
	ch <- prometheus.MustNewConstMetric(descDSNSwitches, prometheus.CounterValue, float64(rt.dsn.Switches()))
}
