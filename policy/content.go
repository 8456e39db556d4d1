package policy

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
)

// contentEvidence reads the message itself: is it a bounce or an auto-reply,
// and does it answer something we sent? Only bounce-class mail, reports and
// mail whose headers say auto-reply are parsed.
func (e *Engine) contentEvidence(ctx context.Context, t *Transaction, v *Verdict) Evidences {
	if !t.BounceClass() && !isReport(t) && !looksAutoReply(t) {
		return nil
	}
	lim := bounce.DefaultLimits()
	if e.S.BodyMax > 0 {
		lim.MaxBytes = e.S.BodyMax + 256<<10 // headers on top of the kept body
	}
	rep, err := bounce.Parse(t.Raw(), lim)
	if err != nil {
		v.Notes = append(v.Notes, "bounce parse: "+err.Error())
		return nil
	}
	if rep.Truncated {
		v.Notes = append(v.Notes, "bounce parse hit a limit: judged on what was read")
	}
	switch rep.Kind {
	case bounce.KindFailure, bounce.KindDelay, bounce.KindDelivered:
		return e.bounceEvidence(ctx, rep, v)
	case bounce.KindAutoReply:
		return e.autoreplyEvidence(ctx, t, rep, v)
	case bounce.KindFeedback:
		v.Notes = append(v.Notes, "feedback report: not scored")
	}
	return nil
}

func (e *Engine) bounceEvidence(ctx context.Context, rep *bounce.Report, v *Verdict) Evidences {
	v.Notes = append(v.Notes, "content: "+rep.Kind.String())
	storeFailed := false
	if id := rep.OriginalMessageID; id != "" {
		if seen, err := e.seen(ctx, id); err != nil {
			v.Notes = append(v.Notes, "sent log: "+err.Error())
			storeFailed = true
		} else if seen {
			return Evidences{{Name: EvBounceOurs, Weight: e.S.weight(EvBounceOurs), Detail: "message-id <" + id + "> is in the sent log"}}
		}
	}
	for _, h := range rep.Received {
		if m, ok := e.RelayMatch(h.By, h.ClientIP); ok {
			return Evidences{{Name: EvBounceOursRelay, Weight: e.S.weight(EvBounceOursRelay), Detail: "original passed our relay " + m}}
		}
		if m, ok := e.RelayMatch(h.From, netip.Addr{}); ok {
			return Evidences{{Name: EvBounceOursRelay, Weight: e.S.weight(EvBounceOursRelay), Detail: "original came from our relay " + m}}
		}
	}
	if !rep.OriginalHeaders {
		v.Notes = append(v.Notes, "no original headers in the bounce: no evidence either way")
		return nil
	}
	if storeFailed {
		// "Not ours" needs the sent log's answer: a failed lookup is no
		// evidence either way (fail open), never a reason to hold.
		v.Notes = append(v.Notes, "sent log unavailable: no evidence either way")
		return nil
	}
	detail := fmt.Sprintf("%d original hops, none ours", len(rep.Received))
	if rep.OriginalMessageID != "" {
		detail = "message-id <" + rep.OriginalMessageID + "> unknown, " + detail
	}
	return Evidences{{Name: EvBounceNotOurs, Weight: e.S.weight(EvBounceNotOurs), Detail: detail}}
}

func (e *Engine) autoreplyEvidence(ctx context.Context, t *Transaction, rep *bounce.Report, v *Verdict) Evidences {
	v.Notes = append(v.Notes, "content: autoreply")
	refs := rep.InReplyTo
	if len(refs) == 0 {
		for _, h := range []string{"In-Reply-To", "References"} {
			for _, val := range t.HeaderValues(h) {
				for _, f := range strings.Fields(val) {
					if id := bounce.NormalizeMessageID(f); id != "" {
						refs = append(refs, id)
					}
				}
			}
		}
	}
	for _, id := range refs {
		seen, err := e.seen(ctx, id)
		if err != nil {
			v.Notes = append(v.Notes, "sent log: "+err.Error())
			return nil // fail open: no evidence either way
		}
		if seen {
			return Evidences{{Name: EvAutoreplyOurs, Weight: e.S.weight(EvAutoreplyOurs), Detail: "answers <" + id + ">"}}
		}
	}
	detail := "no In-Reply-To/References"
	if len(refs) > 0 {
		detail = fmt.Sprintf("%d referenced message-ids, none in the sent log", len(refs))
	}
	return Evidences{{Name: EvAutoreplyNot, Weight: e.S.weight(EvAutoreplyNot), Detail: detail}}
}

func (e *Engine) seen(ctx context.Context, id string) (bool, error) {
	if e.Sent == nil {
		return false, nil
	}
	return e.Sent.Seen(ctx, bounce.NormalizeMessageID(id))
}

// looksAutoReply is a cheap header test that decides whether to parse.
func looksAutoReply(t *Transaction) bool {
	if as := strings.ToLower(strings.TrimSpace(t.Header("Auto-Submitted"))); as != "" && as != "no" {
		return true
	}
	for _, h := range []string{"X-Autoreply", "X-Autorespond", "X-Vacation"} {
		if t.Header(h) != "" {
			return true
		}
	}
	p := strings.ToLower(strings.TrimSpace(t.Header("Precedence")))
	return p == "auto_reply"
}
