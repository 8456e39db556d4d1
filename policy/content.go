package policy

import (
	"context"
	"fmt"
	"strings"

	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
)

// contentEvidence says what the message is and judges it as that:
//
//   - a bounce (failure or delay DSN, text NDR) or a success DSN: by the
//     provenance of the returned original (sent log, relays); a bounce from
//     the null sender with several recipients is suspect. Only bounces are
//     judged by a missing BATV tag (see judgeRecipients);
//   - a read receipt (MDN) or an auto-reply or challenge: these answer the
//     header From, which never carries a tag, so they are judged by what
//     they reference (Original-Message-ID, In-Reply-To, References) and the
//     relays, never by a missing tag;
//   - ARF feedback and DMARC/TLS-RPT reports, and everything else: no
//     evidence. Null-sender mail that is not bounce-shaped is not
//     backscatter by itself.
//
// Only bounce-class mail, reports and mail the one auto-reply predicate
// (bounce.AutoReplyReason) recognises are parsed.
func (e *Engine) contentEvidence(ctx context.Context, t *Transaction, v *Verdict) (bounce.Kind, Evidences) {
	if !t.BounceClass() && !isReport(t) && bounce.AutoReplyReason(t.Header) == "" {
		return bounce.KindNone, nil
	}
	lim := bounce.DefaultLimits()
	if e.Settings.BodyMax > 0 {
		lim.MaxBytes = e.Settings.BodyMax + 256<<10 // headers on top of the kept body
	}
	rep, err := bounce.Parse(t.Raw(), lim)
	if err != nil {
		v.Notes = append(v.Notes, "bounce parse: "+err.Error())
		return bounce.KindNone, nil
	}
	if rep.Truncated {
		v.Notes = append(v.Notes, "bounce parse hit a limit: judged on what was read")
	}
	v.Notes = append(v.Notes, "content: "+rep.Kind.String())
	var ev Evidences
	switch rep.Kind {
	case bounce.KindFailure, bounce.KindDelay:
		ev = e.bounceEvidence(ctx, rep, v)
		if t.NullSender() && len(t.Recipients) > 1 {
			ev = append(ev, Evidence{Name: EvBounceMultiRcpt, Weight: e.Settings.weight(EvBounceMultiRcpt), Detail: "a bounce has one recipient"})
		}
	case bounce.KindDelivered:
		ev = e.bounceEvidence(ctx, rep, v)
	case bounce.KindMDN:
		ev = e.answerEvidence(ctx, t, rep, v, EvMDNOurs, EvMDNNot)
	case bounce.KindAutoReply, bounce.KindChallenge:
		ev = e.answerEvidence(ctx, t, rep, v, EvAutoreplyOurs, EvAutoreplyNot)
	case bounce.KindFeedback, bounce.KindAggregateReport:
		v.Notes = append(v.Notes, rep.Kind.String()+": not scored")
		return rep.Kind, nil
	}
	return rep.Kind, e.provenanceEvidence(ctx, rep, v, ev)
}

func (e *Engine) bounceEvidence(ctx context.Context, rep *bounce.Report, v *Verdict) Evidences {
	storeFailed := false
	if id := rep.OriginalMessageID; id != "" {
		if seen, err := e.seen(ctx, id); err != nil {
			v.Notes = append(v.Notes, "sent log: "+err.Error())
			storeFailed = true
		} else if seen {
			return Evidences{{Name: EvBounceOurs, Weight: e.Settings.weight(EvBounceOurs), Detail: "message-id <" + id + "> is in the sent log"}}
		}
	}
	if ev, ok := e.relayEvidence(rep); ok {
		return Evidences{ev}
	}
	if !rep.OriginalHeaders {
		v.Notes = append(v.Notes, "no original headers in the bounce: no evidence either way")
		return nil
	}
	if rep.OriginalMessageID == "" && len(rep.Received) == 0 {
		// Nothing in what came back could have proved it ours, so its
		// absence proves nothing either.
		v.Notes = append(v.Notes, "original headers carry no Message-ID and no Received: no evidence either way")
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
	return Evidences{{Name: EvBounceNotOurs, Weight: e.Settings.weight(EvBounceNotOurs), Detail: detail}}
}

// relayEvidence looks for one of our relays among the returned original's
// hops: by the client address of a from clause, the IP literal of a by
// clause, or a host name.
func (e *Engine) relayEvidence(rep *bounce.Report) (Evidence, bool) {
	w := e.Settings.weight(EvBounceOursRelay)
	for _, h := range rep.Received {
		if m, ok := e.RelayMatch(h.By, h.ClientIP); ok {
			return Evidence{Name: EvBounceOursRelay, Weight: w, Detail: "original passed our relay " + m}, true
		}
		if m, ok := e.RelayMatch(h.From, h.ByIP); ok {
			return Evidence{Name: EvBounceOursRelay, Weight: w, Detail: "original passed our relay " + m}, true
		}
	}
	return Evidence{}, false
}

// answerEvidence judges an answer to the header From (read receipt,
// auto-reply, challenge) by what it references: ours when one of its
// references is in the sent log or the returned original passed our
// relays, notOurs otherwise. A sent-log failure is no evidence.
func (e *Engine) answerEvidence(ctx context.Context, t *Transaction, rep *bounce.Report, v *Verdict, ours, notOurs string) Evidences {
	var refs []string
	if rep.OriginalMessageID != "" {
		refs = append(refs, rep.OriginalMessageID) // an MDN's Original-Message-ID
	}
	refs = append(refs, rep.InReplyTo...)
	if len(rep.InReplyTo) == 0 {
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
			return Evidences{{Name: ours, Weight: e.Settings.weight(ours), Detail: "answers <" + id + ">"}}
		}
	}
	if ev, ok := e.relayEvidence(rep); ok {
		return Evidences{ev}
	}
	detail := "references no message-id"
	if len(refs) > 0 {
		detail = fmt.Sprintf("%d referenced message-ids, none in the sent log", len(refs))
	}
	return Evidences{{Name: notOurs, Weight: e.Settings.weight(notOurs), Detail: detail}}
}

func (e *Engine) seen(ctx context.Context, id string) (bool, error) {
	if e.Sent == nil {
		return false, nil
	}
	return e.Sent.Seen(ctx, bounce.NormalizeMessageID(id))
}

func isReport(t *Transaction) bool {
	ct := strings.ToLower(t.Header("Content-Type"))
	return strings.Contains(ct, "multipart/report")
}
