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
	// MaxKeys bounds each table of addresses, IPs, zones, evidence, open
	// transactions and held messages; past it the rarest (or oldest)
	// entries are dropped and the report says "approximate". 0 means 50000.
	MaxKeys int
	// Held is the number of held messages listed, newest first; 0 means 100.
	Held int
	// Generated is copied into the report as it is.
	Generated Generated
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

	fired, decided, clients, sources, zones, targets, observeSources counter
	hours, days                                                      map[int64]*[6]int
	first, last                                                      time.Time

	// open holds the transactions (by session ID) whose RCPT lines were
	// counted in a top list, until their final line closes them.
	open map[string]uint8
	// held is every quarantine verdict by queue ID (the newest wins);
	// events are applied when the report is made, so a release read
	// before its verdict (files out of order) still counts.
	held   map[string]*heldRecord
	events map[string]Line
}

// Bits of Aggregator.open: the lists a transaction was counted in.
const (
	inClients uint8 = 1 << iota
	inSources
	inObserveSources
)

type heldRecord struct {
	msg           HeldMessage
	deciding      string
	blocked       bool // counted in BlockedAtEOM and the targets
	sourceCounted bool // counted in the sources (not already by a RCPT line)
	ownNDR        bool // counted in OwnNDRsStopped
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
	if opt.Held <= 0 {
		opt.Held = 100
	}
	a := &Aggregator{opt: opt, hours: map[int64]*[6]int{}, days: map[int64]*[6]int{},
		open: map[string]uint8{}, held: map[string]*heldRecord{}, events: map[string]Line{}}
	for _, c := range []*counter{&a.fired, &a.decided, &a.clients, &a.sources, &a.zones, &a.targets, &a.observeSources} {
		c.max = opt.MaxKeys
	}
	a.r.Schema = Schema
	a.r.Generated = opt.Generated
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

// AddLine counts one raw log line: a verdict, an event, a line to ignore
// or a broken one.
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

// Add counts one parsed verdict or event. Events are not cut by
// --since/--until: a release judges the held message whenever it happens.
func (a *Aggregator) Add(l *Line) {
	if l.Event != "" {
		a.r.Input.Events++
		id := clip(l.QueueID)
		if len(a.events) < a.opt.MaxKeys || a.events[id].Event != "" {
			a.events[id] = Line{Event: l.Event, QueueID: id, Operator: clip(l.Operator), Time: l.Time}
		} else {
			a.r.Approximate = true
		}
		return
	}
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
		a.once(l, inClients, &a.clients)
	}
	switch l.Stage {
	case policy.StageCallout:
		r.Callouts++
	case policy.StageRcpt:
		a.rcpt(l)
	case policy.StageEOM, policy.StageInternal:
		a.message(l)
	}
	if l.Stage != policy.StageRcpt {
		delete(a.open, clip(l.Session)) // the transaction's final line
	}
}

// once adds the client of l's transaction to c unless an earlier line of
// the same transaction (same session ID) did, and says whether it added.
func (a *Aggregator) once(l *Line, bit uint8, c *counter) bool {
	if l.ClientIP == "" {
		return false
	}
	if l.Session == "" {
		c.add(l.ClientIP)
		return true
	}
	session := clip(l.Session)
	seen := a.open[session]
	if seen&bit != 0 {
		return false
	}
	c.add(l.ClientIP)
	if l.Stage != policy.StageRcpt {
		return true // the final line: nothing follows to be joined
	}
	if _, ok := a.open[session]; !ok && len(a.open) >= a.opt.MaxKeys {
		// Transactions whose final line never came (a crash, a cut log):
		// forget them; at worst a later line counts a second time.
		clear(a.open)
		a.r.Approximate = true
	}
	a.open[session] = seen | bit
	return true
}

func (a *Aggregator) rcpt(l *Line) {
	r := &a.r
	bounceClass := policy.IsBounceSender(l.Sender)
	switch {
	case l.Action == policy.Reject:
		r.Rcpt.Rejected++
		a.volume(l, policy.Reject)
		if bounceClass {
			r.Rcpt.RejectedBounceClass++
			r.Backscatter.RefusedRecipients++
			a.once(l, inSources, &a.sources)
			a.addTargets(l.Rcpts)
		}
	case l.Would == policy.Reject:
		r.Observe.WouldRejectRcpt++
		if bounceClass {
			r.Observe.WouldRefuseRecipients++
			a.once(l, inObserveSources, &a.observeSources)
		}
	}
}

