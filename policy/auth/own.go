package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/backscatter-milter/backscatter-milter/internal/mailheader"
)

// Own-DKIM results: our own signature on a returned original (a bounce's
// copy of a message we sent).
const (
	OwnPass        = "pass"         // the whole original came back and verified
	OwnHeadersPass = "headers-pass" // only the signed headers verified (no or altered body)
	OwnFail        = "fail"         // a signature of ours is there and did not verify
	OwnNone        = "none"         // no signature of ours
)

// OwnDKIM is the outcome of VerifyOwn.
type OwnDKIM struct {
	Result string // OwnPass, OwnHeadersPass, OwnFail or OwnNone
	Domain string // d= of the deciding signature
	Detail string // one line for logs
}

// VerifyOwn verifies the DKIM signatures whose d= is one of domains on a
// returned original: header is its raw header block, body its body or nil
// when only the headers came back.
//
// With a body the whole message is verified by go-msgauth. Without one, or
// when the body hash no longer matches (bounces often re-encode the body),
// the header signature alone is verified: the signed data hash covers every
// field listed in h= and the DKIM-Signature field itself with its bh= value,
// so a valid signature proves that our signer produced those headers, even
// though the body cannot be checked. go-msgauth (v0.7) checks the body hash
// first and returns on a mismatch, and keeps its canonicalisation and key
// parsing unexported, so that half is done here (verifyHeaders), tested
// against signatures made by go-msgauth.
//
// A failure is reported, never turned into evidence by this package. Keys
// are asked through the Checker's resolver, which in the milter keeps them
// for their TTL (resolver.Cache: bounded, negative answers too); only keys
// of our own domains are ever asked.
func (c *Checker) VerifyOwn(ctx context.Context, header, body []byte, domains []string) OwnDKIM {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	fields := mailheader.Split(header)
	var ours []int
	for i, f := range fields {
		name, val, _ := strings.Cut(f, ":")
		if !strings.EqualFold(strings.TrimSpace(name), "DKIM-Signature") {
			continue
		}
		if d := sigDomain(val); d != "" && containsFold(domains, d) {
			ours = append(ours, i)
		}
		if len(ours) >= c.maxSignatures() {
			break
		}
	}
	if len(ours) == 0 {
		return OwnDKIM{Result: OwnNone}
	}
	all := c.keyLookup(ctx)
	// Only our own keys are ever fetched: the other signatures of a
	// returned original (its d= chosen by whoever wrote it) cost no DNS.
	lookup := func(name string) ([]string, error) {
		for _, d := range domains {
			if hasSuffixFold(strings.TrimSuffix(name, "."), "._domainkey."+d) {
				return all(name)
			}
		}
		return nil, &net.DNSError{Err: "not one of our DKIM domains", Name: oneLine(name), IsNotFound: true}
	}
	var why []string
	if body != nil {
		msg := make([]byte, 0, len(header)+len(body)+4)
		for _, f := range fields {
			msg = append(msg, f...)
		}
		msg = append(msg, "\r\n"...)
		msg = append(msg, crlf(body)...)
		verifs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: lookup, MaxVerifications: c.maxSignatures()})
		if err == nil || errors.Is(err, dkim.ErrTooManySignatures) {
			for _, v := range verifs {
				if v == nil || !containsFold(domains, strings.TrimSuffix(v.Domain, ".")) {
					continue
				}
				if v.Err == nil {
					return OwnDKIM{Result: OwnPass, Domain: strings.ToLower(v.Domain), Detail: "d=" + strings.ToLower(v.Domain) + " verified on the whole original"}
				}
				why = append(why, "whole message: "+oneLine(v.Err.Error()))
			}
		}
	}
	for _, i := range ours {
		d, err := verifyHeaders(fields, i, lookup)
		if err == nil {
			detail := "d=" + d + " header signature verified (covers bh=; body not returned)"
			if body != nil {
				detail = "d=" + d + " header signature verified (covers bh=; the returned body was altered)"
			}
			return OwnDKIM{Result: OwnHeadersPass, Domain: d, Detail: detail}
		}
		why = append(why, "headers: "+oneLine(err.Error()))
	}
	return OwnDKIM{Result: OwnFail, Detail: strings.Join(why, "; ")}
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// sigDomain returns the d= tag of a DKIM-Signature value, lowercased.
func sigDomain(val string) string {
	tags, err := parseTags(val)
	if err != nil {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(tags["d"], "."))
}

