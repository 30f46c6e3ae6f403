package config

import (
	"net/netip"
	"strconv"
)

// Page configures the live page (the [page] table): a web page served by
// the daemon that shows bans, scans, login attempts, doors and a live
// event feed. It is off unless listen is set.
type Page struct {
	// Listen is listen: the address and port the page serves on, such as
	// "127.0.0.1:9734"; empty means no page. Reach it through an SSH
	// tunnel (ssh -L 9734:127.0.0.1:9734 host).
	Listen string
	// AllowRemote is allow_remote: serve on an address other than
	// loopback. Off by default: the page is plain HTTP, and its token and
	// what it shows (who attacks the host, which doors exist) would cross
	// the network readable by anyone on the path.
	AllowRemote bool
}

var pageKeys = []key{
	{"listen", func(d *decoder, p string, v any) {
		s, ok := v.(string)
		if !ok {
			d.badType(p, v, `an address and port in quotes, like "127.0.0.1:9734"`)
			return
		}
		// An address, not a name, as for [metrics] listen: the page must
		// bind where the admin says even when DNS is down or lies.
		if _, err := netip.ParseAddrPort(s); err != nil && s != "" {
			d.bad(p, v, `want an IP address and port, like "127.0.0.1:9734" or "[::1]:9734"`)
			return
		}
		d.cfg.Page.Listen = s
	}},
	{"allow_remote", func(d *decoder, p string, v any) { d.bool(p, v, &d.cfg.Page.AllowRemote) }},
}

// problems refuses a listen address that is not loopback unless
// allow_remote says so.
func (pg Page) problems() []problem {
	if pg.Listen == "" || pg.AllowRemote {
		return nil
	}
	ap, err := netip.ParseAddrPort(pg.Listen)
	if err != nil {
		return []problem{{path: "page.listen", value: strconv.Quote(pg.Listen), msg: `want an IP address and port, like "127.0.0.1:9734"`}}
	}
	if ap.Addr().Unmap().IsLoopback() {
		return nil
	}
	return []problem{{path: "page.listen", value: strconv.Quote(pg.Listen),
		msg: `not a loopback address: the page is plain HTTP, so serve it on "127.0.0.1:9734" and reach it through an SSH tunnel (ssh -L 9734:127.0.0.1:9734 HOST), or set [page] allow_remote = true to serve it on ` + ap.Addr().String() + ` anyway`}}
}