func (a *Aggregator) message(l *Line) {
	r := &a.r
	action := l.Action.String()
	m := &r.Messages
	m.Total++
	m.ByAction[action]++
	dir := l.Direction.String()
	m.ByDirection[dir]++
	m.ByDirectionAction[dir][action]++
	a.volume(l, l.Action)
	a.ndr(l.NDR)
	if l.Would != l.Action {
		r.Observe.WouldMessages[l.Would.String()]++
	}
	var held *heldRecord
	if l.Action == policy.Quarantine {
		held = a.hold(l)
	}
	if l.Stage == policy.StageInternal {
		if l.Action == policy.Discard || l.Action == policy.Quarantine {
			r.Backscatter.OwnNDRsStopped[action]++
			if held != nil {
				held.ownNDR = true
			}
		}
		return
	}
	if l.Direction != policy.Inbound || !policy.IsBounceSender(l.Sender) && !hasPrefix(l.Evidence, "autoreply:") {
		return
	}
	switch l.Action {
	case policy.Reject, policy.Quarantine, policy.Discard:
		r.Backscatter.BlockedAtEOM[action]++
		counted := a.once(l, inSources, &a.sources)
		a.addTargets(l.Rcpts)
		if held != nil {
			held.blocked, held.sourceCounted = true, counted
		}
	case policy.Accept, policy.Tag:
		switch l.Would {
		case policy.Reject, policy.Quarantine, policy.Discard:
			r.Observe.WouldBlockMessages++
			a.once(l, inObserveSources, &a.observeSources)
		}
		if by := policy.Evidences(l.Evidence).ProvedBy(); by != "" {
			r.Backscatter.RealBouncesDelivered++
			r.Backscatter.RealBouncesBy[by]++
		}
	}
}

func (a *Aggregator) ndr(outcome policy.NDROutcome) {
	n := &a.r.NDR
	o := &a.r.Observe
	switch outcome {
	case policy.NDRUntouched:
	case policy.NDRSuppressed:
		n.Suppressed++
	case policy.NDRSuccessDSNStripped:
		n.SuccessDSNStripped++
	case policy.NDRWouldSuppress:
		o.WouldSuppressNDR++
	case policy.NDRWouldStripSuccessDSN:
		o.WouldStripSuccessDSN++
	default:
		if n.Other == nil {
			n.Other = map[string]int{}
		}
		// An outcome this report has no row for (a newer milter's, or
		// policy.NDRNotPossibleWithSendmail) is counted by name.
		if len(n.Other) < 20 || n.Other[string(outcome)] > 0 {
			n.Other[shorten(string(outcome))]++
		}
	}
}

// hold records a quarantine verdict for the held-message table and the
// join with operators' events.
func (a *Aggregator) hold(l *Line) *heldRecord {
	a.r.Quarantine.Held++
	if l.QueueID == "" {
		return nil
	}
	if _, ok := a.held[clip(l.QueueID)]; !ok && len(a.held) >= a.opt.MaxKeys {
		a.pruneHeld()
	}
	dec, _ := deciding(l.Evidence)
	dec = clip(dec)
	id := clip(l.QueueID)
	h := &heldRecord{deciding: dec, msg: HeldMessage{QueueID: id, Time: l.Time, Stage: string(l.Stage),
		ClientIP: clip(l.ClientIP), Sender: clip(l.Sender), Rcpts: cut(l.Rcpts), Score: l.Score, Deciding: dec, Status: "held"}}
	a.held[id] = h
	return h
}

// pruneHeld forgets the older half of the held messages.
func (a *Aggregator) pruneHeld() {
	all := make([]*heldRecord, 0, len(a.held))
	for _, h := range a.held {
		all = append(all, h)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].msg.Time.After(all[j].msg.Time) })
	for _, h := range all[len(all)/2:] {
		delete(a.held, h.msg.QueueID)
	}
	a.r.Approximate = true
}

// clip cuts what a held message keeps of a field, so a hostile log cannot
// make each of up to MaxKeys entries hold a megabyte.
func clip(s string) string {
	if len(s) > maxKeyLen {
		return s[:maxKeyLen]
	}
	return s
}

func cut(rcpts []string) []string {
	out := make([]string, 0, min(len(rcpts), 10))
	for _, r := range rcpts {
		if len(out) == 10 {
			break
		}
		out = append(out, clip(r))
	}
	return out
}

// deciding returns the evidence that decided: the one the milter's reject
// text names too (policy.Evidences.Top).
func deciding(es []policy.Evidence) (string, bool) {
	top, ok := policy.Evidences(es).Top()
	return top.Name, ok
}

func hasPrefix(es []policy.Evidence, p string) bool {
	for _, e := range es {
		if strings.HasPrefix(e.Name, p) {
			return true
		}
	}
	return false
}

// addTargets counts the local addresses hit by blocked backscatter. At
// RCPT the line names the one recipient refused; at end of message the
// accepted ones (recipients refused earlier were counted on their own
// RCPT lines).
func (a *Aggregator) addTargets(rcpts []string) {
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
	day := time.Date(y, mo, d, 0, 0, 0, 0, a.opt.Location).Unix()
	hour := time.Date(y, mo, d, t.Hour(), 0, 0, 0, a.opt.Location).Unix()
	if !bump(a.days, day, act, maxDayBucket) || !bump(a.hours, hour, act, maxHourBucket) {
		a.r.Approximate = true
	}
}

