// Package sent keeps a log of what we sent — outbound Message-IDs and the
// (BATV-signed) envelope senders we used — for a limited time, so that an
// inbound bounce or auto-reply can be matched against mail we really sent.
//
// Three backends share the Store interface: an embedded bbolt file (the
// default, one MTA), Redis (a fleet of MTAs sharing one log) and memory
// (tests and offline runs). Entries expire after a TTL (DefaultTTL); expired
// entries are never reported as seen.
//
// The package is decision-free and fails open by construction: every problem
// is returned as an error, never a panic, and the policy treats an error as
// "no evidence". Passwords never appear in errors or String output.
package sent
