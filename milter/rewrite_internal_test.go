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
		s := &session{srv: &Server{}} // ndr_suppression.sendmail: off
		s.sendmailRewrites(v)
		if !reflect.DeepEqual(v.Mods.RcptRewrites, c.want) || v.NDR != c.wantNDR {
			t.Errorf("%s: rewrites %+v NDR %q, want %+v %q", c.name, v.Mods.RcptRewrites, v.NDR, c.want, c.wantNDR)
		}
	}
}

// With the case variant on and DSN proven, an address change keeps its
// NOTIFY=NEVER (a new recipient to Sendmail); while DSN is not proven it
// falls back to the client's parameters, and the verdict says why.
func TestSendmailRewritesCaseVariantOn(t *testing.T) {
	tagged := policy.RcptRewrite{Addr: "a+prvs=0123abcdef@x.test", NewAddr: "a@x.test", OldArgs: "NOTIFY=FAILURE", NewArgs: "NOTIFY=NEVER"}
	check := &DSNCheck{}
	s := &session{srv: &Server{opts: Options{SendmailDSN: func() *DSNCheck { return check }}}}

	check.offered.Store(true)
	v := &policy.Verdict{NDR: policy.NDRSuppressed, Mods: policy.Modifications{RcptRewrites: []policy.RcptRewrite{tagged}}}
	s.sendmailRewrites(v)
	if !reflect.DeepEqual(v.Mods.RcptRewrites, []policy.RcptRewrite{tagged}) || v.NDR != policy.NDRSuppressed {
		t.Errorf("proven: rewrites %+v NDR %q", v.Mods.RcptRewrites, v.NDR)
	}

	check.offered.Store(false)
	v = &policy.Verdict{NDR: policy.NDRSuppressed, Mods: policy.Modifications{RcptRewrites: []policy.RcptRewrite{tagged}}}
	s.sendmailRewrites(v)
	want := tagged
	want.NewArgs = want.OldArgs
	if !reflect.DeepEqual(v.Mods.RcptRewrites, []policy.RcptRewrite{want}) || v.NDR != policy.NDRSendmailDSNUnproven {
		t.Errorf("unproven: rewrites %+v NDR %q", v.Mods.RcptRewrites, v.NDR)
	}
}
