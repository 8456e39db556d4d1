package main

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/selfwatch"
	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
	"github.com/backscatter-milter/backscatter-milter/policy/auth"
	"github.com/backscatter-milter/backscatter-milter/policy/sent"
)

// metricsServer serves /metrics and /healthz on its own listener, bound to
// loopback by default: the numbers describe our users' mail.
//
// Every labelled series is created at 0 when the server starts, so that an
// alert on increase() sees the first event after a restart. The counters a
// mail transaction touches are resolved here once, into arrays indexed by
// the policy's enums: the hot path is atomic adds, no map or label lookup
// and no allocation.
type metricsServer struct {
	reg *prometheus.Registry
	srv *http.Server

	messages [2][2][2][numActions]prometheus.Counter // role, direction, mode, action
	evidence *prometheus.CounterVec
	evByName atomic.Pointer[map[string]prometheus.Counter] // copy on write
	evMu     sync.Mutex
	rcptRej  prometheus.Counter
	ndr      *prometheus.CounterVec
	ndrKind  map[policy.NDROutcome]prometheus.Counter // fixed at start
	ndrGen   map[policy.AuthResult]prometheus.Counter
	provedBy map[string]prometheus.Counter // by policy.ProofNames, fixed at start
	decision map[policy.Stage]prometheus.Observer
	sessions prometheus.Gauge
	refused  prometheus.Counter
	errors   *prometheus.CounterVec
	reloads  *prometheus.CounterVec

	// counts is what the policy's helpers count (wire.go): kept here so
	// that a reload, which rebuilds them, keeps the totals.
	counts *policyCounts
	addr   string
}

// policyCounts are counted by the adapters in wire.go.
type policyCounts struct {
	spf      map[string]prometheus.Counter // by SPF result
	spfOther prometheus.Counter
	dkim     [2][2]prometheus.Counter // valid, aligned
	batv     [2]prometheus.Counter    // signed, error
}

func (c *policyCounts) spfResult(r string) {
	if c == nil {
		return
	}
	if ctr, ok := c.spf[r]; ok {
		ctr.Inc()
		return
	}
	c.spfOther.Inc()
}

func (c *policyCounts) dkimResult(valid, aligned bool) {
	if c == nil {
		return
	}
	c.dkim[b2i(valid)][b2i(aligned)].Inc()
}

