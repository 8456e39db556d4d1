package report

import (
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/backscatter-milter/backscatter-milter/policy"
)

// Options choose what is counted and how it is shown.
type Options struct {
	Since    time.Time      // zero: from the first line; inclusive
	Until    time.Time      // zero: to the last line; exclusive
	Top      int            // rows in each "top" list; 0 means 10
	Location *time.Location // hours and days are cut in this zone; nil means UTC
	// MaxKeys bounds each table of addresses, IPs, zones and evidence; past
	// it the rarest entries are dropped and the report says "approximate".
	// 0 means 50000.
	MaxKeys int
}

// Limits on what a hostile or huge log can make us keep.
const (
	maxKeyLen     = 320       // longer addresses and names are cut
	maxHourBucket = 24 * 800  // a little over two years of hours
	maxDayBucket  = 366 * 100 // a century of days
	maxErrors     = 20        // read errors kept verbatim
)

// Actions lists action names mildest first: the order of every table.
var Actions = []string{"accept", "tag", "quarantine", "reject", "discard", "tempfail"}

// Aggregator counts verdict lines. Feed it with Add or Read, then call
// Report. It is not safe for concurrent use.
type Aggregator struct {
	opt Options
	r   Report

	fired, decided, clients, sources, zones, targets counter
	hours, days                                      map[string]*[6]int
	first, last                                      time.Time
}

// New returns an empty Aggregator.
func New(opt Options) *Aggregator {
	if opt.Top <= 0 {
		opt.Top = 10
	}
	if opt.Location == nil {
		opt.Location = time.UTC
	}
	if opt.MaxKeys <= 0 {
		opt.MaxKeys = 50000
	}
	a := &Aggregator{opt: opt, hours: map[string]*[6]int{}, days: map[string]*[6]int{}}
	for _, c := range []*counter{&a.fired, &a.decided, &a.clients, &a.sources, &a.zones, &a.targets} {
		c.max = opt.MaxKeys
	}
	a.r.Messages = Messages{ByAction: actionMap(), ByDirection: map[string]int{"inbound": 0, "outbound": 0},
		ByDirectionAction: map[string]map[string]int{"inbound": actionMap(), "outbound": actionMap()}}
	a.r.Backscatter.BlockedAtEOM = map[string]int{"reject": 0, "quarantine": 0, "discard": 0}
	a.r.Backscatter.RealBouncesBy = map[string]int{}
	a.r.Backscatter.OwnNDRsStopped = map[string]int{"quarantine": 0, "discard": 0}
	a.r.Observe.WouldMessages = actionMap()
	return a
}

func actionMap() map[string]int {
	m := make(map[string]int, len(Actions))
	for _, n := range Actions {
		m[n] = 0
	}
	return m
}

// AddLine counts one raw log line: a verdict, a line to ignore or a broken one.
func (a *Aggregator) AddLine(b []byte) {
	a.r.Input.Lines++
	l, err := ParseLine(b)
	var me *MalformedError
	switch {
	case errors.Is(err, ErrNotVerdict):
		a.r.Input.Other++
		return
	case errors.As(err, &me):
		a.r.Input.Malformed++
		return
	case err != nil:
		a.r.Input.Malformed++
		return
	}
	a.Add(&l)
}

