package milter

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	gomilter "github.com/d--j/go-milter"
	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/policy"
)

// session is the state of one MTA connection (one SMTP session). Sendmail
// sends no abort between two messages on one connection, so per-message
// state is reset at MAIL FROM as well as at abort and end of message.
type session struct {
	srv  *Server
	log  *zap.Logger
	conn policy.Connection
	mta  string // the MTA's name and version (macro v): "Postfix 3.7.11", "8.17.1.9"
	// per message
	eng         *policy.Engine
	tx          *policy.Transaction
	ctx         context.Context
	cancel      context.CancelFunc
	headerBytes int
	headersCut  bool
	bodyDecided bool
	wantBody    bool
	// failed is set when a callback of this message panicked: the rest of
	// the message is answered per on_error, never judged on half a state.
	failed bool
	sm     sendmailState // recipients as Sendmail routes them (sendmail.go)
	// rcptBytes counts the recipient bytes of this message (limits.go).
	rcptBytes int
}

func newSession(s *Server) *session {
	s.active.Add(1)
	s.opts.Observer.SessionStart()
	return &session{srv: s, log: s.opts.Log}
}

// recoverTo turns a panic in a callback into a logged error and the
// configured on_error answer: one broken message never takes the process
// (or the MTA's other sessions) down.
func (s *session) recoverTo(stage string, resp **gomilter.Response, err *error) {
	r := recover()
	if r == nil {
		return
	}
	s.log.Error("panic in milter session; answering per on_error",
		zap.String("stage", stage), zap.Any("panic", r), zap.Stack("stack"),
		zap.String("session", s.sessionID()), zap.Stringer("on_error", s.srv.opts.OnError))
	s.srv.opts.Observer.Error("panic")
	s.reset()
	s.failed = true
	*resp, *err = s.errorResponse(), nil
}

func (s *session) errorResponse() *gomilter.Response {
	if s.srv.opts.OnError == policy.Tempfail {
		return gomilter.RespTempFail
	}
	return gomilter.RespContinue
}

// isSendmail tells Sendmail (macro v is its bare version, "8.17.1.9") from
// Postfix ("Postfix 3.7.11"); an MTA that does not say is taken for one
// that honours recipient parameters.
func (s *session) isSendmail() bool {
	return s.mta != "" && s.mta[0] >= '0' && s.mta[0] <= '9'
}

func (s *session) sessionID() string {
	if s.tx != nil {
		return s.tx.SessionID
	}
	return ""
}

func (s *session) stageCtx() (context.Context, context.CancelFunc) {
	base := s.ctx
	if base == nil {
		base = context.Background()
	}
	return context.WithTimeout(base, s.srv.opts.Timeout)
}

