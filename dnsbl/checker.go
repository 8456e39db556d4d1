package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
)

// Status is the outcome of one zone for one IP.
type Status string

const (
	StatusListed        Status = "listed"               // an answer matched the zone's filter
	StatusNotListed     Status = "not-listed"           // no record, or answers the filter does not accept
	StatusError         Status = "error"                // no usable answer: fail open, no weight
	StatusSkippedScope  Status = "skipped-sender-scope" // a bounce-only zone and a normal sender
	StatusSkippedHealth Status = "skipped-unhealthy"    // the zone failed its last health check
)

// ErrorKind classifies failures for counters and rate-limited logs.
type ErrorKind string

const (
	KindTimeout   ErrorKind = "timeout"        // no answer within Options.Timeout
	KindTemporary ErrorKind = "temporary"      // SERVFAIL, REFUSED, garbage, dead resolver
	KindRefused   ErrorKind = "refused-answer" // an answer in 127.255.255.0/24
	KindBadAnswer ErrorKind = "bad-answer"     // an answer outside 127.0.0.0/8
)

var errorKinds = [...]ErrorKind{KindTimeout, KindTemporary, KindRefused, KindBadAnswer}

// Errors in ZoneResult.Err wrap one of these (or resolver.ErrTemporary).
var (
	// ErrRefusedAnswer: the list answered with an error code in
	// 127.255.255.0/24 (Spamhaus: query through a public resolver, over
	// quota, no access). It is not a listing.
	ErrRefusedAnswer = errors.New("dnsbl: list refused the query")
	// ErrBadAnswer: an answer outside 127.0.0.0/8, typically a resolver that
	// rewrites NXDOMAIN or a list that has been retired to list everything.
	ErrBadAnswer = errors.New("dnsbl: answer outside 127.0.0.0/8")
	// ErrTimeout: no answer within the lookup deadline.
	ErrTimeout = errors.New("dnsbl: timeout")
)

// ZoneResult is what one zone said about one IP.
type ZoneResult struct {
	Zone    Zone
	Status  Status
	Listed  bool         // Status == StatusListed
	Answers []netip.Addr // the A records received (also when not listed); shared with the cache: read only
	Weight  int          // Zone.Weight when listed, else 0
	Err     error        // set when Status is StatusError
	ErrKind ErrorKind    // set when Status is StatusError
	TXT     string       // the list's explanation, when listed and Options.FetchTXT
	Cached  bool         // the answer came from the cache
}

// Result is what all zones said about one IP, in configuration order.
type Result struct {
	IP      netip.Addr
	Zones   []ZoneResult
	Elapsed time.Duration // from Start to Wait's return
}

// Score sums the applied weights of the listings.
func (r Result) Score() int {
	s := 0
	for _, z := range r.Zones {
		s += z.Weight
	}
	return s
}

// Listed returns the results of the zones that list the IP.
func (r Result) Listed() []ZoneResult {
	var out []ZoneResult
	for _, z := range r.Zones {
		if z.Listed {
			out = append(out, z)
		}
	}
	return out
}

// Options tune a Checker; zero fields take the defaults.
type Options struct {
	Timeout     time.Duration    // bounds a whole check; default 2s
	MinTTL      time.Duration    // lower clamp of cached TTLs; default 60s
	MaxTTL      time.Duration    // upper clamp of cached TTLs; default 1h
	CacheSize   int              // entries (zone+IP); default 50,000, about 10 MB at most
	FetchTXT    bool             // ask for the TXT explanation of listings
	Logger      *zap.Logger      // default: no logging
	LogInterval time.Duration    // at most one error log per zone and kind per interval; default 1m
	Now         func() time.Time // clock for TTLs and log intervals; default time.Now
}

// Default option values.
const (
	DefaultTimeout     = 2 * time.Second
	DefaultMinTTL      = 60 * time.Second
	DefaultMaxTTL      = time.Hour
	DefaultCacheSize   = 50_000
	DefaultLogInterval = time.Minute
	maxTXTLen          = 512
)

