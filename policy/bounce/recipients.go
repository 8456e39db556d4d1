package bounce

import (
	"bytes"
	"strings"
)

// recipients fills FailedRecipients from, in order of trust: DSN
// per-recipient fields, X-Failed-Recipients, then the plain-text report.
func (p *parser) recipients() {
	r := p.rep
	if !r.Kind.IsBounce() && r.Kind != KindDelivered {
		return
	}
	var all []string
	for _, g := range p.dsn {
		if !g.recipient() {
			continue
		}
		a := g.address()
		switch g.action() {
		case "failed", "delayed":
			r.FailedRecipients = appendAddr(r.FailedRecipients, a)
		case "":
			if c := g.statusClass(); c == '5' || c == '4' || c == 0 {
				all = appendAddr(all, a)
			}
		}
	}
	if len(r.FailedRecipients) == 0 {
		r.FailedRecipients = all
	}
	if r.Kind == KindDelivered {
		// A success DSN names delivered recipients, none failed.
		r.FailedRecipients = nil
		return
	}
	if len(r.FailedRecipients) > 0 {
		return
	}
	for _, v := range p.top.values("X-Failed-Recipients") {
		for _, a := range strings.Split(decodeText(v), ",") {
			r.FailedRecipients = appendAddr(r.FailedRecipients, parseAddr(a))
		}
	}
	if len(r.FailedRecipients) > 0 {
		return
	}
	for _, t := range p.texts {
		r.FailedRecipients = textRecipients(t, p.skipAddrs())
		if len(r.FailedRecipients) > 0 {
			return
		}
	}
}

// skipAddrs are addresses that appear in a report but are not failed
// recipients: the report's own From/To and the original's senders.
func (p *parser) skipAddrs() map[string]bool {
	skip := map[string]bool{}
	for _, k := range []string{"From", "To", "Reply-To", "Sender"} {
		if a := parseAddr(p.top.get(k)); a != "" {
			skip[strings.ToLower(a)] = true
		}
	}
	for _, a := range p.rep.OriginalSenders {
		skip[a] = true
	}
	return skip
}

// textRecipients extracts failed recipients from the report text before
// the quoted original: first lines that start with an address (qmail
// "<a@b>:", Postfix "<a@b>: reason", Sendmail "<a@b>... User unknown",
// Exim's indented "  a@b"), else every address in the text.
func textRecipients(t []byte, skip map[string]bool) []string {
	lt := lowerASCII(t)
	if k := separatorIndex(lt); k >= 0 {
		lt = lt[:k]
	}
	var lead, any []string
	for _, line := range strings.Split(lt, "\n") {
		s := strings.TrimSpace(line)
		if s == "" {
			continue
		}
		if a := leadingAddr(s); a != "" && !skip[a] {
			lead = appendAddr(lead, a)
		}
		for _, a := range lineAddrs(s) {
			if !skip[a] {
				any = appendAddr(any, a)
			}
		}
		if len(lead) > 100 || len(any) > 100 {
			break
		}
	}
	if len(lead) > 0 {
		return lead
	}
	if len(any) > 0 {
		return any[:1]
	}
	return nil
}

// leadingAddr returns the address a report line starts with, if any.
func leadingAddr(s string) string {
	s = strings.TrimLeft(s, "*-> \t")
	var tok string
	if strings.HasPrefix(s, "<") {
		e := strings.IndexByte(s, '>')
		if e < 0 {
			return ""
		}
		tok = s[1:e]
	} else {
		e := strings.IndexAny(s, " \t:;,(")
		if e < 0 {
			e = len(s)
		}
		tok = s[:e]
		tok = strings.TrimSuffix(tok, "...")
	}
	tok = strings.Trim(tok, "\"'")
	if validAddr(tok) {
		return tok
	}
	return ""
}

// lineAddrs returns the addresses written in a line, in order.
func lineAddrs(s string) []string {
	var out []string
	for i := 0; i < len(s) && len(out) < 10; {
		at := strings.IndexByte(s[i:], '@')
		if at < 0 {
			break
		}
		at += i
		st := at
		for st > 0 && addrByte(s[st-1]) {
			st--
		}
		en := at + 1
		for en < len(s) && addrByte(s[en]) {
			en++
		}
		a := strings.TrimRight(s[st:en], ".")
		if validAddr(a) {
			out = append(out, a)
		}
		i = en
		if i <= at {
			i = at + 1
		}
	}
	return out
}

func addrByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || bytes.IndexByte([]byte(".-_+=!#$%&'*/?^`{|}~"), c) >= 0
}

// validAddr is a cheap syntax check: local@domain.tld without spaces.
func validAddr(a string) bool {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || strings.ContainsAny(a, " \t<>()[]\\,;:\"") {
		return false
	}
	d := a[at+1:]
	return strings.Contains(d, ".") && !strings.HasPrefix(d, ".") && !strings.HasSuffix(d, ".")
}
