package bounce

import (
	"bytes"
	"strings"
)

// Phrases written by MTAs in plain-text bounces. They are matched
// case-insensitively against the human-readable parts. A strong phrase is
// one no person writes in ordinary mail; a weak one needs company (see
// confidence).
var strongBounceText = []string{
	"this is the qmail-send program",
	"this message was created automatically by mail delivery software",
	"the original message was received at",
	"this is the mail system at host",
	"this is the mail delivery agent at",
	"i'm sorry to have to inform you that your message could not",
	"delivery to the following recipient failed",
	"delivery to the following recipients failed",
	"delivery to the following recipient has been delayed",
	"did not reach the following recipient",
	"your message did not reach some or all of the intended recipients",
	"delivery has failed to these recipients or groups",
	"sorry, we were unable to deliver your message",
	"i'm afraid i wasn't able to deliver your message",
	"could not be delivered to one or more of its recipients",
	"could not be delivered to one or more recipients",
	"----- transcript of session follows -----",
	"the following addresses had permanent fatal errors",
	"this is an automatically generated delivery status notification",
	"your message wasn't delivered",
	"your message couldn't be delivered",
	"your message could not be delivered",
	"message could not be delivered to",
	"unable to deliver your message",
	"unable to deliver message to the following",
	"has been in the queue too long",
	"\"notificationtype\":\"bounce\"",
	"your message was not delivered",
	"the following message to <",
	"delivery of your message to",
	"this is a delivery failure notification",
	"a message that you sent could not be delivered",
	"a message that you sent has not yet been delivered",
	"unsent message follows",
	"below this line is a copy of the message",
	"this is a copy of the message",
	"message delivery has failed",
	"failed to deliver to",
	"the message you sent to",
	"delivery status notification",
	"mail delivery failed",
	"undeliverable mail",
	"your mail could not be delivered",
	"your e-mail could not be delivered",
	"your email could not be delivered",
	"could not deliver mail to",
	"was not delivered to",
	"message not delivered",
	"returned mail: see transcript",
}

var weakBounceText = []string{
	"user unknown",
	"unknown user",
	"no such user",
	"invalid user",
	"requested action not taken",
	"mailbox unavailable",
	"mailbox not found",
	"address rejected",
	"recipient address rejected",
	"does not exist",
	"undeliverable",
	"undelivered",
	"delivery failed",
	"delivery failure",
	"permanent error",
	"permanent failure",
	"could not be delivered",
	"couldn't be delivered",
	"not be delivered",
	"mailbox is full",
	"quota exceeded",
	"over quota",
	"host unknown",
	"diagnostic-code:",
	"final-recipient:",
	"status: 5.",
	"remote host said",
	"smtp error",
	"said: 5",
	"550 ",
	"554 ",
	"553 ",
	"552 ",
	"551 ",
	"5.1.1",
	"deferred",
}

// Subjects that MTAs give their reports. Replies and forwards ("Re:",
// "Fwd:") are excluded before matching.
var bounceSubjects = []string{
	"undelivered mail returned to sender",
	"delivery status notification",
	"mail delivery failed",
	"failure notice",
	"returned mail",
	"undeliverable",
	"undelivered mail",
	"non-delivery",
	"nondeliverable",
	"non deliverable",
	"delivery failure",
	"delivery failed",
	"delivery notification",
	"delivery has failed",
	"mail system error",
	"could not send message",
	"warning: could not send",
	"delayed mail",
	"delivery delayed",
	"delivery delay",
	"mail delivery problem",
	"message delivery failure",
	"mail could not be delivered",
	"message could not be delivered",
	"not delivered",
	"returned to sender",
	"delivery report",
	"mail failure",
	"delivery problem",
	"bounce",
	"error sending message",
	"message not delivered",
	"notice of delivery failure",
	"permanent delivery failure",
	"mail delivery system",
	"delivery error",
	"unable to deliver",
	"failure delivery",
}

var delayText = []string{
	"delivery status notification (delay)",
	"has been delayed",
	"delivery delayed",
	"delayed mail",
	"delivery delay",
	"warning: could not send message for past",
	"warning: message still undelivered",
	"will continue trying",
	"will continue to try",
	"postponed",
	"will keep trying",
	"will be retried",
	"will retry",
	"still trying",
	"has not yet been delivered",
	"not yet been delivered",
	"this is a warning message only",
	"you do not need to resend your message",
	"no need to resend",
	"is being retried",
	"delivery attempts will continue",
	"still in the queue",
	"message will be retried",
}