// crlf returns b with every line ending CRLF, as DKIM canonicalisation reads it.
func crlf(b []byte) []byte {
	if !bytes.Contains(b, []byte("\n")) || bytes.Count(b, []byte("\r\n")) == bytes.Count(b, []byte("\n")) {
		return b
	}
	out := make([]byte, 0, len(b)+bytes.Count(b, []byte("\n")))
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// parseTags reads a DKIM tag list (RFC 6376 §3.2): white space around
// names and values is dropped; a repeated tag is an error.
func parseTags(s string) (map[string]string, error) {
	tags := map[string]string{}
	for _, p := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(p, "=")
		k = strings.TrimSpace(k)
		if !ok {
			if k == "" {
				continue
			}
			return nil, errors.New("malformed tag list")
		}
		if _, dup := tags[k]; dup {
			return nil, errors.New("duplicate tag " + strconv.Quote(k))
		}
		tags[k] = strings.TrimSpace(v)
	}
	return tags, nil
}

func stripWSP(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}

// sigParams are the tags of a DKIM-Signature that the header check needs.
type sigParams struct {
	domain, selector string
	keyAlgo          string   // "rsa" or "ed25519"
	headerCan        string   // "simple" or "relaxed"
	signed           []string // h=
	sig              []byte   // b=
}

// parseSig reads and checks a DKIM-Signature value (RFC 6376 §3.5). The
// domain is returned even when the signature is refused, for the log.
func parseSig(val string, now time.Time) (sigParams, error) {
	tags, err := parseTags(val)
	if err != nil {
		return sigParams{}, err
	}
	for _, t := range []string{"v", "a", "b", "bh", "d", "h", "s"} {
		if _, ok := tags[t]; !ok {
			return sigParams{}, fmt.Errorf("signature lacks %s=", t)
		}
	}
	p := sigParams{domain: strings.ToLower(strings.TrimSuffix(stripWSP(tags["d"]), ".")), selector: stripWSP(tags["s"])}
	if tags["v"] != "1" {
		return p, errors.New("signature version is not 1")
	}
	if _, ok := tags["l"]; ok {
		return p, errors.New("signature has a body length limit (l=)")
	}
	if x, ok := tags["x"]; ok {
		if n, err := strconv.ParseInt(stripWSP(x), 10, 64); err != nil || now.Unix() > n {
			return p, errors.New("signature expired (x=)")
		}
	}
	algo := strings.ToLower(stripWSP(tags["a"]))
	if algo != "rsa-sha256" && algo != "ed25519-sha256" {
		return p, fmt.Errorf("algorithm %q not accepted", oneLine(algo))
	}
	p.keyAlgo, _, _ = strings.Cut(algo, "-")
	p.headerCan, _, _ = strings.Cut(stripWSP(tags["c"]), "/")
	if p.headerCan == "" {
		p.headerCan = "simple"
	}
	if p.headerCan != "simple" && p.headerCan != "relaxed" {
		return p, fmt.Errorf("header canonicalisation %q unknown", oneLine(p.headerCan))
	}
	p.signed = strings.Split(stripWSP(tags["h"]), ":")
	if !containsFold(p.signed, "from") {
		return p, errors.New("the From field is not signed")
	}
	if p.sig, err = base64.StdEncoding.DecodeString(stripWSP(tags["b"])); err != nil {
		return p, errors.New("b= is not base64")
	}
	return p, nil
}

