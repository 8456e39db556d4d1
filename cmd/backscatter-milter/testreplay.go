package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/emersion/go-message/textproto"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

// `test` plays the MTA: it starts the real milter.Server in process on a
// unix socket in a temporary directory and drives it with go-milter's
// client, so the offline verdict comes from the very session code the
// milter runs (stages, callout rule, header and body caps) and cannot drift
// from it.

// headerFieldLimit is what Postfix keeps of one header field
// (header_size_limit, default 102400 bytes; the excess is discarded): the
// milter never sees more from it, so neither does `test`.
const headerFieldLimit = 102400

// mtaField is one header field as the MTA hands it to a milter: the name
// as written and the value after the colon with its leading space and its
// folding ("\n" between the lines) kept.
type mtaField struct{ name, value string }

// mtaMessage is a message file as the MTA would pass it on.
type mtaMessage struct {
	header textproto.Header // unfolded values, for the envelope defaults
	fields []mtaField
	body   []byte // CRLF line ends
}

// readMTAMessage splits a message file into header fields and body. A first
// line "From …" (mbox) is skipped. go-message reads the header in one pass,
// however long or often folded a field is.
func readMTAMessage(raw []byte) (*mtaMessage, error) {
	if bytes.HasPrefix(raw, []byte("From ")) {
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			raw = raw[i+1:]
		} else {
			raw = nil
		}
	}
	raw = bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
	if len(raw) > 0 && !bytes.HasSuffix(raw, []byte("\r\n")) {
		raw = append(raw, '\r', '\n') // a last header line without its line end is still a field
	}
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	hdr, err := textproto.ReadHeader(br)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("header: %w", err)
	}
	m := &mtaMessage{header: hdr, body: raw[len(raw)-rd.Len()-br.Buffered():]}
	for f := hdr.Fields(); f.Next(); {
		kv, err := f.Raw()
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", f.Key(), err)
		}
		name, value, _ := strings.Cut(string(kv), ":")
		value = strings.ReplaceAll(strings.TrimSuffix(value, "\r\n"), "\r\n", "\n")
		if len(value) > headerFieldLimit {
			value = value[:headerFieldLimit]
		}
		m.fields = append(m.fields, mtaField{strings.TrimRight(name, " \t"), value})
	}
	if len(m.fields) == 0 {
		return nil, errors.New("no header fields: not a mail message")
	}
	return m, nil
}

// first returns the unfolded value of the topmost field called name.
func (m *mtaMessage) first(name string) (string, bool) {
	if !m.header.Has(name) {
		return "", false
	}
	return m.header.Get(name), true
}

// values returns the unfolded values of every field called name, in order.
func (m *mtaMessage) values(name string) []string { return m.header.Values(name) }

// capture is the server's Observer: it keeps the verdicts the milter takes
// (and logs), exactly as the session hands them over.
type capture struct {
	mu     sync.Mutex
	tx     *policy.Transaction
	rcpt   []*policy.Verdict // every RCPT verdict, in order
	logged []*policy.Verdict // the verdicts the milter logs, in order
	errs   []string
}

func (c *capture) Verdict(t *policy.Transaction, v *policy.Verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tx = t
	c.logged = append(c.logged, v)
}

func (c *capture) RcptVerdict(t *policy.Transaction, v *policy.Verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tx = t
	c.rcpt = append(c.rcpt, v)
}

func (c *capture) SessionStart() {}
func (c *capture) SessionEnd()   {}
func (c *capture) Error(kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, kind)
}

// mtaProtocol is what Postfix 3.x offers a milter: every no-reply and
// no-stage flag, skip, and header values with their leading space.
const mtaProtocol = gomilter.OptNoReplies | gomilter.OptNoConnect | gomilter.OptNoHelo | gomilter.OptNoMailFrom |
	gomilter.OptNoRcptTo | gomilter.OptNoBody | gomilter.OptNoHeaders | gomilter.OptNoEOH | gomilter.OptNoUnknown |
	gomilter.OptNoData | gomilter.OptSkip | gomilter.OptRcptRej | gomilter.OptHeaderLeadingSpace

// replay runs one transaction through a milter.Server built from opts and
// returns what the milter decided and did.
func replay(opts milter.Options, env testEnvelope, ip netip.Addr, auth string, msg *mtaMessage) (*testResult, error) {
	dir, err := os.MkdirTemp("", "backscatter-test-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "milter.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, err
	}
	obs := &capture{}
	opts.Observer = obs
	srv := milter.NewServer(opts)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		<-served
	}()

	wait := opts.Timeout + time.Minute
	client := gomilter.NewClient("unix", sock, gomilter.WithActions(gomilter.AllClientSupportedActionMasks),
		gomilter.WithProtocols(mtaProtocol), gomilter.WithReadTimeout(wait), gomilter.WithWriteTimeout(wait))
	mods, final, err := drive(client, env, ip, auth, msg)
	if err != nil {
		return nil, fmt.Errorf("milter session: %w", err)
	}
	// Every verdict read below was handed to the observer before the
	// milter answered the command it decides.
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.errs) > 0 {
		return nil, fmt.Errorf("the milter session failed (%s): it answered per on_error", strings.Join(obs.errs, ", "))
	}
	return result(obs, env, mods, final), nil
}

