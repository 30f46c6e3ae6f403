package authlog

import "net/netip"

// MatchUserRegexp is the reference path for the differential tests: the
// rule's whole regexp, as Rule.MatchUser ran it before the split path.
func (r *Rule) MatchUserRegexp(line []byte) (netip.Addr, []byte, bool) {
	return r.matchRegexp(line)
}

// Split path outcomes, for tests.
const (
	SplitAbsent   = -1 // the rule has no split path: the regexp answers
	SplitNone     = int(splitNone)
	SplitOne      = int(splitOne)
	SplitFallback = int(splitFallback)
)

// SplitFind is what the rule's split path finds on line, before the
// address is parsed.
func (r *Rule) SplitFind(line []byte) int {
	r.splitOnce.Do(func() { r.split = newSplitMatcher(r.re.String()) })
	if r.split == nil {
		return SplitAbsent
	}
	_, _, res := r.split.find(line)
	return int(res)
}

// CPUTime and ReportCPU are cpuTime and reportCPU for the benchmarks of
// package authlog_test.
var (
	CPUTime   = cpuTime
	ReportCPU = reportCPU
)

// SplitPrefilter reports whether the rule's split path is preceded by the
// required-literal searches.
func (r *Rule) SplitPrefilter() bool {
	r.splitOnce.Do(func() { r.split = newSplitMatcher(r.re.String()) })
	return r.split != nil && r.split.prefilter
}
