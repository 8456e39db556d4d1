package policy

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/backscatter-milter/backscatter-milter/internal/problem"
	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
)

// The provenance ladder: stateless proofs that a returned original (in a
// bounce, an MDN or an auto-reply) is a message we sent, and a check that
// catches forged originals. Each rung is named, weighted evidence in the one
// table (evidence.go); docs/configuration.md explains what each proves and
// costs. The rungs, cheapest first:
//
//  1. the stamp header we add to outbound mail (HMAC over the message's own
//     Message-ID, Date and From): proof, or proof of a copy;
//  2. our own DKIM signature on the returned original, whole or headers only;
//  3. the SPF of the original's sending domain (a local one) for the client
//     that first sent the original: a fail means a forged original.
//
// A DNS-backed rung runs only while nothing has proved the message ours.

// StampStatus is the state of the stamp on a returned original.
type StampStatus string

const (
	StampOK      StampStatus = "ok"      // ours, for this very message, within its lifetime
	StampBad     StampStatus = "bad"     // does not verify: copied onto another message, or altered
	StampExpired StampStatus = "expired" // ours and for this message, past its lifetime
	// StampUnverifiable: malformed, made with a key no longer configured, or
	// the copy lacks a covered field. No evidence: a forger gains nothing by
	// writing one, a damaged or retired real stamp looks like this.
	StampUnverifiable StampStatus = "unverifiable"
)

// Stamper adds the stamp to outbound mail and checks it on returned
// originals (policy/stamp, wired in cmd).
type Stamper interface {
	// Stamp returns the header to add to an outbound message whose
	// Message-ID, Date and From fields are given. An error means no stamp
	// (a field missing, no usable key).
	Stamp(messageID, date, from string) (Header, error)
	// CheckStamp verifies the stamps of a raw header block against that
	// block's own Message-ID, Date and From; found is false without a stamp.
	CheckStamp(header []byte) (st StampStatus, detail string, found bool)
}

// DKIMProof is what our own DKIM signature says about a returned original.
type DKIMProof struct {
	// Result: "pass" (the whole original verified), "headers-pass" (only
	// headers came back, and their signature verified), "fail", or "none"
	// (no signature of ours).
	Result string
	Domain string // d= of the signature that decided
	Detail string // one line for the log
}

// Results of DKIMProof.
const (
	DKIMPass        = "pass"
	DKIMHeadersPass = "headers-pass"
	DKIMFail        = "fail"
	DKIMNone        = "none"
)

// OwnDKIM verifies our own DKIM signatures on a returned original (policy/auth).
type OwnDKIM interface {
	// VerifyOwn checks the signatures whose d= is one of ours. body is nil
	// when only the headers came back.
	VerifyOwn(ctx context.Context, header, body []byte) DKIMProof
}

// OriginSPF checks the SPF of an original's sender for the client that
// first sent it (policy/auth).
type OriginSPF interface {
	SPFOfOriginal(ctx context.Context, ip netip.Addr, sender string) (result, domain string, err error)
}

// Provenance gathers the stateless proofs. A nil part is not checked; Offline
// says why the DNS-backed parts are missing, so the verdict can say so.
type Provenance struct {
	Stamp     Stamper
	DKIM      OwnDKIM
	OriginSPF OriginSPF
	Offline   bool
}

// stampOutbound adds the stamp to an outbound message at end of message.
func (e *Engine) stampOutbound(t *Transaction, v *Verdict) {
	if e.Provenance == nil || e.Provenance.Stamp == nil {
		return
	}
	id, date, from := t.Header("Message-Id"), t.Header("Date"), t.Header("From")
	for _, f := range []struct{ name, val string }{{"Message-ID", bounce.NormalizeMessageID(id)}, {"Date", date}, {"From", from}} {
		if strings.TrimSpace(f.val) == "" {
			// The MTA may add it after we have seen the header (Sendmail
			// does): a stamp made without it would not verify.
			v.Notes = append(v.Notes, "no "+f.name+": not stamped")
			return
		}
	}
	h, err := e.Provenance.Stamp.Stamp(id, date, from)
	if err != nil {
		v.Notes = append(v.Notes, "stamp: "+err.Error())
		return
	}
	if len(t.HeaderValues(h.Name)) > 0 {
		// Already stamped by another of our MTAs (a fleet relays through
		// several): one stamp that verifies is enough.
		if st, _, _ := e.Provenance.Stamp.CheckStamp(headerBlock(t.Headers)); st == StampOK {
			v.Notes = append(v.Notes, "already stamped")
			return
		}
	}
	v.Mods.AddHeaders = append(v.Mods.AddHeaders, h)
	v.Notes = append(v.Notes, "stamped")
}

func headerBlock(hs []Header) []byte {
	var b strings.Builder
	for _, h := range hs {
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(h.Value)
		b.WriteString("\n")
	}
	return []byte(b.String())
}

