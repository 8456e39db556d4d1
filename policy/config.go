package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/backscatter-milter/backscatter-milter/internal/problem"
)

// Config is the policy's part of the configuration, as the operator writes
// it: keys at the top level (mode, local_domains, trusted_networks, relays)
// and in the sections allowlist, thresholds, weights, ndr_suppression, plus
// batv.grace_weight, limits.body_bytes and internal_bounce.action. Settings
// checks it; problems carry those keys.
type Config struct {
	Mode            string
	LocalDomains    []string
	TrustedNetworks []string
	Relays          []string // host names, .domains, addresses or CIDR networks
	Allowlist       AllowlistConfig
	Thresholds      Thresholds
	Weights         map[string]int // evidence name → weight, over DefaultWeights
	GraceWeight     int
	NDR             NDRConfig
	BodyBytes       int
	// InternalBounceAction is discard or quarantine.
	InternalBounceAction string
	// NoBounces are addresses and domains that never send mail: bounce-class
	// mail to them is refused at RCPT.
	NoBounces []string
	// SignExempt are recipients whose mail goes out unsigned (batv.sign_exempt).
	SignExempt []string
}

// AllowlistConfig is the allowlist section.
type AllowlistConfig struct {
	ClientNetworks []string
	Senders        []string // user@domain, @domain or domain
	Recipients     []string
}

// NDRConfig is the ndr_suppression section.
type NDRConfig struct {
	Enabled bool
	// Require is RequireSPFOrDKIM or RequireSPFFail.
	Require                  string
	UnknownIsUnauthenticated bool
	StripSuccessDSN          bool
}

// The values of ndr_suppression.require, spelt as the documentation does.
const (
	RequireSPFOrDKIM = "spf-or-dkim" // suppress unless SPF passes or an aligned DKIM signature verifies
	RequireSPFFail   = "spf-fail"    // suppress only when SPF fails
)

// Body sizes limits.body_bytes may take.
const (
	MinBodyBytes = 4096
	MaxBodyBytes = 64 << 20
)

// Settings checks c and returns the settings it gives, starting from
// DefaultSettings.
func (c Config) Settings() (Settings, problem.List) {
	var ps problem.List
	s := DefaultSettings()
	if m, err := ParseMode(c.Mode); err != nil {
		ps.Add("mode", "%v", err)
	} else {
		s.Mode = m
	}
	switch a, err := ParseAction(c.InternalBounceAction); {
	case err != nil:
		ps.Add("internal_bounce.action", "%v", err)
	case a != Discard && a != Quarantine:
		ps.Add("internal_bounce.action", "%q is not allowed for Postfix's own bounces: a reject or tempfail makes Postfix retry or lose the bounce log; use discard or quarantine", c.InternalBounceAction)
	default:
		s.InternalBounceAction = a
	}
	for i, d := range c.LocalDomains {
		if !validDomain(d) {
			ps.Add(fmt.Sprintf("local_domains[%d]", i), "%q is not a domain name", d)
		}
		s.LocalDomains = append(s.LocalDomains, strings.ToLower(strings.TrimSuffix(d, ".")))
	}
	s.TrustedNetworks = nil
	for i, n := range c.TrustedNetworks {
		if p, err := ParseNetwork(n); err != nil {
			ps.Add(fmt.Sprintf("trusted_networks[%d]", i), "%v", err)
		} else {
			s.TrustedNetworks = append(s.TrustedNetworks, p)
		}
	}
	for i, r := range c.Relays {
		if p, err := ParseNetwork(r); err == nil {
			s.RelayNets = append(s.RelayNets, p)
		} else if validDomain(strings.TrimPrefix(r, ".")) {
			s.RelayHosts = append(s.RelayHosts, strings.ToLower(strings.TrimSuffix(r, ".")))
		} else {
			ps.Add(fmt.Sprintf("relays[%d]", i), "%q is neither a host name, a .domain nor an address or CIDR", r)
		}
	}
	s.Allow, ps = c.Allowlist.compile(ps)
	s.NoBounces, ps = addresses("no_bounces", c.NoBounces, ps)
	s.SignExempt, ps = addresses("batv.sign_exempt", c.SignExempt, ps)
	ps = c.thresholds(&s, ps)
	s.GraceWeight = c.GraceWeight
	s.NDR = NDR{Enabled: c.NDR.Enabled, UnknownIsUnauthenticated: c.NDR.UnknownIsUnauthenticated, StripSuccessDSN: c.NDR.StripSuccessDSN}
	switch c.NDR.Require {
	case RequireSPFOrDKIM:
	case RequireSPFFail:
		s.NDR.SPFFailOnly = true
	default:
		ps.Add("ndr_suppression.require", "%q: want %s (suppress unless SPF passes or an aligned DKIM signature verifies) or %s (suppress only on SPF fail)", c.NDR.Require, RequireSPFOrDKIM, RequireSPFFail)
	}
	if c.BodyBytes < MinBodyBytes || c.BodyBytes > MaxBodyBytes {
		ps.Add("limits.body_bytes", "%d: want %d to %d", c.BodyBytes, MinBodyBytes, MaxBodyBytes)
	}
	s.BodyMax = c.BodyBytes
	return s, ps
}

