package milter_test

import (
	"io"
	"testing"

	gomilter "github.com/d--j/go-milter"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/backscatter-milter/backscatter-milter/milter"
)

// BenchmarkTransaction measures one whole MTA session (connect … end of
// message, quit) through go-milter's client over loopback TCP: client and
// server both run in this process, so ns/op and allocs/op count both sides.
// The verdict line is encoded as in production (JSON), then discarded.
func BenchmarkTransaction(b *testing.B) {
	body := []byte("Hello Bob,\r\n\r\nthe report is attached.\r\n\r\n-- \r\nAlice\r\n")
	cases := []struct {
		name     string
		clientIP string
		m        message
	}{
		{"ordinary", cleanIP, message{from: "alice@pass.test", fromArgs: "SIZE=5000 BODY=8BITMIME",
			rcpts:   []rcpt{{"bob@example.org", "NOTIFY=FAILURE ORCPT=rfc822;bob@example.org"}},
			queueID: "4ABCDEF", body: body,
			headers: [][2]string{{"Received", " from client.test (client.test [198.51.100.7]) by mx.example.org"},
				{"From", " Alice <alice@pass.test>"}, {"To", " bob@example.org"}, {"Subject", " report"},
				{"Message-ID", " <m1@pass.test>"}, {"Date", " Mon, 23 Nov 2026 10:00:00 +0000"}}}},
		{"unauthenticated-ndr-rewrite", cleanIP, message{from: "alice@remote.test",
			rcpts:   []rcpt{{"bob@example.org", "NOTIFY=FAILURE ORCPT=rfc822;bob@example.org"}},
			queueID: "4ABCDEF", body: body, headers: [][2]string{{"From", " Alice <alice@remote.test>"}, {"Subject", " hi"}}}},
		{"bounce", backscatIP, message{from: "", rcpts: []rcpt{{batvOKRcpt, ""}}, queueID: "4ABCDEF",
			headers: dsnHeaders(), body: dsnBody("sent-1@example.org", "mx1.example.org")}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			h := start(b, testEngine(), func(o *milter.Options) {
				enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
				o.Log = zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel))
			})
			client := h.client()
			b.ReportAllocs()
			for b.Loop() {
				macros := gomilter.NewMacroBag()
				s, err := client.Session(macros)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.Conn("client.test", gomilter.FamilyInet, 25, c.clientIP); err != nil {
					b.Fatal(err)
				}
				if _, err := s.Helo("client.test"); err != nil {
					b.Fatal(err)
				}
				r := h.send(s, macros, c.m)
				if r.end == nil || r.end.Type != gomilter.ActionAccept {
					b.Fatalf("end %v", r.end)
				}
				s.Close()
			}
		})
	}
}
