package auth

import (
	"context"
	"fmt"
)

// Judge finishes the return-path check of a message once its content is
// known, from the SPF result taken at MAIL FROM: the DKIM signatures of raw
// are verified only when SPF did not pass (a pass already authenticates)
// and raw is given. It returns the Result, the short reason the verdict
// line carries, such as "spf=none dkim=pass(d=example.org aligned=true)",
// and the signatures verified (for counting).
func (c *Checker) Judge(ctx context.Context, spfResult string, raw []byte, mailFrom string) (Result, string, []DKIMSig) {
	var sigs []DKIMSig
	if raw != nil && spfResult != SPFPass {
		sigs = c.DKIM(ctx, raw, mailFrom)
	}
	why := "spf=" + spfResult
	for _, s := range sigs {
		state := "fail"
		if s.Valid {
			state = "pass"
		}
		why += fmt.Sprintf(" dkim=%s(d=%s aligned=%v)", state, s.Domain, s.Aligned)
	}
	return Combine(spfResult, sigs), why, sigs
}
