package bounce

import (
	"bytes"
	"strings"
)

// recipients fills FailedRecipients from, in order of trust: DSN
// per-recipient fields, X-Failed-Recipients, then the plain-text report;
// then adds the addresses the report says an alias was expanded from.
func (p *parser) recipients() {
	p.listedRecipients()
	r := p.rep
	if !r.Kind.IsBounce() || len(r.FailedRecipients) == 0 {
		return
	}
	skip := p.skipAddrs()
	for i := range p.texts {
		lt := p.lower(i)
		if k := p.separator(i); k >= 0 {
			lt = lt[:k]
		}
		if !strings.Contains(lt, "ed from") {
			continue
		}
		for _, line := range strings.Split(lt, "\n") {
			if a := expandedFrom(line); a != "" && !skip[a] {
				r.FailedRecipients = appendAddr(r.FailedRecipients, a)
			}
		}
	}
}

func (p *parser) listedRecipients() {
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
	skip := p.skipAddrs()
	for i := range p.texts {
		lt := p.lower(i)
		if k := p.separator(i); k >= 0 {
			lt = lt[:k]
		}
		r.FailedRecipients = textRecipients(lt, skip)
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
//
// lt is the report text, lowercased, up to the separator line.
func textRecipients(lt string, skip map[string]bool) []string {
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
	return any
}

// expandedFrom returns the address in Sendmail's "(expanded from: <a>)"
// or Exim's "(generated from a)", if the line holds one: the address the
// sender wrote, which an alias rewrote into the failed one.
func expandedFrom(s string) string {
	for _, m := range []string{"expanded from:", "generated from"} {
		if i := strings.Index(s, m); i >= 0 {
			return leadingAddr(strings.TrimSpace(s[i+len(m):]))
		}
	}
	return ""
}

// leadingAddr returns the address a report line starts with, if any.
func leadingAddr(s string) string {
	s = strings.TrimLeft(s, "*-> \t")
	s = skipReplyCode(s)
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
	tok = unquoteAddr(tok)
	if validAddr(tok) {
		return tok
	}
	return ""
}

// skipReplyCode removes an SMTP reply code and enhanced status code that
// start a line ("554 <a@b>... reason", "550 5.1.1 <a@b>: reason").
func skipReplyCode(s string) string {
	if len(s) < 4 || !isDigits(s[:3]) || s[3] != ' ' && s[3] != '-' {
		return s
	}
	s = s[4:]
	// Enhanced status code (RFC 3463): class.subject.detail.
	if len(s) > 5 && (s[0] == '2' || s[0] == '4' || s[0] == '5') && s[1] == '.' {
		if sp := strings.IndexByte(s, ' '); sp > 0 && strings.Count(s[:sp], ".") == 2 && isDigits(strings.ReplaceAll(s[:sp], ".", "")) {
			s = s[sp+1:]
		}
	}
	return strings.TrimLeft(s, " ")
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
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
