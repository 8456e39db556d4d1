package batv

import "testing"

func BenchmarkSign(b *testing.B) {
	s := newSigner(20000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign("someone@example.org"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	s := newSigner(20000)
	for _, syntax := range []Syntax{SyntaxSubaddress, SyntaxPrefix} {
		s.Syntax = syntax
		signed, err := s.Sign("someone@example.org")
		if err != nil {
			b.Fatal(err)
		}
		b.Run(syntax.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r := s.Verify(signed); r.Status != StatusOK {
					b.Fatal(r.Status)
				}
			}
		})
	}
	b.Run("missing", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r := s.Verify("someone@example.org"); r.Status != StatusMissing {
				b.Fatal(r.Status)
			}
		}
	})
}