// drive plays the MTA's side of one SMTP transaction: the way Postfix
// does, it aborts when every recipient was refused, and gives the queue ID
// from DATA on.
func drive(client *gomilter.Client, env testEnvelope, ip netip.Addr, auth string, msg *mtaMessage) ([]gomilter.ModifyAction, *gomilter.Action, error) {
	macros := gomilter.NewMacroBag()
	s, err := client.Session(macros)
	if err != nil {
		return nil, nil, err
	}
	defer s.Close()
	fam, addr := gomilter.FamilyUnknown, ""
	if ip.IsValid() {
		fam, addr = gomilter.FamilyInet, ip.String()
		if ip.Is6() {
			fam = gomilter.FamilyInet6
		}
		macros.Set(gomilter.MacroClientAddr, addr)
	}
	if _, err := s.Conn(env.ClientName, fam, 25, addr); err != nil {
		return nil, nil, err
	}
	if _, err := s.Helo(env.Helo); err != nil {
		return nil, nil, err
	}
	if auth != "" {
		macros.Set(gomilter.MacroAuthAuthen, auth)
	}
	act, err := s.Mail(env.MailFrom, env.MailArgs)
	if err != nil || act.StopProcessing() {
		return nil, act, errors.Join(err, s.Abort(nil))
	}
	accepted := 0
	for i, r := range env.Rcpts {
		act, err := s.Rcpt(r, env.RcptArgs[i])
		if err != nil {
			return nil, nil, err
		}
		if !act.StopProcessing() {
			accepted++
		}
	}
	if accepted == 0 {
		return nil, nil, s.Abort(nil)
	}
	macros.Set(gomilter.MacroQueueId, env.QueueID)
	if _, err := s.DataStart(); err != nil {
		return nil, nil, err
	}
	for _, f := range msg.fields {
		if _, err := s.HeaderField(f.name, f.value, nil); err != nil {
			return nil, nil, err
		}
	}
	if _, err := s.HeaderEnd(); err != nil {
		return nil, nil, err
	}
	body := msg.body
	if len(body) == 0 {
		body = []byte("\r\n") // the client wants one body chunk before End
	}
	for len(body) > 0 && !s.Skip() {
		n := min(len(body), int(gomilter.DataSize64K))
		if _, err := s.BodyChunk(body[:n]); err != nil {
			return nil, nil, err
		}
		body = body[n:]
	}
	return s.End()
}

// result turns what the milter did into the report of `test`.
func result(obs *capture, env testEnvelope, mods []gomilter.ModifyAction, final *gomilter.Action) *testResult {
	res := &testResult{Rcpt: []testVerdict{}}
	if t := obs.tx; t != nil {
		res.Direction, res.Allowlisted = t.Direction.String(), t.Allowed
	}
	for _, v := range obs.rcpt {
		res.Rcpt = append(res.Rcpt, verdictView(v))
	}
	if final == nil {
		// Every recipient was refused at RCPT: the message never reaches
		// DATA, and the refusal (the highest-scoring one) is the verdict.
		res.AllRefused = true
		res.Action, res.Exit = policy.Reject.String(), testExitReject
		var refusal *policy.Verdict
		for _, v := range obs.logged {
			if v.Stage == policy.StageRcpt && v.Action == policy.Reject && (refusal == nil || v.Score > refusal.Score) {
				refusal = v
			}
		}
		if refusal != nil {
			vv := verdictView(refusal)
			res.Verdict = &vv
		}
		return res
	}
	var v *policy.Verdict
	for _, l := range obs.logged {
		if l.Stage != policy.StageRcpt && l.Stage != policy.StageCallout {
			v = l
		}
	}
	if v == nil {
		res.Action, res.Exit = finalAction(final).String(), actionExit(finalAction(final))
		return res
	}
	vv := verdictView(v)
	res.Verdict = &vv
	res.Action, res.Exit = v.Action.String(), actionExit(v.Action)
	m := &res.Modifications
	rcptArgs := map[string]string{}
	for i, r := range env.Rcpts {
		rcptArgs[strings.ToLower(r)] = env.RcptArgs[i]
	}
	for _, a := range mods {
		switch a.Type {
		case gomilter.ActionAddHeader, gomilter.ActionInsertHeader:
			m.AddHeaders = append(m.AddHeaders, testHeader{a.HeaderName, strings.TrimPrefix(a.HeaderValue, " ")})
		case gomilter.ActionChangeFrom:
			from := gomilter.RemoveAngle(a.From)
			m.ChangeFrom, m.ChangeFromArgs = &from, a.FromArgs
		case gomilter.ActionAddRcpt:
			r := gomilter.RemoveAngle(a.Rcpt)
			m.RcptRewrites = append(m.RcptRewrites, testRewrite{r, rcptArgs[strings.ToLower(r)], a.RcptArgs})
		case gomilter.ActionQuarantine:
			m.QuarantineReason = a.Reason
		}
	}
	return res
}

// finalAction reads the milter's last answer when no verdict was logged.
func finalAction(a *gomilter.Action) policy.Action {
	switch a.Type {
	case gomilter.ActionReject, gomilter.ActionRejectWithCode:
		return policy.Reject
	case gomilter.ActionTempFail:
		return policy.Tempfail
	case gomilter.ActionDiscard:
		return policy.Discard
	}
	return policy.Accept
}

// testLogger shows the session's warnings (a header block over the limit,
// a refused modification) on stderr; verdict lines are captured instead.
func testLogger(stderr io.Writer) *zap.Logger {
	enc := zap.NewDevelopmentEncoderConfig()
	enc.TimeKey = ""
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(stderr), zapcore.WarnLevel))
}
