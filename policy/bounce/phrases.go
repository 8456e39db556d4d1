package bounce

import "strings"

// phraseMatcher finds, in one pass over a text, which phrases of several
// lists occur in it. The text heuristics used to call strings.Contains once
// per phrase and text (about 150 scans of up to 64 KiB per part); indexing
// the phrases by their first two bytes makes it one scan.
type phraseMatcher struct {
	lists   [][]string
	phrases []string
	list    []uint8 // which list a phrase belongs to
	pos     []int   // its position in that list (earlier = preferred)
	start   []int32 // start[k]..start[k+1]: candidates whose first two bytes are k
	cands   []int32
}

func newPhraseMatcher(lists ...[]string) *phraseMatcher {
	m := &phraseMatcher{lists: lists, start: make([]int32, 1<<16+1)}
	count := make([]int32, 1<<16)
	for li, l := range lists {
		for pi, ph := range l {
			if len(ph) < 2 {
				panic("bounce: phrase shorter than two bytes: " + ph)
			}
			m.phrases = append(m.phrases, ph)
			m.list = append(m.list, uint8(li))
			m.pos = append(m.pos, pi)
			count[pairKey(ph, 0)]++
		}
	}
	for k := 0; k < 1<<16; k++ {
		m.start[k+1] = m.start[k] + count[k]
	}
	fill := make([]int32, 1<<16)
	copy(fill, m.start[:1<<16])
	m.cands = make([]int32, len(m.phrases))
	for i, ph := range m.phrases {
		k := pairKey(ph, 0)
		m.cands[fill[k]] = int32(i)
		fill[k]++
	}
	return m
}

func pairKey(s string, i int) int { return int(s[i])<<8 | int(s[i+1]) }

// scan sets found[l] to the phrase of list l that occurs in s and comes
// first in that list, or "" when none does.
func (m *phraseMatcher) scan(s string, found []string) {
	best := make([]int, len(found))
	for i := range best {
		best[i] = -1
	}
	for i := 0; i+1 < len(s); i++ {
		k := pairKey(s, i)
		for _, c := range m.cands[m.start[k]:m.start[k+1]] {
			l := m.list[c]
			if (best[l] < 0 || m.pos[c] < best[l]) && strings.HasPrefix(s[i:], m.phrases[c]) {
				best[l] = m.pos[c]
			}
		}
	}
	for l, b := range best {
		if b >= 0 && l < len(found) {
			found[l] = m.lists[l][b]
		}
	}
}
