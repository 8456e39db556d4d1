package milter

// NDR suppression under Sendmail (docs/sendmail.md). Sendmail merges a
// recipient a milter re-adds into the deleted entry with the same mailer,
// user and host and ORs the DSN flags, so NOTIFY=NEVER cannot clear the
// default notify-on-failure. A re-add with the domain in the other letter
// case is a new entry and keeps NOTIFY=NEVER — but only where Sendmail
// offers DSN: otherwise it refuses the parameter with a 504 the milter
// never sees, and the recipient, deleted first, is lost. So the variant is
// used only while DSNCheck has just seen DSN in Sendmail's EHLO.

import (
	"context"
	"net"
	"net/smtp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/d--j/go-milter"
	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/policy"
)

// sendmailRcpt is what Sendmail said about one recipient at RCPT.
type sendmailRcpt struct {
	addr   string // {rcpt_addr}: the address after Sendmail's rewriting
	mailer string // {rcpt_mailer}
}

// sendmailState is the per-message state of the case variant.
type sendmailState struct {
	rcpts map[string]sendmailRcpt // by the RCPT address (without brackets)
	addAs map[string]string       // recipient → the spelling to add back
}

// noteSendmailRcpt keeps {rcpt_addr} and {rcpt_mailer} of a recipient for
// the end of message, where the case variant needs them.
func (s *session) noteSendmailRcpt(addr string, m gomilter.Modifier) {
	if s.srv.opts.SendmailDSN == nil || !s.isSendmail() {
		return
	}
	if s.sm.rcpts == nil {
		s.sm.rcpts = map[string]sendmailRcpt{}
	}
	s.sm.rcpts[addr] = sendmailRcpt{addr: m.Get(gomilter.MacroRcptAddr), mailer: m.Get(gomilter.MacroRcptMailer)}
}

// reAddAs is the address to add rw's recipient back as: its case variant
// under Sendmail, else the rewrite's own (rw.To).
func (s *session) reAddAs(rw policy.RcptRewrite) string {
	if v, ok := s.sm.addAs[rw.Addr]; ok {
		return v
	}
	return rw.To()
}

// sendmailRewrites keeps of the recipient rewrites what Sendmail applies,
// and says in the verdict what it dropped. Sendmail merges a recipient added
// back in the same spelling into the deleted one and keeps its DSN flags, so
// a rewrite of the parameters alone changes nothing — unless the recipient
// is added back as its case variant, which needs the DSN self-check's proof
// (without DSN, Sendmail refuses the added NOTIFY and the recipient is
// lost). A rewrite to another address (a verified tag removed) is a new
// recipient and works; without that proof it keeps the parameters the
// client gave, which Sendmail already accepted from it.
func (s *session) sendmailRewrites(v *policy.Verdict) {
	var check *DSNCheck
	if s.srv.opts.SendmailDSN != nil {
		check = s.srv.opts.SendmailDSN()
	}
	proven := check.Offered()
	kept := v.Mods.RcptRewrites[:0]
	dropped, applied := false, false
	for _, rw := range v.Mods.RcptRewrites {
		params := rw.NewArgs != rw.OldArgs
		switch {
		case rw.NewAddr != "" && rw.NewAddr != rw.Addr:
			if params && !proven {
				rw.NewArgs, dropped = rw.OldArgs, true
			}
			applied = applied || params && proven
			kept = append(kept, rw)
			continue
		case !params:
			kept = append(kept, rw)
			continue
		case !proven:
			dropped = true
			continue
		}
		variant, why := s.caseVariantFor(rw.Addr)
		if why != "" {
			dropped = true
			v.Notes = append(v.Notes, "sendmail: <"+rw.Addr+"> left as it is: "+why)
			continue
		}
		if s.sm.addAs == nil {
			s.sm.addAs = map[string]string{}
		}
		s.sm.addAs[rw.Addr] = variant
		v.Notes = append(v.Notes, "sendmail: <"+rw.Addr+"> re-added as <"+variant+">")
		applied = true
		kept = append(kept, rw)
	}
	v.Mods.RcptRewrites = kept
	switch {
	case !dropped:
	case check == nil:
		v.NDR = policy.NDRNotPossibleWithSendmail
		v.Notes = append(v.Notes, "Sendmail ignores ESMTP parameters on re-added recipients: NDRs are not suppressed (see ndr_suppression.sendmail)")
	case !proven:
		v.NDR = policy.NDRSendmailDSNUnproven
		v.Notes = append(v.Notes, "Sendmail's DSN offer is not proven by the self-check: recipients' DSN parameters left as they are")
	case !applied:
		v.NDR = policy.NDRNotPossibleWithSendmail
	}
}

