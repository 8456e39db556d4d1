package policy

import (
	"net/netip"

	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
)

// The external tests (package policy_test) reach these unexported helpers.
var (
	AddressLiteral     = addressLiteral
	MayBeTagged        = mayBeTagged
	StripSuccessNotify = stripSuccessNotify
)

// RelayEvidence lets the external tests reach relayEvidence.
func (e *Engine) RelayEvidence(rep *bounce.Report) (Evidence, bool) { return e.relayEvidence(rep) }

// OriginIP lets the external tests reach originIP.
func (e *Engine) OriginIP(hops []bounce.Hop) netip.Addr { return e.originIP(hops) }