// Checker looks client IPs up in a set of zones. It is safe for concurrent
// use; one Checker serves the whole process so the cache and in-flight
// sharing work across sessions.
type Checker struct {
	zones []Zone
	names []string // distinct zone names, in order of first appearance
	nameI []int    // zones[i] is looked up as names[nameI[i]]
	r     resolver.Resolver
	opts  Options
	stats map[string]*zoneStats
	limit logLimiter

	mu       sync.Mutex
	cache    cache
	inflight map[cacheKey]*call

	hmu    sync.RWMutex
	health map[string]error // last health check per zone name; absent: never checked
}

// New returns a Checker for zones asking r. Zones with the same name (for
// example an allowlist and a blocklist entry with different filters) share
// one query per IP.
func New(zones []Zone, r resolver.Resolver, opts Options) (*Checker, error) {
	if r == nil {
		return nil, errors.New("dnsbl: no resolver")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MinTTL <= 0 {
		opts.MinTTL = DefaultMinTTL
	}
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = DefaultMaxTTL
	}
	if opts.MaxTTL < opts.MinTTL {
		return nil, fmt.Errorf("dnsbl: max TTL %v is below min TTL %v", opts.MaxTTL, opts.MinTTL)
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.LogInterval <= 0 {
		opts.LogInterval = DefaultLogInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Checker{
		r:        r,
		opts:     opts,
		stats:    map[string]*zoneStats{},
		cache:    newCache(opts.CacheSize),
		inflight: map[cacheKey]*call{},
		health:   map[string]error{},
	}
	c.limit.Interval = opts.LogInterval
	index := map[string]int{}
	for _, z := range zones {
		name, err := checkZoneName(z.Name)
		if err != nil {
			return nil, fmt.Errorf("dnsbl: %w", err)
		}
		z.Name = name
		if z.Senders == "" {
			z.Senders = DefaultSenders(name)
		}
		if z.Senders != SendersAny && z.Senders != SendersBounce {
			return nil, fmt.Errorf("dnsbl: zone %s: senders %q: want bounce or any", name, z.Senders)
		}
		i, ok := index[name]
		if !ok {
			i = len(c.names)
			index[name] = i
			c.names = append(c.names, name)
			c.stats[name] = &zoneStats{}
		}
		c.zones = append(c.zones, z)
		c.nameI = append(c.nameI, i)
	}
	return c, nil
}

// Zones returns the configured zones.
func (c *Checker) Zones() []Zone { return append([]Zone(nil), c.zones...) }

// outcome is the answer of one zone name for one IP, shared by every zone
// entry with that name.
type outcome struct {
	answers []netip.Addr
	txt     string
	err     error
	kind    ErrorKind
	cached  bool
	done    bool
	want    bool // some zone of this name applies to the check
}

// call is one in-flight query that concurrent checks of the same zone and
// IP join instead of asking again.
type call struct {
	done chan struct{}
	out  outcome
}

// Pending is a check under way; Wait collects it.
type Pending struct {
	c      *Checker
	ip     netip.Addr
	start  time.Time
	scoped []Status // per zone: "" to use the lookup, or the skip status

	mu        sync.Mutex
	outs      []outcome // per zone name
	remaining int
	doneCh    chan struct{} // closed when remaining reaches 0; nil if nothing was asked
}

// Start launches the lookups of ip in every applicable zone concurrently
// and returns at once, so the queries overlap whatever the caller does next
// (the milter starts at MAIL FROM and waits at RCPT). bounceClass says the
// sender is null or postmaster@: only then are senders=bounce zones asked.
// Answers in the cache are used without a query; a query already in flight
// for the same zone and IP is joined. ctx gives values to the queries; its
// cancellation does not stop a query other checks may share: each query
// ends within Options.Timeout anyway.
func (c *Checker) Start(ctx context.Context, ip netip.Addr, bounceClass bool) *Pending {
	ip = ip.Unmap()
	p := &Pending{c: c, ip: ip, start: time.Now(), scoped: make([]Status, len(c.zones)), outs: make([]outcome, len(c.names))}
	for i, z := range c.zones {
		switch {
		case z.Senders == SendersBounce && !bounceClass:
			p.scoped[i] = StatusSkippedScope
		case !c.healthy(z.Name):
			p.scoped[i] = StatusSkippedHealth
		default:
			p.outs[c.nameI[i]].want = true
		}
	}
	if !ip.IsValid() {
		for n := range p.outs {
			p.outs[n] = outcome{err: errors.New("dnsbl: invalid IP address"), kind: KindTemporary, done: true}
		}
		return p
	}
	now := c.opts.Now()
	var joins []*call
	var joinIdx []int
	c.mu.Lock()
	for n, name := range c.names {
		if !p.outs[n].want {
			continue
		}
		key := cacheKey{zone: name, ip: ip}
		st := c.stats[name]
		st.lookups.Add(1)
		if e, ok := c.cache.get(key, now); ok {
			st.cacheHits.Add(1)
			p.outs[n] = outcome{answers: e.answers, txt: e.txt, cached: true, done: true}
			continue
		}
		cl, ok := c.inflight[key]
		if ok {
			st.shared.Add(1)
		} else {
			cl = &call{done: make(chan struct{})}
			c.inflight[key] = cl
			go c.query(context.WithoutCancel(ctx), key, cl)
		}
		joins = append(joins, cl)
		joinIdx = append(joinIdx, n)
	}
	c.mu.Unlock()
	if len(joins) == 0 {
		return p
	}
	p.remaining = len(joins)
	p.doneCh = make(chan struct{})
	for j, cl := range joins {
		go p.collect(joinIdx[j], cl)
	}
	return p
}

func (p *Pending) collect(n int, cl *call) {
	<-cl.done
	p.mu.Lock()
	defer p.mu.Unlock()
	p.outs[n] = cl.out
	p.outs[n].done = true
	p.remaining--
	if p.remaining == 0 {
		close(p.doneCh)
	}
}

// Wait returns the result once every lookup has answered, Options.Timeout
// after Start, or when ctx ends, whichever comes first. Zones that have not
// answered by then are reported as errors; their queries finish in the
// background and fill the cache for the next check.
func (p *Pending) Wait(ctx context.Context) Result {
	if p.doneCh != nil {
		left := p.c.opts.Timeout - time.Since(p.start)
		if left > 0 {
			t := time.NewTimer(left)
			select {
			case <-p.doneCh:
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
	}
	res := Result{IP: p.ip, Zones: make([]ZoneResult, len(p.c.zones))}
	p.mu.Lock()
	for i, z := range p.c.zones {
		zr := ZoneResult{Zone: z}
		if s := p.scoped[i]; s != "" {
			zr.Status = s
			res.Zones[i] = zr
			continue
		}
		o := p.outs[p.c.nameI[i]]
		switch {
		case !o.done:
			zr.Status, zr.ErrKind = StatusError, KindTimeout
			if err := ctx.Err(); err != nil {
				zr.Err = fmt.Errorf("dnsbl: %s: %w", z.Name, err)
			} else {
				zr.Err = fmt.Errorf("%w: %s: no answer within %v", ErrTimeout, z.Name, p.c.opts.Timeout)
			}
		case o.err != nil:
			zr.Status, zr.Err, zr.ErrKind = StatusError, o.err, o.kind
			zr.Answers = o.answers
		default:
			zr.Cached = o.cached
			zr.Answers = o.answers
			zr.Status = StatusNotListed
			for _, a := range o.answers {
				if z.Filter.Match(a) {
					zr.Status, zr.Listed, zr.Weight, zr.TXT = StatusListed, true, z.Weight, o.txt
					break
				}
			}
		}
		res.Zones[i] = zr
	}
	p.mu.Unlock()
	res.Elapsed = time.Since(p.start)
	return res
}

// Check is Start followed by Wait.
func (c *Checker) Check(ctx context.Context, ip netip.Addr, bounceClass bool) Result {
	return c.Start(ctx, ip, bounceClass).Wait(ctx)
}

// query asks the resolver for key, then caches and publishes the outcome.
func (c *Checker) query(ctx context.Context, key cacheKey, cl *call) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	st := c.stats[key.zone]
	st.queries.Add(1)
	name := QueryName(key.ip, key.zone)
	out, ttl := c.ask(ctx, name)
	if out.err != nil {
		st.countError(out.kind)
		c.limit.log(c.opts.Logger, c.opts.Now(), c.opts.LogInterval, key.zone, out.kind, out.err)
	} else if len(out.answers) > 0 {
		st.positive.Add(1)
		if c.opts.FetchTXT && c.matchesAny(key.zone, out.answers) {
			out.txt = c.txt(ctx, name)
		}
	} else {
		st.negative.Add(1)
	}
	c.mu.Lock()
	if out.err == nil {
		// Errors are not cached: the next message asks again, and a
		// zone that keeps failing is taken out by the health check.
		c.cache.put(key, entry{answers: out.answers, txt: out.txt, expires: c.opts.Now().Add(c.clamp(ttl))}, c.opts.Now())
	}
	delete(c.inflight, key)
	c.mu.Unlock()
	cl.out = out
	close(cl.done)
}

// ask sends one A query and classifies the answer; ttl is the answer's
// (or the negative answer's SOA) TTL.
func (c *Checker) ask(ctx context.Context, name string) (outcome, time.Duration) {
	addrs, ttl, err := c.r.LookupA(ctx, name)
	switch {
	case err == nil:
	case resolver.IsNotFound(err):
		return outcome{}, ttl
	case expired(ctx):
		return outcome{err: fmt.Errorf("%w: %s: %v", ErrTimeout, name, err), kind: KindTimeout}, 0
	default:
		return outcome{err: err, kind: KindTemporary}, 0
	}
	if len(addrs) == 0 {
		return outcome{}, ttl
	}
	for _, a := range addrs {
		if !a.Is4() || a.As4()[0] != 127 {
			return outcome{answers: addrs, err: fmt.Errorf("%w: %s answered %v", ErrBadAnswer, name, a), kind: KindBadAnswer}, 0
		}
		if b := a.As4(); b[1] == 255 && b[2] == 255 {
			return outcome{answers: addrs, err: fmt.Errorf("%w: %s answered %v (an error code, not a listing)", ErrRefusedAnswer, name, a), kind: KindRefused}, 0
		}
	}
	return outcome{answers: addrs}, ttl
}

// expired reports whether ctx has ended. The deadline is compared too: a
// socket deadline set from ctx can fire a moment before ctx.Err is set, and
// the resolver reports that as a plain temporary failure.
func expired(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// matchesAny reports whether some zone entry named zone accepts an answer,
// so the TXT record is fetched only for real listings.
func (c *Checker) matchesAny(zone string, answers []netip.Addr) bool {
	for _, z := range c.zones {
		if z.Name != zone {
			continue
		}
		for _, a := range answers {
			if z.Filter.Match(a) {
				return true
			}
		}
	}
	return false
}

// txt fetches the explanation of a listing; failures leave it empty since
// it is only decoration for logs and reject texts.
func (c *Checker) txt(ctx context.Context, name string) string {
	txts, _, err := c.r.LookupTXT(ctx, name)
	if err != nil || len(txts) == 0 {
		return ""
	}
	t := txts[0]
	if len(t) > maxTXTLen {
		t = t[:maxTXTLen]
	}
	return t
}

func (c *Checker) clamp(ttl time.Duration) time.Duration {
	return min(max(ttl, c.opts.MinTTL), c.opts.MaxTTL)
}

// QueryName returns the DNS name that asks zone about ip: the IPv4 octets
// reversed, or the 32 nibbles of an IPv6 address reversed (RFC 5782 §2.1,
// §2.4), followed by the zone.
func QueryName(ip netip.Addr, zone string) string {
	ip = ip.Unmap()
	buf := make([]byte, 0, 64+1+len(zone))
	if ip.Is4() {
		b := ip.As4()
		for i := 3; i >= 0; i-- {
			buf = strconv.AppendUint(buf, uint64(b[i]), 10)
			buf = append(buf, '.')
		}
	} else {
		const hex = "0123456789abcdef"
		b := ip.As16()
		for i := 15; i >= 0; i-- {
			buf = append(buf, hex[b[i]&0xf], '.', hex[b[i]>>4], '.')
		}
	}
	return string(append(buf, zone...))
}