// Add counts one parsed verdict.
func (a *Aggregator) Add(l *Line) {
	if !a.opt.Since.IsZero() || !a.opt.Until.IsZero() {
		switch {
		case l.Time.IsZero():
			a.r.Input.NoTime++
			return
		case !a.opt.Since.IsZero() && l.Time.Before(a.opt.Since), !a.opt.Until.IsZero() && !l.Time.Before(a.opt.Until):
			a.r.Input.OutsideRange++
			return
		}
	}
	r := &a.r
	r.Input.Verdicts++
	if !l.Time.IsZero() {
		if a.first.IsZero() || l.Time.Before(a.first) {
			a.first = l.Time
		}
		if l.Time.After(a.last) {
			a.last = l.Time
		}
	}
	action, would := l.Action.String(), l.Would.String()
	for _, e := range l.Evidence {
		a.fired.add(e.Name)
		if z, ok := strings.CutPrefix(e.Name, policy.EvDNSBLPrefix); ok {
			a.zones.add(z)
		}
	}
	if l.Stage != policy.StageCallout && l.Action != policy.Accept {
		if top, ok := deciding(l.Evidence); ok {
			a.decided.add(top)
		}
	}
	if l.Mode == policy.Observe {
		r.Observe.Verdicts++
	}
	if l.Stage != policy.StageCallout && l.Direction == policy.Inbound && (l.Action != policy.Accept || l.Would != policy.Accept) && l.ClientIP != "" {
		a.clients.add(l.ClientIP)
	}
	bounceClass := policy.IsBounceSender(l.Sender)
	switch l.Stage {
	case policy.StageCallout:
		r.Callouts++
	case policy.StageRcpt:
		if l.Action == policy.Reject {
			r.Rcpt.Rejected++
			a.volume(l, policy.Reject)
			if bounceClass {
				r.Rcpt.RejectedBounceClass++
				r.Backscatter.BlockedAtRcpt++
				a.blocked(l, l.Rcpts)
			}
		} else if l.Would == policy.Reject {
			r.Observe.WouldRejectRcpt++
		}
	case policy.StageEOM, policy.StageInternal:
		m := &r.Messages
		m.Total++
		m.ByAction[action]++
		dir := l.Direction.String()
		m.ByDirection[dir]++
		m.ByDirectionAction[dir][action]++
		a.volume(l, l.Action)
		switch l.NDR {
		case "suppressed":
			r.NDR.Suppressed++
		case "success-dsn-stripped":
			r.NDR.SuccessDSNStripped++
		}
		if l.Would != l.Action {
			r.Observe.WouldMessages[would]++
		}
		if l.Stage == policy.StageInternal {
			if l.Action == policy.Discard || l.Action == policy.Quarantine {
				r.Backscatter.OwnNDRsStopped[action]++
			}
			break
		}
		if l.Direction != policy.Inbound || !bounceClass && !hasPrefix(l.Evidence, "autoreply:") {
			break
		}
		switch l.Action {
		case policy.Reject, policy.Quarantine, policy.Discard:
			r.Backscatter.BlockedAtEOM[action]++
			a.blocked(l, l.Rcpts)
		case policy.Accept, policy.Tag:
			for _, e := range l.Evidence {
				if realBounce[e.Name] {
					r.Backscatter.RealBouncesDelivered++
					r.Backscatter.RealBouncesBy[e.Name]++
					break
				}
			}
		}
	}
}

// realBounce names the evidence that proves inbound bounce-class mail answers
// something we sent.
var realBounce = map[string]bool{
	policy.EvBounceOurs: true, policy.EvBounceOursRelay: true, policy.EvBATVOK: true, policy.EvAutoreplyOurs: true,
}

// deciding returns the evidence that weighed most (the first one on a tie,
// as the milter's reject text picks it); only positive weights decide.
func deciding(es []policy.Evidence) (string, bool) {
	best, w := "", 0
	for _, e := range es {
		if e.Weight > w {
			best, w = e.Name, e.Weight
		}
	}
	return best, w > 0
}

func hasPrefix(es []policy.Evidence, p string) bool {
	for _, e := range es {
		if strings.HasPrefix(e.Name, p) {
			return true
		}
	}
	return false
}

// blocked counts the source and the targets of blocked backscatter. At RCPT
// the line names the one recipient refused; at end of message the accepted
// ones (recipients refused earlier were counted on their own RCPT lines).
func (a *Aggregator) blocked(l *Line, rcpts []string) {
	if l.ClientIP != "" {
		a.sources.add(l.ClientIP)
	}
	for _, rc := range rcpts {
		a.targets.add(strings.ToLower(rc))
	}
}

