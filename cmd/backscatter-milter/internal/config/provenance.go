package config

import (
	"github.com/backscatter-milter/backscatter-milter/policy"
	"github.com/backscatter-milter/backscatter-milter/policy/stamp"
)

// compileProvenance composes the provenance section's checks: the stamp's
// (policy/stamp) and the DKIM domains' (policy). The stamp's keys are
// batv.keys, read by the batv section's check (see Compile).
func (c *Config) compileProvenance(out *Compiled, bad func(key, format string, a ...any)) {
	p := c.Provenance
	for _, e := range (stamp.Config{Enabled: p.Stamp.Enabled, Header: p.Stamp.Header, Lifetime: p.Stamp.Lifetime.D()}).Check().Under("provenance.stamp") {
		bad(e.Key, "%s", e.Msg)
	}
	doms, ps := policy.DKIMDomains(p.DKIMDomains, out.Settings.LocalDomains)
	for _, e := range ps.Under("provenance") {
		bad(e.Key, "%s", e.Msg)
	}
	out.DKIMDomains = doms
}