func (a AllowlistConfig) compile(ps problem.List) (Allowlist, problem.List) {
	var out Allowlist
	for i, n := range a.ClientNetworks {
		if p, err := ParseNetwork(n); err != nil {
			ps.Add(fmt.Sprintf("allowlist.client_networks[%d]", i), "%v", err)
		} else {
			out.ClientNets = append(out.ClientNets, p)
		}
	}
	out.Senders, ps = addresses("allowlist.senders", a.Senders, ps)
	out.Recipients, ps = addresses("allowlist.recipients", a.Recipients, ps)
	return out, ps
}

// addresses checks a list of user@domain, @domain or domain entries and
// lowercases them.
func addresses(key string, in []string, ps problem.List) ([]string, problem.List) {
	var out []string
	for i, e := range in {
		if !validAddrOrDomain(e) {
			ps.Add(fmt.Sprintf("%s[%d]", key, i), "%q: want user@domain, @domain or domain", e)
		}
		out = append(out, strings.ToLower(e))
	}
	return out, ps
}

func (c Config) thresholds(s *Settings, ps problem.List) problem.List {
	th := c.Thresholds
	for _, t := range []struct {
		key string
		v   int
	}{{"thresholds.tag", th.Tag}, {"thresholds.quarantine", th.Quarantine}, {"thresholds.reject", th.Reject}} {
		if t.v < 0 {
			ps.Add(t.key, "must be 0 (off) or positive")
		}
	}
	if th.Quarantine > 0 && th.Tag > 0 && th.Quarantine < th.Tag {
		ps.Add("thresholds.quarantine", "%d is below thresholds.tag %d", th.Quarantine, th.Tag)
	}
	if th.Reject > 0 && th.Quarantine > 0 && th.Reject < th.Quarantine {
		ps.Add("thresholds.reject", "%d is below thresholds.quarantine %d", th.Reject, th.Quarantine)
	}
	s.Thresholds = th
	known := DefaultWeights()
	for name, w := range c.Weights {
		if _, ok := known[name]; !ok {
			ps.Add("weights."+name, "unknown evidence (known: %s; DNSBL weights are set on each zone)", strings.Join(slices.Sorted(maps.Keys(known)), ", "))
			continue
		}
		s.Weights[name] = w
	}
	return ps
}

// ParseNetwork reads an address or a CIDR network, as the configuration
// writes trusted networks, relays and allowlisted clients; an address is
// its own /32 or /128.
func ParseNetwork(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR network", s)
}

func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 || !strings.Contains(d, ".") && d != "localhost" {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func validAddrOrDomain(a string) bool {
	if d, ok := strings.CutPrefix(a, "@"); ok {
		return validDomain(d)
	}
	if i := strings.LastIndexByte(a, '@'); i > 0 {
		return validDomain(a[i+1:])
	}
	return validDomain(a)
}
