// Package metrics serves moat's Prometheus metrics. The numbers come from
// a Snapshot the daemon takes when Prometheus scrapes, from counters it
// keeps anyway (the kernel's nftables counters, the guards' tallies, the
// NFLOG receiver's statistics), so the packet and log-line paths pay
// nothing for it. The registry is private: only moat's metrics and the
// process and Go runtime collectors, never another library's globals.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Snapshot is what the daemon reports at one scrape. Totals count since
// the daemon started (Prometheus handles the reset at a restart); the
// others are current values.
type Snapshot struct {
	Enforcing    bool // the ruleset is in force (false after `moat firewall off`)
	TablePresent bool // moat's table is in the kernel

	// Kernel holds moat's named nftables counters ("ban", "closed",
	// "invalid", "knock", ...): packets and bytes since the table was
	// installed.
	Kernel map[string]Counter

	BansByOrigin      map[string]int // active bans by origin ("login", "scan", "manual", ...)
	Allows            int
	Protected         int   // addresses no guard bans
	ProtectedLifted   int64 // guard bans lifted for covering a protected address
	Reasserted        int   // ban elements re-added by reconcile
	RulesRepaired     int   // reinstalls after moat's rules drifted
	StoreWriteFailure int64 // store writes that failed (a full disk)

	SPA   *SPA   // nil while SPA is off
	Login *Login // nil when the login guard is off
	Scan  *Scan  // nil when the scan guard is off
	NFLOG *NFLOG // nil before the receiver started
	// Alerts is nil while no [alert] destination is set.
	Alerts *Alerts

	// Packet to grant in the kernel, for SPA datagrams and daemon-mode
	// knocks (package latency); nil before the first.
	SPAGrant, KnockGrant *Latency

	Blocklists []Blocklist
}

// Alerts is the alert dispatcher's part: alerts by what became of them,
// summed over the destinations.
type Alerts struct {
	Events, BusDropped, Throttled  uint64 // events read; lost by the bus; held back by the throttle
	Sent, Failed, Retried, Dropped uint64
}

// Latency is a histogram of latencies: their count and sum, and the count
// in each of Bounds' buckets (not cumulative), the last beyond them.
type Latency struct {
	Count   uint64
	Sum     time.Duration
	Bounds  []time.Duration
	Buckets []uint64
}

// Counter is one nftables counter.
type Counter struct{ Packets, Bytes uint64 }

// SPA is single packet authorization's part.
type SPA struct {
	Accepted uint64
	Refused  map[string]uint64 // by reason label ("replay", "seal", ...)
}

// Login is the login guard's part.
type Login struct {
	Failures   uint64 // failures counted
	Unverified uint64 // sshd lines not counted: no handshake behind them
	Bans       int    // bans made
	Counting   int    // addresses with failures being counted
}

// Scan is the scan guard's part.
type Scan struct {
	Probes, Unscored, Ignored, Knocks uint64 // packets scored as probes, not scored, from ignored sources, knocks
	SourcesByLevel                    [6]int // tracked sources at danger level 0..5
	Evicted                           uint64 // sources forgotten to make room
	Bans                              int    // bans made
	Capped                            uint64 // scanners not banned: max_bans_per_minute reached
}

// NFLOG is the packet receiver's part.
type NFLOG struct {
	Bound                                        bool
	Received, Lost, Overruns, Datagrams, Foreign uint64
}

// Collector turns Snapshots into metrics, one Snapshot per scrape.
type Collector struct {
	snap func(ctx context.Context) Snapshot
}

// NewCollector returns a collector that calls snap at each scrape.
func NewCollector(snap func(ctx context.Context) Snapshot) *Collector {
	return &Collector{snap: snap}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("moat_"+name, help, labels, nil)
}

