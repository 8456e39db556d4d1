// Package policy is the decision engine of backscatter-milter: it turns facts
// about a transaction (envelope, headers, parsed bounce, DNSBL listings, BATV
// tags, the sent log, return-path authentication) into named, weighted
// evidence, sums it and maps the score to an action with operator thresholds.
//
// It knows nothing of the milter wire protocol: package milter feeds it a
// Transaction and turns its Verdict into milter responses and modifications.
// The packages below it (bounce, batv, sent, auth, dnsbl) report facts and
// decide nothing; all weighing happens here, so a postmaster can read every
// reason for a decision in one place and in one log line.
package policy
