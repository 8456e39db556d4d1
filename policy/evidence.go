package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Evidence names. They appear in logs, in the X-Backscatter header, in
// metrics labels and in the weights configuration, so they are stable.
const (
	EvBATVOK          = "batv:ok"           // the recipient carries a valid tag we made
	EvBATVMissing     = "batv:missing"      // a bounce (failure/delay DSN, text NDR) to an untagged local address
	EvBATVBad         = "batv:bad"          // a tag that does not verify: forged
	EvBATVExpired     = "batv:expired"      // a tag past its lifetime
	EvBounceOurs      = "bounce:ours"       // the bounced original's Message-ID is in our sent log
	EvBounceOursRelay = "bounce:ours-relay" // the returned original passed through one of our relays
	EvBounceNotOurs   = "bounce:not-ours"   // original headers present, none of them ours
	EvBounceMultiRcpt = "bounce:multi-rcpt" // a bounce from the null sender with several recipients
	EvAutoreplyOurs   = "autoreply:ours"    // auto-reply (or challenge) to a message in our sent log
	EvAutoreplyNot    = "autoreply:not-ours"
	EvMDNOurs         = "mdn:ours"        // read receipt (RFC 8098) for a message in our sent log
	EvMDNNot          = "mdn:not-ours"    // read receipt that references nothing we sent
	EvNoBounces       = "rcpt:no-bounces" // bounce-class mail to an address listed in no_bounces
	EvCallout         = "callout"         // null-sender transaction that ended without DATA
	EvDNSBLPrefix     = "dnsbl:"          // dnsbl:<zone>

	// Evidence of the internal-bounce role: it decides on proof of forgery,
	// not on a score, so these weigh 0 and are not configurable.
	EvNDRForged        = "ndr:forged-sender"        // the original's return path failed authentication
	EvNDRAuthenticated = "ndr:authenticated-sender" // it passed: the NDR goes out
)

// The provenance ladder (provenance.go) on a returned original.
const (
	EvBounceOursStamp     = "bounce:ours-stamp"        // our stamp verifies against the original's own Message-ID, Date, From
	EvBounceStampBad      = "bounce:stamp-bad"         // a stamp that does not verify: copied onto another message, or altered
	EvBounceStampExpired  = "bounce:stamp-expired"     // our stamp, past its lifetime
	EvBounceOursDKIM      = "bounce:ours-dkim"         // our DKIM signature verifies on the whole original
	EvBounceOursDKIMHdr   = "bounce:ours-dkim-headers" // only headers came back; their signature (covering bh=) verifies
	EvBounceOriginSPFFail = "bounce:origin-spf-fail"   // the original's local domain's SPF fails for its first client: forged
	EvBounceOriginSPFPass = "bounce:origin-spf-pass"   // it passes (spoofable: a forger can write our IP into Received)
)

// DefaultWeights are tuned so that no single soft signal rejects, a forged
// tag is rejected at RCPT and an untagged bounce with BATV on at end of
// message, and proof that a bounce is ours outweighs anything but a
// deliberate operator choice. rcpt:no-bounces outweighs every proof: the
// operator said those addresses never send mail, so nothing can answer them.
func DefaultWeights() map[string]int {
	return map[string]int{
		EvBATVOK:          -10,
		EvBATVMissing:     10,
		EvBATVBad:         10,
		EvBATVExpired:     6,
		EvBounceOurs:      -10,
		EvBounceOursRelay: -6,
		EvBounceNotOurs:   6,
		EvBounceMultiRcpt: 3,
		EvAutoreplyOurs:   -10,
		EvAutoreplyNot:    4,
		EvMDNOurs:         -10,
		EvMDNNot:          4,
		EvNoBounces:       100,
		EvCallout:         0,
		// A stamp or DKIM proof outweighs bounce:not-ours and batv:missing
		// together; an origin SPF fail with bounce:not-ours quarantines;
		// none of these rejects on its own (TestProvenanceWeights).
		EvBounceOursStamp:     -16,
		EvBounceOursDKIM:      -16,
		EvBounceOursDKIMHdr:   -14,
		EvBounceStampBad:      3,
		EvBounceStampExpired:  1,
		EvBounceOriginSPFFail: 3,
		EvBounceOriginSPFPass: -2,
	}
}

// ProofNames is every evidence that proves inbound mail answers something
// we sent, strongest first: a valid tag and the stateless proofs of the
// provenance ladder (provenance.go), then the sent log, then our relays
// (spoofable). ProvedBy picks the first present; report and metrics show it
// as "proved by".
var ProofNames = []string{EvBATVOK, EvBounceOursStamp, EvBounceOursDKIM, EvBounceOursDKIMHdr, EvBounceOurs,
	EvAutoreplyOurs, EvMDNOurs, EvBounceOursRelay}

// ProvesOurs reports whether evidence name proves that inbound mail
// answers something we sent (one of ProofNames).
func ProvesOurs(name string) bool { return slices.Contains(ProofNames, name) }

// ProvedBy returns the proof that makes a message ours: the first of
// ProofNames present, or "" when none is.
func (es Evidences) ProvedBy() string {
	for _, n := range ProofNames {
		if es.Has(n) {
			return n
		}
	}
	return ""
}

// Evidence is one named, weighted reason.
type Evidence struct {
	Name   string `json:"name"`
	Weight int    `json:"weight"`
	Detail string `json:"detail,omitempty"`
}

func (e Evidence) String() string {
	if e.Detail == "" {
		return fmt.Sprintf("%s(%+d)", e.Name, e.Weight)
	}
	return fmt.Sprintf("%s(%+d: %s)", e.Name, e.Weight, e.Detail)
}

// Evidences is a list of evidence with helpers for scoring and display.
type Evidences []Evidence

// Score sums the weights.
func (es Evidences) Score() int {
	s := 0
	for _, e := range es {
		s += e.Weight
	}
	return s
}

// Has reports whether evidence with this name is present.
func (es Evidences) Has(name string) bool {
	for _, e := range es {
		if e.Name == name {
			return true
		}
	}
	return false
}

// Top returns the evidence that weighs most against the message (the first
// one on a tie), and false when nothing weighs against it. The reject text
// and the report's "deciding evidence" both name it.
func (es Evidences) Top() (Evidence, bool) {
	var top Evidence
	found := false
	for _, e := range es {
		if e.Weight > 0 && (!found || e.Weight > top.Weight) {
			top, found = e, true
		}
	}
	return top, found
}

// Names lists the evidence names, sorted, for compact display.
func (es Evidences) Names() []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.Name)
	}
	sort.Strings(out)
	return out
}

// Summary is "name(+w), name(-w)" in order of appearance: the header text.
func (es Evidences) Summary() string {
	parts := make([]string, 0, len(es))
	for _, e := range es {
		parts = append(parts, fmt.Sprintf("%s(%+d)", e.Name, e.Weight))
	}
	return strings.Join(parts, ", ")
}