func (c *policyCounts) batvSigned(err error) {
	if c == nil {
		return
	}
	c.batv[b2i(err != nil)].Inc()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

const (
	ns         = "backscatter_milter"
	numActions = int(policy.Tempfail) + 1
)

// Label values for the role a verdict was taken in.
const (
	roleSMTPD    = "smtpd"
	roleInternal = "internal-bounce"
)

// spfResults are the SPF outcomes returnPath reports.
var spfResults = []string{auth.SPFPass, auth.SPFFail, auth.SPFSoftFail, auth.SPFNeutral, auth.SPFNone,
	auth.SPFTempError, auth.SPFPermError, auth.SPFSkipped}

var authResults = []policy.AuthResult{policy.Authenticated, policy.Unauthenticated, policy.Forged, policy.AuthUnknown}

// decisionBuckets cover a verdict from a cache hit (tens of µs) to the
// limits.timeout default (10 s).
var decisionBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func startMetrics(listen string, d *daemon, log *zap.Logger) (*metricsServer, error) {
	m := &metricsServer{reg: prometheus.NewRegistry()}
	messages := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "messages_total",
		Help: "Messages decided at end of message, by role (smtpd, internal-bounce: Postfix's own NDRs), action taken, direction and mode."},
		[]string{"role", "action", "direction", "mode"})
	for ri, role := range []string{roleSMTPD, roleInternal} {
		for di, dir := range []policy.Direction{policy.Inbound, policy.Outbound} {
			for mi, mode := range []policy.Mode{policy.Enforce, policy.Observe} {
				for a := range numActions {
					m.messages[ri][di][mi][a] = messages.WithLabelValues(role, policy.Action(a).String(), dir.String(), mode.String())
				}
			}
		}
	}
	m.evidence = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "evidence_total",
		Help: "Evidence that fired, by name (dnsbl:<zone> included)."}, []string{"name"})
	m.evByName.Store(&map[string]prometheus.Counter{})
	m.addEvidence(slices.Collect(maps.Keys(policy.DefaultWeights())))
	m.addEvidence([]string{policy.EvNDRForged, policy.EvNDRAuthenticated})
	m.rcptRej = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "rcpt_rejects_total",
		Help: "Recipients rejected at RCPT."})
	m.ndr = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "ndr_rewrites_total",
		Help: "Messages whose recipients were rewritten so no NDR goes to a possibly forged sender."}, []string{"kind"})
	m.ndrKind = map[policy.NDROutcome]prometheus.Counter{}
	for _, k := range policy.NDROutcomes() {
		if k != policy.NDRUntouched {
			m.ndrKind[k] = m.ndr.WithLabelValues(string(k))
		}
	}
	ndrGen := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "ndr_generated_total",
		Help: "NDRs our own MTA generated (seen by the internal-bounce role), by whether the original's return path was authenticated."},
		[]string{"auth"})
	m.ndrGen = map[policy.AuthResult]prometheus.Counter{}
	for _, a := range authResults {
		m.ndrGen[a] = ndrGen.WithLabelValues(string(a))
	}
	provedBy := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "proved_by_total",
		Help: "Inbound answers to our mail (bounces, read receipts, auto-replies) delivered, by the proof that made them ours (the first of policy.ProofNames present)."},
		[]string{"proof"})
	m.provedBy = map[string]prometheus.Counter{}
	for _, p := range policy.ProofNames {
		m.provedBy[p] = provedBy.WithLabelValues(p)
	}
	decision := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "decision_seconds",
		Help: "Time the policy took for a verdict, by stage (rcpt, eom, internal-bounce).", Buckets: decisionBuckets}, []string{"stage"})
	m.decision = map[policy.Stage]prometheus.Observer{}
	for _, st := range []policy.Stage{policy.StageRcpt, policy.StageEOM, policy.StageInternal} {
		m.decision[st] = decision.WithLabelValues(string(st))
	}
	m.sessions = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "sessions_in_flight",
		Help: "Open MTA connections."})
	m.refused = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "connections_refused_total",
		Help: "MTA connections closed at once because limits.max_connections were open."})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "errors_total",
		Help: "Milter errors: panic (recovered), internal, negotiation."}, []string{"kind"})
	for _, k := range []string{"panic", "internal", "negotiation"} {
		m.errors.WithLabelValues(k)
	}
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "config_reloads_total",
		Help: "Configuration reloads (SIGHUP), by result."}, []string{"result"})
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("refused")
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "build_info",
		Help: "Always 1; the labels say which build is running."}, []string{"version", "commit", "goversion"})
	buildInfo.WithLabelValues(version, commit, goruntime.Version()).Set(1)

	spf := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "spf_results_total",
		Help: "SPF evaluations of inbound return paths, by result."}, []string{"result"})
	dkim := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "dkim_results_total",
		Help: "DKIM signatures verified, by result and whether the signing domain aligns with MAIL FROM."}, []string{"result", "aligned"})
	batvSign := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "batv_signatures_total",
		Help: "Outbound envelope senders BATV-signed, by result (signed, error)."}, []string{"result"})
	c := &policyCounts{spf: map[string]prometheus.Counter{}, spfOther: spf.WithLabelValues("other")}
	for _, r := range spfResults {
		c.spf[r] = spf.WithLabelValues(r)
	}
	for v, vn := range []string{"fail", "pass"} {
		for a, an := range []string{"false", "true"} {
			c.dkim[v][a] = dkim.WithLabelValues(vn, an)
		}
	}
	c.batv[0], c.batv[1] = batvSign.WithLabelValues("signed"), batvSign.WithLabelValues("error")
	m.counts = c

	m.reg.MustRegister(messages, m.evidence, m.rcptRej, m.ndr, ndrGen, provedBy, decision, m.sessions, m.refused, m.errors, m.reloads,
		buildInfo, spf, dkim, batvSign,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&dnsblCollector{d: d}, &sentLogCollector{d: d}, &selfWatchCollector{d: d}, &sendmailDSNCollector{d: d})
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
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		// The milter serves without a failing dependency (a zone is
		// skipped, the sent log gives no evidence): say which, without
		// failing the probe.
		w.Write([]byte(d.health()))
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

// health is the /healthz body: "ok", or "degraded" and one line per
// failing dependency.
func (d *daemon) health() string {
	var bad []string
	if d.sentHealth != nil {
		if why, failing := d.sentHealth.Failing(); failing {
			bad = append(bad, "sent_log ("+d.sentHealth.Backend+"): "+why)
		}
	}
	if rt := d.rt.Load(); rt != nil && rt.lists != nil {
		zones := rt.lists.Health()
		for _, zone := range slices.Sorted(maps.Keys(zones)) {
			if err := zones[zone]; err != nil {
				bad = append(bad, "dnsbl zone "+zone+": "+err.Error())
			}
		}
	}
	if len(bad) == 0 {
		return "ok\n"
	}
	return "degraded\n  " + strings.Join(bad, "\n  ") + "\n"
}

