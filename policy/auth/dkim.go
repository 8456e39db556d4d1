package auth

import (
	"bytes"
	"context"
	"errors"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// DKIM verifies the DKIM signatures of raw, the whole message as received,
// and reports each with its alignment to the MAIL FROM domain. At most
// MaxSignatures signatures are verified; later ones are ignored. A message
// without signatures, or one too malformed to read a header from, gives nil.
func (c *Checker) DKIM(ctx context.Context, raw []byte, mailFrom string) []DKIMSig {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	_, fromDomain := splitSender(mailFrom)

	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{
		LookupTXT:        c.keyLookup(ctx),
		MaxVerifications: c.maxSignatures(),
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// The header could not be read, or verification broke in a way the
		// library does not attribute to one signature; it then clears that
		// signature's error, so no verification in verifs can be trusted.
		return nil
	}
	out := make([]DKIMSig, 0, len(verifs))
	for _, v := range verifs {
		if v == nil {
			continue
		}
		d := strings.ToLower(strings.TrimSuffix(v.Domain, "."))
		s := DKIMSig{
			Domain:  d,
			Aligned: aligned(d, fromDomain),
			Valid:   v.Err == nil,
		}
		if v.Err != nil {
			s.TempError = dkim.IsTempFail(v.Err)
			s.Err = v.Err.Error()
		}
		out = append(out, s)
	}
	return out
}

// MayAlign reports, from the DKIM-Signature header values alone, whether
// any signature's d= domain aligns with the MAIL FROM domain. It is the
// cheap test that decides whether a message body is worth keeping for
// verification: false means DKIM cannot authenticate this sender.
func MayAlign(signatureValues []string, mailFrom string) bool {
	_, from := splitSender(mailFrom)
	for _, sig := range signatureValues {
		for _, tag := range strings.Split(sig, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(tag), "=")
			if !ok || strings.TrimSpace(k) != "d" {
				continue
			}
			// Folded header values may put white space inside the tag value.
			d := strings.ToLower(strings.TrimSuffix(strings.Join(strings.Fields(v), ""), "."))
			if aligned(d, from) {
				return true
			}
		}
	}
	return false
}

// keyLookup is the DKIM key lookup of both verifiers (DKIM, VerifyOwn):
// through the resolver seam (a caching one in the milter: keys are kept for
// their TTL), refusing names DNS cannot carry.
func (c *Checker) keyLookup(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		if !validName(name) {
			return nil, invalidName(name)
		}
		txt, _, err := c.Resolver.LookupTXT(ctx, name)
		// The library calls a key lookup error temporary when it is a
		// net.Error whose Temporary() is true, permanent otherwise.
		return txt, dnsError(err, name)
	}
}

func (c *Checker) maxSignatures() int {
	if c.MaxSignatures > 0 {
		return c.MaxSignatures
	}
	return DefaultMaxSignatures
}
