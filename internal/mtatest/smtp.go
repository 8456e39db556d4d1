package mtatest

import (
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Reply is one SMTP reply: the three-digit code and the text after it, with
// the lines of a multi-line reply joined by "\n". Code 0 means the command
// was not sent (an earlier step failed).
type Reply struct {
	Code int
	Text string
}

func (r Reply) String() string {
	if r.Code == 0 {
		return "(not sent)"
	}
	return fmt.Sprintf("%d %s", r.Code, r.Text)
}

// OK reports a 2xx or 3xx reply.
func (r Reply) OK() bool { return r.Code >= 200 && r.Code < 400 }

// Class is the first digit of the code: 2, 3, 4 or 5 (0: not sent).
func (r Reply) Class() int { return r.Code / 100 }

// SMTPMessage is one mail transaction. From and each To are an address with
// optional ESMTP parameters after it, separated by spaces:
// "user@example.org NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user@example.org".
// Angle brackets are optional; an empty From or "<>" is the null sender
// ("<> RET=HDRS" adds parameters to it).
type SMTPMessage struct {
	From string
	To   []string
	// Data is the message, header and body; LF line ends are sent as CRLF
	// and lines starting with "." are dot-stuffed.
	Data []byte
	// NoData ends the transaction after the RCPT commands with RSET, as a
	// sender-verification callout does.
	NoData bool
}

// Session is one SMTP connection carrying one or more messages.
type Session struct {
	// LocalIP is the client's source address, e.g. "127.0.0.2" to come from
	// outside Postfix's mynetworks; empty lets the kernel choose (127.0.0.1).
	LocalIP string
	// Helo is the EHLO name; empty means "client.example.net".
	Helo     string
	Messages []SMTPMessage
}

// MessageResult holds the replies of one transaction.
type MessageResult struct {
	Mail  Reply
	Rcpts []Reply
	Data  Reply // reply to DATA: 354, or a rejection
	Final Reply // reply after the final "."
	Rset  Reply // reply to RSET for a NoData transaction
}

// Accepted reports whether the message was accepted after the final dot.
func (r MessageResult) Accepted() bool { return r.Final.Class() == 2 }

var queueIDPatterns = []*regexp.Regexp{
	regexp.MustCompile(`queued as ([0-9A-Za-z]+)`),                   // Postfix
	regexp.MustCompile(`^\S+ ([0-9A-Za-z]+) Message accepted`),       // Sendmail, with enhanced code
	regexp.MustCompile(`^([0-9A-Za-z]+) Message accepted for deliv`), // Sendmail, without
}

// QueueID extracts the MTA's queue ID from the final reply ("" if absent).
func (r MessageResult) QueueID() string {
	for _, re := range queueIDPatterns {
		if m := re.FindStringSubmatch(r.Final.Text); m != nil {
			return m[1]
		}
	}
	return ""
}

func (r MessageResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "MAIL: %s", r.Mail)
	for i, rc := range r.Rcpts {
		fmt.Fprintf(&b, "; RCPT %d: %s", i+1, rc)
	}
	if r.Data.Code != 0 {
		fmt.Fprintf(&b, "; DATA: %s", r.Data)
	}
	if r.Final.Code != 0 {
		fmt.Fprintf(&b, "; end: %s", r.Final)
	}
	if r.Rset.Code != 0 {
		fmt.Fprintf(&b, "; RSET: %s", r.Rset)
	}
	return b.String()
}

// SessionResult holds every reply of a session. Messages has one entry per
// message that was started; a session the server ends early (421, or a
// rejected greeting) has fewer.
type SessionResult struct {
	Greeting Reply
	Ehlo     Reply
	Messages []MessageResult
	Quit     Reply
}

// commandTimeout bounds each command; Sendmail waiting on a slow milter over
// TCP takes well under a second per message, so this only catches hangs.
const commandTimeout = 60 * time.Second