var (
	dEnforcing      = desc("enforcing", "1 while moat's ruleset is in force, 0 after `moat firewall off`.")
	dTable          = desc("table_present", "1 while moat's nftables table is in the kernel.")
	dKernelPackets  = desc("kernel_packets_total", "Packets counted by moat's named nftables counters since the table was installed.", "counter")
	dKernelBytes    = desc("kernel_bytes_total", "Bytes counted by moat's named nftables counters since the table was installed.", "counter")
	dBans           = desc("bans", "Active bans, by the guard or person that made them.", "origin")
	dAllows         = desc("allows", "Active allow-list entries.")
	dProtected      = desc("protected_addresses", "Addresses and prefixes no guard bans (routers, resolvers, this host, sessions, grants).")
	dLifted         = desc("protected_bans_lifted_total", "Guard bans lifted because they covered a protected address.")
	dReasserted     = desc("reconcile_reasserted_total", "Ban elements reconcile found missing in the kernel and put back.")
	dRepaired       = desc("rules_repaired_total", "Reinstalls of moat's ruleset after its rules in the kernel drifted.")
	dStoreFailures  = desc("store_write_failures_total", "Writes to moat's ban store that failed (a full disk); the kernel still holds the bans.")
	dLoginFailures  = desc("login_failures_total", "Login failures the login guard counted.")
	dLoginUnverif   = desc("login_unverified_lines_total", "sshd lines from syslog files not counted: the kernel saw no handshake behind them.")
	dLoginBans      = desc("login_bans_total", "Bans the login guard made.")
	dLoginCounting  = desc("login_addresses_counting", "Addresses with login failures being counted.")
	dScanPackets    = desc("scan_packets_total", "Dropped packets the scan guard looked at, by what it made of them.", "kind")
	dScanSources    = desc("scan_sources", "Sources the scan guard tracks, by danger level (psad's 1 to 5; 0 below the first tier).", "level")
	dScanEvicted    = desc("scan_sources_evicted_total", "Tracked sources the scan guard forgot to make room.")
	dScanBans       = desc("scan_bans_total", "Bans the scan guard made.")
	dScanCapped     = desc("scan_bans_capped_total", "Scanners not banned because max_bans_per_minute was reached.")
	dSPA            = desc("spa_datagrams_total", "SPA datagrams moat verified: accepted, or refused with the reason.", "result", "reason")
	dNFLOGBound     = desc("nflog_bound", "1 while moat receives the packets its ruleset logs (the NFLOG group).")
	dNFLOGPackets   = desc("nflog_packets_total", "Logged packets moat received.")
	dNFLOGLost      = desc("nflog_packets_lost_total", "Logged packets the kernel could not deliver (sequence gaps).")
	dNFLOGOverruns  = desc("nflog_overruns_total", "Receive buffer overruns, each one or more lost datagrams.")
	dNFLOGDatagrams = desc("nflog_datagrams_total", "Netlink datagrams the logged packets came in (packets per datagram is the kernel's batching).")
	dNFLOGForeign   = desc("nflog_foreign_packets_total", "Packets on moat's NFLOG group logged by another ruleset; not scored.")
	dAlertEvents    = desc("alert_events_total", "Events the alert dispatcher read, and those the event bus dropped because it fell behind.", "result")
	dAlerts         = desc("alerts_total", "Alerts by what became of them: sent, failed (after retries), retried (attempts), dropped (a full queue), throttled.", "result")
	dSPAGrant       = desc("spa_grant_seconds", "From an accepted SPA datagram's arrival (its kernel timestamp) to its grant committed in the kernel.")
	dKnockGrant     = desc("knock_grant_seconds", "From a daemon-mode door's last knock's arrival (its kernel timestamp) to the grant committed in the kernel.")
)

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dEnforcing, dTable, dKernelPackets, dKernelBytes, dBans, dAllows, dProtected, dLifted,
		dReasserted, dRepaired, dStoreFailures, dLoginFailures, dLoginUnverif, dLoginBans, dLoginCounting, dScanPackets,
		dScanSources, dScanEvicted, dScanBans, dScanCapped, dSPA, dNFLOGBound, dNFLOGPackets, dNFLOGLost, dNFLOGOverruns,
		dNFLOGDatagrams, dNFLOGForeign, dAlertEvents, dAlerts, dSPAGrant, dKnockGrant} {
		ch <- d
	}
	for _, d := range blocklistDescs {
		ch <- d
	}
}

