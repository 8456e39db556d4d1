package report

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes the review for a terminal or a mail to the postmaster,
// in the spirit of pflogsumm: sections of aligned columns.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "backscatter-milter report\nperiod: %s\n", r.periodText())
	in := r.Input
	fmt.Fprintf(w, "input: %d files, %d lines, %d verdicts, %d other lines, %d malformed (skipped), %d outside --since/--until, %d without time\n",
		in.Files, in.Lines, in.Verdicts, in.Other, in.Malformed, in.OutsideRange, in.NoTime)
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
	p("\nRECIPIENTS REJECTED AT RCPT\t%d\n", r.Rcpt.Rejected)
	p("  of bounce-class senders\t%d\n", r.Rcpt.RejectedBounceClass)
	p("CALLOUTS (null-sender probes, no DATA)\t%d\n", r.Callouts)

	b := r.Backscatter
	p("\nBACKSCATTER\n")
	p("  blocked\t%d\n", b.Blocked)
	p("    refused at RCPT (recipients)\t%d\n", b.BlockedAtRcpt)
	p("    rejected at end of message\t%d\n", b.BlockedAtEOM["reject"])
	p("    quarantined\t%d\n", b.BlockedAtEOM["quarantine"])
	p("    discarded\t%d\n", b.BlockedAtEOM["discard"])
	p("  real bounces delivered\t%d\n", b.RealBouncesDelivered)
	for _, k := range sortedKeys(b.RealBouncesBy) {
		p("    by %s\t%d\n", k, b.RealBouncesBy[k])
	}
	p("  our NDRs to forged senders stopped\t%d\n", b.OwnNDRsStopped["discard"]+b.OwnNDRsStopped["quarantine"])
	p("    discarded\t%d\n", b.OwnNDRsStopped["discard"])
	p("    quarantined\t%d\n", b.OwnNDRsStopped["quarantine"])

	p("\nNDR SUPPRESSION (unauthenticated senders)\n")
	p("  NDRs suppressed (NOTIFY=NEVER)\t%d\n", r.NDR.Suppressed)
	p("  success DSN stripped\t%d\n", r.NDR.SuccessDSNStripped)

	o := r.Observe
	p("\nOBSERVE MODE\n")
	p("  verdicts in observe mode\t%d\n", o.Verdicts)
	p("  would have rejected (messages)\t%d\n", o.WouldMessages["reject"])
	p("  would have quarantined (messages)\t%d\n", o.WouldMessages["quarantine"])
	p("  would have refused at RCPT (recipients)\t%d\n", o.WouldRejectRcpt)
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
		{"TOP CLIENT IPS (inbound, not plainly accepted)", r.TopClients},
		{"TOP SOURCES OF BLOCKED BACKSCATTER", r.TopSources},
		{"TOP DNSBL ZONES (listings)", r.TopZones},
		{"TOP LOCAL ADDRESSES TARGETED BY FORGED BOUNCES", r.TopTargets},
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
		title string
		rows  []Bucket
	}{{"VOLUME BY DAY", r.Daily}, {"VOLUME BY HOUR", r.Hourly}} {
		tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "\n%s\ttotal\t%s\t\n", t.title, strings.Join(Actions, "\t"))
		for _, bk := range t.rows {
			fmt.Fprintf(tw, "%s\t%d", strings.Replace(bk.Start, "T", " ", 1)+hourSuffix(bk.Start), bk.Total)
			for _, a := range Actions {
				fmt.Fprintf(tw, "\t%d", bk.ByAction[a])
			}
			fmt.Fprint(tw, "\t\n")
		}
		tw.Flush()
	}
	return nil
}

func hourSuffix(start string) string {
	if strings.Contains(start, "T") {
		return ":00"
	}
	return ""
}

func (r *Report) periodText() string {
	const layout = "2006-01-02 15:04:05"
	loc, err := time.LoadLocation(r.Period.TZ)
	if err != nil {
		loc = time.UTC
	}
	s := "no verdicts"
	if r.Period.First != nil {
		s = r.Period.First.In(loc).Format(layout) + " .. " + r.Period.Last.In(loc).Format(layout)
	}
	if r.Period.Since != nil {
		s += ", since " + r.Period.Since.In(loc).Format(layout)
	}
	if r.Period.Until != nil {
		s += ", until " + r.Period.Until.In(loc).Format(layout)
	}
	return s + " (" + r.Period.TZ + ")"
}

func sortedKeys(m map[string]int) []string { return slices.Sorted(maps.Keys(m)) }