// caseVariantFor returns the spelling to re-add addr as, or why it must be
// left alone: only where Sendmail routes it unchanged through a mailer other
// than local, whose entry would otherwise merge with the deleted one.
func (s *session) caseVariantFor(addr string) (string, string) {
	r, ok := s.sm.rcpts[addr]
	switch {
	case !ok || r.mailer == "":
		return "", "Sendmail gave no {rcpt_mailer} for it"
	case r.mailer == "local":
		return "", "delivered by the local mailer"
	case r.addr != addr:
		return "", "Sendmail rewrites it (to " + r.addr + ")"
	}
	variant, ok := CaseVariant(addr)
	if !ok {
		return "", "its domain has no ASCII letter"
	}
	return variant, ""
}

// CaseVariant returns addr with the ASCII letters of its domain in the other
// case: upper case when the domain has a lower-case letter, else lower case.
// It reports false for an address without a domain, an address literal
// ([192.0.2.1]) and a domain without ASCII letters, where no variant exists.
func CaseVariant(addr string) (string, bool) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || at == len(addr)-1 || addr[at+1] == '[' {
		return "", false
	}
	dom := addr[at+1:]
	var lower, upper bool
	for i := 0; i < len(dom); i++ {
		c := dom[i]
		lower = lower || 'a' <= c && c <= 'z'
		upper = upper || 'A' <= c && c <= 'Z'
	}
	if !lower && !upper {
		return "", false
	}
	b := []byte(dom)
	for i, c := range b {
		switch {
		case lower && 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case !lower && 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
	}
	return addr[:at+1] + string(b), true
}

// DSNCheck proves, again and again, that a Sendmail offers DSN to SMTP
// clients: it connects to Sendmail's SMTP address, reads the EHLO reply and
// looks for the DSN keyword. The case variant runs only while it is seen.
type DSNCheck struct {
	Addr     string        // Sendmail's SMTP address, host:port
	Interval time.Duration // between checks; default 5 minutes
	Timeout  time.Duration // one check; default 10 seconds
	Log      *zap.Logger

	offered  atomic.Bool
	switches atomic.Uint64
	mu       sync.Mutex
	checked  bool
	lastErr  error
}

// Offered reports whether the last check saw DSN offered.
func (c *DSNCheck) Offered() bool { return c != nil && c.offered.Load() }

// Switches counts the changes of state since the start.
func (c *DSNCheck) Switches() uint64 { return c.switches.Load() }

// Status describes the last check for health pages and `config check`.
func (c *DSNCheck) Status() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !c.checked:
		return "not checked yet"
	case c.lastErr != nil:
		return "unproven: " + c.lastErr.Error()
	case c.offered.Load():
		return "DSN offered"
	}
	return "DSN not offered"
}

// Probe connects once and reports whether DSN is in the EHLO reply.
func (c *DSNCheck) Probe(ctx context.Context) (bool, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.Addr)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	host, _, _ := net.SplitHostPort(c.Addr)
	cl, err := smtp.NewClient(conn, host)
	if err != nil {
		return false, err
	}
	defer cl.Close()
	if err := cl.Hello("localhost"); err != nil {
		return false, err
	}
	ok, _ := cl.Extension("DSN")
	cl.Quit()
	return ok, nil
}

// Check probes once and records the result: an error counts as "not
// offered" (no proof), and a change of state is logged and counted.
func (c *DSNCheck) Check(ctx context.Context) bool {
	ok, err := c.Probe(ctx)
	c.mu.Lock()
	first := !c.checked
	c.checked, c.lastErr = true, err
	c.mu.Unlock()
	was := c.offered.Swap(ok)
	log := c.Log
	if log == nil {
		log = zap.NewNop()
	}
	if was != ok || first {
		if was != ok {
			c.switches.Add(1)
		}
		if ok {
			log.Info("Sendmail offers DSN: NDR suppression by case variant is on", zap.String("sendmail", c.Addr))
		} else {
			log.Warn("Sendmail's DSN offer is not proven: NDR suppression by case variant is off (the milter leaves recipients alone)",
				zap.String("sendmail", c.Addr), zap.Error(err))
		}
	}
	return ok
}

// Run checks at once and then every Interval until ctx ends. While the
// check fails to connect it retries sooner (every 30 s at most), so a
// Sendmail started after the milter is proven quickly.
func (c *DSNCheck) Run(ctx context.Context) {
	every := c.Interval
	if every <= 0 {
		every = 5 * time.Minute
	}
	for {
		c.Check(ctx)
		wait := every
		c.mu.Lock()
		if c.lastErr != nil {
			wait = min(every, 30*time.Second)
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