// addEvidence creates the evidence counters for names at 0 (the policy's
// evidence, and dnsbl:<zone> for the configured zones at start and reload).
func (m *metricsServer) addEvidence(names []string) {
	m.evMu.Lock()
	defer m.evMu.Unlock()
	old := *m.evByName.Load()
	next := maps.Clone(old)
	for _, n := range names {
		if _, ok := next[n]; !ok {
			next[n] = m.evidence.WithLabelValues(n)
		}
	}
	m.evByName.Store(&next)
}

func (m *metricsServer) evidenceCounter(name string) prometheus.Counter {
	if c, ok := (*m.evByName.Load())[name]; ok {
		return c
	}
	m.addEvidence([]string{name})
	return (*m.evByName.Load())[name]
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
		o.m.evidenceCounter(e.Name).Inc()
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
	role := 0
	if v.Stage == policy.StageInternal {
		role = 1
		if selfwatch.IsGeneratedNDR(v.Stage, t.Sender) {
			// The same count `selfcheck` reads back from the log.
			o.m.ndrGen[selfwatch.NDRAuth(v.Auth)].Inc()
		}
	}
	if a := int(v.Action); a >= 0 && a < numActions && int(t.Direction) < 2 && int(v.Mode) < 2 {
		o.m.messages[role][t.Direction][v.Mode][a].Inc()
	}
	if v.Stage == policy.StageEOM && t.Direction == policy.Inbound && (v.Action == policy.Accept || v.Action == policy.Tag) {
		if c, ok := o.m.provedBy[v.Evidence.ProvedBy()]; ok {
			c.Inc()
		}
	}
	if v.NDR != "" {
		if c, ok := o.m.ndrKind[v.NDR]; ok {
			c.Inc()
		} else {
			o.m.ndr.WithLabelValues(string(v.NDR)).Inc()
		}
	}
}
func (o metricsObserver) SessionStart()     { o.m.sessions.Inc() }
func (o metricsObserver) SessionEnd()       { o.m.sessions.Dec() }
func (o metricsObserver) Error(kind string) { o.m.errors.WithLabelValues(kind).Inc() }
func (o metricsObserver) ConnRefused()      { o.m.refused.Inc() }
func (o metricsObserver) Decided(st policy.Stage, took time.Duration) {
	if h, ok := o.m.decision[st]; ok {
		h.Observe(took.Seconds())
	}
}

var (
	_ milter.DecisionObserver = metricsObserver{}
	_ milter.ConnObserver     = metricsObserver{}
)

// sentLogCollector reads the sent log's Health at scrape time.
type sentLogCollector struct{ d *daemon }

var (
	descSentErrors   = prometheus.NewDesc(ns+"_sent_log_errors_total", "Sent-log operations that failed, by backend and operation (record, seen, purge, open).", []string{"backend", "op"}, nil)
	descSentReplaced = prometheus.NewDesc(ns+"_sent_log_replaced_total", "Damaged sent-log files moved aside and started afresh.", []string{"backend"}, nil)
	descSentDegraded = prometheus.NewDesc(ns+"_sent_log_degraded", "1 while the sent log's last operation failed (no provenance evidence from it).", []string{"backend"}, nil)
)

func (c *sentLogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSentErrors
	ch <- descSentReplaced
	ch <- descSentDegraded
}

func (c *sentLogCollector) Collect(ch chan<- prometheus.Metric) {
	if c.d == nil || c.d.sentHealth == nil {
		return
	}
	h := c.d.sentHealth
	for _, op := range sent.Ops {
		ch <- prometheus.MustNewConstMetric(descSentErrors, prometheus.CounterValue, float64(h.Errors(op)), h.Backend, op.String())
	}
	ch <- prometheus.MustNewConstMetric(descSentReplaced, prometheus.CounterValue, float64(h.Replacements()), h.Backend)
	_, failing := h.Failing()
	ch <- prometheus.MustNewConstMetric(descSentDegraded, prometheus.GaugeValue, float64(b2i(failing)), h.Backend)
}

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
		for kind, n := range st.Errors { // every kind, at 0 until it happens
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
