package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/report"
)

// runReport: report [FILES|GLOBS|-] [--config FILE] [--since T] [--until
// T] [--format text|json|html] [--top N] [--held N] [--utc] — a review of
// verdict logs. Broken lines are counted, never fatal; only bad arguments
// fail (exit 2).
func runReport(args []string, stdout, stderr io.Writer) int {
	return runReportAt(args, os.Stdin, stdout, stderr, time.Now())
}

// runReportAt is runReport with its clock and standard input given, for tests.
func runReportAt(args []string, stdin io.Reader, stdout, stderr io.Writer, now time.Time) int {
	fs := newFlags("report", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: backscatter-milter report [FILE|GLOB|-]... [--config FILE] [--since T] [--until T] [--format text|json|html] [--top N] [--held N] [--utc]")
		fmt.Fprintln(stderr, "Reads verdict logs (plain or gzip; - is standard input) and summarises them. With no FILE it reads")
		fmt.Fprintln(stderr, "the configuration's log.file and its rotated siblings (log.file.1, log.file.2.gz, ...), oldest first.")
		fmt.Fprintln(stderr, "T is 2006-01-02, \"2006-01-02 15:04\", RFC 3339, or an age such as 24h or 7d.")
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "", "configuration file: its log.file is read when no FILE is given, its mode and name go in the report; default "+config.DefaultPath+" if it exists")
	since := fs.String("since", "", "count verdicts from this time on (inclusive)")
	until := fs.String("until", "", "count verdicts before this time (exclusive)")
	format := fs.String("format", "text", "text, json or html (one self-contained page)")
	top := fs.Int("top", 10, "rows in each top list")
	held := fs.Int("held", 100, "held messages listed, newest first")
	utc := fs.Bool("utc", false, "cut hours and days in UTC instead of local time")
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "backscatter-milter report: "+format+"\n", a...)
		return exitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		return bad("%v (see --help)", err)
	}
	loc := report.LocalZone()
	if *utc {
		loc = time.UTC
	}
	opt := report.Options{Top: *top, Held: *held, Location: loc}
	if *top < 1 {
		return bad("--top %d: want 1 or more", *top)
	}
	if *held < 1 {
		return bad("--held %d: want 1 or more", *held)
	}
	var err error
	if *since != "" {
		if opt.Since, err = report.ParseTime(*since, now, loc); err != nil {
			return bad("--since: %v", err)
		}
	}
	if *until != "" {
		if opt.Until, err = report.ParseTime(*until, now, loc); err != nil {
			return bad("--until: %v", err)
		}
	}
	if !opt.Since.IsZero() && !opt.Until.IsZero() && !opt.Until.After(opt.Since) {
		return bad("--until %s is not after --since %s", *until, *since)
	}
	var write func(*report.Report, io.Writer) error
	switch *format {
	case "text":
		write = (*report.Report).WriteText
	case "json":
		write = (*report.Report).WriteJSON
	case "html":
		write = (*report.Report).WriteHTML
	default:
		return bad("--format %q: want text, json or html", *format)
	}
	// The configuration only names the log and labels the report: one with
	// problems (a key file this user cannot read, say) still serves.
	cfg, cfgErr := config.Load(*configPath, nil)
	if cfg == nil {
		if *configPath != "" || len(fs.Args()) == 0 {
			return bad("%v", cfgErr)
		}
		cfg = &config.Config{}
	}
	host, _ := os.Hostname()
	opt.Generated = report.Generated{At: now, Host: host, Mode: cfg.Mode, Config: cfg.Source}
	var names []string
	if len(fs.Args()) == 0 {
		if cfg.Log.File == "" {
			return bad("no FILE given and %s sets no log.file (verdicts go to the journal: journalctl -u backscatter-milter -o cat | backscatter-milter report -)", cfg.Source)
		}
		if names, err = report.Rotated(cfg.Log.File); err != nil {
			return bad("log.file of %s: %v", cfg.Source, err)
		}
	} else if names, err = report.Expand(fs.Args()); err != nil {
		return bad("%v", err)
	}
	agg := report.New(opt)
	if err := agg.ReadFiles(names, stdin); err != nil {
		return bad("%v", err)
	}
	w := bufio.NewWriter(stdout)
	if err := write(agg.Report(), w); err != nil {
		fmt.Fprintf(stderr, "backscatter-milter report: %v\n", err)
		return exitFail
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintf(stderr, "backscatter-milter report: %v\n", err)
		return exitFail
	}
	return exitOK
}
