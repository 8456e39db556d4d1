package dnsbl

import (
	"net/netip"
	"testing"
)

func TestZoneResultDetailAndNote(t *testing.T) {
	z := Zone{Name: "bl.test"}
	listed := ZoneResult{Zone: z, Status: StatusListed, Listed: true,
		Answers: []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.4")}, TXT: "see https://bl.test"}
	if d := listed.Detail(); d != "127.0.0.2,127.0.0.4 see https://bl.test" {
		t.Errorf("Detail = %q", d)
	}
	for _, c := range []struct {
		r    ZoneResult
		note string
	}{
		{listed, ""},
		{ZoneResult{Zone: z, Status: StatusError, ErrKind: KindTimeout}, "dnsbl bl.test: timeout (no evidence)"},
		{ZoneResult{Zone: z, Status: StatusSkippedHealth}, "dnsbl bl.test: skipped, unhealthy"},
		{ZoneResult{Zone: z, Status: StatusSkippedScope}, ""},
	} {
		if n := c.r.Note(); n != c.note {
			t.Errorf("%s: Note = %q, want %q", c.r.Status, n, c.note)
		}
	}
}
