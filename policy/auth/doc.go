// Package auth answers "is the return path of this inbound message
// authenticated?", the question behind NDR suppression: when the answer is
// no, the milter rewrites every recipient with NOTIFY=NEVER so that our MTA
// never sends a bounce to a sender that may be forged.
//
// Two mechanisms are checked, both through the project's one DNS seam
// (internal/resolver), so tests run against an in-process DNS server:
//
//   - SPF (RFC 7208, blitiri.com.ar/go/spf) of the client IP for the MAIL FROM
//     domain; for the null sender, of the HELO name (postmaster@helo, §2.4).
//   - DKIM (RFC 6376, emersion/go-msgauth): every signature of the raw
//     message (at most MaxSignatures of them) is verified, and a valid one
//     counts only when its d= domain is aligned with the MAIL FROM domain in
//     the relaxed sense of DMARC (RFC 7489 §3.1.1): both have the same
//     organizational domain, taken from the public suffix list. Alignment is
//     against the envelope sender, not the From header, because the envelope
//     sender is where a bounce would go.
//
// Combine maps the parts to a Result, in this order:
//
//	SPF pass, or any valid aligned DKIM signature    → Authenticated
//	SPF fail                                          → Forged
//	SPF temperror, or an aligned DKIM key temperror   → Unknown
//	anything else (softfail, neutral, none,
//	permerror, skipped, unaligned or broken DKIM)     → Unauthenticated
//
// SPF fail outranks a DKIM temperror: the domain owner said this IP may not
// send for it, and that statement does not depend on the missing key. An
// unaligned signature's temperror cannot make Unknown: even if it verified it
// would not vouch for the return path.
//
// The package is decision-free: Checker.Judge reports the Result, a
// one-line reason for the log and the signatures it verified, and the
// policy decides what to do with it, under the operator's
// ndr_suppression.require (policy/ndr.go).
//
// For bounces it also answers "is the returned original ours?": VerifyOwn
// verifies our own DKIM signature on it (whole, or its headers alone), and
// SPFOfOriginal checks the original's sender against the client that first
// sent it (the provenance ladder, policy/provenance.go).
//
// Everything is bounded: one Timeout covers each check's lookups, SPF keeps
// the RFC's limits of 10 DNS mechanisms and 2 void lookups, DKIM verifies at
// most MaxSignatures signatures, and garbage input yields "no signature" or
// permerror, never a panic. DNS failures never produce Forged: only a published SPF "-all" (or
// "-" mechanism) that matches does.
package auth
