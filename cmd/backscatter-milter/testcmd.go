package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
	"github.com/backscatter-milter/backscatter-milter/policy/sent"
)

// Exit statuses of `test`: the action taken on the message, so scripts can
// branch on it, and the sysexits codes for usage and internal errors.
const (
	testExitAccept     = 0
	testExitTag        = 1
	testExitQuarantine = 2
	testExitReject     = 3
	testExitDiscard    = 4
	testExitTempfail   = 5
	testExitUsage      = 64 // EX_USAGE: bad flags, unreadable message or configuration
	testExitSoftware   = 70 // EX_SOFTWARE: the engine could not be built
)

// maxMessageBytes bounds what `test` reads: far above any real message.
const maxMessageBytes = 64 << 20

func actionExit(a policy.Action) int {
	switch a {
	case policy.Tag:
		return testExitTag
	case policy.Quarantine:
		return testExitQuarantine
	case policy.Reject:
		return testExitReject
	case policy.Discard:
		return testExitDiscard
	case policy.Tempfail:
		return testExitTempfail
	}
	return testExitAccept
}

// testEnvelope is the SMTP envelope of a `test` run and where each part came from.
type testEnvelope struct {
	ClientIP   string   `json:"client_ip"`
	ClientName string   `json:"client_name"`
	Helo       string   `json:"helo"`
	MailFrom   string   `json:"mail_from"` // without brackets; "" is <>
	MailArgs   string   `json:"mail_args,omitempty"`
	Rcpts      []string `json:"rcpts"`
	RcptArgs   []string `json:"rcpt_args"`
	Auth       bool     `json:"auth"`
	QueueID    string   `json:"queue_id"`
	FromHeader []string `json:"from_headers,omitempty"` // envelope parts taken from the message
}

type testVerdict struct {
	Stage      string            `json:"stage"`
	Recipient  string            `json:"recipient,omitempty"`
	Action     string            `json:"action"`
	Would      string            `json:"would"`
	Mode       string            `json:"mode"`
	Score      int               `json:"score"`
	Evidence   []policy.Evidence `json:"evidence"`
	Reply      string            `json:"reply,omitempty"`
	Auth       string            `json:"auth,omitempty"`
	AuthDetail string            `json:"auth_detail,omitempty"`
	NDR        string            `json:"ndr,omitempty"`
	Notes      []string          `json:"notes,omitempty"`
}

type testHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type testRewrite struct {
	Recipient string `json:"recipient"`
	OldArgs   string `json:"old_args"`
	NewArgs   string `json:"new_args"`
}

// testMods are the changes the milter would make to the message: exactly
// those milter.session.apply makes, which is none when it rejects.
type testMods struct {
	AddHeaders       []testHeader  `json:"add_headers,omitempty"`
	ChangeFrom       *string       `json:"change_from,omitempty"`
	ChangeFromArgs   string        `json:"change_from_args,omitempty"`
	RcptRewrites     []testRewrite `json:"rcpt_rewrites,omitempty"`
	QuarantineReason string        `json:"quarantine_reason,omitempty"`
}

type testResult struct {
	File        string        `json:"file"`
	Envelope    testEnvelope  `json:"envelope"`
	Direction   string        `json:"direction"`
	Allowlisted string        `json:"allowlisted,omitempty"`
	Offline     bool          `json:"offline"`
	Rcpt        []testVerdict `json:"rcpt_verdicts"`
	// AllRefused: every recipient was rejected at RCPT, so the message
	// never reached DATA; Verdict is then the callout verdict, if any.
	AllRefused    bool         `json:"all_refused_at_rcpt"`
	Verdict       *testVerdict `json:"verdict,omitempty"`
	Modifications testMods     `json:"modifications"`
	Action        string       `json:"action"` // what happens to the message
	Exit          int          `json:"exit"`
}

// testFlags are the flags of `test`.
type testFlags struct {
	fs                          *pflag.FlagSet
	clientIP, clientName, helo  *string
	mailFrom, authUser, queueID *string
	rcpts, sentIDs              *[]string
	useSentLog, asJSON, offline *bool
}

