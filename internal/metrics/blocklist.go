package metrics

import "github.com/prometheus/client_golang/prometheus"

// Blocklist is one [[blocklist]]'s part. The packets its rule dropped are
// the kernel counter "bl_<name>" (moat_kernel_packets_total).
type Blocklist struct {
	Name        string
	Entries     int     // addresses and prefixes in the last good copy
	Ranges      int     // interval-set elements in the kernel
	LastRefresh float64 // unix seconds of the last good read, 0 if none
	Failing     bool    // the last refresh failed (the last good copy is in force)
}

var (
	dBlocklistEntries = desc("blocklist_entries", "Addresses and prefixes in a blocklist's last good copy.", "list")
	dBlocklistRanges  = desc("blocklist_ranges", "Ranges a blocklist holds in the kernel, merged and with protected addresses cut out.", "list")
	dBlocklistRefresh = desc("blocklist_last_refresh_seconds", "When a blocklist's source was last read successfully (unix time).", "list")
	dBlocklistFailing = desc("blocklist_refresh_failing", "1 while a blocklist's last refresh failed and its last good copy stays in force.", "list")
	blocklistDescs    = []*prometheus.Desc{dBlocklistEntries, dBlocklistRanges, dBlocklistRefresh, dBlocklistFailing}
)

func collectBlocklists(bs []Blocklist, gauge func(*prometheus.Desc, float64, ...string)) {
	for _, b := range bs {
		gauge(dBlocklistEntries, float64(b.Entries), b.Name)
		gauge(dBlocklistRanges, float64(b.Ranges), b.Name)
		gauge(dBlocklistRefresh, b.LastRefresh, b.Name)
		gauge(dBlocklistFailing, b2f(b.Failing), b.Name)
	}
}
