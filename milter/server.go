package milter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	gomilter "github.com/d--j/go-milter"
	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/policy"
)

// Role says which MTA hook a listener serves.
type Role int

const (
	// RoleSMTPD serves smtpd_milters / INPUT_MAIL_FILTER: mail from SMTP clients.
	RoleSMTPD Role = iota
	// RoleInternalBounce serves Postfix non_smtpd_milters with
	// internal_mail_filter_classes=bounce: NDRs Postfix itself generates.
	// Only accept, discard and quarantine are ever answered there.
	RoleInternalBounce
)

// Observer receives events for metrics. Every method must be cheap and safe
// for concurrent use.
type Observer interface {
	Verdict(t *policy.Transaction, v *policy.Verdict)
	SessionStart()
	SessionEnd()
	Error(kind string) // "panic", "internal", "negotiation"
}

// DecisionObserver is an Observer that also times decisions. Optional: an
// Observer without it gets no timings.
type DecisionObserver interface {
	// Decided reports how long the policy took for one stage's verdict
	// (policy.StageRcpt, StageEOM, StageInternal).
	Decided(stage policy.Stage, took time.Duration)
}

// ConnObserver is an Observer that also counts connections refused
// because MaxConnections were open. Optional.
type ConnObserver interface {
	ConnRefused()
}

type nopObserver struct{}

func (nopObserver) Verdict(*policy.Transaction, *policy.Verdict) {}
func (nopObserver) SessionStart()                                {}
func (nopObserver) SessionEnd()                                  {}
func (nopObserver) Error(string)                                 {}

// Defaults of Options: the header block kept per message, and the time one
// milter event may take.
const (
	DefaultMaxHeaderBytes = 1 << 20
	DefaultTimeout        = 10 * time.Second
)

// Options configure a Server.
type Options struct {
	Role Role
	// Engine returns the engine to use for a new transaction; it is called
	// at each MAIL FROM so a config reload applies to the next message.
	Engine  func() *policy.Engine
	Log     *zap.Logger
	OnError policy.Action // Accept (default) or Tempfail
	// MaxHeaderBytes bounds the header block kept per message.
	MaxHeaderBytes int
	// Timeout bounds the work done for one milter event (DNS lookups, store).
	Timeout  time.Duration
	Observer Observer
	// SendmailDSN returns the check that lets NDR suppression re-add
	// recipients under Sendmail with the domain in the other case while it
	// sees DSN offered (sendmail.go); it is asked per message, so a reload
	// may replace it. Nil, or a nil result: no rewrite under Sendmail.
	SendmailDSN func() *DSNCheck
	// MaxConnections bounds the open MTA connections: one more is closed
	// at once (the MTA applies its milter default action, Postfix
	// tempfails) and counted. DefaultMaxConnections when 0.
	MaxConnections int
	// MaxRcptBytes bounds the recipient addresses and parameters kept per
	// message; a recipient past it is answered 452 4.5.3 (too many
	// recipients: the client sends the rest later). DefaultMaxRcptBytes
	// when 0.
	MaxRcptBytes int
}

// DefaultMaxConnections is the default cap on open MTA connections. A
// Postfix smtpd or cleanup process holds one connection, and Postfix's
// default process limit is 100 per service. Measured (docs/security.md,
// "Memory"): an open session costs tens of KiB (1,000 of them fit in
// 64 MiB with the client side, TestScaleThousandSessions), one stalled
// inside the largest packet about 1 MiB; 5,000 such connections against
// this cap peaked at 280 MiB RSS, under 500 MiB on a loaded machine
// (TestMemoryStalledConnectionsSoak).
const DefaultMaxConnections = 256

// DefaultMaxRcptBytes bounds the recipients kept per message: Postfix's
// default smtpd_recipient_limit of 1000 addresses of up to 254 bytes with
// their parameters fits four times over.
const DefaultMaxRcptBytes = 1 << 20

// Server is a milter server for one role.
type Server struct {
	opts    Options
	srv     *gomilter.Server
	prefix  string
	seq     atomic.Uint64
	active  atomic.Int64 // sessions (negotiated connections)
	conns   atomic.Int64 // accepted connections not yet closed
	timer   DecisionObserver
	refused ConnObserver
	lastCap atomic.Int64 // Unix seconds of the last "connection cap" warning
	capHits atomic.Int64 // refusals since that warning
}

// Actions are exactly the modifications the features need.
const Actions = gomilter.OptAddHeader | gomilter.OptQuarantine | gomilter.OptChangeFrom |
	gomilter.OptRemoveRcpt | gomilter.OptAddRcptWithArgs

// Protocol asks the MTA not to wait for replies at stages where the milter
// only ever continues (DESIGN.md: this alone is most of a milter's cost):
// connect, HELO, MAIL (a failure there is answered at RCPT), headers, end
// of headers and body chunks, so only RCPT and end of message cost a round
// trip. Body chunks get no reply rather than SMFIP_SKIP: a skip is itself
// one wait per message, while most mail fits one 64 KiB chunk and the
// milter discards what it does not read (docs/performance.md); SKIP stays
// for an MTA that does not offer body no-reply (where both are negotiated
// the skip answer is simply not sent). DATA and unknown commands are not
// sent at all, and header values are kept exact (DKIM verification needs
// the leading space).
const Protocol = gomilter.OptNoConnReply | gomilter.OptNoHeloReply | gomilter.OptNoMailReply |
	gomilter.OptNoHeaderReply | gomilter.OptNoEOHReply | gomilter.OptNoBodyReply | gomilter.OptSkip |
	gomilter.OptNoData | gomilter.OptNoUnknown | gomilter.OptHeaderLeadingSpace

