// Package bounce recognises delivery reports (bounces, delay and success DSNs)
// and the other automatic answers that reach a null sender (read receipts,
// auto-replies, challenge-response requests, feedback and aggregate reports),
// and extracts what they say about the original message: its Message-ID,
// header and body bytes, envelope sender candidates, failed recipients and
// Received hops.
//
// The package is decision-free: it reports facts from the message content
// alone, and the policy package weighs them (for example, is the bounced
// Message-ID in our sent log, or do the original's Received hops name our
// relays?). It understands RFC 3464 delivery status notifications
// (multipart/report; report-type=delivery-status, message/delivery-status and
// the RFC 6533 message/global* variants), RFC 8098 MDNs, RFC 3834
// auto-replies (AutoReplyReason is the one predicate, shared with the
// policy), RFC 5965 ARF feedback reports, DMARC (RFC 7489) and TLS-RPT
// (RFC 8460) aggregate reports, and the plain-text formats written by
// common MTAs (qmail, Exim, Sendmail, Postfix, Exchange, Courier, Gmail,
// Yahoo, ...), including originals quoted inline. Which copy is the original: a MIME-carried one at
// the outermost level, else the inline block with Received fields (a summary
// in the notice gives way to it); never a message nested inside it.
//
// Message-IDs are reported in the form returned by NormalizeMessageID: angle
// brackets and surrounding white space removed, the part after the last "@"
// lowercased (domains are case-insensitive; the local part is kept as is).
//
// Parsing is bounded by Limits (input size, MIME depth, number of parts), is
// linear in the input size, tolerates broken MIME by falling back to text
// scanning, and never panics. The plain-text heuristics read the first
// 256 KiB of each text part: reports put what matters at the top.
package bounce
