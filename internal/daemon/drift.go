package daemon

// repairDrift reinstalls the table when its chains or rules in the kernel
// are no longer what moat installed: a ban rule deleted by hand, an accept
// inserted into moat's chain, a policy flipped. Set elements are reconciled
// on their own (ban.Manager.Reconcile); this reads the rules only, a few
// dozen, so it costs next to nothing at every full reconcile.
func (d *Daemon) repairDrift(cur *Loaded) {
	what, err := d.fw.Drift()
	if err != nil {
		d.log.Error("reconcile: cannot read moat's rules back from the kernel", "err", err)
		return
	}
	if what == "" {
		return
	}
	d.log.Warn("reconcile: moat's rules in the kernel differ from what moat installed (changed by hand or by another program): reinstalling the table with every ban and allow",
		"differences", what)
	if err := d.install(cur); err != nil {
		d.log.Error("reconcile: reinstall after rule drift failed", "err", err)
		return
	}
	d.mu.Lock()
	d.repaired++
	d.mu.Unlock()
}