// Macros requested per stage. Sendmail honours an end-of-message list only
// when an end-of-headers list is requested too.
var macroRequests = map[gomilter.MacroStage][]gomilter.MacroName{
	gomilter.StageConnect: {"j", "v", "{daemon_name}", "{daemon_addr}", "{if_addr}", "{client_addr}", "{client_name}", "{client_port}"},
	gomilter.StageHelo:    {"{tls_version}"},
	gomilter.StageMail:    {"{auth_authen}", "i", "{mail_addr}"},
	gomilter.StageRcpt:    {"{rcpt_addr}", "{rcpt_mailer}", "i"},
	gomilter.StageEOH:     {"i"},
	gomilter.StageEOM:     {"i"},
}

// NewServer builds a server; call Serve with a listener.
func NewServer(opts Options) *Server {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Role == RoleInternalBounce {
		opts.OnError = policy.Accept // a tempfail there loses Postfix's bounce log
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	if opts.MaxRcptBytes <= 0 {
		opts.MaxRcptBytes = DefaultMaxRcptBytes
	}
	var b [3]byte
	rand.Read(b[:])
	s := &Server{opts: opts, prefix: hex.EncodeToString(b[:])}
	s.timer, _ = opts.Observer.(DecisionObserver)
	s.refused, _ = opts.Observer.(ConnObserver)
	mopts := []gomilter.Option{
		gomilter.WithDynamicMilter(func(version uint32, action gomilter.OptAction, protocol gomilter.OptProtocol, maxData gomilter.DataSize) gomilter.Milter {
			return newSession(s)
		}),
		gomilter.WithActions(Actions),
		gomilter.WithProtocols(Protocol),
		gomilter.WithNegotiationCallback(s.negotiate),
		gomilter.WithReadTimeout(5 * time.Minute),
		gomilter.WithWriteTimeout(time.Minute),
	}
	for st, names := range macroRequests {
		mopts = append(mopts, gomilter.WithMacroRequest(st, names))
	}
	s.srv = gomilter.NewServer(mopts...)
	return s
}

// negotiate takes what the MTA offers of what we want instead of refusing
// the connection: a missing action disables its feature, and is logged.
func (s *Server) negotiate(mtaVersion, milterVersion uint32, mtaActions, milterActions gomilter.OptAction, mtaProtocol, milterProtocol gomilter.OptProtocol, offered gomilter.DataSize) (uint32, gomilter.OptAction, gomilter.OptProtocol, gomilter.DataSize, error) {
	version := min(mtaVersion, milterVersion)
	actions := milterActions & mtaActions
	if missing := milterActions &^ mtaActions; missing != 0 {
		s.opts.Log.Warn("MTA does not offer every milter action; the features that need them are off for this connection",
			zap.Stringer("missing", missing), zap.Uint32("mta_version", mtaVersion))
		s.opts.Observer.Error("negotiation")
	}
	return version, actions, milterProtocol & mtaProtocol, offered, nil
}

// Serve accepts MTA connections on ln until Shutdown or Close. Every
// connection passes through guardListener first.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(guardListener{Listener: ln, srv: s})
}

// Shutdown stops accepting and waits for open sessions to end, up to ctx.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Close closes the listener and every session at once.
func (s *Server) Close() error { return s.srv.Close() }

// Active returns the number of open MTA sessions.
func (s *Server) Active() int64 { return s.active.Load() }

// Conns returns the number of accepted MTA connections not yet closed.
func (s *Server) Conns() int64 { return s.conns.Load() }

// decided reports the time a stage's verdict took since start.
func (s *Server) decided(stage policy.Stage, start time.Time) {
	if s.timer != nil {
		s.timer.Decided(stage, time.Since(start))
	}
}

// eomStage is the stage the end-of-message verdict of this role has.
func (s *Server) eomStage() policy.Stage {
	if s.opts.Role == RoleInternalBounce {
		return policy.StageInternal
	}
	return policy.StageEOM
}

// capRefused counts a connection refused at the cap and logs it, at most
// once a minute with the number refused since.
func (s *Server) capRefused() {
	if s.refused != nil {
		s.refused.ConnRefused()
	}
	n := s.capHits.Add(1)
	now := time.Now().Unix()
	last := s.lastCap.Load()
	if now-last < 60 || !s.lastCap.CompareAndSwap(last, now) {
		return
	}
	s.capHits.Add(-n)
	s.opts.Log.Warn("MTA connection refused: limits.max_connections are open (the MTA applies its milter default action)",
		zap.Int("max_connections", s.opts.MaxConnections), zap.Int64("refused_since_last_warning", n))
}

// nextSessionID returns an ID unique to this process run: the RCPT-time and
// final log lines of one transaction share it (Postfix's queue ID only
// exists from DATA on).
func (s *Server) nextSessionID() string {
	return s.prefix + "." + strconv.FormatUint(s.seq.Add(1), 36)
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = gomilter.ErrServerClosed
