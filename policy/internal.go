package policy

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
)

// AuthMemory remembers the return-path verdict of inbound messages by queue
// ID, so that when Postfix later writes an NDR for one of them (the DSN
// carries the queue ID), the internal-bounce role knows whether the sender
// was forged. It is bounded and forgets after a TTL.
type AuthMemory struct {
	mu   sync.Mutex
	ttl  time.Duration
	max  int
	m    map[string]authMemo
	fifo []string
}

type authMemo struct {
	r  AuthResult
	at time.Time
}

// NewAuthMemory remembers up to max results for ttl each.
func NewAuthMemory(max int, ttl time.Duration) *AuthMemory {
	return &AuthMemory{ttl: ttl, max: max, m: make(map[string]authMemo)}
}

// Remember stores r for queueID.
func (a *AuthMemory) Remember(queueID string, r AuthResult, now time.Time) {
	if a == nil || queueID == "" || r == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.m[queueID]; !ok {
		a.fifo = append(a.fifo, queueID)
	}
	a.m[queueID] = authMemo{r, now}
	for len(a.fifo) > a.max {
		delete(a.m, a.fifo[0])
		a.fifo = a.fifo[1:]
	}
}

// Recall returns the result stored for queueID, if still fresh.
func (a *AuthMemory) Recall(queueID string, now time.Time) (AuthResult, bool) {
	if a == nil {
		return "", false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	m, ok := a.m[queueID]
	if !ok || now.Sub(m.at) > a.ttl {
		return "", false
	}
	return m.r, true
}

// InternalBounce decides on an NDR that Postfix itself generated (seen
// through non_smtpd_milters with internal_mail_filter_classes=bounce). It
// only ever answers Accept, or the configured Discard or Quarantine, and
// only on positive evidence that the original sender was forged: the
// remembered authentication result of the original, or else a hard SPF
// fail of the original sender against the original client.
func (e *Engine) InternalBounce(ctx context.Context, t *Transaction) *Verdict {
	v := &Verdict{Stage: StageInternal, Mode: e.Settings.Mode}
	if !t.NullSender() {
		// non_smtpd_milters also sees mail submitted with sendmail(1):
		// only Postfix's own bounces (null sender) are judged here.
		v.Notes = append(v.Notes, "not a bounce: accepted")
		return v
	}
	raw := t.Raw()
	qid := postfixQueueID(raw)
	var res AuthResult
	var how string
	remembered := false // res is the inbound milter's own verdict on the original
	if r, ok := e.AuthMemory.Recall(qid, e.now()); ok && qid != "" {
		res, how, remembered = r, "remembered for queue id "+qid, true
	} else if e.Auth != nil {
		rep, err := bounce.Parse(raw, bounce.DefaultLimits())
		// Postfix addresses its NDR to the original sender: the envelope
		// recipient is the most reliable source; the report is the fallback.
		sender := ""
		if len(t.Recipients) > 0 {
			sender = t.Recipients[0].Addr
		} else if err == nil && len(rep.OriginalSenders) > 0 {
			sender = rep.OriginalSenders[0]
		}
		switch {
		case sender == "":
			v.Notes = append(v.Notes, "original sender not found in the NDR")
		case err != nil:
			v.Notes = append(v.Notes, "NDR not parsed: "+err.Error())
		default:
			if ip, helo := ourReceivedClient(rep); ip.IsValid() {
				spf, _, _ := e.Auth.SPF(ctx, ip, helo, sender)
				res, _ = e.Auth.Result(ctx, spf, nil, sender)
				how = "spf=" + spf + " for " + sender + " from " + ip.String()
			} else {
				v.Notes = append(v.Notes, "no client address in the returned headers")
			}
		}
	}
	var ev Evidences
	switch {
	// An unauthenticated (not forged) sender counts only when the inbound
	// milter judged that message itself, under the operator's rule that
	// unauthenticated senders get no NDR.
	case res == Forged || res == Unauthenticated && remembered && !e.Settings.NDR.SPFFailOnly:
		ev = Evidences{{Name: EvNDRForged, Weight: 0, Detail: how}}
	case res == Authenticated:
		ev = Evidences{{Name: EvNDRAuthenticated, Weight: 0, Detail: how}}
	default:
		v.Notes = append(v.Notes, "no proof of forgery: the NDR goes out ("+string(res)+" "+how+")")
	}
	v.Auth = res
	e.score(v, ev)
	e.act(v)
	if v.Action == Quarantine {
		v.Mods.QuarantineReason = "NDR to a forged sender: " + how
	}
	return v
}

// postfixQueueID finds the queue ID Postfix writes into its DSNs.
func postfixQueueID(raw []byte) string {
	i := bytes.Index(raw, []byte("X-Postfix-Queue-ID:"))
	if i < 0 {
		return ""
	}
	rest := raw[i+len("X-Postfix-Queue-ID:"):]
	if j := bytes.IndexAny(rest, "\r\n"); j >= 0 {
		rest = rest[:j]
	}
	return strings.TrimSpace(string(rest))
}

// ourReceivedClient returns the client of the topmost Received hop of the
// returned original: the line our own MTA wrote when it accepted it.
func ourReceivedClient(rep *bounce.Report) (netip.Addr, string) {
	for _, h := range rep.Received {
		if h.ClientIP.IsValid() {
			return h.ClientIP, h.From
		}
	}
	return netip.Addr{}, ""
}
