package milter

import (
	"reflect"
	"testing"

	"github.com/backscatter-milter/backscatter-milter/policy"
)

// Sendmail keeps a re-added recipient's old DSN parameters but takes a
// re-add under another address: parameter-only rewrites go (and the verdict
// says so), address changes stay with the client's own parameters.
func TestSendmailRewrites(t *testing.T) {
	for _, c := range []struct {
		name    string
		in      []policy.RcptRewrite
		want    []policy.RcptRewrite
		wantNDR policy.NDROutcome
	}{
		{"parameter only",
			[]policy.RcptRewrite{{Addr: "a@x.test", OldArgs: "NOTIFY=FAILURE", NewArgs: "NOTIFY=NEVER"}},
			[]policy.RcptRewrite{}, policy.NDRNotPossibleWithSendmail},
		{"tag removed",
			[]policy.RcptRewrite{{Addr: "a+prvs=0123abcdef@x.test", NewAddr: "a@x.test"}},
			[]policy.RcptRewrite{{Addr: "a+prvs=0123abcdef@x.test", NewAddr: "a@x.test"}}, policy.NDRSuppressed},
		{"tag removed and NOTIFY=NEVER: the address change stays, with the client's parameters",
			[]policy.RcptRewrite{{Addr: "a+prvs=0123abcdef@x.test", NewAddr: "a@x.test", OldArgs: "NOTIFY=FAILURE", NewArgs: "NOTIFY=NEVER"}},
			[]policy.RcptRewrite{{Addr: "a+prvs=0123abcdef@x.test", NewAddr: "a@x.test", OldArgs: "NOTIFY=FAILURE", NewArgs: "NOTIFY=FAILURE"}},
			policy.NDRNotPossibleWithSendmail},
	} {
		v := &policy.Verdict{NDR: policy.NDRSuppressed, Mods: policy.Modifications{RcptRewrites: c.in}}
		sendmailRewrites(v)
		if !reflect.DeepEqual(v.Mods.RcptRewrites, c.want) || v.NDR != c.wantNDR {
			t.Errorf("%s: rewrites %+v NDR %q, want %+v %q", c.name, v.Mods.RcptRewrites, v.NDR, c.want, c.wantNDR)
		}
	}
}
