package daemon

// intakeStatus says whether the NFLOG receiver holds its group and what it
// counted. Without it the scan guard sees nothing and daemon-mode doors
// cannot open, while everything else works: status must say so, since the
// daemon itself runs on.
func (d *Daemon) intakeStatus() *IntakeStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	is := &IntakeStatus{Group: d.logGroup, Foreign: d.foreign.Load()}
	switch {
	case d.intakeErr != nil:
		is.Error = d.intakeErr.Error()
	case d.nflog != nil:
		s := d.nflog.Stats()
		is.Bound, is.Received, is.Lost, is.Overruns, is.Datagrams = true, s.Received, s.Lost, s.Overruns, s.Datagrams
	}
	return is
}
