package milter

import "github.com/backscatter-milter/backscatter-milter/policy"

// RcptObserver is an Observer that also wants every RCPT-stage verdict,
// including those of accepted recipients, which the session does not log.
// `backscatter-milter test` shows one per recipient.
type RcptObserver interface {
	RcptVerdict(t *policy.Transaction, v *policy.Verdict)
}

// traceRcpt hands v to the observer when it wants every RCPT verdict.
func (s *session) traceRcpt(v *policy.Verdict) {
	if ro, ok := s.srv.opts.Observer.(RcptObserver); ok {
		ro.RcptVerdict(s.tx, v)
	}
}
