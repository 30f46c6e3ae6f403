package firewall

import (
	"fmt"

	"github.com/google/nftables"

	"github.com/moat-fw/moat/internal/blocklist"
	"github.com/moat-fw/moat/internal/config"
)

// Blocklists live in sets of their own, two per list (IPv4 and IPv6),
// interval sets without timeouts: a list's elements stay until a refresh
// removes them. Own sets rather than the ban sets: a refresh changes only
// its list's elements, lists may overlap each other and the bans without
// merging, and each list gets its own drop rule and counter, so status can
// say how many packets each list dropped. Per list rather than one shared
// pair: a shared set would need the lists merged before the kernel sees
// them, and could not count drops per list.

// BlocklistSet names list name's set of one family.
func BlocklistSet(name string, v6 bool) string {
	if v6 {
		return "bl6_" + name
	}
	return "bl4_" + name
}

// BlocklistCounter names the counter of list name's drop rules.
func BlocklistCounter(name string) string { return "bl_" + name }

// blocklistRules adds the lists' sets and counters to rs and returns
// their drop rules, which go right after the ban rules: a listed source is
// dropped as a banned one is, before conntrack and the allow sets.
func blocklistRules(rs *Ruleset, fw config.Firewall) []Rule {
	var out []Rule
	for _, name := range fw.Blocklists {
		rs.Sets = append(rs.Sets, SetDef{Name: BlocklistSet(name, false), Type: SetBlocklist},
			SetDef{Name: BlocklistSet(name, true), V6: true, Type: SetBlocklist})
		rs.Counters = append(rs.Counters, BlocklistCounter(name))
		out = append(out, rule(saddrIn(BlocklistSet(name, false), false), counterObj(BlocklistCounter(name)), drop()),
			rule(saddrIn(BlocklistSet(name, true), true), counterObj(BlocklistCounter(name)), drop()))
	}
	return out
}

// rangeChunk bounds the set elements built at once: a million-entry list
// is encoded a chunk at a time rather than as two million SetElement
// values side by side.
const rangeChunk = 16384

// addRanges queues rs (of one family) as elements of s on c and returns
// how many it queued.
func addRanges(c *nftables.Conn, s *nftables.Set, rs []blocklist.Range, del bool) (int, error) {
	queued := 0
	els := make([]nftables.SetElement, 0, 2*min(len(rs), rangeChunk))
	for len(rs) > 0 {
		n := min(len(rs), rangeChunk)
		els = els[:0]
		for _, r := range rs[:n] {
			els = append(els, nftables.SetElement{Key: r.From.AsSlice()})
			if next := r.To.Next(); next.IsValid() {
				els = append(els, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
			} else {
				els[len(els)-1].IntervalOpen = true
			}
		}
		var err error
		if del {
			err = c.SetDeleteElements(s, els)
		} else {
			err = c.SetAddElements(s, els)
		}
		if err != nil {
			return queued, fmt.Errorf("set %s: %w", s.Name, err)
		}
		queued += len(els)
		rs = rs[n:]
	}
	return queued, nil
}

func blocklistSet(name string, v6 bool) *nftables.Set {
	s := namedSet(table(), BlocklistSet(name, v6), v6)
	s.HasTimeout = false
	return s
}

// UpdateBlocklist changes list name's sets by del and add (aggregated
// ranges, IPv4 first) in one transaction, deletions first: the kernel
// never holds the list half changed. It returns the number of set
// elements sent (an interval is two, its start and the address after its
// end), which tests compare with the size of the change.
func (a *Applier) UpdateBlocklist(name string, del, add []blocklist.Range) (int, error) {
	if len(del) == 0 && len(add) == 0 {
		return 0, nil
	}
	sent := 0
	err := a.change(func(c *nftables.Conn) error {
		d4, d6 := blocklist.Split(del)
		a4, a6 := blocklist.Split(add)
		for _, part := range []struct {
			rs     []blocklist.Range
			v6, rm bool
		}{{d4, false, true}, {d6, true, true}, {a4, false, false}, {a6, true, false}} {
			if len(part.rs) == 0 {
				continue
			}
			n, err := addRanges(c, blocklistSet(name, part.v6), part.rs, part.rm)
			sent += n
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, explain(fmt.Errorf("nftables: update blocklist %s: %w", name, err))
	}
	return sent, nil
}
