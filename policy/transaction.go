package policy

import (
	"net/netip"
	"strings"
	"time"
)

// Header is one header field as the MTA gave it.
type Header struct {
	Name  string
	Value string
}

// Recipient is an envelope recipient with its ESMTP parameters as given in
// RCPT TO, and what the policy found about it at RCPT.
type Recipient struct {
	Addr   string
	Args   string // e.g. "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b"
	Mailer string // the MTA's delivery agent for it ({rcpt_mailer}: "local", "smtp", …), if given

	Evidence Evidences // recipient-level evidence found at RCPT (BATV, no_bounces)
	Tag      TagStatus // BATV state of the address; "" when BATV does not apply to it
	Allowed  bool      // in allowlist.recipients: never refused at RCPT, no recipient evidence
}

// Connection is what is known about the SMTP client before MAIL FROM.
type Connection struct {
	ClientIP   netip.Addr // invalid when unknown (e.g. a local submission)
	ClientName string
	Helo       string
	// LocalIP is the address the client connected to ({daemon_addr}):
	// an address literal naming it is delivered here.
	LocalIP netip.Addr
}

// Transaction is one message as the policy sees it. Package milter fills it
// in stage by stage; the policy reads it and adds what it started (lookups).
type Transaction struct {
	SessionID string // ours, known from MAIL FROM: joins RCPT-time and final log lines
	QueueID   string // the MTA's, when it has given it (Postfix: from DATA on)
	Connection
	Sender     string // envelope sender without angle brackets; "" is the null sender
	SenderArgs string
	Auth       string // SASL login name, if any
	Direction  Direction
	Allowed    string // why the transaction is allowlisted, if it is

	Recipients []Recipient // accepted recipients
	Rejected   []string    // recipients rejected at RCPT (by us)
	Headers    []Header
	Body       []byte // kept only when the policy wants it, up to a cap
	BodyCut    bool   // the body was longer than the cap
	DataSeen   bool   // the client reached DATA
	Started    time.Time

	global  Evidences // transaction-level RCPT-time evidence (DNSBL)
	lists   PendingLists
	listsOK bool // lists were waited for and global holds them
	spf     chan spfAnswer
	notes   []string
}

type spfAnswer struct {
	result, domain string
	err            error
}

// NullSender reports whether the envelope sender is <>.
func (t *Transaction) NullSender() bool { return t.Sender == "" }

// Callout reports whether the transaction is a sender-verification probe:
// inbound, bounce-class, and ended after RCPT without DATA.
func (t *Transaction) Callout() bool {
	return !t.DataSeen && t.Direction == Inbound && t.BounceClass() && len(t.Recipients)+len(t.Rejected) > 0
}

// BounceClass reports whether the sender is one bounces and callouts come
// from: <>, postmaster@ or mailer-daemon@ (case-insensitive).
func (t *Transaction) BounceClass() bool { return IsBounceSender(t.Sender) }

// IsBounceSender reports whether sender is <>, postmaster@… or mailer-daemon@….
func IsBounceSender(sender string) bool {
	if sender == "" {
		return true
	}
	local, _, ok := strings.Cut(sender, "@")
	if !ok {
		local = sender
	}
	return strings.EqualFold(local, "postmaster") || strings.EqualFold(local, "mailer-daemon")
}

// HeaderValues returns the values of every header named name (case-insensitive).
func (t *Transaction) HeaderValues(name string) []string {
	var out []string
	for _, h := range t.Headers {
		if strings.EqualFold(h.Name, name) {
			out = append(out, h.Value)
		}
	}
	return out
}

// Header returns the first value of the header named name, or "".
func (t *Transaction) Header(name string) string {
	for _, h := range t.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// Raw rebuilds the message as the MTA would store it (headers, blank line,
// kept body), for parsers that want the whole message.
func (t *Transaction) Raw() []byte {
	n := len(t.Body) + 2
	for _, h := range t.Headers {
		n += len(h.Name) + len(h.Value) + 4
	}
	b := make([]byte, 0, n)
	for _, h := range t.Headers {
		b = append(b, h.Name...)
		b = append(b, ':')
		if !strings.HasPrefix(h.Value, " ") && !strings.HasPrefix(h.Value, "\t") {
			b = append(b, ' ')
		}
		b = append(b, strings.ReplaceAll(h.Value, "\n", "\r\n")...)
		b = append(b, '\r', '\n')
	}
	b = append(b, '\r', '\n')
	return append(b, t.Body...)
}

// Domain returns the lowercased domain of addr, or "".
func Domain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
}
