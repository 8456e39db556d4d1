// Package batv signs and verifies BATV "prvs" envelope-sender tags
// (draft-levine-smtp-batv-01), so that a bounce to one of our addresses can be
// told apart from backscatter caused by a forged sender.
//
// A tag is KDDDSSSSSS: K is the key number (0–9), DDD the expiry day number
// (days since the Unix epoch, UTC) modulo 1000, and SSSSSS the first three
// bytes, in hex, of HMAC-SHA1(secret, "KDDD" + base address). Two forms exist:
//
//	prvs=KDDDSSSSSS=user@example.org   SyntaxPrefix (the draft's form)
//	user+prvs=KDDDSSSSSS@example.org   SyntaxSubaddress (the default)
//
// The sub-address form is the default because Postfix checks a recipient
// before any milter sees it: the prefix form is rejected as an unknown user
// unless Postfix is told to strip it, while the sub-address form works with an
// ordinary recipient_delimiter = +.
//
// The MAC is computed over the base address with ASCII letters lowercased:
// remote MTAs sometimes change the case of an address they bounce to, and
// rejecting a real bounce for that is worse than the (nil) gain of a
// case-sensitive MAC. Non-ASCII bytes are left alone so that distinct
// addresses never share a MAC input.
//
// Expiry rule, because DDD wraps from 999 to 0: with L the lifetime in whole
// days and today the current day number, a tag is within its lifetime when
//
//	0 ≤ (DDD − today) mod 1000 ≤ L
//
// Anything else is expired (or so far in the future that it cannot be ours).
// The lifetime is therefore capped well below 1000 days (MaxLifetime).
//
// The package is decision-free: Verify reports a Status (ok, missing, bad,
// expired) and the policy package turns it into weighted evidence. No error or
// String output ever contains a key.
package batv
