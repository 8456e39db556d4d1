package main

import (
	"context"
	"fmt"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/policy"
	"github.com/backscatter-milter/backscatter-milter/policy/auth"
	"github.com/backscatter-milter/backscatter-milter/policy/batv"
	"github.com/backscatter-milter/backscatter-milter/policy/stamp"
)

// buildProvenance wires the provenance ladder: the stamp (keys from
// batv.keys), our own DKIM and the origin's SPF (both through checker, nil
// offline). It returns nil when nothing is on.
func buildProvenance(cfg *config.Config, comp *config.Compiled, checker *auth.Checker, offline bool) (*policy.Provenance, error) {
	p := &policy.Provenance{Offline: offline && (cfg.Provenance.DKIM || cfg.Provenance.OriginSPF)}
	if cfg.Provenance.Stamp.Enabled {
		keys := &batv.Signer{Keys: comp.BATVKeys, Current: cfg.BATV.CurrentKey, Lifetime: cfg.Provenance.Stamp.Lifetime.D()}
		if err := keys.Validate(); err != nil {
			return nil, err
		}
		p.Stamp = stamper{s: &stamp.Stamper{Keys: keys}, header: cfg.Provenance.Stamp.Header}
	}
	if checker != nil && cfg.Provenance.DKIM && len(comp.DKIMDomains) > 0 {
		p.DKIM = ownDKIM{c: checker, domains: comp.DKIMDomains}
	}
	if checker != nil && cfg.Provenance.OriginSPF {
		p.OriginSPF = checker
	}
	if p.Stamp == nil && p.DKIM == nil && p.OriginSPF == nil && !p.Offline {
		return nil, nil
	}
	return p, nil
}

// stamper presents a stamp.Stamper to the policy.
type stamper struct {
	s      *stamp.Stamper
	header string
}

func (s stamper) Stamp(messageID, date, from string) (policy.Header, error) {
	v, err := s.s.Sign(stamp.Fields{MessageID: messageID, Date: date, From: from})
	return policy.Header{Name: s.header, Value: v}, err
}

func (s stamper) CheckStamp(header []byte) (policy.StampStatus, string, bool) {
	r, found := s.s.Check(header, s.header)
	if !found {
		return "", "", false
	}
	switch r.Status {
	case stamp.StatusOK:
		return policy.StampOK, fmt.Sprintf("key %d, %d days left", r.KeyID, r.DaysLeft), true
	case stamp.StatusExpired:
		return policy.StampExpired, fmt.Sprintf("key %d, expired", r.KeyID), true
	case stamp.StatusUnverifiable:
		return policy.StampUnverifiable, r.Reason, true
	}
	return policy.StampBad, r.Reason, true
}

// ownDKIM presents auth's own-signature check to the policy.
type ownDKIM struct {
	c       *auth.Checker
	domains []string
}

func (o ownDKIM) VerifyOwn(ctx context.Context, header, body []byte) policy.DKIMProof {
	r := o.c.VerifyOwn(ctx, header, body, o.domains)
	return policy.DKIMProof{Result: r.Result, Domain: r.Domain, Detail: r.Detail}
}
