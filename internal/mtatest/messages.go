package mtatest

// DSN returns an RFC 3464 bounce from mx.remote.test to to, for an original
// message whose Message-ID is originalID and whose only Received hop is
// relayName [relayIP]: the shape Postfix gives a real non-delivery report.
// Tests use it to send real and forged bounces through an MTA, and
// policytest.DSN hands the same message to the policy and milter unit tests.
// statusFields are per-message fields added after Reporting-MTA, one
// "Name: value" each (X-Postfix-Queue-ID: …).
func DSN(to, dsnID, originalID, relayName, relayIP string, statusFields ...string) []byte {
	extra := ""
	for _, f := range statusFields {
		extra += f + "\n"
	}
	return []byte(`From: Mail Delivery System <MAILER-DAEMON@mx.remote.test>
To: ` + to + `
Subject: Undelivered Mail Returned to Sender
Date: Tue, 24 Nov 2026 00:00:00 +0000
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BB"
Message-ID: <` + dsnID + `>

--BB
Content-Type: text/plain

This is the mail system at host mx.remote.test. Your message could not be delivered.

--BB
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.remote.test
` + extra + `
Final-Recipient: rfc822; nobody@remote.test
Action: failed
Status: 5.1.1

--BB
Content-Type: text/rfc822-headers

Received: from ` + relayName + ` (` + relayName + ` [` + relayIP + `])
	by mx.remote.test (Postfix) with ESMTPS id 4XYZ
	for <nobody@remote.test>; Mon, 23 Nov 2026 10:00:00 +0000
From: someone@example.org
To: nobody@remote.test
Subject: hello
Message-ID: <` + originalID + `>

--BB--
`)
}
