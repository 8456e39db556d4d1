package policy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/backscatter-milter/backscatter-milter/internal/policytest"
	"github.com/backscatter-milter/backscatter-milter/policy"
	"github.com/backscatter-milter/backscatter-milter/policy/batv"
	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
)

// The decision-level corpus test runs every bounce and auto-reply of the
// shared corpus (read in place, never copied) through the real engine,
// offline: no DNS, a fake sent log, a real BATV signer. It measures what
// the product does with real answers, not what the parser extracts.

func corpusRoot(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("BACKSCATTER_CORPUS")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "corpus")
	}
	if _, err := os.Stat(filepath.Join(dir, "truth.jsonl")); err != nil {
		if os.Getenv("BACKSCATTER_CORPUS") != "" || os.Getenv("CI") == "true" || os.Getenv("BACKSCATTER_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("corpus not found at %s: %v", dir, err)
		}
		t.Skipf("corpus not found at %s (set BACKSCATTER_CORPUS)", dir)
	}
	return dir
}

type corpusHop struct {
	FromIPs []string `json:"from_ips"`
	By      string   `json:"by"`
}

type corpusEntry struct {
	File              string      `json:"file"`
	Kind              string      `json:"kind"`
	IsBounce          bool        `json:"is_bounce"`
	OriginalMessageID string      `json:"original_message_id"`
	OriginalMessage   string      `json:"original_message"` // full, headers, none
	OriginalReceived  []corpusHop `json:"original_received"`
	InReplyTo         *string     `json:"bounce_in_reply_to"`
	References        *string     `json:"bounce_references"`
}

func loadCorpus(t *testing.T, dir string) []corpusEntry {
	f, err := os.Open(filepath.Join(dir, "truth.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []corpusEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e corpusEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("truth.jsonl: %v", err)
		}
		if e.IsBounce || e.Kind == "autoreply" || e.Kind == "dsn-delivered" {
			out = append(out, e)
		}
	}
	if err := sc.Err(); err != nil || len(out) == 0 {
		t.Fatalf("truth.jsonl: %v, %d entries", err, len(out))
	}
	return out
}

// splitMessage turns a raw message into the header fields and body the MTA
// would hand the milter (folded values keep their line breaks).
func splitMessage(raw []byte) ([]policy.Header, []byte) {
	raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	raw = bytes.ReplaceAll(raw, []byte("\r"), []byte("\n"))
	var hs []policy.Header
	rest := raw
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		line := rest
		if i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if len(line) == 0 {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(hs) > 0 {
			hs[len(hs)-1].Value += "\n" + string(line)
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue // mbox "From " line or junk: the MTA would not pass it as a field
		}
		hs = append(hs, policy.Header{Name: string(name), Value: string(value)})
	}
	return hs, bytes.ReplaceAll(rest, []byte("\n"), []byte("\r\n"))
}

// originatingHop is the oldest Received hop of the original that names a
// receiving host (truth's "by" values carry stray ";" and qmail's "by uid
// 0" comments, which name no host).
func originatingHop(hops []corpusHop) (corpusHop, bool) {
	for i := len(hops) - 1; i >= 0; i-- {
		by := strings.TrimRight(strings.TrimSpace(hops[i].By), ";")
		if strings.ContainsAny(by, ".:") {
			return corpusHop{By: by}, true
		}
	}
	return corpusHop{}, false
}

// scenario is one row of the table.
type scenario struct {
	name, goal string
	counts     map[string]map[policy.Action]int // by split key
	losses     []string
}

func (s *scenario) add(split string, a policy.Action) {
	if s.counts == nil {
		s.counts = map[string]map[policy.Action]int{}
	}
	if s.counts[split] == nil {
		s.counts[split] = map[policy.Action]int{}
	}
	s.counts[split][a]++
}

func (s *scenario) total(split string) (n, blocked int) {
	for a, c := range s.counts[split] {
		n += c
		if a >= policy.Quarantine {
			blocked += c
		}
	}
	return
}