func newTestFlags(stderr io.Writer) *testFlags {
	fs := newFlags("test", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: backscatter-milter test FILE.eml|- [--client-ip IP] [--helo H] [--mail-from A] [--rcpt A]... [--auth USER]")
		fmt.Fprintln(stderr, "           [--queue-id ID] [--sent-id MSGID]... [--json] [--offline] [--config FILE]")
		fmt.Fprintln(stderr, "Envelope parts not given are taken from the message: Return-Path, To/Cc, the first Received.")
		fmt.Fprintln(stderr, "--mail-from and --rcpt take ESMTP parameters after a space: --rcpt 'bob@example.org NOTIFY=SUCCESS'.")
		fmt.Fprintln(stderr, "Exit status: 0 accept, 1 tag, 2 quarantine, 3 reject, 4 discard, 5 tempfail, 64 usage, 70 internal error.")
		fs.PrintDefaults()
	}
	config.Flags(fs)
	return &testFlags{fs: fs,
		clientIP:   fs.String("client-ip", "", "SMTP client address (default: from the first Received header)"),
		clientName: fs.String("client-name", "", "SMTP client's reverse DNS name, shown in the verdict"),
		helo:       fs.String("helo", "", "HELO/EHLO name (default: from the first Received header)"),
		mailFrom:   fs.String("mail-from", "", "envelope sender, <> for the null sender (default: Return-Path)"),
		rcpts:      fs.StringArray("rcpt", nil, "envelope recipient, repeatable (default: To and Cc)"),
		authUser:   fs.String("auth", "", "SASL login name: the message is then outbound"),
		queueID:    fs.String("queue-id", "TEST", "MTA queue ID"),
		sentIDs:    fs.StringArray("sent-id", nil, "Message-ID to record in the in-memory sent log first, repeatable"),
		useSentLog: fs.Bool("sent-log", false, "consult the configured sent log instead of an empty in-memory one (read-only use; the embedded store is locked while the milter runs)"),
		asJSON:     fs.Bool("json", false, "print the result as JSON"),
		offline:    fs.Bool("offline", false, "no DNS at all: no DNSBL, SPF or DKIM lookups"),
	}
}

// usageError is a mistake in the command line or its inputs: exit 64.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// runTest: test FILE.eml — the message through the milter in process,
// offline or with the configured resolver, and what it did.
func runTest(args []string, stdout, stderr io.Writer) int {
	f := newTestFlags(stderr)
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "backscatter-milter test: %v (see --help)\n", err)
		return testExitUsage
	}
	res, err := f.run(stderr)
	if err == nil && *f.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		err = enc.Encode(res)
	} else if err == nil {
		printTest(stdout, res)
	}
	if err != nil {
		fmt.Fprintf(stderr, "backscatter-milter test: %v\n", err)
		if errors.As(err, new(usageError)) {
			return testExitUsage
		}
		return testExitSoftware
	}
	return res.Exit
}

// run reads the message, builds the engine and replays the transaction.
func (f *testFlags) run(stderr io.Writer) (*testResult, error) {
	fs := f.fs
	if fs.NArg() != 1 {
		return nil, usagef("want exactly one message file (or - for standard input); see --help")
	}
	if *f.useSentLog && len(*f.sentIDs) > 0 {
		return nil, usagef("--sent-id records into a throw-away log: it cannot be combined with --sent-log")
	}
	raw, err := readMessage(fs.Arg(0))
	if err != nil {
		return nil, usageError{err.Error()}
	}
	msg, err := readMTAMessage(raw)
	if err != nil {
		return nil, usagef("%s: %v", fs.Arg(0), err)
	}
	env, ip, err := f.envelope(msg)
	if err != nil {
		return nil, err
	}
	cfg, comp, err := config.FromFlags(fs)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	opts := buildOptions{offline: *f.offline, noHealth: true}
	var mem *sent.MemoryStore
	if !*f.useSentLog {
		mem = sent.NewMemory(cfg.SentLog.TTL.D())
		opts.store = mem
	}
	rt, err := build(cfg, comp, zap.NewNop(), opts)
	if err != nil {
		return nil, err
	}
	defer rt.close(false)
	for _, id := range *f.sentIDs {
		n := bounce.NormalizeMessageID(id)
		if n == "" {
			return nil, usagef("--sent-id %q: empty Message-ID", id)
		}
		if err := mem.Record(context.Background(), n, time.Now()); err != nil {
			return nil, usagef("--sent-id %q: %v", id, err)
		}
	}
	sopts := milterOptions(cfg, comp, milter.RoleSMTPD, func() *policy.Engine { return rt.engine }, testLogger(stderr), nil)
	res, err := replay(sopts, env, ip, *f.authUser, msg)
	if err != nil {
		return nil, err
	}
	res.File, res.Envelope, res.Offline = fs.Arg(0), env, *f.offline
	return res, nil
}