// reset forgets the current message, logging it as a callout when it was a
// bounce-class transaction that ended after RCPT without DATA.
func (s *session) reset() {
	switch {
	case s.tx == nil:
	case s.srv.opts.Role == RoleInternalBounce:
		if !s.tx.DataSeen && s.tx.NullSender() && len(s.tx.Recipients) > 0 {
			// Postfix opens an NDR and drops it before its content when
			// every recipient it would report on asked for NOTIFY=NEVER:
			// nothing was sent, nothing decided, and it is no callout.
			s.logNDRDropped()
		}
	case s.tx.Callout():
		s.logVerdict(s.eng.Callout(s.tx))
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.tx, s.eng, s.ctx, s.cancel = nil, nil, nil, nil
	s.headerBytes, s.headersCut, s.bodyDecided, s.wantBody = 0, false, false, false
	s.sm = sendmailState{}
	s.rcptBytes = 0
}

func (s *session) NewConnection(gomilter.Modifier) error { return nil }

func (s *session) Connect(host, family string, port uint16, addr string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.recoverTo("connect", &resp, &err)
	s.conn = policy.Connection{ClientName: host}
	s.mta = m.Get(gomilter.MacroMTAVersion)
	if ip, err := netip.ParseAddr(strings.Trim(addr, "[]")); err == nil && family != "unix" {
		s.conn.ClientIP = ip.Unmap()
	}
	for _, mac := range []gomilter.MacroName{gomilter.MacroDaemonAddr, gomilter.MacroIfAddr} {
		if ip, err := netip.ParseAddr(strings.Trim(m.Get(mac), "[]")); err == nil {
			s.conn.LocalIP = ip.Unmap()
			break
		}
	}
	return gomilter.RespContinue, nil
}

func (s *session) Helo(name string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.recoverTo("helo", &resp, &err)
	s.conn.Helo = name
	return gomilter.RespContinue, nil
}

func (s *session) MailFrom(from, esmtpArgs string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.recoverTo("mail", &resp, &err)
	s.reset()
	s.failed = false
	if !s.conn.ClientIP.IsValid() {
		// Some setups send no connect event; the macro still tells.
		if ip, err := netip.ParseAddr(m.Get(gomilter.MacroClientAddr)); err == nil {
			s.conn.ClientIP = ip.Unmap()
		}
	}
	s.eng = s.srv.opts.Engine()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	sender := strings.TrimSpace(gomilter.RemoveAngle(from))
	s.tx = s.eng.Begin(s.ctx, s.srv.nextSessionID(), s.conn, sender, esmtpArgs, m.Get(gomilter.MacroAuthAuthen))
	s.tx.QueueID = m.Get(gomilter.MacroQueueId)
	return gomilter.RespContinue, nil
}

func (s *session) RcptTo(rcptTo, esmtpArgs string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.recoverTo("rcpt", &resp, &err)
	if s.failed {
		return s.errorResponse(), nil
	}
	if s.tx == nil {
		return gomilter.RespContinue, nil
	}
	if r := s.rcptOverCap(rcptTo, esmtpArgs); r != nil {
		return r, nil
	}
	s.noteQueueID(m)
	ctx, cancel := s.stageCtx()
	defer cancel()
	defer s.srv.decided(policy.StageRcpt, time.Now())
	addr := strings.TrimSpace(gomilter.RemoveAngle(rcptTo))
	s.noteSendmailRcpt(addr, m)
	v := s.eng.RcptTo(ctx, s.tx, policy.Recipient{Addr: addr, Args: esmtpArgs, Mailer: m.Get(gomilter.MacroRcptMailer)})
	s.traceRcpt(v)
	if v.Would == policy.Reject {
		s.logVerdict(v)
	}
	if v.Action == policy.Reject && v.Reply != nil {
		return rejectResponse(v.Reply)
	}
	return gomilter.RespContinue, nil
}

func rejectResponse(r *policy.Reply) (*gomilter.Response, error) {
	return gomilter.RejectWithCodeAndReason(uint16(r.Code), r.Enhanced+" "+sanitizeReply(r.Text))
}

// sanitizeReply keeps an SMTP reply on one line of printable ASCII.
func sanitizeReply(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = ' '
		}
	}
	if len(b) > 400 {
		b = b[:400]
	}
	return string(b)
}

func (s *session) Data(m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.recoverTo("data", &resp, &err)
	if s.tx != nil {
		s.tx.DataSeen = true
		s.noteQueueID(m)
	}
	return gomilter.RespContinue, nil
}

func (s *session) noteQueueID(m gomilter.Modifier) {
	if s.tx != nil && s.tx.QueueID == "" {
		s.tx.QueueID = m.Get(gomilter.MacroQueueId)
	}
}

func (s *session) Header(name, value string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.recoverTo("header", &resp, &err)
	if s.tx == nil || s.headersCut {
		return gomilter.RespContinue, nil
	}
	s.tx.DataSeen = true // Postfix may not send DATA (no-data flag); headers prove it
	s.headerBytes += len(name) + len(value) + 3
	if s.headerBytes > s.srv.opts.MaxHeaderBytes {
		s.headersCut = true
		return gomilter.RespContinue, nil
	}
	s.tx.Headers = append(s.tx.Headers, policy.Header{Name: name, Value: value})
	return gomilter.RespContinue, nil
}

func (s *session) Headers(m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.recoverTo("eoh", &resp, &err)
	if s.tx != nil {
		s.tx.DataSeen = true
		s.noteQueueID(m)
	}
	return gomilter.RespContinue, nil
}

func (s *session) BodyChunk(chunk []byte, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.recoverTo("body", &resp, &err)
	if s.tx == nil {
		return s.skip(m), nil
	}
	if !s.bodyDecided {
		s.bodyDecided = true
		// The internal-bounce role always reads the NDR: it is small and it is the evidence.
		s.wantBody = s.srv.opts.Role == RoleInternalBounce || s.eng.WantBody(s.tx)
	}
	if !s.wantBody {
		return s.skip(m), nil
	}
	room := s.eng.Settings.BodyMax - len(s.tx.Body)
	if len(chunk) > room {
		s.tx.Body = append(s.tx.Body, chunk[:max(room, 0)]...)
		s.tx.BodyCut = true
		return s.skip(m), nil
	}
	s.tx.Body = append(s.tx.Body, chunk...)
	return gomilter.RespContinue, nil
}

// skip tells the MTA to send no more body chunks, where the protocol allows.
func (s *session) skip(m gomilter.Modifier) *gomilter.Response {
	if m.Version() >= 6 && m.Protocol()&gomilter.OptSkip != 0 {
		return gomilter.RespSkip
	}
	return gomilter.RespContinue
}