// SendSession connects to addr (host:port) and runs the session. SMTP
// rejections are results, not errors; the error is for network and protocol
// failures, with the replies gathered until then.
func SendSession(addr string, s Session) (SessionResult, error) {
	var res SessionResult
	d := net.Dialer{Timeout: 10 * time.Second}
	if s.LocalIP != "" {
		ip := net.ParseIP(s.LocalIP)
		if ip == nil {
			return res, fmt.Errorf("smtp: bad local IP %q", s.LocalIP)
		}
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return res, fmt.Errorf("smtp: %w", err)
	}
	defer nc.Close()
	c := &smtpConn{nc: nc, tp: textproto.NewConn(nc)}

	if res.Greeting, err = c.read(); err != nil || res.Greeting.Class() != 2 {
		return res, err
	}
	helo := s.Helo
	if helo == "" {
		helo = "client.example.net"
	}
	if res.Ehlo, err = c.cmd("EHLO " + helo); err != nil || res.Ehlo.Class() != 2 {
		return res, err
	}
	for _, m := range s.Messages {
		mr, closed, err := c.transaction(m)
		res.Messages = append(res.Messages, mr)
		if err != nil || closed {
			return res, err
		}
	}
	res.Quit, err = c.cmd("QUIT")
	return res, err
}

type smtpConn struct {
	nc net.Conn
	tp *textproto.Conn
}

func (c *smtpConn) read() (Reply, error) {
	_ = c.nc.SetDeadline(time.Now().Add(commandTimeout))
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil {
		var perr textproto.ProtocolError
		if errors.As(err, &perr) || code == 0 {
			return Reply{}, fmt.Errorf("smtp: read reply: %w", err)
		}
	}
	return Reply{Code: code, Text: msg}, nil
}

func (c *smtpConn) cmd(line string) (Reply, error) {
	_ = c.nc.SetDeadline(time.Now().Add(commandTimeout))
	if err := c.tp.PrintfLine("%s", line); err != nil {
		return Reply{}, fmt.Errorf("smtp: send %q: %w", line, err)
	}
	return c.read()
}

// transaction runs MAIL, RCPT..., DATA; closed reports a 421 after which the
// server hangs up.
func (c *smtpConn) transaction(m SMTPMessage) (r MessageResult, closed bool, err error) {
	from, err := envelopeArg(m.From, true)
	if err != nil {
		return r, false, err
	}
	if r.Mail, err = c.cmd("MAIL FROM:" + from); err != nil || r.Mail.Code == 421 {
		return r, err == nil, err
	}
	if r.Mail.Class() != 2 {
		return r, false, nil
	}
	accepted := 0
	for _, to := range m.To {
		arg, err := envelopeArg(to, false)
		if err != nil {
			return r, false, err
		}
		rep, err := c.cmd("RCPT TO:" + arg)
		r.Rcpts = append(r.Rcpts, rep)
		if err != nil || rep.Code == 421 {
			return r, err == nil, err
		}
		if rep.Class() == 2 {
			accepted++
		}
	}
	if accepted == 0 || m.NoData {
		r.Rset, err = c.cmd("RSET")
		return r, r.Rset.Code == 421, err
	}
	if r.Data, err = c.cmd("DATA"); err != nil || r.Data.Code == 421 {
		return r, err == nil, err
	}
	if r.Data.Code != 354 {
		return r, false, nil
	}
	_ = c.nc.SetDeadline(time.Now().Add(commandTimeout))
	w := c.tp.DotWriter()
	if _, err := w.Write(m.Data); err != nil {
		return r, false, fmt.Errorf("smtp: send message: %w", err)
	}
	if err := w.Close(); err != nil {
		return r, false, fmt.Errorf("smtp: send final dot: %w", err)
	}
	r.Final, err = c.read()
	return r, r.Final.Code == 421, err
}

// envelopeArg turns "addr PARAM=x" into "<addr> PARAM=x".
func envelopeArg(s string, sender bool) (string, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		if sender {
			return "<>", nil
		}
		return "", errors.New("smtp: empty recipient")
	}
	addr := strings.TrimSuffix(strings.TrimPrefix(f[0], "<"), ">")
	if addr == "" && !sender {
		return "", errors.New("smtp: empty recipient")
	}
	if strings.ContainsAny(addr, "<>\r\n") {
		return "", fmt.Errorf("smtp: bad address %q", f[0])
	}
	return strings.Join(append([]string{"<" + addr + ">"}, f[1:]...), " "), nil
}

// portOf returns the port of a host:port address.
func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}
