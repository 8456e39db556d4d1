package policy

import (
	"net/netip"
	"strings"
)

// Thresholds map a score to an action. A threshold of 0 disables that
// action; the score must reach (>=) a threshold for its action to apply.
type Thresholds struct {
	Tag        int
	Quarantine int
	Reject     int
}

// Action returns the strongest action whose threshold score reaches.
func (th Thresholds) Action(score int) Action {
	switch {
	case th.Reject > 0 && score >= th.Reject:
		return Reject
	case th.Quarantine > 0 && score >= th.Quarantine:
		return Quarantine
	case th.Tag > 0 && score >= th.Tag:
		return Tag
	}
	return Accept
}

// NDR configures the suppression of our own non-delivery reports.
type NDR struct {
	Enabled bool
	// SPFFailOnly suppresses NDRs only for senders whose SPF fails; by default
	// (false) every sender without SPF pass or aligned DKIM is suppressed.
	SPFFailOnly bool
	// UnknownIsUnauthenticated treats DNS errors during the check as "not authenticated".
	UnknownIsUnauthenticated bool
	// StripSuccessDSN removes NOTIFY=SUCCESS/DELAY and RET=FULL from unauthenticated mail.
	StripSuccessDSN bool
}

// Allowlist exempts transactions from scoring. Addresses match whole
// (case-insensitive); an entry starting with "@" or without "@" matches a domain.
type Allowlist struct {
	ClientNets []netip.Prefix
	Senders    []string
	Recipients []string
}

// Settings are the operator's choices, already validated.
type Settings struct {
	Mode            Mode
	LocalDomains    []string
	TrustedNetworks []netip.Prefix
	RelayHosts      []string       // our outbound hosts by name
	RelayNets       []netip.Prefix // and by address
	Thresholds      Thresholds
	Weights         map[string]int // overrides of DefaultWeights
	GraceWeight     int            // weight of batv:missing during the BATV grace window
	Allow           Allowlist
	// NoBounces are addresses and domains that never send mail: any
	// bounce-class mail to them is refused at RCPT (entries as Allowlist's).
	NoBounces []string
	// SignExempt are recipient addresses and domains whose systems key on
	// the envelope sender: mail to them goes out unsigned (still recorded).
	SignExempt []string
	NDR        NDR
	BodyMax    int    // bytes of body kept for parsing
	HeaderName string // the tag header, default X-Backscatter
	// InternalBounceAction is what the internal-bounce role does with an NDR
	// to a forged sender: Discard or Quarantine (never Reject or Tempfail).
	InternalBounceAction Action
}

// DefaultSettings are the embedded defaults: safe to run as they are.
func DefaultSettings() Settings {
	return Settings{
		Mode:                 Enforce,
		TrustedNetworks:      []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		Thresholds:           Thresholds{Tag: 3, Quarantine: 6, Reject: 10},
		Weights:              DefaultWeights(),
		GraceWeight:          3,
		NDR:                  NDR{Enabled: true, StripSuccessDSN: true},
		BodyMax:              1 << 20,
		HeaderName:           "X-Backscatter",
		InternalBounceAction: Quarantine,
	}
}

// defaultWeights backs Settings built without a full Weights map; it is
// read only, so every Settings can share it.
var defaultWeights = DefaultWeights()

func (s *Settings) weight(name string) int {
	if w, ok := s.Weights[name]; ok {
		return w
	}
	return defaultWeights[name]
}

func (s *Settings) isLocal(domain string) bool {
	for _, d := range s.LocalDomains {
		if strings.EqualFold(d, domain) {
			return true
		}
	}
	return false
}

// LocalMailers are the {rcpt_mailer} values of local delivery: Postfix's
// local(8), virtual(8) and LMTP to the mailbox server, Sendmail's local.
var LocalMailers = []string{"local", "virtual", "lmtp"}

// deliveredHere reports whether the MTA delivers r to our own mailboxes
// although its domain is not one of local_domains: the domain is an address
// literal of the address the client connected to (alice@[192.0.2.1]), or
// the MTA named a local delivery agent for it.
func deliveredHere(t *Transaction, r *Recipient) bool {
	for _, m := range LocalMailers {
		if strings.EqualFold(r.Mailer, m) {
			return true
		}
	}
	ip, ok := addressLiteral(Domain(r.Addr))
	return ok && t.LocalIP.IsValid() && ip == t.LocalIP.Unmap()
}

// addressLiteral parses an RFC 5321 address literal domain: [192.0.2.1]
// or [IPv6:2001:db8::1].
func addressLiteral(dom string) (netip.Addr, bool) {
	if len(dom) < 3 || dom[0] != '[' || dom[len(dom)-1] != ']' {
		return netip.Addr{}, false
	}
	lit := dom[1 : len(dom)-1]
	if len(lit) > 5 && strings.EqualFold(lit[:5], "ipv6:") {
		lit = lit[5:]
	}
	ip, err := netip.ParseAddr(lit)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

func inNets(ip netip.Addr, nets []netip.Prefix) (netip.Prefix, bool) {
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	for _, n := range nets {
		if n.Contains(ip) {
			return n, true
		}
	}
	return netip.Prefix{}, false
}

// matchAddr reports whether addr matches an allowlist entry.
func matchAddr(addr string, entries []string) (string, bool) {
	dom := Domain(addr)
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e, "@"):
			if strings.EqualFold(e[1:], dom) {
				return e, true
			}
		case !strings.Contains(e, "@"):
			if strings.EqualFold(e, dom) {
				return e, true
			}
		case strings.EqualFold(e, addr):
			return e, true
		}
	}
	return "", false
}
