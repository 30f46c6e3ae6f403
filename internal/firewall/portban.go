package firewall

import "github.com/google/nftables"

// Port-limited bans: what a fail2ban jail with `port = http,https` does.
// The address is dropped on those ports only; the rest of the host still
// answers it. Each element is addr . proto . port with its own timeout,
// in sets of their own beside the whole-host ban sets, checked right
// after them (before conntrack, so a ban also cuts the connections the
// address has open on those ports).
const (
	SetPortBan4    = "portban4"
	SetPortBan6    = "portban6"
	CounterPortBan = "portban"
	portBanSetSize = 65536
)

// portBanRules are the sets and the guard rules of port-limited bans.
func portBanRules() ([]SetDef, []Rule) {
	sets := []SetDef{
		{Name: SetPortBan4, Type: SetGrants, Size: portBanSetSize},
		{Name: SetPortBan6, V6: true, Type: SetGrants, Size: portBanSetSize},
	}
	rules := []Rule{
		rule(grantLookup(SetPortBan4, false), counterObj(CounterPortBan), drop()),
		rule(grantLookup(SetPortBan6, true), counterObj(CounterPortBan), drop()),
	}
	return sets, rules
}

// PortBan is one element of a port-limited ban: the address, one
// protocol and port, and the time the ban has left (Timeout when adding).
// It is a Grant's triple, in the port ban sets.
type PortBan = Grant

func portBanSet(v6 bool) *nftables.Set {
	if v6 {
		return tripleSet(SetPortBan6, true)
	}
	return tripleSet(SetPortBan4, false)
}

// UpdatePortBans deletes then adds port-limited ban elements in one
// transaction.
func (a *Applier) UpdatePortBans(del, add []PortBan) error {
	return a.updateTriples("port bans", [2]string{SetPortBan4, SetPortBan6}, del, add)
}

// PortBans reads the port-limited ban elements the kernel holds, with the
// time each has left in Left.
func (a *Applier) PortBans() ([]PortBan, error) {
	return a.readTriples("port bans", portBanSet)
}
