package policytest

import (
	"bufio"
	"bytes"
	"strings"

	"github.com/emersion/go-message/textproto"

	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

// DSNRelayIP is the address of the relay in DSN's bounced original.
const DSNRelayIP = "198.51.100.9"

// DSN is mtatest.DSN to bob@example.org, for an original with msgID that
// passed relay [DSNRelayIP], as the MTA hands it to a milter: header fields
// and a CRLF body. statusFields go into the per-message DSN fields.
func DSN(msgID, relay string, statusFields ...string) ([]policy.Header, []byte) {
	return Split(mtatest.DSN("bob@example.org", "dsn-"+msgID, msgID, relay, DSNRelayIP, statusFields...))
}

// Split turns a message into the header fields an MTA passes a milter
// (the value after the colon with its leading space, folded lines joined
// by "\n") and the body with CRLF line ends. A malformed header ends the
// test at the field before it.
func Split(raw []byte) ([]policy.Header, []byte) {
	raw = bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	hdr, _ := textproto.ReadHeader(br)
	var hs []policy.Header
	for f := hdr.Fields(); f.Next(); {
		kv, _ := f.Raw()
		name, value, _ := strings.Cut(string(kv), ":")
		hs = append(hs, policy.Header{Name: strings.TrimRight(name, " \t"),
			Value: strings.ReplaceAll(strings.TrimSuffix(value, "\r\n"), "\r\n", "\n")})
	}
	return hs, raw[len(raw)-rd.Len()-br.Buffered():]
}