func bump(m map[int64]*[6]int, key int64, act policy.Action, max int) bool {
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

// Report returns the figures counted so far, with operators' releases and
// deletions applied.
func (a *Aggregator) Report() *Report {
	r := a.r // a copy: the maps are shared, so they are copied where changed
	r.Period.TZ = ZoneName(a.opt.Location)
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
	sources, targets := a.sources.clone(), a.targets.clone()
	a.applyEvents(&r, &sources, &targets)
	b := &r.Backscatter
	for _, n := range b.BlockedAtEOM {
		b.BlockedMessages += n
	}
	top := a.opt.Top
	r.TopClients = a.clients.top(top)
	r.TopSources = sources.top(top)
	r.TopZones = a.zones.top(top)
	r.TopTargets = targets.top(top)
	r.Observe.TopSources = a.observeSources.top(top)
	for _, c := range a.fired.top(0) {
		r.Evidence = append(r.Evidence, EvidenceStat{Name: c.Key, Fired: c.Count, Decided: a.decided.m[c.Key]})
	}
	r.Hourly = buckets(a.hours, a.opt.Location)
	r.Daily = buckets(a.days, a.opt.Location)
	for _, c := range []*counter{&a.fired, &a.decided, &a.clients, &a.sources, &a.zones, &a.targets, &a.observeSources} {
		r.Approximate = r.Approximate || c.pruned
	}
	if r.Evidence == nil {
		r.Evidence = []EvidenceStat{}
	}
	return &r
}

// applyEvents marks held messages released or deleted and takes released
// ones out of what counts as blocked backscatter: a message an operator
// let through was a false positive, not backscatter.
func (a *Aggregator) applyEvents(r *Report, sources, targets *counter) {
	q := &r.Quarantine
	r.Backscatter.BlockedAtEOM = cloneMap(r.Backscatter.BlockedAtEOM)
	r.Backscatter.OwnNDRsStopped = cloneMap(r.Backscatter.OwnNDRsStopped)
	held := map[string]int{}
	released := map[string]int{}
	list := make([]HeldMessage, 0, len(a.held))
	for id, h := range a.held {
		m := h.msg
		held[h.deciding]++
		ev, ok := a.events[id]
		// An event older than the verdict is about an earlier message that
		// had the same queue ID.
		if ok && (ev.Time.IsZero() || m.Time.IsZero() || !ev.Time.Before(m.Time)) {
			m.Status, m.Operator = ev.Event, ev.Operator
			if ev.Event == EventReleased {
				q.Released++
				released[h.deciding]++
				if h.blocked {
					r.Backscatter.BlockedAtEOM["quarantine"]--
					if h.sourceCounted {
						sources.sub(m.ClientIP)
					}
					for _, rc := range m.Rcpts {
						targets.sub(strings.ToLower(rc))
					}
				}
				if h.ownNDR {
					r.Backscatter.OwnNDRsStopped["quarantine"]--
				}
			} else {
				q.Deleted++
			}
		}
		list = append(list, m)
	}
	for id := range a.events {
		if _, ok := a.held[id]; !ok {
			q.UnmatchedEvents++
		}
	}
	if q.Held > 0 {
		q.FalsePositiveRate = float64(q.Released) / float64(q.Held)
	}
	q.ByEvidence = []FalsePositives{}
	for ev, n := range held {
		q.ByEvidence = append(q.ByEvidence, FalsePositives{Evidence: ev, Held: n, Released: released[ev], Rate: float64(released[ev]) / float64(n)})
	}
	sort.Slice(q.ByEvidence, func(i, j int) bool {
		x, y := q.ByEvidence[i], q.ByEvidence[j]
		if x.Released != y.Released {
			return x.Released > y.Released
		}
		if x.Held != y.Held {
			return x.Held > y.Held
		}
		return x.Evidence < y.Evidence
	})
	sort.Slice(list, func(i, j int) bool {
		if !list[i].Time.Equal(list[j].Time) {
			return list[i].Time.After(list[j].Time)
		}
		return list[i].QueueID < list[j].QueueID
	})
	if len(list) > a.opt.Held {
		list = list[:a.opt.Held]
	}
	q.Messages = list
}

func cloneMap(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func buckets(m map[int64]*[6]int, loc *time.Location) []Bucket {
	out := make([]Bucket, 0, len(m))
	for k, c := range m {
		b := Bucket{Start: time.Unix(k, 0).In(loc), ByAction: make(map[string]int, len(Actions))}
		for i, n := range c {
			b.ByAction[Actions[i]] = n
			b.Total += n
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
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

// sub takes back one add of k (a released message).
func (c *counter) sub(k string) {
	if len(k) > maxKeyLen {
		k = k[:maxKeyLen]
	}
	switch n := c.m[k]; {
	case n > 1:
		c.m[k] = n - 1
	case n == 1:
		delete(c.m, k)
	}
}

func (c *counter) clone() counter {
	out := counter{m: make(map[string]int, len(c.m)), max: c.max, pruned: c.pruned}
	for k, v := range c.m {
		out.m[k] = v
	}
	return out
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