var permanentText = []string{
	"permanent error",
	"permanently",
	"permanent fatal",
	"i've given up",
	"has given up",
	"giving up",
	"gave up",
	"could not be delivered",
	"couldn't be delivered",
	"was not delivered",
	"wasn't delivered",
	"undeliverable",
	"failed:",
	"will not be retried",
	"no further attempts",
	"returned to sender",
}

// reportPhrases finds the phrases of the four lists above in one pass; scan
// fills strong, weak, delay, permanent in that order.
var reportPhrases = newPhraseMatcher(strongBounceText, weakBounceText, delayText, permanentText)

// scanTexts runs the text fallbacks that need every text part: RFC 3464
// fields quoted in text when no delivery-status part was found.
func (p *parser) scanTexts() {
	if p.dsnSeen {
		return
	}
	for i, t := range p.texts {
		var groups []dsnGroup
		for _, g := range findDSNFields(t, p.lower(i)) {
			if g.recipient() || g.h.has("Reporting-MTA") {
				groups = append(groups, g)
			}
		}
		if len(groups) > 0 {
			p.dsn = append(p.dsn, groups...)
			return
		}
	}
}

// confidence is the parser's own certainty that a message without report
// structure (no multipart/report, no message/delivery-status part) is a
// delivery report written by an MTA. It is not policy: it decides only which
// Kind Parse returns, and the policy weighs that Kind and the extracted facts,
// never these points. Each marker found adds its weight; the thresholds
// below were set on the sisimai corpus (precision 1.000 there) and move only
// with a corpus run.
type confidence int

// Marker weights and thresholds of confidence.
const (
	// markerStrong: a marker ordinary mail does not carry: a report
	// subject ("Undelivered Mail Returned to Sender"), a phrase only MTAs
	// write ("This is the mail system at host"), X-Failed-Recipients.
	markerStrong confidence = 2
	// markerWeak: a marker people also write ("user unknown", "550 "), a
	// daemon sender (MAILER-DAEMON, postmaster), "Mail Delivery" in From,
	// or a quoted original next to another marker.
	markerWeak confidence = 1
	// textReportAt: a plain-text message is a report from this total on
	// (one strong marker, or two weak ones).
	textReportAt confidence = 2
	// dsnFieldsAt: RFC 3464 fields quoted in text make a report from this
	// total on (the fields themselves are most of the evidence).
	dsnFieldsAt confidence = 1
)

// textSignals holds what the text says about being an MTA-written report.
type textSignals struct {
	conf  confidence
	why   []string
	delay bool
	perm  bool
}

func containsAny(s string, list []string) string {
	for _, x := range list {
		if strings.Contains(s, x) {
			return x
		}
	}
	return ""
}

func (p *parser) signals(haveOrig bool) textSignals {
	var s textSignals
	subj := strings.ToLower(decodeText(p.top.get("Subject")))
	isReply := strings.HasPrefix(subj, "re:") || strings.HasPrefix(subj, "fw:") || strings.HasPrefix(subj, "fwd:")
	if !isReply {
		if m := containsAny(subj, bounceSubjects); m != "" {
			s.conf += markerStrong
			s.why = append(s.why, "subject: "+m)
		}
		if m := containsAny(subj, delayText); m != "" || strings.Contains(subj, "delay") {
			s.delay = true
		}
	}
	from := strings.ToLower(p.top.get("From"))
	if addr := parseAddr(from); addr != "" {
		local, _, _ := strings.Cut(addr, "@")
		switch local {
		case "mailer-daemon", "mailerdaemon", "mail-daemon", "postmaster", "mailer_daemon", "post_master", "maildaemon", "mdaemon", "mmdf", "uucp", "nobody":
			s.conf += markerWeak
			s.why = append(s.why, "from: "+local)
		}
	} else if strings.Contains(from, "mailer-daemon") || strings.Contains(from, "postmaster") {
		s.conf += markerWeak
		s.why = append(s.why, "from: mailer-daemon")
	}
	if strings.Contains(from, "mail delivery") {
		s.conf += markerWeak
		s.why = append(s.why, "from: mail delivery subsystem")
	}
	if p.top.has("X-Failed-Recipients") {
		s.conf += markerStrong
		s.why = append(s.why, "x-failed-recipients")
	}
	strong, weak := "", ""
	var found [4]string
	for i := range p.texts {
		// Only the report part speaks for the reporter: stop at the
		// quoted original so its content does not count.
		lt := p.lower(i)
		if k := p.separator(i); k >= 0 {
			lt = lt[:k]
		}
		lt = lt[:min(len(lt), 64<<10)]
		found = [4]string{}
		reportPhrases.scan(lt, found[:])
		if strong == "" {
			strong = found[0]
		}
		if weak == "" {
			weak = found[1]
		}
		if found[2] != "" {
			s.delay = true
		}
		if found[3] != "" {
			s.perm = true
		}
	}
	if strong != "" {
		s.conf += markerStrong
		s.why = append(s.why, "text: "+strong)
	}
	if weak != "" {
		s.conf += markerWeak
		s.why = append(s.why, "text: "+weak)
	}
	if haveOrig && s.conf > 0 {
		s.conf += markerWeak
		s.why = append(s.why, "original message included")
	}
	return s
}

