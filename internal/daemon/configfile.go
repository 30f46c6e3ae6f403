package daemon

import (
	"bytes"
	"os"
)

// configFileDiffers says whether the config file on disk is not the config
// in force: after a rollback it still holds what was not confirmed, and
// the next SIGHUP (forced, with no session check) would load it.
func (d *Daemon) configFileDiffers(cur *Loaded) bool {
	raw, err := os.ReadFile(d.opts.ConfigPath)
	if err != nil {
		return cur.Source == d.opts.ConfigPath // the file in force is gone
	}
	return cur.Source != d.opts.ConfigPath || !bytes.Equal(raw, cur.Raw)
}