// Collect takes a Snapshot and sends it as metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := c.snap(ctx)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(dEnforcing, b2f(s.Enforcing))
	gauge(dTable, b2f(s.TablePresent))
	for _, name := range sortedKeys(s.Kernel) {
		counter(dKernelPackets, float64(s.Kernel[name].Packets), name)
		counter(dKernelBytes, float64(s.Kernel[name].Bytes), name)
	}
	for _, origin := range sortedKeys(s.BansByOrigin) {
		gauge(dBans, float64(s.BansByOrigin[origin]), origin)
	}
	gauge(dAllows, float64(s.Allows))
	gauge(dProtected, float64(s.Protected))
	counter(dLifted, float64(s.ProtectedLifted))
	counter(dReasserted, float64(s.Reasserted))
	counter(dRepaired, float64(s.RulesRepaired))
	counter(dStoreFailures, float64(s.StoreWriteFailure))
	if l := s.Login; l != nil {
		counter(dLoginFailures, float64(l.Failures))
		counter(dLoginUnverif, float64(l.Unverified))
		counter(dLoginBans, float64(l.Bans))
		gauge(dLoginCounting, float64(l.Counting))
	}
	if sc := s.Scan; sc != nil {
		counter(dScanPackets, float64(sc.Probes), "probe")
		counter(dScanPackets, float64(sc.Unscored), "unscored")
		counter(dScanPackets, float64(sc.Ignored), "ignored")
		counter(dScanPackets, float64(sc.Knocks), "knock")
		for level, n := range sc.SourcesByLevel {
			gauge(dScanSources, float64(n), strconv.Itoa(level))
		}
		counter(dScanEvicted, float64(sc.Evicted))
		counter(dScanBans, float64(sc.Bans))
		counter(dScanCapped, float64(sc.Capped))
	}
	if sp := s.SPA; sp != nil {
		counter(dSPA, float64(sp.Accepted), "accepted", "")
		for _, r := range sortedKeys(sp.Refused) {
			counter(dSPA, float64(sp.Refused[r]), "refused", r)
		}
	}
	if n := s.NFLOG; n != nil {
		gauge(dNFLOGBound, b2f(n.Bound))
		counter(dNFLOGPackets, float64(n.Received))
		counter(dNFLOGLost, float64(n.Lost))
		counter(dNFLOGOverruns, float64(n.Overruns))
		counter(dNFLOGDatagrams, float64(n.Datagrams))
		counter(dNFLOGForeign, float64(n.Foreign))
	}
	if a := s.Alerts; a != nil {
		counter(dAlertEvents, float64(a.Events), "read")
		counter(dAlertEvents, float64(a.BusDropped), "dropped")
		for _, r := range []struct {
			result string
			n      uint64
		}{{"sent", a.Sent}, {"failed", a.Failed}, {"retried", a.Retried}, {"dropped", a.Dropped}, {"throttled", a.Throttled}} {
			counter(dAlerts, float64(r.n), r.result)
		}
	}
	collectBlocklists(s.Blocklists, gauge)
	for _, h := range []struct {
		d *prometheus.Desc
		l *Latency
	}{{dSPAGrant, s.SPAGrant}, {dKnockGrant, s.KnockGrant}} {
		if h.l != nil {
			ch <- histogram(h.d, h.l)
		}
	}
}

// histogram turns l into Prometheus' cumulative buckets, in seconds.
func histogram(d *prometheus.Desc, l *Latency) prometheus.Metric {
	buckets := make(map[float64]uint64, len(l.Bounds))
	var cum uint64
	for i, b := range l.Bounds {
		if i < len(l.Buckets) {
			cum += l.Buckets[i]
		}
		buckets[b.Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(d, l.Count, l.Sum.Seconds(), buckets)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Handler returns the HTTP handler for Registry(c).
func Handler(c *Collector) (http.Handler, error) {
	reg, err := Registry(c)
	if err != nil {
		return nil, err
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}), nil
}

// Registry is the private registry moat serves: c and the process and Go
// runtime collectors.
func Registry(c *Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, col := range []prometheus.Collector{c, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector()} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return reg, nil
}

// Serve serves h at path on ln until ctx ends, in a goroutine whose end
// closes the returned channel; failed hears why it stopped early.
func Serve(ctx context.Context, ln net.Listener, path string, h http.Handler, failed func(error)) <-chan struct{} {
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	done := make(chan struct{})
	go func() {
		defer close(done)
		stop := context.AfterFunc(ctx, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		})
		defer stop()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			failed(err)
		}
	}()
	return done
}
