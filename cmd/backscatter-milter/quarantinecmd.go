package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/quarantine"
	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/report"
)

const quarantineUsage = `usage: backscatter-milter quarantine list [--since T] [--json] [--config FILE]
       backscatter-milter quarantine show ID [--json] [--config FILE]
       backscatter-milter quarantine release ID... [--config FILE]
       backscatter-milter quarantine delete ID... [--config FILE]
Held mail (Postfix's hold queue, Sendmail's quarantine; quarantine.mta) with the
verdict that held it, joined by queue ID from log.file. release and delete log
an event line (event: released|deleted, the operator) beside the verdicts.
Exit status: 0 done, 1 an ID was not held or an action failed, 2 bad arguments
or configuration, 4 a right is missing (reading the queue, running postsuper,
writing log.file: run it as root, e.g. with sudo).`

// runQuarantine: quarantine list|show|release|delete.
func runQuarantine(args []string, stdout, stderr io.Writer) int {
	return runQuarantineAt(args, stdout, stderr, time.Now())
}

func runQuarantineAt(args []string, stdout, stderr io.Writer, now time.Time) int {
	usage := func() int { fmt.Fprintln(stderr, quarantineUsage); return exitUsage }
	if len(args) == 0 {
		return usage()
	}
	sub := args[0]
	switch sub {
	case "list", "show", "release", "delete":
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, quarantineUsage)
		return exitOK
	default:
		return usage()
	}
	fs := newFlags("quarantine "+sub, stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, quarantineUsage) }
	configPath := fs.String("config", "", "configuration file; default "+config.DefaultPath+" if it exists")
	asJSON := fs.Bool("json", false, "list, show: JSON instead of text")
	since := fs.String("since", "", "list: messages that arrived from this time on (2006-01-02, \"2006-01-02 15:04\", RFC 3339, or an age like 24h or 7d)")
	if done, code := parse(fs, args[1:]); done {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "backscatter-milter quarantine %s: "+format+"\n", append([]any{sub}, a...)...)
		return code
	}
	ids := fs.Args()
	switch {
	case sub == "list" && len(ids) > 0:
		return fail(exitUsage, "takes no queue ID")
	case sub == "show" && len(ids) != 1, (sub == "release" || sub == "delete") && len(ids) == 0:
		return usage()
	}
	for _, id := range ids {
		if !quarantine.ValidID(id) {
			return fail(exitUsage, "%q is not a queue ID (letters and digits)", id)
		}
	}
	var sinceT time.Time
	if *since != "" {
		var err error
		if sinceT, err = report.ParseTime(*since, now, time.Local); err != nil {
			return fail(exitUsage, "--since: %v", err)
		}
	}
	cfg, err := config.Load(*configPath, nil)
	if cfg == nil {
		if errors.Is(err, os.ErrPermission) {
			return fail(exitDenied, "permission denied: reading the configuration needs root or the service's group (%v)", err)
		}
		return fail(exitUsage, "%v", err)
	}
	// Only the quarantine and log keys matter here: other problems (a BATV
	// key only the service user can read) are config check's business.
	if errs := cfg.Quarantine.Validate(); len(errs) > 0 {
		return fail(exitUsage, "%s: %v", cfg.Source, errs[0])
	}
	mta, err := quarantine.New(cfg.Quarantine)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	ctx := context.Background()
	q := &quarantineCmd{cfg: cfg, mta: mta, stdout: stdout, stderr: stderr, fail: fail}
	switch sub {
	case "list":
		return q.list(ctx, sinceT, *asJSON)
	case "show":
		return q.show(ctx, ids[0], *asJSON)
	default:
		return q.act(ctx, sub, ids)
	}
}

type quarantineCmd struct {
	cfg            *config.Config
	mta            quarantine.MTA
	stdout, stderr io.Writer
	fail           func(code int, format string, a ...any) int
}

// errCode maps an MTA error to an exit status.
func (q *quarantineCmd) errCode(err error) int {
	var denied *quarantine.DeniedError
	if errors.As(err, &denied) {
		return q.fail(exitDenied, "permission denied: %v", err)
	}
	return q.fail(exitFail, "%v", err)
}

// messages lists the held messages with their verdicts.
func (q *quarantineCmd) messages(ctx context.Context) ([]quarantine.Message, error) {
	msgs, err := q.mta.List(ctx)
	if err != nil {
		return nil, err
	}
	if q.cfg.Log.File == "" {
		fmt.Fprintf(q.stderr, "note: %s sets no log.file: no verdicts to join (grep the journal for the queue ID)\n", q.cfg.Source)
		return msgs, nil
	}
	files, err := report.Rotated(q.cfg.Log.File)
	if err == nil {
		err = quarantine.JoinVerdicts(msgs, files)
	}
	if err != nil {
		fmt.Fprintf(q.stderr, "note: verdicts not joined: %v\n", err)
	}
	return msgs, nil
}

