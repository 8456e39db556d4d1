package policy

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
)

// Engine decides. One Engine serves every session; it is replaced whole on a
// config reload, so a transaction keeps the engine it started with.
type Engine struct {
	S      Settings
	Lists  Lists      // nil: no DNSBL
	Tagger Tagger     // nil: no BATV
	Sent   SentLog    // nil: no sent log
	Auth   ReturnPath // nil: no NDR suppression
	// AuthMemory keeps inbound return-path verdicts by queue ID for the
	// internal-bounce role; nil: that role falls back to SPF alone.
	AuthMemory *AuthMemory
	Now        func() time.Time
}

// Reply is an SMTP reply the MTA should give.
type Reply struct {
	Code     int    // 550, 451
	Enhanced string // 5.7.1
	Text     string
}

func (r *Reply) String() string {
	return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
}

// RcptRewrite replaces a recipient by itself with other ESMTP parameters.
type RcptRewrite struct {
	Addr    string
	OldArgs string
	NewArgs string
}

// Modifications are the changes the milter should make at end of message.
type Modifications struct {
	AddHeaders       []Header
	ChangeFrom       string // new envelope sender ("" = no change, unless ChangeFromArgs is set)
	ChangeFromArgs   string
	ChangeFromSet    bool
	RcptRewrites     []RcptRewrite
	QuarantineReason string
}

// Stage says where a verdict was taken.
type Stage string

const (
	StageRcpt     Stage = "rcpt"
	StageEOM      Stage = "eom"
	StageCallout  Stage = "callout"
	StageInternal Stage = "internal-bounce"
)

