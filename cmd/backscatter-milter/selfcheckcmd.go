package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/report"
	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/selfwatch"
	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
)

// selfcheck's exit statuses follow the monitoring-plugin convention, so it
// runs unchanged from cron, Nagios/Icinga or a systemd timer.
const (
	selfOK       = 0 // not listed; no NDR to an unauthenticated sender
	selfWarning  = 1 // our MTA generated NDRs to unauthenticated senders
	selfCritical = 2 // an egress address is listed
	selfUnknown  = 3 // bad configuration, unreadable log, no DNS answer
)

type selfcheckResult struct {
	Egress []egressState `json:"egress"`
	NDRs   *ndrSummary   `json:"ndrs,omitempty"`
	Status string        `json:"status"` // ok, warning, critical, unknown
	Notes  []string      `json:"notes,omitempty"`
}

type egressState struct {
	IP      string   `json:"ip"`
	Zone    string   `json:"zone"`
	Listed  bool     `json:"listed"`
	Answers []string `json:"answers,omitempty"`
	TXT     string   `json:"txt,omitempty"`
	Error   string   `json:"error,omitempty"`
}

type ndrSummary struct {
	Since           time.Time      `json:"since"`
	Logs            []string       `json:"logs"`
	ByAuth          map[string]int `json:"by_auth"`
	Unauthenticated int            `json:"unauthenticated"`
}

// runSelfcheck: selfcheck [--log FILE]... [--since AGE] [--json] — are our
// outbound addresses listed on backscatter DNSBLs, and how many NDRs did
// our own MTA generate, to whom, in the last day?
func runSelfcheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("selfcheck", stderr)
	config.Flags(fs)
	logs := fs.StringArray("log", nil, "verdict log to count NDRs in (default: log.file); repeatable")
	sinceFlag := fs.String("since", "24h", "count NDRs from this age or time on (90m, 24h, 7d, RFC 3339)")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, code := parse(fs, args); done {
		if code != exitOK {
			return selfUnknown
		}
		return code
	}
	cfg, comp, err := config.FromFlags(fs)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return selfUnknown
	}
	now := time.Now()
	since, err := report.ParseTime(*sinceFlag, now, time.Local)
	if err != nil {
		fmt.Fprintf(stderr, "--since: %v\n", err)
		return selfUnknown
	}
	res := selfcheckResult{Egress: []egressState{}}
	unknown := false

	if comp.SelfWatch == nil {
		res.Notes = append(res.Notes, "no egress addresses configured (self_watch.egress): listing not checked")
	} else {
		r, err := resolver.New(cfg.Resolver, cfg.DNSBL.Timeout.D())
		if err != nil {
			fmt.Fprintln(stderr, err)
			return selfUnknown
		}
		w, err := newSelfWatch(cfg, comp.SelfWatch, r, zap.NewNop())
		if err != nil {
			fmt.Fprintln(stderr, err)
			return selfUnknown
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, s := range w.Check(ctx) {
			e := egressState{IP: s.IP.String(), Zone: s.Zone, Listed: s.Listed, TXT: s.TXT}
			for _, a := range s.Answers {
				e.Answers = append(e.Answers, a.String())
			}
			if s.Err != nil {
				e.Error = s.Err.Error()
				unknown = true
			}
			res.Egress = append(res.Egress, e)
		}
	}

	if len(*logs) == 0 && cfg.Log.File != "" {
		*logs = []string{cfg.Log.File}
	}
	if len(*logs) == 0 {
		res.Notes = append(res.Notes, "no verdict log (log.file or --log): NDRs not counted")
	} else {
		sum := &ndrSummary{Since: since, Logs: *logs, ByAuth: map[string]int{}}
		for _, name := range *logs {
			c, err := countNDRFile(name, since)
			if err != nil {
				fmt.Fprintf(stderr, "%s: %v\n", name, err)
				return selfUnknown
			}
			for k, n := range c.ByAuth {
				sum.ByAuth[string(k)] += n
			}
			sum.Unauthenticated += c.Unauthenticated()
		}
		res.NDRs = sum
	}

	code := selfOK
	for _, e := range res.Egress {
		if e.Listed {
			code = selfCritical
		}
	}
	if code == selfOK && res.NDRs != nil && res.NDRs.Unauthenticated > 0 {
		code = selfWarning
	}
	if code == selfOK && unknown {
		code = selfUnknown
	}
	res.Status = [...]string{"ok", "warning", "critical", "unknown"}[code]
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
		return code
	}
	printSelfcheck(stdout, res)
	return code
}

func countNDRFile(name string, since time.Time) (selfwatch.NDRCount, error) {
	f, err := os.Open(name)
	if err != nil {
		return selfwatch.NDRCount{}, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return selfwatch.NDRCount{}, errors.New("is a directory")
	}
	return selfwatch.CountNDRs(f, since)
}

func printSelfcheck(w io.Writer, res selfcheckResult) {
	fmt.Fprintf(w, "selfcheck: %s\n", res.Status)
	for _, e := range res.Egress {
		switch {
		case e.Error != "":
			fmt.Fprintf(w, "  %s on %s: lookup failed (%s)\n", e.IP, e.Zone, e.Error)
		case e.Listed:
			fmt.Fprintf(w, "  %s on %s: LISTED %v %s\n", e.IP, e.Zone, e.Answers, e.TXT)
		default:
			fmt.Fprintf(w, "  %s on %s: not listed\n", e.IP, e.Zone)
		}
	}
	if n := res.NDRs; n != nil {
		fmt.Fprintf(w, "  NDRs our MTA generated since %s: %d to unauthenticated senders", n.Since.Format(time.RFC3339), n.Unauthenticated)
		for _, k := range []string{"authenticated", "unauthenticated", "forged", "unknown"} {
			fmt.Fprintf(w, ", %s %d", k, n.ByAuth[k])
		}
		fmt.Fprintln(w)
		if n.Unauthenticated > 0 {
			fmt.Fprintln(w, "  → turn on ndr_suppression (or check why it did not apply): these NDRs are backscatter and get us listed")
		}
	}
	for _, note := range res.Notes {
		fmt.Fprintf(w, "  note: %s\n", note)
	}
}