func TestCorpusDecisions(t *testing.T) {
	dir := corpusRoot(t)
	entries := loadCorpus(t, dir)
	signer := &batv.Signer{Keys: []batv.Key{{ID: 0, Secret: []byte("corpus-decisions-secret-0123456789")}}}
	tagged, err := signer.Sign("bob@example.org")
	if err != nil {
		t.Fatal(err)
	}

	engine := func(ids []string, tagger policy.Tagger, relay *corpusHop) *policy.Engine {
		s := policy.DefaultSettings()
		s.LocalDomains = []string{"example.org"}
		sent := policytest.NewSent()
		for _, id := range ids {
			sent.IDs[bounce.NormalizeMessageID(id)] = true
		}
		if relay != nil {
			if ip, err := netip.ParseAddr(strings.Trim(relay.By, "[]")); err == nil {
				s.RelayNets = append(s.RelayNets, netip.PrefixFrom(ip, ip.BitLen()))
			} else if relay.By != "" {
				s.RelayHosts = append(s.RelayHosts, strings.ToLower(relay.By))
			}
		}
		e := &policy.Engine{Settings: s, Sent: sent}
		if tagger != nil {
			e.Tagger = tagger
		}
		return e
	}
	run := func(e *policy.Engine, raw []byte, rcpt string) *policy.Verdict {
		tx := e.Begin(context.Background(), "corpus", policy.Connection{ClientIP: netip.MustParseAddr("192.0.2.25")}, "", "", "")
		if v := e.Rcpt(context.Background(), tx, rcpt, ""); v.Action != policy.Accept {
			return v
		}
		tx.DataSeen = true
		tx.Headers, tx.Body = splitMessage(raw)
		if !e.WantBody(tx) {
			tx.Body = nil
		}
		if len(tx.Body) > e.Settings.BodyMax {
			tx.Body, tx.BodyCut = tx.Body[:e.Settings.BodyMax], true
		}
		return e.End(context.Background(), tx)
	}

	A := &scenario{name: "A", goal: "Message-ID in the sent log, BATV off: accept every one"}
	B := &scenario{name: "B", goal: "nothing proves it ours, BATV off: block >= 98% of forgeries whose original headers came back"}
	C := &scenario{name: "C", goal: "BATV on, recipient is a tag we made: accept every one"}
	D := &scenario{name: "D", goal: "BATV on, untagged recipient: block every bounce"}
	E := &scenario{name: "E", goal: "relays set to the originating hop of the original: accept every one"}
	kindOf := func(e corpusEntry) string {
		if e.IsBounce {
			return "bounce"
		}
		return e.Kind
	}
	for _, c := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, "bounces", c.File))
		if err != nil {
			t.Fatalf("%s: %v", c.File, err)
		}
		kind := kindOf(c)
		// A: the original (or, for an auto-reply, what it answers) is ours.
		var ids []string
		if c.OriginalMessageID != "" {
			ids = append(ids, c.OriginalMessageID)
		}
		for _, p := range []*string{c.InReplyTo, c.References} {
			if p != nil && !c.IsBounce {
				ids = append(ids, strings.Fields(*p)...)
			}
		}
		if len(ids) > 0 {
			v := run(engine(ids, nil, nil), raw, "bob@example.org")
			A.add(kind, v.Action)
			if v.Action >= policy.Quarantine {
				A.losses = append(A.losses, fmt.Sprintf("%s: %s %v %v", c.File, v.Action, v.Evidence.Summary(), v.Notes))
			}
		}
		// B: nothing is ours.
		if v := run(engine(nil, nil, nil), raw, "bob@example.org"); true {
			B.add(kind+"/"+c.OriginalMessage, v.Action)
			if c.IsBounce && c.OriginalMessage != "none" && v.Action < policy.Quarantine {
				B.losses = append(B.losses, fmt.Sprintf("%s: %s %v %v", c.File, v.Action, v.Evidence.Summary(), v.Notes))
			}
		}
		// C and D: BATV on, nothing else known.
		tg := signerTagger{s: signer}
		v := run(engine(nil, tg, nil), raw, tagged)
		C.add(kind, v.Action)
		if v.Action >= policy.Quarantine {
			C.losses = append(C.losses, fmt.Sprintf("%s: %s %v %v", c.File, v.Action, v.Evidence.Summary(), v.Notes))
		}
		v = run(engine(nil, tg, nil), raw, "bob@example.org")
		D.add(kind, v.Action)
		if c.IsBounce && v.Action < policy.Quarantine {
			D.losses = append(D.losses, fmt.Sprintf("%s: %s %v %v", c.File, v.Action, v.Evidence.Summary(), v.Notes))
		}
		// E: our relay is the hop that received the original first.
		if hop, ok := originatingHop(c.OriginalReceived); ok && c.IsBounce {
			{
				v := run(engine(nil, nil, &hop), raw, "bob@example.org")
				E.add(kind, v.Action)
				if v.Action >= policy.Quarantine {
					E.losses = append(E.losses, fmt.Sprintf("%s: relay %s: %s %v %v", c.File, hop.By, v.Action, v.Evidence.Summary(), v.Notes))
				}
			}
		}
	}

	var out strings.Builder
	fmt.Fprintf(&out, "\n%-3s %-22s %6s %6s %6s %6s %6s %8s\n", "", "split", "n", "accept", "tag", "held", "refuse", "blocked")
	for _, s := range []*scenario{A, B, C, D, E} {
		fmt.Fprintf(&out, "%s: %s\n", s.name, s.goal)
		keys := make([]string, 0, len(s.counts))
		for k := range s.counts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			n, blocked := s.total(k)
			m := s.counts[k]
			fmt.Fprintf(&out, "%-3s %-22s %6d %6d %6d %6d %6d %7.1f%%\n", s.name, k, n, m[policy.Accept], m[policy.Tag], m[policy.Quarantine], m[policy.Reject], 100*float64(blocked)/float64(n))
		}
	}
	t.Log(out.String())

	seen := map[string]bool{}
	for _, s := range []*scenario{A, C, D, E} {
		for _, l := range s.losses {
			key := s.name + " " + strings.SplitN(l, ":", 2)[0]
			if why, ok := knownLosses[key]; ok {
				seen[key] = true
				t.Logf("%s: known loss (%s): %s", s.name, why, l)
				continue
			}
			t.Errorf("%s: legitimate answer lost: %s", s.name, l)
		}
	}
	for key := range knownLosses {
		if !seen[key] {
			t.Errorf("%s is no longer lost: remove it from knownLosses", key)
		}
	}
	// B: forgeries whose original headers came back.
	n, blocked := 0, 0
	for _, k := range []string{"bounce/full", "bounce/headers"} {
		kn, kb := B.total(k)
		n, blocked = n+kn, blocked+kb
	}
	rate := 100 * float64(blocked) / float64(n)
	t.Logf("B: %d of %d forgeries with original headers blocked (%.1f%%)", blocked, n, rate)
	for _, l := range B.losses {
		t.Logf("B: not blocked: %s", l)
	}
	// Floor at what this tree reaches; the goal is 98%.
	if rate < bBlockedFloor {
		t.Errorf("B: %.1f%% blocked, below the floor of %.1f%% (goal 98%%)", rate, bBlockedFloor)
	}
}

// bBlockedFloor is the share of forged bounces with original headers that
// scenario B must block: raise it as the parser finds more originals (the
// goal is 98%).
const bBlockedFloor = 99.0

// knownLosses are the decisions this tree still gets wrong because the
// bounce parser misreads the message (issue 10 items 5-7, owned by the
// parser). It is a ratchet: a loss not listed fails the test, and so does
// a listed one that no longer happens.
var knownLosses = map[string]string{
	"D lhost-fml/lhost-fml-02.eml": "not recognised as a bounce",
	"D lhost-fml/lhost-fml-03.eml": "not recognised as a bounce",
}
