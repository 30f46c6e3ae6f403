// Package ship tests what moat ships beside the binary: the Debian package
// built by scripts/package.sh and its maintainer scripts, the systemd unit
// in dist/, and the man pages and shell completions generated from the
// command tree. It has no code of its own.
package ship