func (a *Aggregator) volume(l *Line, act policy.Action) {
	if l.Time.IsZero() {
		a.r.Input.Unbucketed++
		return
	}
	t := l.Time.In(a.opt.Location)
	y, mo, d := t.Date()
	day := time.Date(y, mo, d, 0, 0, 0, 0, a.opt.Location).Format("2006-01-02")
	hour := time.Date(y, mo, d, t.Hour(), 0, 0, 0, a.opt.Location).Format("2006-01-02T15")
	if !bump(a.days, day, act, maxDayBucket) || !bump(a.hours, hour, act, maxHourBucket) {
		a.r.Approximate = true
	}
}

func bump(m map[string]*[6]int, key string, act policy.Action, max int) bool {
	c := m[key]
	if c == nil {
		if len(m) >= max {
			return false
		}
		c = new([6]int)
		m[key] = c
	}
	if act >= 0 && int(act) < len(c) {
		c[act]++
	}
	return true
}

// Report returns the figures counted so far.
func (a *Aggregator) Report() *Report {
	r := a.r // a copy: the maps are shared, the lists are built fresh
	r.Period.TZ = a.opt.Location.String()
	if !a.opt.Since.IsZero() {
		s := a.opt.Since
		r.Period.Since = &s
	}
	if !a.opt.Until.IsZero() {
		u := a.opt.Until
		r.Period.Until = &u
	}
	if !a.first.IsZero() {
		f, l := a.first, a.last
		r.Period.First, r.Period.Last = &f, &l
	}
	b := &r.Backscatter
	b.Blocked = b.BlockedAtRcpt
	for _, n := range b.BlockedAtEOM {
		b.Blocked += n
	}
	top := a.opt.Top
	r.TopClients = a.clients.top(top)
	r.TopSources = a.sources.top(top)
	r.TopZones = a.zones.top(top)
	r.TopTargets = a.targets.top(top)
	for _, c := range a.fired.top(0) {
		r.Evidence = append(r.Evidence, EvidenceStat{Name: c.Key, Fired: c.Count, Decided: a.decided.m[c.Key]})
	}
	sort.SliceStable(r.Evidence, func(i, j int) bool {
		x, y := r.Evidence[i], r.Evidence[j]
		if x.Fired != y.Fired {
			return x.Fired > y.Fired
		}
		return x.Name < y.Name
	})
	r.Hourly = buckets(a.hours)
	r.Daily = buckets(a.days)
	for _, c := range []*counter{&a.fired, &a.decided, &a.clients, &a.sources, &a.zones, &a.targets} {
		r.Approximate = r.Approximate || c.pruned
	}
	if r.Evidence == nil {
		r.Evidence = []EvidenceStat{}
	}
	return &r
}

func buckets(m map[string]*[6]int) []Bucket {
	out := make([]Bucket, 0, len(m))
	for k, c := range m {
		b := Bucket{Start: k, ByAction: make(map[string]int, len(Actions))}
		for i, n := range c {
			b.ByAction[Actions[i]] = n
			b.Total += n
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}

// counter counts keys, keeping at most about max of them: past 2*max the
// rarest are dropped (the heavy hitters a report shows survive).
type counter struct {
	m      map[string]int
	max    int
	pruned bool
}

func (c *counter) add(k string) {
	if c.m == nil {
		c.m = map[string]int{}
	}
	if len(k) > maxKeyLen {
		k = k[:maxKeyLen]
	}
	c.m[k]++
	if len(c.m) > 2*c.max {
		c.prune()
	}
}

func (c *counter) prune() {
	all := c.top(0)
	for _, kc := range all[c.max:] {
		delete(c.m, kc.Key)
	}
	c.pruned = true
}

// top returns the n most frequent keys (all of them when n is 0), most
// frequent first, ties by key.
func (c *counter) top(n int) []Count {
	out := make([]Count, 0, len(c.m))
	for k, v := range c.m {
		out = append(out, Count{Key: k, Count: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Key < out[j].Key
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}
