package config

import (
	"net/netip"
	"strings"
)

// Metrics configures the Prometheus endpoint (the [metrics] table). It is
// off unless listen is set.
type Metrics struct {
	// Listen is listen: the address and port the endpoint serves on, such
	// as "127.0.0.1:9733"; empty means no endpoint.
	Listen string
	// Path is path: where the metrics are, "/metrics" by default.
	Path string
}

func defaultMetrics() Metrics { return Metrics{Path: "/metrics"} }

var metricsKeys = []key{
	{"listen", func(d *decoder, p string, v any) {
		s, ok := v.(string)
		if !ok {
			d.badType(p, v, `an address and port in quotes, like "127.0.0.1:9733"`)
			return
		}
		// An address, not a name: the endpoint must bind where the admin
		// says even when DNS is down or lies, and a wildcard (":9733")
		// would publish it on every interface unasked.
		if _, err := netip.ParseAddrPort(s); err != nil && s != "" {
			d.bad(p, v, `want an IP address and port, like "127.0.0.1:9733" or "[::1]:9733" (to serve on every address, write "0.0.0.0:9733" or "[::]:9733")`)
			return
		}
		d.cfg.Metrics.Listen = s
	}},
	{"path", func(d *decoder, p string, v any) {
		s, ok := v.(string)
		if !ok {
			d.badType(p, v, `a path in quotes, like "/metrics"`)
			return
		}
		if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, " ?#") {
			d.bad(p, v, `want an absolute URL path without spaces, query or fragment, like "/metrics"`)
			return
		}
		d.cfg.Metrics.Path = s
	}},
}
