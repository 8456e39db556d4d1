package bounce_test

import (
	"fmt"

	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
)

func ExampleParse() {
	raw := []byte("From: MAILER-DAEMON@mx.example.net\r\n" +
		"To: alice@example.org\r\n" +
		"Subject: failure notice\r\n" +
		"\r\n" +
		"Hi. This is the qmail-send program at mx.example.net.\r\n" +
		"I'm afraid I wasn't able to deliver your message to the following addresses.\r\n" +
		"\r\n" +
		"<bob@example.net>:\r\n" +
		"Sorry, no mailbox here by that name. (#5.1.1)\r\n" +
		"\r\n" +
		"--- Below this line is a copy of the message.\r\n" +
		"\r\n" +
		"Received: from out.example.org (out.example.org [192.0.2.10])\r\n" +
		"  by mx.example.net with SMTP; 5 Mar 2026 07:59:59 -0000\r\n" +
		"Message-ID: <1234@Out.Example.ORG>\r\n" +
		"From: alice@example.org\r\n" +
		"\r\n" +
		"hello\r\n")
	r, err := bounce.Parse(raw, bounce.DefaultLimits())
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Kind, r.OriginalMessageID, r.FailedRecipients, r.OriginalSenders)
	fmt.Println(r.Received[0].By, r.Received[0].ClientIP)
	// The policy compares with its sent log in the same normalised form.
	fmt.Println(r.OriginalMessageID == bounce.NormalizeMessageID("<1234@out.example.org>"))
	// The returned original's header, as it was written (CRLF lines), for
	// checking a signature on it.
	fmt.Printf("%q\n", r.OriginalHeader[:40])
	// Output:
	// failure 1234@out.example.org [bob@example.net] [alice@example.org]
	// mx.example.net 192.0.2.10
	// true
	// "Received: from out.example.org (out.exam"
}

func ExampleAutoReplyReason() {
	header := map[string]string{"Subject": "Out of Office: budget", "X-Autoreply": "yes"}
	fmt.Println(bounce.AutoReplyReason(func(name string) string { return header[name] }))
	fmt.Printf("%q\n", bounce.AutoReplyReason(func(string) string { return "" }))
	// Output:
	// x-autoreply: yes
	// ""
}