func (s *session) EndOfMessage(m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.recoverTo("eom", &resp, &err)
	if s.failed {
		s.failed = false
		if s.srv.opts.OnError == policy.Tempfail {
			return gomilter.RespTempFail, nil
		}
		return gomilter.RespAccept, nil
	}
	if s.tx == nil {
		return gomilter.RespAccept, nil
	}
	defer s.reset()
	s.tx.DataSeen = true
	s.noteQueueID(m)
	if s.headersCut {
		s.log.Warn("header block over the limit: judged on the headers kept",
			zap.String("session", s.tx.SessionID), zap.Int("limit", s.srv.opts.MaxHeaderBytes))
	}
	ctx, cancel := s.stageCtx()
	defer cancel()
	defer s.srv.decided(s.srv.eomStage(), time.Now())
	var v *policy.Verdict
	if s.srv.opts.Role == RoleInternalBounce {
		v = s.eng.InternalBounce(ctx, s.tx)
		if a := policy.Clamp(policy.StageInternal, v.Mode, v.Action); a != v.Action || v.Stage != policy.StageInternal {
			// The policy's decision table never answers Postfix's own
			// bounce with a reject or tempfail; if it ever did, hold.
			s.log.Error("internal-bounce role got an action it must never take; holding instead",
				zap.Stringer("action", v.Action), zap.String("session", s.tx.SessionID))
			v.Action, v.Reply = policy.Quarantine, nil
			v.Mods.QuarantineReason = "backscatter-milter internal bounce held"
		}
	} else {
		v = s.eng.End(ctx, s.tx)
	}
	if len(v.Mods.RcptRewrites) > 0 && s.isSendmail() {
		// Sendmail keeps a re-added recipient's old DSN flags: only a new
		// spelling carries NOTIFY=NEVER (sendmail.go).
		s.sendmailRewrites(v)
	}
	resp = s.apply(m, v)
	s.logVerdict(v)
	return resp, nil
}

// apply makes the verdict's modifications and returns the final answer. A
// modification the MTA refuses is logged and skipped: it never turns into
// a reject or a lost message.
func (s *session) apply(m gomilter.Modifier, v *policy.Verdict) *gomilter.Response {
	switch v.Action {
	case policy.Reject:
		if v.Reply != nil {
			r, err := rejectResponse(v.Reply)
			if err == nil {
				return r
			}
		}
		return gomilter.RespReject
	case policy.Tempfail:
		return gomilter.RespTempFail
	case policy.Discard:
		return gomilter.RespDiscard
	}
	fail := func(what string, err error) {
		if err != nil {
			v.Notes = append(v.Notes, fmt.Sprintf("%s failed: %v", what, err))
			s.srv.opts.Observer.Error("internal")
		}
	}
	for _, h := range v.Mods.AddHeaders {
		value := h.Value
		if m.Protocol()&gomilter.OptHeaderLeadingSpace != 0 {
			// With leading-space negotiated the MTA stores the value as
			// given, in both directions: add the space after the colon.
			value = " " + value
		}
		fail("add header", m.AddHeader(h.Name, value))
	}
	if v.Mods.ChangeFromSet {
		fail("change sender", m.ChangeFrom(gomilter.AddAngle(v.Mods.ChangeFrom), v.Mods.ChangeFromArgs))
	}
	for _, rw := range v.Mods.RcptRewrites {
		if err := m.DeleteRecipient(gomilter.AddAngle(rw.Addr)); err != nil {
			fail("delete recipient", err)
			continue
		}
		if err := m.AddRecipient(gomilter.AddAngle(s.reAddAs(rw)), rw.NewArgs); err != nil {
			fail("add recipient", err)
			// Never leave a recipient deleted: put the original back.
			fail("restore recipient", m.AddRecipient(gomilter.AddAngle(rw.Addr), rw.OldArgs))
		}
	}
	if v.Action == policy.Quarantine {
		if err := m.Quarantine(v.Mods.QuarantineReason); err != nil {
			fail("quarantine", err)
			v.Action = policy.Tag // the header is already on: the message is at least marked
		}
	}
	return gomilter.RespAccept
}

func (s *session) Abort(m gomilter.Modifier) error {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in abort", zap.Any("panic", r), zap.Stack("stack"))
			s.srv.opts.Observer.Error("panic")
		}
	}()
	s.reset()
	s.failed = false
	return nil
}

func (s *session) Unknown(cmd string, m gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (s *session) Cleanup(m gomilter.Modifier) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in cleanup", zap.Any("panic", r), zap.Stack("stack"))
		}
		s.srv.active.Add(-1)
		s.srv.opts.Observer.SessionEnd()
	}()
	s.reset()
}

var _ gomilter.Milter = (*session)(nil)
