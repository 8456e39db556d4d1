package batv

import (
	"crypto/hmac"
	"hash"
)

// The key ring and the lifetime window of a Signer are shared with the
// outbound stamp (policy/stamp): one set of key files, one rotation rule and
// one day-number wrap for both proofs. These methods are that seam; the
// secrets themselves never leave this package.

// ExpiryDay is the day number, modulo DayWrap, that a proof made now
// expires on: today plus the lifetime in whole days.
func (s *Signer) ExpiryDay() int {
	return (dayNumber(s.now()) + s.lifetimeDays()) % DayWrap
}

// Live reports whether a proof expiring on day (modulo DayWrap) is within
// its lifetime today, and how many days it has left ((day − today) mod
// DayWrap; see the package documentation for the wrap).
func (s *Signer) Live(day int) (daysLeft int, ok bool) {
	daysLeft = ((day-dayNumber(s.now()))%DayWrap + DayWrap) % DayWrap
	return daysLeft, daysLeft >= 1 && daysLeft <= s.lifetimeDays()
}

// NewHMAC returns an HMAC keyed with the secret of key id, or false when no
// such key is configured. The key stays inside the hash.
func (s *Signer) NewHMAC(id int, h func() hash.Hash) (hash.Hash, bool) {
	secret, ok := s.key(id)
	if !ok {
		return nil, false
	}
	return hmac.New(h, secret), true
}
