package selfwatch

import (
	"bufio"
	"errors"
	"io"
	"time"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/report"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

// NDRAuth is the label an NDR our MTA generated is counted under, in the
// metric and in `selfcheck` alike: the return-path state of the original
// (authenticated, unauthenticated, forged), unknown when it was not known.
func NDRAuth(a policy.AuthResult) policy.AuthResult {
	switch a {
	case policy.Authenticated, policy.Unauthenticated, policy.Forged:
		return a
	}
	return policy.AuthUnknown
}

// IsGeneratedNDR reports whether a verdict of the internal-bounce role is
// about an NDR our MTA generated (null sender), not other local mail that
// non_smtpd_milters also sees.
func IsGeneratedNDR(stage policy.Stage, sender string) bool {
	return stage == policy.StageInternal && sender == ""
}

// NDRCount is what a verdict log says about the NDRs our MTA generated.
type NDRCount struct {
	ByAuth map[policy.AuthResult]int // NDRAuth label → count
	Lines  int                       // verdict lines read
	Bad    int                       // malformed lines skipped
}

// Unauthenticated is the number of NDRs that went (or would have gone) to a
// sender whose return path was not authenticated: the backscatter a
// Backscatterer-style list counts.
func (c NDRCount) Unauthenticated() int {
	return c.ByAuth[policy.Unauthenticated] + c.ByAuth[policy.Forged]
}

// CountNDRs reads a verdict log and counts the internal-bounce role's
// verdicts on our own NDRs at or after since.
func CountNDRs(r io.Reader, since time.Time) (NDRCount, error) {
	c := NDRCount{ByAuth: map[policy.AuthResult]int{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		l, err := report.ParseLine(sc.Bytes())
		if errors.Is(err, report.ErrNotVerdict) {
			continue
		}
		if err != nil {
			c.Bad++
			continue
		}
		c.Lines++
		if !IsGeneratedNDR(l.Stage, l.Sender) || !l.Time.IsZero() && l.Time.Before(since) {
			continue
		}
		c.ByAuth[NDRAuth(policy.AuthResult(l.Auth))]++
	}
	return c, sc.Err()
}