// verifyHeaders verifies the header hash of the signature in fields[sig]
// without the body: RFC 6376 §3.7 steps for the data hash, §3.6 key record.
func verifyHeaders(fields []string, sig int, lookup func(string) ([]string, error)) (string, error) {
	_, val, _ := strings.Cut(fields[sig], ":")
	p, err := parseSig(val, time.Now())
	if err != nil {
		return p.domain, err
	}
	name := p.selector + "._domainkey." + p.domain
	txt, err := lookup(name)
	if err != nil {
		return p.domain, fmt.Errorf("key %s: %v", name, err)
	}
	if len(txt) != 1 {
		return p.domain, fmt.Errorf("key %s: %d TXT records", name, len(txt))
	}
	pub, err := parseKey(txt[0], p.keyAlgo)
	if err != nil {
		return p.domain, err
	}

	h := sha256.New()
	picked := map[string]int{}
	for _, n := range p.signed {
		if f, ok := pickField(fields, sig, n, picked); ok {
			h.Write([]byte(canonHeader(f, p.headerCan)))
		}
	}
	h.Write([]byte(strings.TrimSuffix(canonHeader(withoutB(fields[sig]), p.headerCan), "\r\n")))
	sum := h.Sum(nil)
	ok := false
	switch k := pub.(type) {
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, sum, p.sig) == nil
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, sum, p.sig)
	}
	if !ok {
		return p.domain, errors.New("header signature did not verify")
	}
	return p.domain, nil
}

// pickField returns the field for one h= entry: instances of a name are
// taken from the bottom up, each at most once (RFC 6376 §5.4.2). The
// signature field itself is never a candidate.
func pickField(fields []string, sig int, name string, picked map[string]int) (string, bool) {
	key := strings.ToLower(name)
	skip := picked[key]
	picked[key]++
	for i := len(fields) - 1; i >= 0; i-- {
		n, _, _ := strings.Cut(fields[i], ":")
		if i == sig || !strings.EqualFold(strings.TrimSpace(n), key) {
			continue
		}
		if skip == 0 {
			return fields[i], true
		}
		skip--
	}
	return "", false
}

// canonHeader is RFC 6376 §3.4.1 (simple: unchanged) and §3.4.2 (relaxed:
// name lowercased, unfolded, white space runs to one space, trimmed around
// the colon and at the end). f ends in CRLF.
func canonHeader(f, can string) string {
	if can == "simple" {
		return f
	}
	k, v, _ := strings.Cut(f, ":")
	return strings.ToLower(strings.TrimSpace(k)) + ":" + strings.Join(strings.Fields(v), " ") + "\r\n"
}

// withoutB empties the value of the b= tag of a DKIM-Signature field,
// keeping everything else byte for byte (RFC 6376 §3.7).
func withoutB(f string) string {
	name, val, _ := strings.Cut(f, ":")
	parts := strings.Split(val, ";")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if ok && strings.TrimSpace(k) == "b" {
			eq := strings.IndexByte(p, '=')
			rest := p[eq+1:]
			// Keep the trailing CRLF of the last tag, drop the value.
			tail := ""
			if i == len(parts)-1 && strings.HasSuffix(rest, "\r\n") {
				tail = "\r\n"
			}
			parts[i] = p[:eq+1] + tail
		}
	}
	return name + ":" + strings.Join(parts, ";")
}

// parseKey reads a DKIM key record (RFC 6376 §3.6.1) for the algorithm.
func parseKey(rec, keyAlgo string) (crypto.PublicKey, error) {
	tags, err := parseTags(rec)
	if err != nil {
		return nil, fmt.Errorf("key record: %v", err)
	}
	if v, ok := tags["v"]; ok && v != "DKIM1" {
		return nil, errors.New("key record: version is not DKIM1")
	}
	if k := tags["k"]; k != "" && k != keyAlgo || k == "" && keyAlgo != "rsa" {
		return nil, errors.New("key record: algorithm does not match the signature")
	}
	if hs, ok := tags["h"]; ok && !containsFold(strings.Split(stripWSP(hs), ":"), "sha256") {
		return nil, errors.New("key record: sha256 not allowed")
	}
	p := stripWSP(tags["p"])
	if p == "" {
		return nil, errors.New("key record: revoked or empty")
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, errors.New("key record: p= is not base64")
	}
	if keyAlgo == "ed25519" {
		if len(der) != ed25519.PublicKeySize {
			return nil, errors.New("key record: bad ed25519 key size")
		}
		return ed25519.PublicKey(der), nil
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		if pub, err = x509.ParsePKCS1PublicKey(der); err != nil {
			return nil, errors.New("key record: not an RSA key")
		}
	}
	k, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("key record: not an RSA key")
	}
	if k.Size()*8 < 1024 {
		return nil, errors.New("key record: RSA key shorter than 1024 bits")
	}
	return k, nil
}
