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
	Settings Settings
	Lists    Lists      // nil: no DNSBL
	Tagger   Tagger     // nil: no BATV
	Sent     SentLog    // nil: no sent log
	Auth     ReturnPath // nil: no NDR suppression
	// AuthMemory keeps inbound return-path verdicts by queue ID for the
	// internal-bounce role; nil: that role falls back to SPF alone.
	AuthMemory *AuthMemory
	Provenance *Provenance // nil: no stamp, no own-DKIM or origin-SPF check
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

// RcptRewrite replaces a recipient by itself with other ESMTP parameters,
// or by its untagged address (NewAddr), or both, in one delete + add.
type RcptRewrite struct {
	Addr    string
	NewAddr string // "" = the same address
	OldArgs string
	NewArgs string
}

// To is the address the recipient is added back as.
func (rw RcptRewrite) To() string {
	if rw.NewAddr != "" {
		return rw.NewAddr
	}
	return rw.Addr
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
	NDR       NDROutcome
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
	if _, trusted := inNets(conn.ClientIP, e.Settings.TrustedNetworks); auth != "" || trusted {
		t.Direction = Outbound
		return t
	}
	if n, ok := inNets(conn.ClientIP, e.Settings.Allow.ClientNets); ok {
		t.Allowed = "client " + n.String()
	} else if m, ok := matchAddr(sender, e.Settings.Allow.Senders); ok && sender != "" {
		t.Allowed = "sender " + m
	}
	if t.Allowed == "" && e.Lists != nil && conn.ClientIP.IsValid() {
		t.lists = e.Lists.Start(ctx, conn.ClientIP.Unmap(), t.BounceClass())
	}
	if (e.Settings.NDR.Enabled || e.Settings.NDR.StripSuccessDSN) && e.Auth != nil && sender != "" {
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

// Rcpt decides on one recipient given by address and ESMTP parameters.
func (e *Engine) Rcpt(ctx context.Context, t *Transaction, rcpt, args string) *Verdict {
	return e.RcptTo(ctx, t, Recipient{Addr: rcpt, Args: args})
}

// RcptTo decides on one recipient (Addr, Args and, when the MTA gives it,
// Mailer). It refuses only on evidence that holds whatever the content
// turns out to be: a forged tag, a DNSBL score, a no_bounces address. A
// missing tag is kept for end of message, where the kind of the message is
// known (a read receipt, an auto-reply or a callout carries none). Accepted
// recipients are added to t.
func (e *Engine) RcptTo(ctx context.Context, t *Transaction, r Recipient) *Verdict {
	v := &Verdict{Stage: StageRcpt, Mode: e.Settings.Mode, Recipient: r.Addr}
	r.Evidence, r.Tag = nil, ""
	_, r.Allowed = matchAddr(r.Addr, e.Settings.Allow.Recipients)
	if t.Direction == Outbound || t.Allowed != "" || r.Allowed {
		t.Recipients = append(t.Recipients, r)
		return v
	}
	bounceClass := t.BounceClass()
	if e.batvScope(t, &r) && (bounceClass || mayBeTagged(r.Addr)) {
		r.Tag = e.Tagger.Verify(r.Addr)
		if _, known := tagEvidenceNames[r.Tag]; !known {
			r.Tag = TagBad
		}
	}
	e.waitLists(ctx, t)
	if bounceClass {
		// Only bounce-class mail is judged by recipient; a verified tag on
		// other mail is still removed at end of message.
		base := r.Addr
		if r.Tag != "" && r.Tag != TagMissing {
			base = e.Tagger.Strip(r.Addr) // a tag does not hide the address
		}
		if m, ok := matchAddr(base, e.Settings.NoBounces); ok {
			r.Evidence = append(r.Evidence, Evidence{Name: EvNoBounces, Weight: e.Settings.weight(EvNoBounces), Detail: "no_bounces: " + m})
		}
		if r.Tag != "" && r.Tag != TagMissing {
			r.Evidence = append(r.Evidence, e.tagEvidence(r.Tag))
		}
	}
	e.score(v, append(append(Evidences{}, t.global...), r.Evidence...))
	e.act(v)
	if v.Action == Reject {
		v.Reply = &Reply{Code: 550, Enhanced: "5.7.1", Text: rejectText(r.Addr, v.Evidence)}
		t.Rejected = append(t.Rejected, r.Addr)
		return v
	}
	t.Recipients = append(t.Recipients, r)
	return v
}

// batvScope reports whether BATV applies to r: the MTA delivers it to our
// mailboxes and BATV is on for its domain. An address literal of ours or an
// address the MTA delivers locally under another name belongs to no
// configured domain: BATV applies when it is on for any local domain.
func (e *Engine) batvScope(t *Transaction, r *Recipient) bool {
	if e.Tagger == nil {
		return false
	}
	dom := Domain(r.Addr)
	if e.Settings.isLocal(dom) {
		return e.Tagger.Enabled(dom)
	}
	if !deliveredHere(t, r) {
		return false
	}
	for _, d := range e.Settings.LocalDomains {
		if e.Tagger.Enabled(d) {
			return true
		}
	}
	return false
}

// mayBeTagged is a cheap test for a prvs tag in either form, so mail that
// is not bounce-class pays for no verification unless a tag is there.
func mayBeTagged(addr string) bool {
	for i := 0; i+5 <= len(addr); i++ {
		if (addr[i] == 'p' || addr[i] == 'P') && strings.EqualFold(addr[i:i+5], "prvs=") {
			return true
		}
	}
	return false
}

var tagEvidenceNames = map[TagStatus]string{TagOK: EvBATVOK, TagMissing: EvBATVMissing, TagBad: EvBATVBad, TagExpired: EvBATVExpired}

// tagEvidence is the evidence of a tag state; a missing tag weighs
// grace_weight during the grace window.
func (e *Engine) tagEvidence(st TagStatus) Evidence {
	name := tagEvidenceNames[st]
	w := e.Settings.weight(name)
	detail := ""
	if st == TagMissing && e.Tagger.Grace(e.now()) {
		w = e.Settings.GraceWeight
		detail = "grace window: unsigned bounces are only scored"
	}
	return Evidence{Name: name, Weight: w, Detail: detail}
}

// rejectText names the evidence that decided, so the sender (often a
// legitimate MTA bouncing a forgery) learns why.
func rejectText(rcpt string, ev Evidences) string {
	top, _ := ev.Top()
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
	case top.Name == EvMDNNot:
		why = "read receipt for a message we did not send"
	case top.Name == EvNoBounces:
		why = "this address never sends mail, so it takes no bounces or replies"
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
	if t.Direction == Outbound || t.Allowed != "" && !e.Settings.NDR.Enabled {
		return false
	}
	if t.Allowed == "" && (t.BounceClass() || isReport(t)) {
		return true
	}
	if e.Settings.NDR.Enabled && e.Auth != nil && !t.NullSender() {
		return e.Auth.HasAlignedSignature(t.HeaderValues("DKIM-Signature"), t.Sender)
	}
	return false
}

// End decides on the message at end of data: what kind of message it is,
// the evidence of its content, each recipient's verdict, the final action,
// and the recipient rewrites (NDR suppression, verified tags removed).
func (e *Engine) End(ctx context.Context, t *Transaction) *Verdict {
	v := &Verdict{Stage: StageEOM, Mode: e.Settings.Mode}
	if t.Direction == Outbound {
		e.outbound(ctx, t, v)
		return v
	}
	if t.BodyCut {
		v.Notes = append(v.Notes, fmt.Sprintf("body over %d bytes: judged on the first %d", e.Settings.BodyMax, len(t.Body)))
	}
	if t.Allowed == "" {
		e.waitLists(ctx, t)
		kind, content := e.contentEvidence(ctx, t, v)
		e.judgeRecipients(t, v, content, kind.IsBounce())
	} else {
		v.Notes = append(v.Notes, "allowlisted: "+t.Allowed)
	}
	v.Notes = append(v.Notes, t.notes...)
	e.act(v)
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
	e.stripTags(t, v)
	return v
}

// stripTags replaces each recipient whose tag verified by its untagged
// address, so a list manager reading its VERP extension, a sieve rule or
// the mailbox server sees the address we signed. A rewrite of the same
// recipient by NDR suppression becomes one delete + add. It runs in
// observe mode too: it only undoes what our own signing did.
func (e *Engine) stripTags(t *Transaction, v *Verdict) {
	for _, r := range t.Recipients {
		if r.Tag != TagOK {
			continue
		}
		base := e.Tagger.Strip(r.Addr)
		if base == r.Addr || base == "" {
			continue
		}
		merged := false
		for i := range v.Mods.RcptRewrites {
			if rw := &v.Mods.RcptRewrites[i]; rw.Addr == r.Addr {
				rw.NewAddr, merged = base, true
			}
		}
		if !merged {
			v.Mods.RcptRewrites = append(v.Mods.RcptRewrites, RcptRewrite{Addr: r.Addr, NewAddr: base, OldArgs: r.Args, NewArgs: r.Args})
		}
	}
}

func (e *Engine) headerName() string {
	if e.Settings.HeaderName != "" {
		return e.Settings.HeaderName
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

// outbound signs the envelope sender and records the Message-ID.
func (e *Engine) outbound(ctx context.Context, t *Transaction, v *Verdict) {
	dom := Domain(t.Sender)
	if t.Sender != "" && e.Tagger != nil && e.Settings.isLocal(dom) && e.Tagger.Enabled(dom) {
		e.sign(t, v)
	}
	e.stampOutbound(t, v)
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

// sign BATV-signs the envelope sender, unless a recipient is in
// batv.sign_exempt: a list or challenge-response system that keys on the
// envelope sender would see a new sender every day.
func (e *Engine) sign(t *Transaction, v *Verdict) {
	for _, r := range t.Recipients {
		if m, ok := matchAddr(r.Addr, e.Settings.SignExempt); ok {
			v.Notes = append(v.Notes, "sender not signed: <"+r.Addr+"> is in batv.sign_exempt ("+m+")")
			return
		}
	}
	signed, err := e.Tagger.Sign(t.Sender)
	switch {
	case err != nil:
		v.Notes = append(v.Notes, "batv sign: "+err.Error())
	case signed != t.Sender:
		v.Mods.ChangeFrom, v.Mods.ChangeFromArgs, v.Mods.ChangeFromSet = signed, SenderChangeArgs(t.SenderArgs), true
		v.Notes = append(v.Notes, "sender signed")
	}
}

// Callout is the verdict for a bounce-class transaction that ended after
// RCPT without DATA: a sender-verification probe. Nothing is left to act
// on; it is logged so a postmaster sees who probes our addresses.
func (e *Engine) Callout(t *Transaction) *Verdict {
	ev := Evidences{{Name: EvCallout, Weight: e.Settings.weight(EvCallout), Detail: "null-sender transaction ended without DATA"}}
	ev = append(ev, t.global...)
	v := &Verdict{Stage: StageCallout, Notes: t.notes}
	e.score(v, ev)
	e.act(v)
	return v
}

// RelayMatch reports whether a hop names one of our relays: by address
// (RelayNets: the client address of the from clause, or the IP literal of
// the by clause, which the caller passes as ip) or by host name; a
// RelayHosts entry starting with "." matches every host below that domain.
func (e *Engine) RelayMatch(by string, ip netip.Addr) (string, bool) {
	if n, ok := inNets(ip, e.Settings.RelayNets); ok {
		return n.String(), true
	}
	by = strings.ToLower(strings.TrimSuffix(by, "."))
	if by == "" {
		return "", false
	}
	for _, h := range e.Settings.RelayHosts {
		if by == h || strings.HasPrefix(h, ".") && strings.HasSuffix(by, h) {
			return h, true
		}
	}
	return "", false
}
