package report

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/backscatter-milter/backscatter-milter/policy"
)

// WriteText writes the review for a terminal or a mail to the postmaster,
// in the spirit of pflogsumm: sections of aligned columns. Every figure
// says whether it counts messages, recipients or transactions.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "backscatter-milter report\n%s\nperiod: %s\n", r.generatedText(), r.periodText())
	in := r.Input
	fmt.Fprintf(w, "input: %d files, %d lines, %d verdicts, %d events, %d other lines, %d malformed (skipped), %d outside --since/--until, %d without time\n",
		in.Files, in.Lines, in.Verdicts, in.Events, in.Other, in.Malformed, in.OutsideRange, in.NoTime)
	if len(in.FileNames) > 0 {
		fmt.Fprintf(w, "files: %s\n", strings.Join(in.FileNames, ", "))
	}
	for _, e := range in.Errors {
		fmt.Fprintf(w, "read error: %s\n", e)
	}
	if r.Approximate {
		fmt.Fprintln(w, "note: some tables outgrew their bound; their rarest rows were dropped (counts are lower bounds)")
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }

	p("\nMESSAGES (end of message)\ttotal\tinbound\toutbound\n")
	m := r.Messages
	for _, a := range Actions {
		p("  %s\t%d\t%d\t%d\n", a, m.ByAction[a], m.ByDirectionAction["inbound"][a], m.ByDirectionAction["outbound"][a])
	}
	p("  total\t%d\t%d\t%d\n", m.Total, m.ByDirection["inbound"], m.ByDirection["outbound"])
	p("\nRECIPIENTS REJECTED AT RCPT (recipients)\t%d\n", r.Rcpt.Rejected)
	p("  of bounce-class senders\t%d\n", r.Rcpt.RejectedBounceClass)
	p("CALLOUTS (null-sender probes, no DATA)\t%d\n", r.Callouts)

	b := r.Backscatter
	p("\nBACKSCATTER\n")
	p("  blocked messages (end of message)\t%d\n", b.BlockedMessages)
	p("    rejected\t%d\n", b.BlockedAtEOM["reject"])
	p("    quarantined (not released)\t%d\n", b.BlockedAtEOM["quarantine"])
	p("    discarded\t%d\n", b.BlockedAtEOM["discard"])
	p("  refused recipients (at RCPT)\t%d\n", b.RefusedRecipients)
	p("  real bounces delivered (messages)\t%d\n", b.RealBouncesDelivered)
	for _, k := range provedByOrder(b.RealBouncesBy) {
		p("    proved by %s\t%d\n", k, b.RealBouncesBy[k])
	}
	p("  our NDRs to forged senders stopped (messages)\t%d\n", b.OwnNDRsStopped["discard"]+b.OwnNDRsStopped["quarantine"])
	p("    discarded\t%d\n", b.OwnNDRsStopped["discard"])
	p("    quarantined (not released)\t%d\n", b.OwnNDRsStopped["quarantine"])

	p("\nNDR SUPPRESSION (unauthenticated senders, messages)\n")
	p("  NDRs suppressed (NOTIFY=NEVER)\t%d\n", r.NDR.Suppressed)
	p("  success DSN stripped\t%d\n", r.NDR.SuccessDSNStripped)
	for _, k := range sortedKeys(r.NDR.Other) {
		p("  %s\t%d\n", k, r.NDR.Other[k])
	}

	o := r.Observe
	p("\nOBSERVE MODE (what enforce mode would have done)\n")
	p("  verdicts in observe mode\t%d\n", o.Verdicts)
	p("  would have rejected (messages)\t%d\n", o.WouldMessages["reject"])
	p("  would have quarantined (messages)\t%d\n", o.WouldMessages["quarantine"])
	p("  would have refused at RCPT (recipients)\t%d\n", o.WouldRejectRcpt)
	p("  would have blocked backscatter (messages)\t%d\n", o.WouldBlockMessages)
	p("  would have refused backscatter (recipients)\t%d\n", o.WouldRefuseRecipients)
	p("  would have suppressed NDRs (messages)\t%d\n", o.WouldSuppressNDR)
	p("  would have stripped success DSN (messages)\t%d\n", o.WouldStripSuccessDSN)

	q := r.Quarantine
	p("\nQUARANTINE (held messages)\n")
	p("  held\t%d\n", q.Held)
	p("  released by an operator (false positives)\t%d\t%s\n", q.Released, percent(q.FalsePositiveRate))
	p("  deleted by an operator\t%d\n", q.Deleted)
	p("  events for messages held before this log\t%d\n", q.UnmatchedEvents)
	tw.Flush()

	tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	p = func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	p("\nFALSE POSITIVES BY DECIDING EVIDENCE\theld\treleased\trate\n")
	for _, f := range q.ByEvidence {
		p("  %s\t%d\t%d\t%s\n", orNone(f.Evidence), f.Held, f.Released, percent(f.Rate))
	}
	if len(q.ByEvidence) == 0 {
		p("  (none)\t\t\t\n")
	}
	tw.Flush()

	tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	p = func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	p("\nHELD MESSAGES (newest first)\ttime\tclient\tsender\tscore\tdeciding evidence\tstatus\n")
	for _, h := range q.Messages {
		p("  %s\t%s\t%s\t<%s>\t%d\t%s\t%s\n", h.QueueID, r.timeText(h.Time), orNone(h.ClientIP), h.Sender, h.Score, orNone(h.Deciding), statusText(h))
	}
	if len(q.Messages) == 0 {
		p("  (none)\t\t\t\t\t\t\n")
	}
	tw.Flush()

	tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	p = func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	p("\nEVIDENCE\tfired\tdecided\n")
	for _, e := range r.Evidence {
		p("  %s\t%d\t%d\n", e.Name, e.Fired, e.Decided)
	}
	if len(r.Evidence) == 0 {
		p("  (none)\t\t\n")
	}
	tw.Flush()

	for _, t := range []struct {
		title string
		rows  []Count
	}{
		{"TOP CLIENT IPS (inbound transactions not plainly accepted)", r.TopClients},
		{"TOP SOURCES OF BLOCKED BACKSCATTER (transactions)", r.TopSources},
		{"OBSERVE MODE: TOP SOURCES OF BACKSCATTER IT WOULD HAVE BLOCKED (transactions)", r.Observe.TopSources},
		{"TOP DNSBL ZONES (listings)", r.TopZones},
		{"TOP LOCAL ADDRESSES TARGETED BY FORGED BOUNCES (recipients)", r.TopTargets},
	} {
		tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "\n%s\t\n", t.title)
		for _, c := range t.rows {
			fmt.Fprintf(tw, "  %s\t%d\n", c.Key, c.Count)
		}
		if len(t.rows) == 0 {
			fmt.Fprintf(tw, "  (none)\t\n")
		}
		tw.Flush()
	}

	for _, t := range []struct {
		title, layout string
		rows          []Bucket
	}{{"VOLUME BY DAY", "2006-01-02", r.Daily}, {"VOLUME BY HOUR", "2006-01-02 15:04", r.Hourly}} {
		tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "\n%s\ttotal\t%s\t\n", t.title, strings.Join(Actions, "\t"))
		for _, bk := range t.rows {
			fmt.Fprintf(tw, "%s\t%d", bk.Start.Format(t.layout), bk.Total)
			for _, a := range Actions {
				fmt.Fprintf(tw, "\t%d", bk.ByAction[a])
			}
			fmt.Fprint(tw, "\t\n")
		}
		tw.Flush()
	}
	return nil
}