func (q *quarantineCmd) list(ctx context.Context, since time.Time, asJSON bool) int {
	msgs, err := q.messages(ctx)
	if err != nil {
		return q.errCode(err)
	}
	kept := msgs[:0]
	for _, m := range msgs {
		if since.IsZero() || !m.Arrival.Before(since) {
			kept = append(kept, m)
		}
	}
	msgs = kept
	if msgs == nil {
		msgs = []quarantine.Message{}
	}
	if asJSON {
		return q.writeJSON(map[string]any{"schema": 1, "mta": q.mta.Name(), "messages": msgs})
	}
	tw := tabwriter.NewWriter(q.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE ID\tARRIVAL\tSIZE\tSENDER\tRECIPIENTS\tSCORE\tACTION\tEVIDENCE")
	for _, m := range msgs {
		score, action, evidence := "-", "-", "(no verdict in the log)"
		if v := m.Verdict; v != nil {
			score, action, evidence = strconv.Itoa(v.Score), v.Action, v.EvidenceText()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t<%s>\t%s\t%s\t%s\t%s\n", m.QueueID, m.Arrival.Local().Format("2006-01-02 15:04:05"), m.Size,
			m.Sender, strings.Join(m.Recipients, ","), score, action, evidence)
	}
	tw.Flush()
	fmt.Fprintf(q.stdout, "%d held message(s) (%s)\n", len(msgs), q.mta.Name())
	return exitOK
}

func (q *quarantineCmd) show(ctx context.Context, id string, asJSON bool) int {
	msgs, err := q.messages(ctx)
	if err != nil {
		return q.errCode(err)
	}
	var m *quarantine.Message
	for i := range msgs {
		if msgs[i].QueueID == id {
			m = &msgs[i]
		}
	}
	if m == nil {
		return q.fail(exitFail, "%s: %v", id, quarantine.ErrNotHeld)
	}
	hdr, err := q.mta.Headers(ctx, id)
	if err != nil {
		return q.errCode(err)
	}
	if asJSON {
		return q.writeJSON(map[string]any{"schema": 1, "mta": q.mta.Name(), "message": m, "headers": string(hdr)})
	}
	w := q.stdout
	fmt.Fprintf(w, "queue ID:   %s (%s)\narrival:    %s\nsender:     <%s>\nrecipients: %s\nsize:       %d\n",
		m.QueueID, q.mta.Name(), m.Arrival.Local().Format(time.RFC3339), m.Sender, strings.Join(m.Recipients, ", "), m.Size)
	if m.Reason != "" {
		fmt.Fprintf(w, "reason:     %s\n", m.Reason)
	}
	if v := m.Verdict; v != nil {
		fmt.Fprintf(w, "verdict:    %s at %s, score %d (%s, session %s)\nclient:     %s (HELO %s)\nevidence:\n",
			v.Action, v.Stage, v.Score, v.Time.Local().Format(time.RFC3339), v.Session, v.ClientIP, v.Helo)
		for _, e := range v.Evidence {
			fmt.Fprintf(w, "  %-28s %+4d  %s\n", e.Name, e.Weight, e.Detail)
		}
		if v.Reply != "" {
			fmt.Fprintf(w, "reply:      %s\n", v.Reply)
		}
		for _, n := range v.Notes {
			fmt.Fprintf(w, "note:       %s\n", n)
		}
	} else {
		fmt.Fprintln(w, "verdict:    none in the log for this queue ID")
	}
	fmt.Fprintf(w, "\n%s", hdr)
	return exitOK
}

func (q *quarantineCmd) writeJSON(v any) int {
	enc := json.NewEncoder(q.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return q.fail(exitFail, "%v", err)
	}
	return exitOK
}

// act releases or deletes each ID and logs the event beside the verdicts.
// The log is opened first: an action nobody can find later is refused.
func (q *quarantineCmd) act(ctx context.Context, sub string, ids []string) int {
	log, err := newLogger(q.cfg.Log)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return q.fail(exitDenied, "permission denied: writing the event line needs write access to log.file %s (%v)", q.cfg.Log.File, err)
		}
		return q.fail(exitUsage, "%v", err)
	}
	defer log.Sync()
	op := operator()
	event, do := report.EventReleased, q.mta.Release
	if sub == "delete" {
		event, do = report.EventDeleted, q.mta.Delete
	}
	code := exitOK
	for _, id := range ids {
		if err := do(ctx, id); err != nil {
			code = max(code, q.errCode(err))
			var denied *quarantine.DeniedError
			if errors.As(err, &denied) {
				return exitDenied // the next ones would be refused too
			}
			continue
		}
		report.LogEvent(log, report.Event{Event: event, QueueID: id, Operator: op, MTA: q.mta.Name()})
		fmt.Fprintf(q.stdout, "%s %s\n", event, id)
	}
	return code
}

// operator is the login of the person running the command: the one sudo
// was run by, else the login name, else the user of this process.
func operator() string {
	for _, k := range []string{"SUDO_USER", "LOGNAME", "USER"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(os.Getuid())
}
