// Package knockd reads knockd's configuration file, knockd.conf, as knockd
// 0.8 does, and converts its doors into moat [[door]] tables for
// `moat import knockd`, warning about everything that does not carry over
// exactly. It only translates text: the doors themselves (the verifier and
// the knock client) live in package knock.
package knockd
