//go:build race

package store

// raceEnabled: the race detector slows the store several times over, so
// timing assertions are skipped under it.
const raceEnabled = true
