package milter

import (
	gomilter "github.com/d--j/go-milter"
	"go.uber.org/zap"
)

// tooManyRcpts is RFC 5321's answer for a recipient over a server's limit
// (§4.5.3.1.10): the client delivers the rest in a later transaction, so
// nothing is lost and no recipient goes unjudged.
var tooManyRcpts = func() *gomilter.Response {
	r, err := gomilter.RejectWithCodeAndReason(452, "4.5.3 Too many recipients")
	if err != nil {
		panic(err)
	}
	return r
}()

// rcptOverCap counts a recipient against Options.MaxRcptBytes and returns
// the answer for one past it, or nil. Postfix and Sendmail never send so
// much (smtpd_recipient_limit, line lengths); only something else that
// reached the socket does. The internal-bounce role must never tempfail:
// there the recipient is let through unjudged.
func (s *session) rcptOverCap(addr, args string) *gomilter.Response {
	before := s.rcptBytes
	s.rcptBytes += len(addr) + len(args)
	if s.rcptBytes <= s.srv.opts.MaxRcptBytes {
		return nil
	}
	if before <= s.srv.opts.MaxRcptBytes { // once per message
		s.log.Warn("recipient over the per-message recipient limit",
			zap.String("session", s.sessionID()), zap.Int("max_rcpt_bytes", s.srv.opts.MaxRcptBytes))
	}
	if s.srv.opts.Role == RoleInternalBounce {
		return gomilter.RespContinue
	}
	return tooManyRcpts
}
