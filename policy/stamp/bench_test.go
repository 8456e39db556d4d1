package stamp

import "testing"

func BenchmarkSign(b *testing.B) {
	s := newStamper(20000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheck is the inbound cost: read a returned header block, find
// the stamp, canonicalise the covered fields and verify.
func BenchmarkCheck(b *testing.B) {
	s := newStamper(20000)
	v, _ := s.Sign(msg)
	hdr := []byte("Return-Path: <alice@example.org>\r\n" +
		"Received: from mail.example.org (mail.example.org [192.0.2.1])\r\n\tby mx.remote.example with ESMTPS id 4Ab; Tue, 01 Dec 2026 14:00:02 +0000\r\n" +
		"Received: from [10.0.0.5] (client [10.0.0.5])\r\n\tby mail.example.org with ESMTPSA id 4Aa; Tue, 01 Dec 2026 14:00:01 +0000\r\n" +
		"Message-ID: " + msg.MessageID + "\r\nDate: " + msg.Date + "\r\nFrom: " + msg.From + "\r\n" +
		"To: bob@remote.example\r\nSubject: quarterly figures\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		DefaultHeader + ": " + v + "\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if r, ok := s.Check(hdr, DefaultHeader); !ok || r.Status != StatusOK {
			b.Fatal(r)
		}
	}
}
