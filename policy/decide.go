package policy

import (
	"fmt"
	"strings"
)

// The decision table: the one place where evidence becomes a score and a
// score becomes an action, for every stage and role, with the one observe
// clamp. Everything else in the package gathers evidence.
//
//	stage            evidence that counts                                  action (enforce)                         observe
//	rcpt             dnsbl:*, batv:bad/expired/ok, rcpt:no-bounces         reject when score >= reject, else accept  accept
//	eom              message: dnsbl:*, content (bounce:*, mdn:*,           per recipient: thresholds; the message    at most tag
//	                 autoreply:*, bounce:multi-rcpt); per recipient: its   takes the mildest recipient verdict, held
//	                 RCPT evidence + batv:missing (bounces only)           when another recipient's is quarantine+
//	callout          callout, dnsbl:*                                      accept (nothing is left to act on)       accept
//	internal-bounce  ndr:forged-sender / ndr:authenticated-sender          the configured discard or quarantine      accept
//	                                                                       on proof of forgery, else accept; never
//	                                                                       reject or tempfail

// score maps evidence to score and action at v.Stage: it sets v.Evidence,
// v.Score and v.Would. The internal-bounce role decides on proof rather
// than on a score: proof of a forged sender gets the configured action.
func (e *Engine) score(v *Verdict, ev Evidences) {
	v.Evidence, v.Score = ev, ev.Score()
	switch v.Stage {
	case StageInternal:
		v.Would = Accept
		if ev.Has(EvNDRForged) {
			v.Would = e.Settings.InternalBounceAction
		}
	case StageCallout:
		v.Would = Accept // nothing is left to act on
	case StageRcpt:
		// Tag and quarantine act on a message, not on a recipient.
		if v.Would = e.Settings.Thresholds.Action(v.Score); v.Would != Reject {
			v.Would = Accept
		}
	default:
		v.Would = e.Settings.Thresholds.Action(v.Score)
	}
}

// act sets v.Action from v.Would: the role limits and the observe clamp.
func (e *Engine) act(v *Verdict) {
	v.Mode = e.Settings.Mode
	v.Action = Clamp(v.Stage, e.Settings.Mode, v.Would)
}

// Clamp returns the action taken at stage in mode for a verdict that would
// be would. It is idempotent, so the milter can check a verdict against it.
func Clamp(stage Stage, mode Mode, would Action) Action {
	a := would
	switch stage {
	case StageRcpt:
		if a != Reject {
			a = Accept
		}
	case StageCallout:
		a = Accept
	case StageInternal:
		// Postfix's own bounce: a reject or tempfail makes it retry or lose
		// the bounce log, so only accept, discard or quarantine are answers.
		if a != Accept && a != Discard && a != Quarantine {
			a = Quarantine
		}
		if mode == Observe {
			return Accept
		}
		return a
	}
	if mode == Observe {
		switch {
		case stage == StageRcpt:
			return Accept
		case a > Tag:
			return Tag
		}
	}
	return a
}

// enforceNDR is the observe clamp for NDR rewrites: observe mode says what
// would be done and changes nothing. It reports whether to go on.
func (e *Engine) enforceNDR(v *Verdict) bool {
	if e.Settings.Mode != Observe {
		return true
	}
	v.NDR = v.NDR.Would()
	v.Mods.RcptRewrites = nil
	return false
}

// NDROutcome says what was done to the MTA's own delivery notifications for
// a message (Verdict.NDR, the "ndr" field of a verdict line).
type NDROutcome string

