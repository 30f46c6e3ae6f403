package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/moat-fw/moat/internal/ban"
	"github.com/moat-fw/moat/internal/blocklist"
	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/control"
	"github.com/moat-fw/moat/internal/firewall"
)

// blocklistKernel is what the blocklists need of the firewall.
type blocklistKernel interface {
	UpdateBlocklist(name string, del, add []blocklist.Range) (int, error)
}

var _ blocklistKernel = (*firewall.Applier)(nil)

// BlocklistStatus is one [[blocklist]] in `moat status`.
type BlocklistStatus struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	Format string `json:"format"`
	// Entries are the addresses and prefixes the last good copy lists;
	// Ranges the interval-set elements the kernel holds for them, merged
	// and with protected addresses cut out; Protected the ranges of
	// protected addresses (allow list, gateway, resolvers, sessions,
	// grants...) cut out of the list.
	Entries   int `json:"entries"`
	Ranges    int `json:"ranges"`
	Protected int `json:"protected_holes"`
	// LastRefresh is when the source was last read successfully (or
	// answered "not modified"); LastError why the last attempt failed
	// ("" after a success): the last good copy stays in force meanwhile.
	LastRefresh time.Time `json:"last_refresh,omitzero"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	// LastAdded and LastRemoved are the ranges the last change sent to
	// the kernel, LastSent the set elements (two per range).
	LastAdded   int `json:"last_added"`
	LastRemoved int `json:"last_removed"`
	LastSent    int `json:"last_sent"`
	// Packets and Bytes the list's drop rules dropped.
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// blocklists keeps the [[blocklist]] entries in their kernel sets: each
// list is read (file) or fetched (HTTPS) every refresh, the last good copy
// is kept under state_dir, and only what changed goes to the kernel.
type blocklists struct {
	log   *slog.Logger
	fw    blocklistKernel
	dir   string                   // state_dir/blocklists
	holes func() []blocklist.Range // protected addresses, aggregated
	now   func() time.Time

	// kmu is held while the kernel's sets change (an update, or an
	// install of the whole table), so each list's kernel field is what
	// the kernel holds. It is taken before mu, and may be held for
	// seconds (a million-range list): mu, which status takes, is not.
	kmu sync.Mutex
	// mu guards the lists map and every list's fields but kernel.
	mu        sync.Mutex
	lists     map[string]*blist
	lastHoles []blocklist.Range
	wake      chan struct{}
}

type blist struct {
	cfg    config.Blocklist
	good   []blocklist.Range // the last good copy, aggregated
	loaded bool              // good is set (from the saved copy or a refresh)
	kernel []blocklist.Range // what the kernel's sets hold; under kmu
	next   time.Time         // the next refresh
	meta   savedMeta
	st     BlocklistStatus
}

// savedMeta is kept beside the saved copy: what conditional requests send.
type savedMeta struct {
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	Fetched      time.Time `json:"fetched"`
}

func blocklistNames(cfg *config.Config) []string {
	var out []string
	for _, b := range cfg.Blocklists {
		out = append(out, b.Name)
	}
	return out
}

func newBlocklists(log *slog.Logger, fw blocklistKernel, stateDir string, holes func() []blocklist.Range, now func() time.Time) *blocklists {
	return &blocklists{log: log, fw: fw, dir: filepath.Join(stateDir, "blocklists"), holes: holes, now: now,
		lists: map[string]*blist{}, wake: make(chan struct{}, 1)}
}

// hold is called around an install of the whole table: it takes the
// lists of cfgs (keeping what is known of lists by the same name), fills
// rs's blocklist sets with what the kernel holds, so a reload never
// empties a list, and returns the function to call once the install is
// done (applied or not).
//
// Without a daemon (moat apply while none runs) b is nil and the lists'
// sets go in empty; the daemon fills them when it starts.
func (b *blocklists) hold(rs *firewall.Ruleset, cfgs []config.Blocklist) func(applied bool) {
	if b == nil {
		return func(bool) {}
	}
	b.kmu.Lock()
	b.mu.Lock()
	defer b.mu.Unlock()
	next := map[string]*blist{}
	for _, c := range cfgs {
		l := b.lists[c.Name]
		if l == nil || l.cfg.Source != c.Source || l.cfg.Format != c.Format {
			l = &blist{cfg: c, st: BlocklistStatus{Name: c.Name, Source: c.Source, Format: c.Format}}
		} else {
			l.cfg = c
		}
		next[c.Name] = l
	}
	for i := range rs.Sets {
		sd := &rs.Sets[i]
		if sd.Type != firewall.SetBlocklist {
			continue
		}
		for name, l := range next {
			if sd.Name == firewall.BlocklistSet(name, sd.V6) {
				v4, v6 := blocklist.Split(l.kernel)
				sd.Ranges = v4
				if sd.V6 {
					sd.Ranges = v6
				}
			}
		}
	}
	return func(applied bool) {
		b.mu.Lock()
		if applied {
			b.lists = next
		}
		b.mu.Unlock()
		b.kmu.Unlock()
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

// run refreshes the lists when they are due and re-cuts them when the
// protected addresses change, until ctx ends.
func (b *blocklists) run(ctx context.Context) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		b.tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-b.wake:
		}
	}
}

func (b *blocklists) tick(ctx context.Context) {
	b.mu.Lock()
	var due []*blist
	now := b.now()
	for _, l := range b.lists {
		if !l.loaded || !now.Before(l.next) {
			due = append(due, l)
		}
	}
	b.mu.Unlock()
	for _, l := range due {
		if ctx.Err() != nil {
			return
		}
		b.refresh(ctx, l)
	}
	holes := b.holes()
	b.mu.Lock()
	changed := !slices.Equal(holes, b.lastHoles)
	b.lastHoles = holes
	b.mu.Unlock()
	if changed {
		b.mu.Lock()
		lists := make([]*blist, 0, len(b.lists))
		for _, l := range b.lists {
			lists = append(lists, l)
		}
		b.mu.Unlock()
		for _, l := range lists {
			b.push(l, holes)
		}
	}
}

// refresh reads l's source; a failure keeps the last good copy (the
// saved one after a restart).
func (b *blocklists) refresh(ctx context.Context, l *blist) {
	b.mu.Lock()
	cfg, meta, loaded := l.cfg, l.meta, l.loaded
	b.mu.Unlock()
	now := b.now()
	if !loaded {
		// The saved copy first: a host that restarts while the source is
		// down keeps its list.
		if body, m, err := b.loadSaved(cfg.Name); err == nil {
			if res, perr := blocklist.ParseBytes(body, blocklist.Format(cfg.Format)); perr == nil {
				b.mu.Lock()
				l.good, l.loaded, l.meta, meta = blocklist.Aggregate(res.Ranges), true, m, m
				l.st.Entries = res.Entries
				l.st.LastRefresh = m.Fetched
				b.mu.Unlock()
				b.push(l, b.holes())
			}
		}
	}
	body, m, notModified, err := fetchBlocklist(ctx, cfg, meta)
	var res blocklist.Result
	if err == nil && !notModified {
		res, err = blocklist.ParseBytes(body, blocklist.Format(cfg.Format))
		if err != nil {
			err = fmt.Errorf("%s list: %w", cfg.Format, err)
		}
	}
	b.mu.Lock()
	l.st.LastAttempt = now
	l.next = now.Add(cfg.Refresh)
	if err != nil {
		l.st.LastError = err.Error()
		if !loaded {
			// No good copy at all yet: retry sooner than refresh.
			l.next = now.Add(min(cfg.Refresh, time.Minute))
		}
		l.loaded = true
		b.mu.Unlock()
		b.log.Warn("blocklist not refreshed; the last good copy stays in force", "list", cfg.Name, "source", cfg.Source, "err", err)
		return
	}
	l.st.LastError = ""
	l.st.LastRefresh = now
	l.loaded = true
	if notModified {
		b.mu.Unlock()
		return
	}
	l.good = blocklist.Aggregate(res.Ranges)
	l.st.Entries = res.Entries
	m.Fetched = now
	l.meta = m
	b.mu.Unlock()
	if err := b.save(cfg.Name, body, m); err != nil {
		b.log.Warn("cannot keep the blocklist's last good copy; a restart while its source is down starts without it", "list", cfg.Name, "err", err)
	}
	if res.Bad > 0 {
		b.log.Warn("blocklist lines skipped", "list", cfg.Name, "bad", res.Bad, "first_line", res.FirstBad, "text", res.FirstBadText)
	}
	b.push(l, b.holes())
}

// push sends the kernel what turns its sets into l's good copy less the
// protected holes.
func (b *blocklists) push(l *blist, holes []blocklist.Range) {
	b.kmu.Lock()
	defer b.kmu.Unlock()
	b.mu.Lock()
	name, good, current := l.cfg.Name, l.good, b.lists[l.cfg.Name] == l
	b.mu.Unlock()
	if !current {
		return // a reload removed or replaced the list meanwhile
	}
	want := blocklist.Subtract(good, holes)
	del, add := blocklist.Diff(l.kernel, want)
	n, err := b.fw.UpdateBlocklist(name, del, add)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		l.st.LastError = err.Error()
		b.log.Error("blocklist not updated in the kernel", "list", name, "err", err)
		return
	}
	l.kernel = want
	l.st.Ranges = len(want)
	l.st.Protected = protectedHoles(good, holes)
	l.st.LastAdded, l.st.LastRemoved, l.st.LastSent = len(add), len(del), n
	if len(del)+len(add) > 0 {
		b.log.Info("blocklist updated", "list", name, "ranges", len(want), "added", len(add), "removed", len(del))
	}
}

// protectedHoles counts the holes that cut into good.
func protectedHoles(good, holes []blocklist.Range) int {
	n := 0
	for _, h := range holes {
		i, _ := slices.BinarySearchFunc(good, h.From, func(r blocklist.Range, a netip.Addr) int {
			switch {
			case r.From.Is4() != a.Is4() && r.From.Is4():
				return -1
			case r.From.Is4() != a.Is4():
				return 1
			}
			return r.To.Compare(a)
		})
		if i < len(good) && good[i].From.Is4() == h.From.Is4() && good[i].From.Compare(h.To) <= 0 {
			n++
		}
	}
	return n
}

// status lists the lists, with the drop counters from counters.
func (b *blocklists) status(counters map[string]firewall.Counter) []BlocklistStatus {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]BlocklistStatus, 0, len(b.lists))
	for _, l := range b.lists {
		st := l.st
		c := counters[firewall.BlocklistCounter(l.cfg.Name)]
		st.Packets, st.Bytes = c.Packets, c.Bytes
		out = append(out, st)
	}
	slices.SortFunc(out, func(x, y BlocklistStatus) int {
		if x.Name < y.Name {
			return -1
		}
		return 1
	})
	return out
}

func (b *blocklists) savedPath(name string) string { return filepath.Join(b.dir, name+".list") }

func (b *blocklists) loadSaved(name string) ([]byte, savedMeta, error) {
	body, err := os.ReadFile(b.savedPath(name))
	if err != nil {
		return nil, savedMeta{}, err
	}
	var m savedMeta
	if mb, err := os.ReadFile(b.savedPath(name) + ".meta"); err == nil {
		_ = json.Unmarshal(mb, &m) // without it the next fetch is unconditional
	}
	return body, m, nil
}

// save keeps body as the list's last good copy, replacing the previous
// one only once it is whole on disk.
func (b *blocklists) save(name string, body []byte, m savedMeta) error {
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return err
	}
	mb, _ := json.Marshal(m)
	for _, f := range []struct {
		path string
		data []byte
	}{{b.savedPath(name), body}, {b.savedPath(name) + ".meta", mb}} {
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			os.Remove(tmp)
			return err
		}
		if err := os.Rename(tmp, f.path); err != nil {
			return err
		}
	}
	return nil
}

// fetchTimeout bounds one download.
const fetchTimeout = 2 * time.Minute

// fetchBlocklist reads cfg's source: a file, or an https URL asked
// conditionally (If-None-Match, If-Modified-Since) so an unchanged list
// costs a 304. The body is at most cfg.MaxSize bytes.
func fetchBlocklist(ctx context.Context, cfg config.Blocklist, meta savedMeta) (body []byte, m savedMeta, notModified bool, err error) {
	if !cfg.IsURL() {
		f, err := os.Open(cfg.Source)
		if err != nil {
			return nil, m, false, err
		}
		defer f.Close()
		body, err = readCapped(f, cfg.MaxSize)
		return body, m, false, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, m, false, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, m, false, fmt.Errorf("ca_file %s: no PEM certificate in it", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Source, nil)
	if err != nil {
		return nil, m, false, err
	}
	if meta.ETag != "" {
		req.Header.Set("If-None-Match", meta.ETag)
	}
	if meta.LastModified != "" {
		req.Header.Set("If-Modified-Since", meta.LastModified)
	}
	req.Header.Set("User-Agent", "moat-blocklist")
	resp, err := (&http.Client{Transport: tr, Timeout: fetchTimeout}).Do(req)
	if err != nil {
		return nil, m, false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, meta, true, nil
	case http.StatusOK:
	default:
		return nil, m, false, fmt.Errorf("%s: %s", cfg.Source, resp.Status)
	}
	body, err = readCapped(resp.Body, cfg.MaxSize)
	if err != nil {
		return nil, m, false, err
	}
	return body, savedMeta{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}, false, nil
}

var errTooBig = errors.New("larger than max_size")

func readCapped(r io.Reader, max int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > max {
		return nil, fmt.Errorf("%w (%d bytes): raise max_size if the list really is this big", errTooBig, max)
	}
	return body, nil
}

// blocklistHoles are the addresses no list may cover: the protected set
// (routers, resolvers, the host, sessions, grants, outgoing peers, the
// caller's session) and the allow list, aggregated.
func (d *Daemon) blocklistHoles() []blocklist.Range {
	var rs []blocklist.Range
	for _, e := range d.prot.snapshot().Entries() {
		rs = append(rs, blocklist.FromPrefix(e.Prefix))
	}
	if d.prot.caller.IsValid() {
		rs = append(rs, blocklist.FromPrefix(netip.PrefixFrom(d.prot.caller, d.prot.caller.BitLen())))
	}
	for _, e := range d.bans.Allows(d.now()) {
		rs = append(rs, blocklist.FromPrefix(e.Prefix))
	}
	return blocklist.Aggregate(rs)
}

// Routes of the blocklists and of ban import.
const (
	RouteBlocklistRefresh = "/v1/blocklists/refresh"
	RouteBansImport       = "/v1/bans/import"
)

// ImportBatch is the most prefixes one import request carries: the CLI
// sends a file in batches of this many, each well under the control
// API's body limit.
const ImportBatch = 2000

// ImportRequest is one batch of `moat ban import`.
type ImportRequest struct {
	Prefixes []string      `json:"prefixes"`
	For      time.Duration `json:"for,omitempty"` // 0: until removed
	Reason   string        `json:"reason,omitempty"`
}

// ImportResponse says what a batch did.
type ImportResponse struct {
	Banned  int      `json:"banned"`
	Refused []string `json:"refused,omitempty"` // "prefix: why" (protected, allow-listed...)
}

// OriginImport marks bans made by `moat ban import`.
const OriginImport = "import"

func (d *Daemon) blocklistRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+RouteBlocklistRefresh, func(w http.ResponseWriter, r *http.Request) {
		d.blocks.refreshNow()
		control.WriteJSON(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("POST "+RouteBansImport, d.banImport)
}

// banImport bans one batch of imported prefixes, each through the ban
// policy: a protected or allow-listed address is refused, as a guard's
// ban would be (an import is a list from elsewhere, not the
// administrator's word on each address).
func (d *Daemon) banImport(w http.ResponseWriter, r *http.Request) {
	var req ImportRequest
	if err := control.DecodeJSON(r, &req); err != nil {
		control.WriteError(w, http.StatusBadRequest, err)
		return
	}
	if len(req.Prefixes) > ImportBatch {
		control.WriteError(w, http.StatusBadRequest, fmt.Errorf("%d prefixes in one request; send at most %d", len(req.Prefixes), ImportBatch))
		return
	}
	reason := req.Reason
	if reason == "" {
		reason = "imported"
	}
	var resp ImportResponse
	now := d.now()
	for _, s := range req.Prefixes {
		p, err := ParsePrefix(s)
		if err == nil {
			_, err = d.bans.Add(ban.Request{Prefix: p, For: req.For, Origin: OriginImport, Reason: reason, NoWait: true}, now)
		}
		if err != nil {
			resp.Refused = append(resp.Refused, s+": "+err.Error())
			continue
		}
		resp.Banned++
	}
	d.bans.Flush()
	d.log.Info("bans imported", "banned", resp.Banned, "refused", len(resp.Refused))
	d.poke()
	control.WriteJSON(w, http.StatusOK, resp)
}

// refreshNow makes every list due now.
func (b *blocklists) refreshNow() {
	if b == nil {
		return
	}
	b.mu.Lock()
	for _, l := range b.lists {
		l.next = time.Time{}
	}
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}
