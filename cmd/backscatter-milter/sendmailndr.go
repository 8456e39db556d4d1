package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/milter"
)

// newDSNCheck returns the Sendmail DSN self-check that
// ndr_suppression.sendmail: case-variant needs, or nil when it is off.
func newDSNCheck(cfg *config.Config, log *zap.Logger) *milter.DSNCheck {
	if cfg.NDR.Sendmail != config.SendmailCaseVariant {
		return nil
	}
	return &milter.DSNCheck{Addr: cfg.NDR.SendmailSMTP, Interval: cfg.NDR.SendmailCheckInterval.D(),
		Timeout: cfg.Limits.Timeout.D(), Log: log.Named("sendmail-dsn")}
}

// explainSendmailNDR is what `config check` says about NDR suppression
// under Sendmail; with the case variant on it also runs the self-check once.
func explainSendmailNDR(w io.Writer, cfg *config.Config) {
	if !cfg.NDR.Enabled && !cfg.NDR.StripSuccessDSN {
		return
	}
	if cfg.NDR.Sendmail != config.SendmailCaseVariant {
		fmt.Fprintln(w, "  Sendmail: recipients are not rewritten (ndr_suppression.sendmail: off): Sendmail keeps a re-added recipient's DSN flags,\n"+
			"    so NDRs to forged senders still go out. Postfix is not affected. See docs/sendmail.md for case-variant.")
		return
	}
	fmt.Fprintf(w, "  Sendmail: recipients are re-added with the domain in the other letter case and NOTIFY=NEVER (case-variant):\n"+
		"    the next hop sees bob@EXAMPLE.ORG for bob@example.org. Only for recipients Sendmail routes unchanged ({rcpt_addr}\n"+
		"    equal to the RCPT address) through a mailer other than local, with a domain that has letters, and only while\n"+
		"    %s lists DSN in its EHLO reply (checked at start and every %s). Do not switch DSN off for some clients\n"+
		"    only (Srv_Features, access map): the check cannot see that, and a re-added recipient would be lost.\n",
		cfg.NDR.SendmailSMTP, cfg.NDR.SendmailCheckInterval)
	c := newDSNCheck(cfg, zap.NewNop())
	c.Timeout = 3 * time.Second
	ok, err := c.Probe(context.Background())
	switch {
	case err != nil:
		fmt.Fprintf(w, "    self-check now: cannot read %s's EHLO (%v): the rewrite stays off until it can\n", cfg.NDR.SendmailSMTP, err)
	case ok:
		fmt.Fprintf(w, "    self-check now: %s offers DSN: the rewrite is on\n", cfg.NDR.SendmailSMTP)
	default:
		fmt.Fprintf(w, "    self-check now: %s does not offer DSN (PrivacyOptions noreceipts?): the rewrite stays off\n", cfg.NDR.SendmailSMTP)
	}
}