// provenanceEvidence runs the ladder on a returned original and adds what
// it finds to ev, the evidence the message's kind already produced.
func (e *Engine) provenanceEvidence(ctx context.Context, rep *bounce.Report, v *Verdict, ev Evidences) Evidences {
	p := e.Provenance
	if p == nil || rep.Kind == bounce.KindFeedback || rep.Kind == bounce.KindAggregateReport || len(rep.OriginalHeader) == 0 {
		return ev
	}
	proved := ev.ProvedBy() != ""
	if p.Stamp != nil {
		if st, detail, found := p.Stamp.CheckStamp(rep.OriginalHeader); found {
			name := map[StampStatus]string{StampOK: EvBounceOursStamp, StampExpired: EvBounceStampExpired, StampBad: EvBounceStampBad}[st]
			if name == "" {
				v.Notes = append(v.Notes, "stamp cannot be checked ("+detail+"): no evidence")
			} else {
				ev = append(ev, Evidence{Name: name, Weight: e.Settings.weight(name), Detail: detail})
			}
			proved = proved || st == StampOK
		}
	}
	if proved {
		return ev
	}
	if p.Offline {
		v.Notes = append(v.Notes, "origin SPF and own DKIM: skipped (offline)")
	}
	// Both rungs wait on DNS: they run together, so a dead resolver costs
	// one timeout, not two. The SPF answer is dropped when DKIM proves.
	var spf chan originAnswer
	if p.OriginSPF != nil {
		spf = make(chan originAnswer, 1)
		go func() {
			ev, note := e.originSPF(ctx, rep)
			spf <- originAnswer{ev, note}
		}()
	}
	if p.DKIM != nil {
		r := p.DKIM.VerifyOwn(ctx, rep.OriginalHeader, rep.OriginalBody)
		switch r.Result {
		case DKIMPass:
			return append(ev, Evidence{Name: EvBounceOursDKIM, Weight: e.Settings.weight(EvBounceOursDKIM), Detail: r.Detail})
		case DKIMHeadersPass:
			return append(ev, Evidence{Name: EvBounceOursDKIMHdr, Weight: e.Settings.weight(EvBounceOursDKIMHdr), Detail: r.Detail})
		case DKIMFail:
			// Re-encoding in transit breaks DKIM: a failure is never evidence.
			v.Notes = append(v.Notes, "own DKIM on the original did not verify (no evidence): "+r.Detail)
		}
	}
	if spf != nil {
		a := <-spf
		if a.note != "" {
			v.Notes = append(v.Notes, a.note)
		}
		ev = append(ev, a.ev...)
	}
	return ev
}

type originAnswer struct {
	ev   Evidences
	note string
}

// originSPF checks the original's local sending domain against the client
// that first handed the original over. It returns evidence, or a note.
func (e *Engine) originSPF(ctx context.Context, rep *bounce.Report) (Evidences, string) {
	sender := ""
	for _, s := range rep.OriginalSenders {
		if e.Settings.isLocal(Domain(s)) {
			sender = s
			break
		}
	}
	if sender == "" {
		return nil, ""
	}
	ip := e.originIP(rep.Received)
	if !ip.IsValid() {
		return nil, "origin SPF: no public client address in the original's Received fields"
	}
	res, dom, err := e.Provenance.OriginSPF.SPFOfOriginal(ctx, ip, sender)
	detail := fmt.Sprintf("spf=%s for %s from %s", res, dom, ip)
	switch res {
	case "fail":
		return Evidences{{Name: EvBounceOriginSPFFail, Weight: e.Settings.weight(EvBounceOriginSPFFail), Detail: detail}}, ""
	case "pass":
		return Evidences{{Name: EvBounceOriginSPFPass, Weight: e.Settings.weight(EvBounceOriginSPFPass), Detail: detail}}, ""
	}
	if err != nil {
		detail += " (" + err.Error() + ")"
	}
	return nil, "origin SPF: " + detail + ": no evidence"
}

// originIP is the client that first handed the original to the outside
// world: the from-address of the earliest Received hop that names one,
// skipping hops that cannot be judged by SPF: authenticated submission
// (RFC 3848 ESMTPA/ESMTPSA… or "authenticated"), our trusted networks and
// non-public addresses. Without these skips a real bounce of mail a user
// submitted from home would look forged.
func (e *Engine) originIP(hops []bounce.Hop) netip.Addr {
	for i := len(hops) - 1; i >= 0; i-- {
		h := hops[i]
		ip := h.ClientIP.Unmap()
		if !ip.IsValid() || authenticatedHop(h.Raw) {
			continue
		}
		if _, ok := inNets(ip, e.Settings.TrustedNetworks); ok {
			continue
		}
		if ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() {
			continue
		}
		return ip
	}
	return netip.Addr{}
}

// authenticatedHop reports whether a Received field records an
// authenticated submission: a "with" protocol of RFC 3848 (ESMTPA, ESMTPSA,
// LMTPA, UTF8SMTPSA…) or Sendmail's and others' "authenticated" comment.
func authenticatedHop(raw string) bool {
	l := strings.ToLower(raw)
	if strings.Contains(l, "authenticated") {
		return true
	}
	f := strings.Fields(l)
	for i := 0; i+1 < len(f); i++ {
		if f[i] != "with" {
			continue
		}
		p := strings.TrimRight(f[i+1], ";,")
		if strings.HasSuffix(p, "smtpa") || strings.HasSuffix(p, "smtpsa") || strings.HasSuffix(p, "lmtpa") || strings.HasSuffix(p, "lmtpsa") {
			return true
		}
	}
	return false
}

// DKIMDomains checks provenance.dkim_domains (keys within the section) and
// returns the d= domains that are ours: those given, lowercased, or the
// local domains when none is given.
func DKIMDomains(given, localDomains []string) ([]string, problem.List) {
	var ps problem.List
	var out []string
	for i, d := range given {
		if !validDomain(d) {
			ps.Add(fmt.Sprintf("dkim_domains[%d]", i), "%q is not a domain name", d)
			continue
		}
		out = append(out, strings.ToLower(strings.TrimSuffix(d, ".")))
	}
	if len(given) == 0 {
		out = localDomains
	}
	return out, ps
}