// classify sets Kind and Why, strongest evidence first: report structure,
// then plain-text bounce signals, then auto-reply markers.
func (p *parser) classify(haveOrig bool) {
	r := p.rep
	switch {
	case p.reportType == "feedback-report" || p.feedback:
		r.Kind = KindFeedback
		r.Why = append(r.Why, "content-type multipart/report; report-type=feedback-report")
		return
	case p.reportType == "disposition-notification" || p.mdnSeen:
		// RFC 8098 read receipts answer the header From of a message,
		// like auto-replies, and are just as forgeable.
		r.Kind = KindMDN
		if p.reportType == "disposition-notification" {
			r.Why = append(r.Why, "content-type multipart/report; report-type=disposition-notification")
		} else {
			r.Why = append(r.Why, "message/disposition-notification part")
		}
		return
	}
	if why := p.aggregateReason(); why != "" {
		r.Kind = KindAggregateReport
		r.Why = append(r.Why, why)
		return
	}
	if k, why := p.notification(); k != KindNone {
		r.Kind = k
		r.Why = append(r.Why, why)
		return
	}
	sig := p.signals(haveOrig)
	structured := p.reportType == "delivery-status" || p.reportType == "global-delivery-status" || p.dsnSeen
	var rcpts []dsnGroup
	for _, g := range p.dsn {
		if g.recipient() || g.h.has("Action") {
			rcpts = append(rcpts, g)
		}
	}
	if structured || (len(rcpts) > 0 && sig.conf >= dsnFieldsAt) {
		switch {
		case p.reportType == "delivery-status" || p.reportType == "global-delivery-status":
			r.Why = append(r.Why, "content-type multipart/report; report-type="+p.reportType)
		case p.dsnSeen:
			r.Why = append(r.Why, "message/delivery-status part")
		default:
			r.Why = append(r.Why, "delivery-status fields in text")
		}
		r.Kind = dsnKind(rcpts, sig)
		r.Why = append(r.Why, "dsn: "+r.Kind.String())
		return
	}
	if sig.conf >= textReportAt {
		r.Kind = KindFailure
		if sig.delay && (!sig.perm || p.delaySubject()) {
			r.Kind = KindDelay
		}
		r.Why = append(r.Why, sig.why...)
		return
	}
	if why := challengeReason(p.top); why != "" {
		r.Kind = KindChallenge
		r.Why = append(r.Why, why)
		return
	}
	if why := AutoReplyReason(p.top.get); why != "" {
		r.Kind = KindAutoReply
		r.Why = append(r.Why, why)
		return
	}
	r.Kind = KindNone
}

// notification recognises reports that are not MIME reports: Amazon SES
// notifications (JSON in a text part, relayed by SNS) and Hotmail's
// complaint mails.
func (p *parser) notification() (Kind, string) {
	subj := strings.ToLower(decodeText(p.top.get("Subject")))
	if strings.HasPrefix(subj, "complaint about message from") {
		return KindFeedback, "subject: complaint about message from"
	}
	for i := range p.texts {
		lt := p.lower(i)
		lt = lt[:min(len(lt), 4096)]
		if !strings.Contains(lt, "notificationtype") {
			continue
		}
		lt = strings.ReplaceAll(strings.ReplaceAll(lt, " ", ""), `\"`, `"`)
		switch {
		case strings.Contains(lt, `"notificationtype":"bounce"`):
			if strings.Contains(lt, `"bouncetype":"transient"`) {
				return KindDelay, "amazon ses notification: transient bounce"
			}
			return KindFailure, "amazon ses notification: bounce"
		case strings.Contains(lt, `"notificationtype":"complaint"`):
			return KindFeedback, "amazon ses notification: complaint"
		case strings.Contains(lt, `"notificationtype":"delivery"`):
			return KindDelivered, "amazon ses notification: delivery"
		}
	}
	return KindNone, ""
}

func (p *parser) delaySubject() bool {
	subj := strings.ToLower(decodeText(p.top.get("Subject")))
	return strings.Contains(subj, "delay") || containsAny(subj, delayText) != ""
}

