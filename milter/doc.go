// Package milter is the MTA-facing adapter of backscatter-milter: a
// go-milter server whose per-connection sessions collect what Postfix or
// Sendmail tell about a transaction, hand it to the policy engine at RCPT
// and at end of message, and turn its verdict into milter responses and
// modifications. The wire protocol stays here; decisions stay in policy.
package milter