// envelope is the SMTP envelope: the flags given, else what the message says.
func (f *testFlags) envelope(msg *mtaMessage) (testEnvelope, netip.Addr, error) {
	fs := f.fs
	env := testEnvelope{QueueID: *f.queueID, Auth: *f.authUser != ""}
	if fs.Changed("mail-from") {
		env.MailFrom, env.MailArgs = splitArgs(*f.mailFrom)
	} else if rp, ok := msg.first("Return-Path"); ok {
		env.MailFrom = strings.TrimSpace(strings.Trim(strings.TrimSpace(rp), "<>"))
		env.FromHeader = append(env.FromHeader, "mail_from")
	} else if from, ok := msg.first("From"); ok {
		if as := addresses(from); len(as) > 0 {
			env.MailFrom = as[0]
		}
		env.FromHeader = append(env.FromHeader, "mail_from (From: no Return-Path)")
	}
	if env.MailFrom == "<>" {
		env.MailFrom = ""
	}
	for _, r := range *f.rcpts {
		a, p := splitArgs(r)
		if a == "" {
			return env, netip.Addr{}, usagef("--rcpt %q: empty address", r)
		}
		env.Rcpts, env.RcptArgs = append(env.Rcpts, a), append(env.RcptArgs, p)
	}
	if len(*f.rcpts) == 0 {
		for _, v := range append(msg.values("To"), msg.values("Cc")...) {
			for _, a := range addresses(v) {
				env.Rcpts, env.RcptArgs = append(env.Rcpts, a), append(env.RcptArgs, "")
			}
		}
		if len(env.Rcpts) == 0 {
			return env, netip.Addr{}, usagef("no recipient: the message has no To or Cc address; give --rcpt")
		}
		env.FromHeader = append(env.FromHeader, "rcpts")
	}
	// The topmost Received field is the one our MTA would have written.
	var hop bounce.Hop
	if rcvd, ok := msg.first("Received"); ok {
		hop = bounce.ParseReceived(rcvd)
	}
	env.ClientIP, env.ClientName, env.Helo = *f.clientIP, *f.clientName, *f.helo
	if !fs.Changed("client-ip") && hop.ClientIP.IsValid() {
		env.ClientIP = hop.ClientIP.String()
		env.FromHeader = append(env.FromHeader, "client_ip")
	}
	if !fs.Changed("helo") && hop.From != "" {
		env.Helo = hop.From
		env.FromHeader = append(env.FromHeader, "helo")
	}
	if env.ClientIP == "" {
		return env, netip.Addr{}, nil
	}
	ip, err := netip.ParseAddr(strings.Trim(strings.TrimPrefix(strings.Trim(env.ClientIP, "[]"), "IPv6:"), "[]"))
	if err != nil {
		return env, netip.Addr{}, usagef("client IP %q is not an address", env.ClientIP)
	}
	ip = ip.Unmap()
	env.ClientIP = ip.String()
	return env, ip, nil
}

func verdictView(v *policy.Verdict) testVerdict {
	tv := testVerdict{Stage: string(v.Stage), Recipient: v.Recipient, Action: v.Action.String(), Would: v.Would.String(),
		Mode: v.Mode.String(), Score: v.Score, Evidence: v.Evidence, Auth: string(v.Auth), AuthDetail: v.AuthWhy,
		NDR: string(v.NDR), Notes: v.Notes}
	if tv.Evidence == nil {
		tv.Evidence = []policy.Evidence{}
	}
	if v.Reply != nil {
		tv.Reply = v.Reply.String()
	}
	return tv
}

