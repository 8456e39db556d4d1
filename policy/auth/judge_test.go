package auth

import (
	"context"
	"testing"
)

func TestJudge(t *testing.T) {
	c, _ := newChecker(t, dkimZone(t))
	ed, _ := testKeys(t)
	signed := sign(t, plainMessage, "example.test", "ed", ed)
	ctx := context.Background()
	for _, tc := range []struct {
		name, spf, mailFrom string
		raw                 []byte
		want                Result
		why                 string
	}{
		{"SPF pass: DKIM not even checked", SPFPass, "alice@example.test", signed, Authenticated, "spf=pass"},
		{"SPF fail without content", SPFFail, "alice@example.test", nil, Forged, "spf=fail"},
		{"aligned DKIM authenticates without SPF", SPFNone, "alice@example.test", signed, Authenticated,
			"spf=none dkim=pass(d=example.test aligned=true)"},
		{"unaligned DKIM does not", SPFNone, "alice@other.test", signed, Unauthenticated,
			"spf=none dkim=pass(d=example.test aligned=false)"},
	} {
		res, why, sigs := c.Judge(ctx, tc.spf, tc.raw, tc.mailFrom)
		if res != tc.want || why != tc.why || (tc.spf == SPFPass || tc.raw == nil) != (len(sigs) == 0) {
			t.Errorf("%s: %v %q, want %v %q", tc.name, res, why, tc.want, tc.why)
		}
	}
}
