package stamp_test

import (
	"fmt"
	"time"

	"github.com/backscatter-milter/backscatter-milter/policy/batv"
	"github.com/backscatter-milter/backscatter-milter/policy/stamp"
)

// A stamp is made for an outbound message and checked on the copy a bounce
// returns; moved onto another message it no longer verifies.
func Example() {
	// In the milter the keys come from batv.keys (batv.LoadKeyFile).
	keys := &batv.Signer{Keys: []batv.Key{{ID: 0, Secret: []byte("example-secret-0123456789")}},
		Lifetime: 30 * 24 * time.Hour, Now: func() time.Time { return time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC) }}
	s := &stamp.Stamper{Keys: keys}

	v, err := s.Sign(stamp.Fields{MessageID: "<q4@example.org>", Date: "Tue, 01 Dec 2026 14:00:00 +0000", From: "Alice <alice@example.org>"})
	if err != nil {
		panic(err)
	}
	returned := "Message-ID:\r\n <q4@EXAMPLE.org>\r\nDate: Tue, 1 Dec 2026 15:00:00 +0100\r\nFrom: alice@example.org\r\n" +
		stamp.DefaultHeader + ": " + v + "\r\n"
	r, _ := s.Check([]byte(returned), stamp.DefaultHeader)
	fmt.Println("returned copy:", r.Status, r.DaysLeft, "days left")

	forged := "Message-ID: <spam@bulk.example>\r\nDate: Tue, 01 Dec 2026 14:00:00 +0000\r\nFrom: alice@example.org\r\n" +
		stamp.DefaultHeader + ": " + v + "\r\n"
	r, _ = s.Check([]byte(forged), stamp.DefaultHeader)
	fmt.Println("copied stamp:", r.Status)
	// Output:
	// returned copy: ok 30 days left
	// copied stamp: bad
}
