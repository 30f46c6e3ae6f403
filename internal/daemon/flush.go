package daemon

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/control"
	"github.com/moat-fw/moat/internal/firewall"
)

// RouteBansFlush lifts every ban (POST FlushRequest, answers FlushResponse).
const RouteBansFlush = "/v1/bans/flush"

// FlushRequest asks to lift every ban; with DryRun, only to say which.
type FlushRequest struct {
	DryRun bool `json:"dry_run,omitempty"`
}

// FlushResponse lists the bans lifted, or that would be.
type FlushResponse struct {
	DryRun bool        `json:"dry_run"`
	Bans   []EntryJSON `json:"bans"`
}

func (d *Daemon) banFlush(w http.ResponseWriter, r *http.Request) {
	var req FlushRequest
	if err := control.DecodeJSON(r, &req); err != nil {
		control.WriteError(w, http.StatusBadRequest, err)
		return
	}
	resp, err := flushBans(d.bans, d.now(), req.DryRun)
	if err != nil {
		control.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	if !req.DryRun {
		d.log.Info("unbanned everyone", "count", len(resp.Bans))
	}
	control.WriteJSON(w, http.StatusOK, resp)
}

func flushBans(m *ban.Manager, now time.Time, dryRun bool) (FlushResponse, error) {
	resp := FlushResponse{DryRun: dryRun, Bans: []EntryJSON{}}
	es := m.List(now)
	if !dryRun {
		var err error
		if es, err = m.DelAll(now); err != nil {
			return resp, err
		}
	}
	for _, e := range es {
		resp.Bans = append(resp.Bans, ToJSON(e))
	}
	return resp, nil
}

// noKernel stands in for the firewall in a standalone flush: a manager
// built from the store does not know what the kernel holds, so the store
// is emptied through it and the kernel's ban sets are emptied as read.
type noKernel struct{}

func (noKernel) Update(firewall.SetKind, []firewall.Element, []firewall.Element) error { return nil }

// FlushStandalone lifts every ban when no daemon runs: from the store, and
// from the kernel if moat's table is installed.
func FlushStandalone(opts Options, dryRun bool, out io.Writer) (FlushResponse, error) {
	opts, ld, st, done, err := openStandalone(opts)
	if err != nil {
		return FlushResponse{}, err
	}
	defer done()
	m, err := ban.New(st, noKernel{}, ld.Cfg.Firewall.Allow, opts.Now(), func(err error) {
		fmt.Fprintln(out, "warning:", err)
	})
	if err != nil {
		return FlushResponse{}, err
	}
	resp, err := flushBans(m, opts.Now(), dryRun)
	if err != nil || dryRun {
		return resp, err
	}
	fw := firewall.NewApplier()
	defer fw.Close()
	if ok, err := fw.Exists(); err != nil || !ok {
		return resp, err
	}
	els, err := fw.ElementsLeft(firewall.Bans)
	if err != nil {
		return resp, err
	}
	if err := fw.Update(firewall.Bans, els, nil); err != nil {
		return resp, fmt.Errorf("unban all: the store is empty, but the kernel kept its bans: %w", err)
	}
	return resp, nil
}
