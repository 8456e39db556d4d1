package batv_test

import (
	"fmt"
	"time"

	"github.com/backscatter-milter/backscatter-milter/policy/batv"
)

func Example() {
	// In production the secret comes from batv.LoadKeyFile.
	signer := &batv.Signer{
		Keys:    []batv.Key{{ID: 1, Secret: []byte("an example secret, 16+ bytes")}},
		Current: 1,
		Now:     func() time.Time { return time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC) },
	}
	// Outbound: sign the envelope sender.
	sender, err := signer.Sign("alice@example.org")
	if err != nil {
		panic(err)
	}
	fmt.Println(sender)

	// Inbound bounce to that address a day later.
	signer.Now = func() time.Time { return time.Date(2025, 3, 2, 10, 0, 0, 0, time.UTC) }
	r := signer.Verify(sender)
	fmt.Println(r.Status, r.Original, r.KeyID)

	// A forged bounce to the bare address.
	fmt.Println(signer.Verify("alice@example.org").Status)
	// Output:
	// alice+prvs=115528be7a@example.org
	// ok alice@example.org 1
	// missing
}
