package firewall

import "strings"

// Kernel-mode doors open and close in the packet path: the rule that
// completes a sequence adds the grant itself, and user space learns of it
// from nothing else. nftables sends no set-element notification for
// elements a rule adds or deletes (only for changes made over netlink), so
// a monitor of the grant sets cannot see a kernel door open. Instead the
// same rule logs the completing packet to the NFLOG group with a prefix
// naming the door: the daemon records and logs the grant from it.

// Prefixes of the NFLOG messages the kernel sends when a kernel-mode door
// opens (grant) or a close sequence ends its grant (revoke). The door's
// name follows.
const (
	grantOpenTag  = "grant:"
	grantCloseTag = "revoke:"
)

// GrantLogPrefix is the NFLOG prefix of a kernel-mode door's opening, or
// with closing, of its close sequence.
func GrantLogPrefix(door string, closing bool) string {
	if closing {
		return LogPrefix(grantCloseTag + door)
	}
	return LogPrefix(grantOpenTag + door)
}

// ParseGrantLog reads a prefix written by GrantLogPrefix.
func ParseGrantLog(prefix []byte) (door string, closing, ok bool) {
	s, found := strings.CutPrefix(string(prefix), LogPrefix(""))
	if !found {
		return "", false, false
	}
	if door, found = strings.CutPrefix(s, grantOpenTag); found && door != "" {
		return door, false, true
	}
	if door, found = strings.CutPrefix(s, grantCloseTag); found && door != "" {
		return door, true, true
	}
	return "", false, false
}

// grantLog logs the packet that completed a door's sequence. Unlimited and
// at once (queue-threshold 1): only a complete sequence reaches it, and the
// audit trail must not miss or delay an opening.
func grantLog(door string, closing bool, group uint16) stmt {
	return nflogNow(GrantLogPrefix(door, closing), group, logSnaplen)
}