// dsnKind turns per-recipient Action and Status fields into a Kind
// (RFC 3464 section 2.3.3): any failure makes the report a failure.
func dsnKind(rcpts []dsnGroup, sig textSignals) Kind {
	var failed, delayed, delivered bool
	for _, g := range rcpts {
		switch g.action() {
		case "failed":
			failed = true
		case "delayed":
			delayed = true
		case "delivered", "relayed", "expanded":
			delivered = true
		default:
			switch g.statusClass() {
			case '5':
				failed = true
			case '4':
				delayed = true
			case '2':
				delivered = true
			}
		}
	}
	switch {
	case failed:
		return KindFailure
	case delayed:
		return KindDelay
	case delivered:
		return KindDelivered
	case sig.delay && !sig.perm:
		return KindDelay
	}
	return KindFailure
}

// separatorIndex returns the offset in lt (lowercased text) of the line
// that introduces a quoted original message, or -1.
func separatorIndex(lt string) int {
	// Every separator phrase contains one of separatorTriggers: look at the
	// lines that hold one instead of testing every line.
	// next[k] caches where trigger k occurs next (-1: nowhere after off),
	// so each trigger's occurrences are searched once: linear in lt.
	var next [len(separatorTriggers)]int
	for k := range next {
		next[k] = -2
	}
	for off := 0; off < len(lt); {
		hit := -1
		for k, tr := range separatorTriggers {
			if next[k] == -2 || next[k] >= 0 && next[k] < off {
				next[k] = -1
				if j := strings.Index(lt[off:], tr); j >= 0 {
					next[k] = off + j
				}
			}
			if next[k] >= 0 && (hit < 0 || next[k] < hit) {
				hit = next[k]
			}
		}
		if hit < 0 {
			return -1
		}
		// off always starts a line, so the line holding hit starts there
		// or later.
		start := off + strings.LastIndexByte(lt[off:hit], '\n') + 1
		end := len(lt)
		if j := strings.IndexByte(lt[hit:], '\n'); j >= 0 {
			end = hit + j
		}
		if isSeparator(lt[start:end]) {
			return start
		}
		off = end + 1
	}
	return -1
}

// separatorTriggers: each separator phrase contains one of them (a test
// checks).
var separatorTriggers = [...]string{"messag", "content-type:", "original mail"}

var separatorPhrases = []string{
	"below this line is a copy of the message",
	"this is a copy of the message",
	"copy of the message",
	"original message follows",
	"unsent message follows",
	"returned message follows",
	"message header follows",
	"message headers follow",
	"original message header",
	"headers of the original message",
	"header of the original message",
	"original mail info",
	"header of original message",
	"original message headers",
	"text of the original message",
	"message text follows",
	"undelivered message follows",
	"the original message",
	"original message",
	"returned message",
	"undelivered message",
	"rejected message",
	"content-type: message/rfc822",
	"content-type: text/rfc822-headers",
	"content-type: message/global",
	"content-type: text/rfc822-header",
}

// isSeparator reports whether a lowercased line introduces the original.
// Lines that merely mention the original in a sentence ("The original
// message was received at ...") are not separators: a separator is short
// and either decorated (dashes, stars) or says "follows"/"below"/"copy".
func isSeparator(l string) bool {
	t := strings.TrimSpace(l)
	if len(t) == 0 || len(t) > 120 {
		return false
	}
	m := containsAny(t, separatorPhrases)
	if m == "" {
		return false
	}
	if strings.HasPrefix(t, "content-type:") {
		return true
	}
	if strings.Contains(t, "was received at") || strings.Contains(t, "message was") {
		return false
	}
	decorated := strings.ContainsAny(t[:1], "-=*_#[<(") || strings.HasSuffix(t, "-") || strings.HasSuffix(t, ":")
	return decorated || strings.Contains(t, "follow") || strings.Contains(t, "below") || strings.Contains(t, "copy of") || strings.Contains(t, "attached")
}

// findMessageIDLine returns the first "Message-ID:" line's value found
// anywhere in a text part, normalised.
func findMessageIDLine(t []byte) string {
	lt := []byte(lowerASCII(t))
	for off := 0; off < len(lt); {
		k := bytes.Index(lt[off:], []byte("message-id:"))
		if k < 0 {
			return ""
		}
		k += off
		// Must start a line, possibly after quoting characters.
		j := k
		for j > 0 && (lt[j-1] == ' ' || lt[j-1] == '\t' || lt[j-1] == '>') {
			j--
		}
		if j == 0 || lt[j-1] == '\n' {
			line, _ := nextLine(t, k+len("message-id:"))
			v := strings.TrimSpace(string(line))
			if strings.Contains(v, "@") || strings.Contains(v, "<") {
				if id := NormalizeMessageID(v); id != "" {
					return id
				}
			}
		}
		off = k + len("message-id:")
	}
	return ""
}
