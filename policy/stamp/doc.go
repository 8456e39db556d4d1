// Package stamp signs outbound mail with a header that proves, without any
// state, that a message returned to us in a bounce, a read receipt or an
// auto-reply is one we sent.
//
// The header (DefaultHeader, X-Backscatter-Stamp) holds
//
//	1.K.DDD.MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM
//
// the format version (1), the key number K (0–9), the expiry day number DDD
// (days since the Unix epoch modulo 1000, as in BATV) and the first 16 bytes,
// in hex, of HMAC-SHA256 over the version, K, DDD and the message's own
// Message-ID, Date and From fields. The format has no '=' and no white space,
// so quoted-printable re-encoding, "> " quoting and re-folding of a returned
// copy leave it readable; white space inside the value is ignored anyway.
//
// The covered fields are canonicalised so that what a bouncing MTA commonly
// does to a returned header block does not break the proof: Message-ID as
// bounce.NormalizeMessageID (brackets and white space dropped, domain in
// lower case); Date as the instant it names (re-rendered dates, other zones
// and comments still match), or its white-space-collapsed text when it does
// not parse; From as its addresses only (display names are often re-encoded)
// with the domain in lower case.
//
// Keys, rotation and lifetime are BATV's (policy/batv): the same key files,
// the same key numbers, retired keys that still verify, the same day-number
// window and wrap. A Stamper only borrows a batv.Signer's key ring; no secret
// leaves that package and nothing here ever prints one.
//
// The package is decision-free: Verify reports a Status and the policy turns
// it into evidence.
package stamp