// Verdict is a decision and everything that explains it.
type Verdict struct {
	Stage     Stage
	Action    Action // what is done
	Would     Action // what enforce mode would do (differs only in observe mode)
	Mode      Mode
	Score     int
	Evidence  Evidences
	Recipient string // RCPT stage: the recipient decided on
	Reply     *Reply
	Mods      Modifications
	Auth      AuthResult // EOM, inbound: return-path state, if checked
	AuthWhy   string
	NDR       string // "" (untouched), "suppressed", "success-dsn-stripped", "would-be-…" in observe mode; the milter adds "not-possible-with-sendmail"
	Notes     []string
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// Begin starts a transaction at MAIL FROM: it classifies the direction,
// checks allowlists and starts the lookups that later stages will need, so
// they overlap the RCPT round trips.
func (e *Engine) Begin(ctx context.Context, sessionID string, conn Connection, sender, args, auth string) *Transaction {
	t := &Transaction{
		SessionID:  sessionID,
		Connection: conn,
		Sender:     sender,
		SenderArgs: args,
		Auth:       auth,
		Started:    e.now(),
	}
	if _, trusted := inNets(conn.ClientIP, e.S.TrustedNetworks); auth != "" || trusted {
		t.Direction = Outbound
		return t
	}
	if n, ok := inNets(conn.ClientIP, e.S.Allow.ClientNets); ok {
		t.Allowed = "client " + n.String()
	} else if m, ok := matchAddr(sender, e.S.Allow.Senders); ok && sender != "" {
		t.Allowed = "sender " + m
	}
	if t.Allowed == "" && e.Lists != nil && conn.ClientIP.IsValid() {
		t.lists = e.Lists.Start(ctx, conn.ClientIP.Unmap(), t.BounceClass())
	}
	if (e.S.NDR.Enabled || e.S.NDR.StripSuccessDSN) && e.Auth != nil && sender != "" {
		ch := make(chan spfAnswer, 1)
		t.spf = ch
		go func() {
			r, d, err := e.Auth.SPF(ctx, conn.ClientIP, conn.Helo, sender)
			ch <- spfAnswer{r, d, err}
		}()
	}
	return t
}

// waitLists collects DNSBL evidence once per transaction.
func (e *Engine) waitLists(ctx context.Context, t *Transaction) {
	if t.listsOK || t.lists == nil {
		return
	}
	t.listsOK = true
	listings, notes := t.lists.Wait(ctx)
	for _, l := range listings {
		t.global = append(t.global, Evidence{Name: EvDNSBLPrefix + l.Zone, Weight: l.Weight, Detail: l.Detail})
	}
	t.notes = append(t.notes, notes...)
}

// Rcpt decides on one recipient. Accepted recipients are added to t.
func (e *Engine) Rcpt(ctx context.Context, t *Transaction, rcpt, args string) *Verdict {
	v := &Verdict{Stage: StageRcpt, Mode: e.S.Mode, Recipient: rcpt}
	r := Recipient{Addr: rcpt, Args: args}
	_, rcptAllowed := matchAddr(rcpt, e.S.Allow.Recipients)
	if t.Direction == Outbound || t.Allowed != "" || rcptAllowed {
		t.Recipients = append(t.Recipients, r)
		return v
	}
	e.waitLists(ctx, t)
	if t.NullSender() && len(t.Recipients) >= 1 && !t.global.Has(EvBounceMultiRcpt) {
		t.global = append(t.global, Evidence{Name: EvBounceMultiRcpt, Weight: e.S.weight(EvBounceMultiRcpt),
			Detail: "a bounce has one recipient"})
	}
	dom := Domain(rcpt)
	if t.BounceClass() && e.Tagger != nil && e.S.isLocal(dom) && e.Tagger.Enabled(dom) {
		r.Evidence = append(r.Evidence, e.tagEvidence(rcpt))
	}
	ev := append(append(Evidences{}, t.global...), r.Evidence...)
	v.Evidence, v.Score = ev, ev.Score()
	if e.S.Thresholds.Action(v.Score) == Reject {
		v.Would = Reject
		if e.S.Mode == Enforce {
			v.Action = Reject
			v.Reply = &Reply{Code: 550, Enhanced: "5.7.1", Text: rejectText(rcpt, ev)}
			t.Rejected = append(t.Rejected, rcpt)
			return v
		}
	}
	t.Recipients = append(t.Recipients, r)
	return v
}

var tagEvidenceNames = map[TagStatus]string{TagOK: EvBATVOK, TagMissing: EvBATVMissing, TagBad: EvBATVBad, TagExpired: EvBATVExpired}

func (e *Engine) tagEvidence(rcpt string) Evidence {
	st := e.Tagger.Verify(rcpt)
	name := tagEvidenceNames[st]
	if name == "" {
		name = EvBATVBad
	}
	w := e.S.weight(name)
	detail := ""
	if st == TagMissing && e.Tagger.Grace(e.now()) {
		w = e.S.GraceWeight
		detail = "grace window: unsigned bounces are only scored"
	}
	return Evidence{Name: name, Weight: w, Detail: detail}
}

// rejectText names the evidence that decided, so the sender (often a
// legitimate MTA bouncing a forgery) learns why.
func rejectText(rcpt string, ev Evidences) string {
	var top Evidence
	for _, e := range ev {
		if e.Weight > top.Weight {
			top = e
		}
	}
	why := "backscatter"
	switch {
	case strings.HasPrefix(top.Name, EvDNSBLPrefix):
		why = "client listed at " + strings.TrimPrefix(top.Name, EvDNSBLPrefix) + " (backscatter source)"
	case top.Name == EvBATVMissing:
		why = "bounce to an address that signs all its mail (BATV): the message you are bouncing was not sent by us"
	case top.Name == EvBATVBad:
		why = "invalid BATV signature: the message you are bouncing was not sent by us"
	case top.Name == EvBATVExpired:
		why = "expired BATV signature"
	case top.Name == EvBounceNotOurs:
		why = "the message you are bouncing was not sent by us"
	case top.Name == EvAutoreplyNot:
		why = "auto-reply to a message we did not send"
	case top.Name == EvBounceMultiRcpt:
		why = "null sender with several recipients"
	}
	if rcpt != "" {
		return fmt.Sprintf("<%s>: rejected as backscatter: %s", rcpt, why)
	}
	return "rejected as backscatter: " + why
}

// WantBody reports whether the body must be kept for end-of-message
// decisions: bounce-class and report mail (to parse it), and mail whose DKIM
// signature could authenticate the sender (to verify it).
func (e *Engine) WantBody(t *Transaction) bool {
	if t.Direction == Outbound || t.Allowed != "" && !e.S.NDR.Enabled {
		return false
	}
	if t.Allowed == "" && (t.BounceClass() || isReport(t)) {
		return true
	}
	if e.S.NDR.Enabled && e.Auth != nil && !t.NullSender() {
		return e.Auth.HasAlignedSignature(t.HeaderValues("DKIM-Signature"), t.Sender)
	}
	return false
}

func isReport(t *Transaction) bool {
	ct := strings.ToLower(t.Header("Content-Type"))
	return strings.Contains(ct, "multipart/report")
}

// End decides on the message at end of data.
func (e *Engine) End(ctx context.Context, t *Transaction) *Verdict {
	v := &Verdict{Stage: StageEOM, Mode: e.S.Mode}
	if t.Direction == Outbound {
		e.outbound(ctx, t, v)
		return v
	}
	if t.BodyCut {
		v.Notes = append(v.Notes, fmt.Sprintf("body over %d bytes: judged on the first %d", e.S.BodyMax, len(t.Body)))
	}
	if t.Allowed == "" {
		e.waitLists(ctx, t)
		ev := append(Evidences{}, t.global...)
		ev = append(ev, bestRecipient(t.Recipients)...)
		ev = append(ev, e.contentEvidence(ctx, t, v)...)
		v.Evidence, v.Score = ev, ev.Score()
		v.Would = e.S.Thresholds.Action(v.Score)
	} else {
		v.Notes = append(v.Notes, "allowlisted: "+t.Allowed)
	}
	v.Notes = append(v.Notes, t.notes...)
	v.Action = v.Would
	if e.S.Mode == Observe && v.Would > Tag {
		v.Action = Tag
	}
	switch v.Action {
	case Reject:
		v.Reply = &Reply{Code: 550, Enhanced: "5.7.1", Text: rejectText("", v.Evidence)}
		return v
	case Quarantine:
		v.Mods.QuarantineReason = fmt.Sprintf("backscatter score %d: %s", v.Score, v.Evidence.Summary())
	}
	if v.Action != Accept || v.Would != Accept {
		v.Mods.AddHeaders = append(v.Mods.AddHeaders, Header{Name: e.headerName(), Value: e.headerValue(t, v)})
	}
	e.suppressNDR(ctx, t, v)
	return v
}

func (e *Engine) headerName() string {
	if e.S.HeaderName != "" {
		return e.S.HeaderName
	}
	return "X-Backscatter"
}

func (e *Engine) headerValue(t *Transaction, v *Verdict) string {
	s := fmt.Sprintf("score=%d action=%s", v.Score, v.Would)
	if v.Mode == Observe {
		s += " mode=observe"
	}
	s += " session=" + t.SessionID
	if len(v.Evidence) > 0 {
		s += "\r\n\tevidence=\"" + v.Evidence.Summary() + "\""
	}
	return s
}

// bestRecipient returns the recipient-level evidence of the accepted
// recipient with the lowest score: when recipients disagree, the message is
// judged by the one that most looks like it answers our mail, so a real
// bounce is never lost because another recipient looked worse.
func bestRecipient(rs []Recipient) Evidences {
	var best Evidences
	for i, r := range rs {
		if i == 0 || r.Evidence.Score() < best.Score() {
			best = r.Evidence
		}
	}
	return best
}

// outbound signs the envelope sender and records the Message-ID.
func (e *Engine) outbound(ctx context.Context, t *Transaction, v *Verdict) {
	dom := Domain(t.Sender)
	if t.Sender != "" && e.Tagger != nil && e.S.isLocal(dom) && e.Tagger.Enabled(dom) {
		signed, err := e.Tagger.Sign(t.Sender)
		switch {
		case err != nil:
			v.Notes = append(v.Notes, "batv sign: "+err.Error())
		case signed != t.Sender:
			v.Mods.ChangeFrom, v.Mods.ChangeFromArgs, v.Mods.ChangeFromSet = signed, SenderChangeArgs(t.SenderArgs), true
			v.Notes = append(v.Notes, "sender signed")
		}
	}
	id := bounce.NormalizeMessageID(t.Header("Message-Id"))
	if id == "" {
		v.Notes = append(v.Notes, "no Message-ID: not recorded")
	}
	if e.Sent == nil {
		return
	}
	if id != "" {
		if err := e.Sent.Record(ctx, id, e.now()); err != nil {
			v.Notes = append(v.Notes, "sent log: "+err.Error())
		} else {
			v.Notes = append(v.Notes, "recorded message-id")
		}
	}
}

// Callout is the verdict for a bounce-class transaction that ended after
// RCPT without DATA: a sender-verification probe. Nothing is left to act
// on; it is logged so a postmaster sees who probes our addresses.
func (e *Engine) Callout(t *Transaction) *Verdict {
	ev := Evidences{{Name: EvCallout, Weight: e.S.weight(EvCallout), Detail: "null-sender transaction ended without DATA"}}
	ev = append(ev, t.global...)
	return &Verdict{Stage: StageCallout, Mode: e.S.Mode, Evidence: ev, Score: ev.Score(), Notes: t.notes}
}

// RelayMatch reports whether a hop names one of our relays: by address
// (RelayNets) or by host name; a RelayHosts entry starting with "." matches
// every host below that domain.
func (e *Engine) RelayMatch(by string, ip netip.Addr) (string, bool) {
	if n, ok := inNets(ip, e.S.RelayNets); ok {
		return n.String(), true
	}
	by = strings.ToLower(strings.TrimSuffix(by, "."))
	if by == "" {
		return "", false
	}
	for _, h := range e.S.RelayHosts {
		if by == h || strings.HasPrefix(h, ".") && strings.HasSuffix(by, h) {
			return h, true
		}
	}
	return "", false
}
