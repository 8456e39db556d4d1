package policy_test

import (
	"net/netip"
	"testing"

	"github.com/backscatter-milter/backscatter-milter/policy"
)

func TestConfigSettings(t *testing.T) {
	good := policy.Config{Mode: "observe", LocalDomains: []string{"Example.ORG."}, TrustedNetworks: []string{"10.0.0.0/8", "192.0.2.1"},
		Relays: []string{"mx1.example.org", ".out.example.org", "203.0.113.0/24"}, Thresholds: policy.Thresholds{Tag: 2, Quarantine: 5, Reject: 9},
		Weights: map[string]int{"bounce:not-ours": 7}, GraceWeight: 2, BodyBytes: 1 << 20, InternalBounceAction: "discard",
		NDR: policy.NDRConfig{Enabled: true, Require: policy.RequireSPFFail}, Allowlist: policy.AllowlistConfig{Senders: []string{"@Partner.example"}}}
	s, ps := good.Settings()
	if len(ps) != 0 {
		t.Fatalf("problems %v", ps)
	}
	if s.Mode != policy.Observe || s.LocalDomains[0] != "example.org" || len(s.TrustedNetworks) != 2 ||
		s.TrustedNetworks[1] != netip.MustParsePrefix("192.0.2.1/32") || len(s.RelayHosts) != 2 || len(s.RelayNets) != 1 ||
		s.Weights["bounce:not-ours"] != 7 || !s.NDR.SPFFailOnly || s.InternalBounceAction != policy.Discard ||
		s.Allow.Senders[0] != "@partner.example" || s.HeaderName != policy.DefaultSettings().HeaderName {
		t.Errorf("settings %+v", s)
	}
	bad := policy.Config{Mode: "enforcing", LocalDomains: []string{"not a domain"}, TrustedNetworks: []string{"10.0.0.0/33"},
		Relays: []string{"bad relay!"}, Thresholds: policy.Thresholds{Tag: 3, Quarantine: 2, Reject: -1},
		Weights: map[string]int{"bounce:unheard-of": 1}, BodyBytes: 10, InternalBounceAction: "reject",
		NDR: policy.NDRConfig{Require: "spf-fail-only"}, Allowlist: policy.AllowlistConfig{ClientNetworks: []string{"x"}, Recipients: []string{"@"}}}
	_, ps = bad.Settings()
	got := map[string]bool{}
	for _, p := range ps {
		got[p.Key] = true
	}
	for _, k := range []string{"mode", "local_domains[0]", "trusted_networks[0]", "relays[0]", "thresholds.quarantine", "thresholds.reject",
		"weights.bounce:unheard-of", "limits.body_bytes", "internal_bounce.action", "ndr_suppression.require",
		"allowlist.client_networks[0]", "allowlist.recipients[0]"} {
		if !got[k] {
			t.Errorf("no problem for %s: %v", k, ps)
		}
	}
}