// NDR outcomes.
const (
	NDRUntouched          NDROutcome = ""
	NDRSuppressed         NDROutcome = "suppressed"           // every recipient rewritten with NOTIFY=NEVER
	NDRSuccessDSNStripped NDROutcome = "success-dsn-stripped" // NOTIFY=SUCCESS/DELAY or RET=FULL removed
	// Observe mode: decided and logged, nothing rewritten.
	NDRWouldSuppress        NDROutcome = "would-be-suppressed"
	NDRWouldStripSuccessDSN NDROutcome = "would-be-success-dsn-stripped"
	// The MTA cannot apply the rewrite (Sendmail keeps a re-added
	// recipient's old DSN parameters).
	NDRNotPossibleWithSendmail NDROutcome = "not-possible-with-sendmail"
	// Sendmail could take the rewrite as a case variant (the milter's
	// ndr_suppression.sendmail: case-variant), but its DSN offer is not
	// proven right now: recipients' parameters are left alone.
	NDRSendmailDSNUnproven NDROutcome = "sendmail-dsn-unproven"
)

// NDROutcomes lists every outcome a verdict line can carry, untouched first.
func NDROutcomes() []NDROutcome {
	return []NDROutcome{NDRUntouched, NDRSuppressed, NDRSuccessDSNStripped, NDRWouldSuppress,
		NDRWouldStripSuccessDSN, NDRNotPossibleWithSendmail, NDRSendmailDSNUnproven}
}

// Would returns the observe-mode form of an outcome.
func (o NDROutcome) Would() NDROutcome {
	switch o {
	case NDRSuppressed:
		return NDRWouldSuppress
	case NDRSuccessDSNStripped:
		return NDRWouldStripSuccessDSN
	}
	return o
}

// judged is one recipient's verdict at end of message.
type judged struct {
	addr   string
	ev     Evidences
	action Action
}

// judgeRecipients decides the message at end of data. A tag proves only its
// own recipient: each recipient is judged on the message's evidence plus
// its own (its RCPT-time evidence, and batv:missing when the message is a
// bounce). The message takes the mildest recipient verdict, so a real
// answer to one of our users is never lost because another recipient
// looked worse; but when another recipient's own verdict reaches
// quarantine, the whole message is held instead, so no recipient rides on
// another's proof and nothing is lost (a real bounce has one recipient).
func (e *Engine) judgeRecipients(t *Transaction, v *Verdict, content Evidences, isBounce bool) {
	if !ownEvidence(t, isBounce) {
		// The common case: no recipient has evidence of its own, so every
		// recipient's verdict is the message's.
		e.score(v, append(append(Evidences{}, t.global...), content...))
		return
	}
	js := make([]judged, 0, len(t.Recipients))
	for _, r := range t.Recipients {
		ev := append(append(Evidences{}, t.global...), r.Evidence...)
		if isBounce && r.Tag == TagMissing {
			ev = append(ev, e.tagEvidence(TagMissing))
		}
		ev = append(ev, content...)
		js = append(js, judged{addr: r.Addr, ev: ev, action: e.Settings.Thresholds.Action(ev.Score())})
	}
	best, worst := 0, 0
	for i, j := range js {
		if j.action < js[best].action || j.action == js[best].action && j.ev.Score() < js[best].ev.Score() {
			best = i
		}
		if j.action > js[worst].action || j.action == js[worst].action && j.ev.Score() > js[worst].ev.Score() {
			worst = i
		}
	}
	decided := js[best]
	if js[worst].action > decided.action {
		parts := make([]string, len(js))
		for i, j := range js {
			parts[i] = fmt.Sprintf("<%s> %d (%s)", j.addr, j.ev.Score(), j.action)
		}
		note := "recipients judged apart: " + strings.Join(parts, ", ")
		if js[worst].action >= Quarantine {
			decided = judged{addr: js[worst].addr, ev: js[worst].ev, action: Quarantine}
			note += ": held, a recipient's proof does not carry the others"
		}
		v.Notes = append(v.Notes, note)
	}
	v.Evidence, v.Score, v.Would = decided.ev, decided.ev.Score(), decided.action
}

// ownEvidence reports whether any recipient has evidence of its own.
func ownEvidence(t *Transaction, isBounce bool) bool {
	for _, r := range t.Recipients {
		if len(r.Evidence) > 0 || isBounce && r.Tag == TagMissing {
			return true
		}
	}
	return false
}
