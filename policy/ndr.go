package policy

import (
	"context"
	"strings"
)

// suppressNDR makes sure our MTA never sends a non-delivery report to a
// sender that may be forged: every recipient of an inbound message whose
// return path is not authenticated is replaced by itself with NOTIFY=NEVER
// (Postfix >= 3.0 then never bounces it; nothing leaves the queue). Success
// and delay notifications and RET=FULL are stripped the same way, so a
// forged sender cannot make us mail copies of the message to a victim.
func (e *Engine) suppressNDR(ctx context.Context, t *Transaction, v *Verdict) {
	if t.NullSender() || t.Direction == Outbound || e.Auth == nil || t.spf == nil {
		return // we never bounce a bounce; outbound senders are ours
	}
	if !e.Settings.NDR.Enabled && !e.Settings.NDR.StripSuccessDSN {
		return
	}
	var spf spfAnswer
	select {
	case spf = <-t.spf:
	case <-ctx.Done():
		spf = spfAnswer{result: "temperror", err: ctx.Err()}
	}
	var raw []byte
	if len(t.Body) > 0 && !t.BodyCut {
		raw = t.Raw()
	}
	v.Auth, v.AuthWhy = e.Auth.Result(ctx, spf.result, raw, t.Sender)
	e.AuthMemory.Remember(t.QueueID, v.Auth, e.now())
	authenticated := v.Auth == Authenticated ||
		v.Auth == AuthUnknown && !e.Settings.NDR.UnknownIsUnauthenticated
	suppress := e.Settings.NDR.Enabled && !authenticated
	if e.Settings.NDR.SPFFailOnly {
		suppress = e.Settings.NDR.Enabled && v.Auth == Forged
	}
	switch {
	case suppress:
		for _, r := range t.Recipients {
			args := SetNotify(r.Args, "NEVER")
			v.Mods.RcptRewrites = append(v.Mods.RcptRewrites, RcptRewrite{Addr: r.Addr, OldArgs: r.Args, NewArgs: args})
		}
		v.NDR = NDRSuppressed
	case e.Settings.NDR.StripSuccessDSN && !authenticated:
		for _, r := range t.Recipients {
			if args, changed := stripSuccessNotify(r.Args); changed {
				v.Mods.RcptRewrites = append(v.Mods.RcptRewrites, RcptRewrite{Addr: r.Addr, OldArgs: r.Args, NewArgs: args})
			}
		}
		if len(v.Mods.RcptRewrites) > 0 {
			v.NDR = NDRSuccessDSNStripped
		}
	default:
		return
	}
	if !e.enforceNDR(v) {
		return
	}
	if e.Settings.NDR.StripSuccessDSN {
		if args, changed := retHeadersOnly(t.SenderArgs); changed {
			v.Mods.ChangeFrom, v.Mods.ChangeFromArgs, v.Mods.ChangeFromSet = t.Sender, args, true
			if v.NDR == NDRUntouched {
				v.NDR = NDRSuccessDSNStripped
			}
		}
	}
}

// retHeadersOnly returns the parameters of a sender change that turns the
// client's RET=FULL into RET=HDRS, and whether there was a RET=FULL.
// Removing RET is not enough: Postfix (seen with 3.7) keeps the client's
// RET=FULL when a milter's sender change carries no RET, and replaces it
// when the change carries one.
func retHeadersOnly(senderArgs string) (string, bool) {
	ps := splitParams(SenderChangeArgs(senderArgs))
	changed := false
	for i, p := range ps {
		if paramName(p) == "RET" {
			_, val, _ := strings.Cut(p, "=")
			changed = changed || strings.EqualFold(val, "FULL")
			ps[i] = "RET=HDRS"
		}
	}
	return strings.Join(ps, " "), changed
}

// senderChangeParams are the ESMTP parameters a milter's sender change
// (SMFIR_CHGFROM) may carry: the DSN envelope parameters of RFC 3461.
// Postfix's cleanup honours RET and ENVID there and warns "Ignoring bad
// ESMTP parameter" about anything else; SIZE, BODY, SMTPUTF8 and AUTH
// describe the client's SMTP transaction, which a milter cannot change.
var senderChangeParams = map[string]bool{"RET": true, "ENVID": true}

// SenderChangeArgs keeps, of the client's MAIL FROM parameters, those a
// sender change may carry, in their order.
func SenderChangeArgs(args string) string {
	var keep []string
	for _, p := range splitParams(args) {
		if senderChangeParams[paramName(p)] {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, " ")
}

// splitParams splits ESMTP parameters ("NOTIFY=x ORCPT=y") into words.
func splitParams(args string) []string { return strings.Fields(args) }

func paramName(p string) string {
	name, _, _ := strings.Cut(p, "=")
	return strings.ToUpper(name)
}

// SetNotify returns args with NOTIFY set to value, keeping every other
// parameter (ORCPT first among them) in its place.
func SetNotify(args, value string) string {
	ps := splitParams(args)
	found := false
	for i, p := range ps {
		if paramName(p) == "NOTIFY" {
			ps[i] = "NOTIFY=" + value
			found = true
		}
	}
	if !found {
		ps = append(ps, "NOTIFY="+value)
	}
	return strings.Join(ps, " ")
}

// stripSuccessNotify removes SUCCESS and DELAY from a NOTIFY list; a list
// left empty becomes NEVER.
func stripSuccessNotify(args string) (string, bool) {
	ps := splitParams(args)
	changed := false
	for i, p := range ps {
		if paramName(p) != "NOTIFY" {
			continue
		}
		_, val, _ := strings.Cut(p, "=")
		var keep []string
		for _, k := range strings.Split(val, ",") {
			switch strings.ToUpper(k) {
			case "SUCCESS", "DELAY":
				changed = true
			default:
				keep = append(keep, k)
			}
		}
		if len(keep) == 0 {
			keep = []string{"NEVER"}
		}
		ps[i] = "NOTIFY=" + strings.Join(keep, ",")
	}
	return strings.Join(ps, " "), changed
}