func printTest(w io.Writer, r *testResult) {
	e := r.Envelope
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	p("message:\t%s\n", r.File)
	client := e.ClientIP
	if client == "" {
		client = "(unknown)"
	}
	if e.ClientName != "" {
		client += " (" + e.ClientName + ")"
	}
	p("client:\t%s helo %q\n", client, e.Helo)
	p("mail from:\t<%s> %s\n", e.MailFrom, e.MailArgs)
	for i, rc := range e.Rcpts {
		p("rcpt to:\t<%s> %s\n", rc, e.RcptArgs[i])
	}
	if len(e.FromHeader) > 0 {
		p("from headers:\t%s\n", strings.Join(e.FromHeader, ", "))
	}
	dir := r.Direction
	if e.Auth {
		dir += " (SASL authenticated)"
	}
	if r.Allowlisted != "" {
		dir += ", allowlisted: " + r.Allowlisted
	}
	p("direction:\t%s\n", dir)
	if r.Offline {
		p("offline:\tno DNS: DNSBL, SPF and DKIM not checked, so no NDR-suppression decision\n")
	}
	tw.Flush()

	fmt.Fprintln(w, "\nRCPT stage:")
	for _, v := range r.Rcpt {
		fmt.Fprintf(w, "  <%s>: %s (would %s), score %d\n", v.Recipient, v.Action, v.Would, v.Score)
		printEvidence(w, "    ", v.Evidence)
		if v.Reply != "" {
			fmt.Fprintf(w, "    reply: %s\n", v.Reply)
		}
	}
	if r.AllRefused {
		fmt.Fprintln(w, "\nevery recipient was refused at RCPT: the message never reaches DATA")
	}
	if v := r.Verdict; v != nil {
		fmt.Fprintf(w, "\nverdict (%s stage): %s\n", v.Stage, strings.ToUpper(v.Action))
		fmt.Fprintf(w, "  would %s in enforce mode; mode %s; score %d\n", v.Would, v.Mode, v.Score)
		fmt.Fprintln(w, "  evidence:")
		printEvidence(w, "    ", v.Evidence)
		if v.Reply != "" {
			fmt.Fprintf(w, "  reply: %s\n", v.Reply)
		}
		if v.Auth != "" {
			fmt.Fprintf(w, "  return path: %s (%s)\n", v.Auth, v.AuthDetail)
		}
		if v.NDR != "" {
			fmt.Fprintf(w, "  ndr: %s\n", v.NDR)
		}
		for _, n := range v.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
	}
	m := r.Modifications
	fmt.Fprintln(w, "\nmodifications:")
	none := true
	for _, h := range m.AddHeaders {
		fmt.Fprintf(w, "  add header: %s: %s\n", h.Name, strings.ReplaceAll(h.Value, "\r\n", "\n"))
		none = false
	}
	if m.ChangeFrom != nil {
		fmt.Fprintf(w, "  change sender: <%s> %s\n", *m.ChangeFrom, m.ChangeFromArgs)
		none = false
	}
	for _, rw := range m.RcptRewrites {
		fmt.Fprintf(w, "  recipient <%s>: %q -> %q (delete and add again)\n", rw.Recipient, rw.OldArgs, rw.NewArgs)
		none = false
	}
	if m.QuarantineReason != "" {
		fmt.Fprintf(w, "  quarantine: %s\n", m.QuarantineReason)
		none = false
	}
	if none {
		fmt.Fprintln(w, "  (none)")
	}
	fmt.Fprintf(w, "\naction: %s (exit %d)\n", r.Action, r.Exit)
}

func printEvidence(w io.Writer, indent string, es []policy.Evidence) {
	if len(es) == 0 {
		fmt.Fprintf(w, "%s(no evidence)\n", indent)
	}
	for _, e := range es {
		fmt.Fprintf(w, "%s%+4d  %s", indent, e.Weight, e.Name)
		if e.Detail != "" {
			fmt.Fprintf(w, "  %s", e.Detail)
		}
		fmt.Fprintln(w)
	}
}

func readMessage(name string) ([]byte, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxMessageBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxMessageBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxMessageBytes)
	}
	return b, nil
}

var addrSpec = regexp.MustCompile(`[^\s<>,;:"()\[\]]+@[^\s<>,;:"()\[\]]+`)

// addresses lists the addr-specs of an address header; a header net/mail
// cannot parse still yields what looks like addresses.
func addresses(v string) []string {
	v = strings.ReplaceAll(v, "\n", " ")
	if list, err := mail.ParseAddressList(v); err == nil {
		out := make([]string, 0, len(list))
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out
	}
	return addrSpec.FindAllString(v, -1)
}

// splitArgs splits "addr ESMTP-PARAMS" and drops angle brackets.
func splitArgs(s string) (addr, params string) {
	s = strings.TrimSpace(s)
	addr, params, _ = strings.Cut(s, " ")
	addr = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(addr, "<"), ">"))
	return addr, strings.TrimSpace(params)
}
