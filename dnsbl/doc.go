// Package dnsbl looks client IPs up in DNS lists and reports which zones list
// them and with what weight; it decides nothing (package policy turns the
// listings into evidence).
//
// Zones use Postfix postscreen syntax, "zone=filter*weight" (see
// ParseZoneSpec), plus a sender scope: backscatter lists default to
// senders=bounce, Backscatterer's "safe mode", and are asked only about
// bounce-class mail.
//
// A Checker starts all zones' queries at once (Start, at MAIL FROM) and
// collects them later (Pending.Wait, at RCPT) under one deadline, so a slow
// zone costs at most Options.Timeout. Answers are cached for their TTL,
// clamped to [MinTTL, MaxTTL], negative answers included (errors are not
// cached); concurrent checks of the same zone and IP share one query. Every failure — timeout,
// SERVFAIL, a dead resolver, an error code in 127.255.255.0/24, an answer
// outside 127.0.0.0/8 — fails open: StatusError, no weight, counted in
// Stats and logged at most once per interval per zone and kind. Health
// checks (CheckHealth, RunHealth) take zones that fail their RFC 5782 test
// points out of service until they pass again.
package dnsbl