func percent(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func statusText(h HeldMessage) string {
	if h.Operator != "" {
		return h.Status + " by " + h.Operator
	}
	return h.Status
}

func (r *Report) zone() *time.Location {
	loc, err := time.LoadLocation(r.Period.TZ)
	if err != nil {
		return time.Local
	}
	return loc
}

const timeLayout = "2006-01-02 15:04:05"

func (r *Report) timeText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(r.zone()).Format(timeLayout)
}

func (r *Report) generatedText() string {
	g := r.Generated
	s := "generated: "
	if g.At.IsZero() {
		s += "-"
	} else {
		s += g.At.In(r.zone()).Format(timeLayout)
	}
	return s + " on " + orNone(g.Host) + ", mode " + orNone(g.Mode) + ", config " + orNone(g.Config)
}

func (r *Report) periodText() string {
	loc := r.zone()
	s := "no verdicts"
	if r.Period.First != nil {
		s = r.Period.First.In(loc).Format(timeLayout) + " .. " + r.Period.Last.In(loc).Format(timeLayout)
	}
	if r.Period.Since != nil {
		s += ", since " + r.Period.Since.In(loc).Format(timeLayout)
	}
	if r.Period.Until != nil {
		s += ", until " + r.Period.Until.In(loc).Format(timeLayout)
	}
	return s + " (" + r.Period.TZ + ")"
}

func sortedKeys(m map[string]int) []string { return slices.Sorted(maps.Keys(m)) }

// provedByOrder lists the proofs present in m strongest first (the
// policy's ladder order), then any name a newer log carries, sorted.
func provedByOrder(m map[string]int) []string {
	var out []string
	for _, n := range policy.ProofNames {
		if m[n] > 0 {
			out = append(out, n)
		}
	}
	for _, k := range sortedKeys(m) {
		if !policy.ProvesOurs(k) {
			out = append(out, k)
		}
	}
	return out
}
