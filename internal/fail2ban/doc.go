// Package fail2ban reads a fail2ban configuration directory (jail.conf,
// jail.local, jail.d, filter.d) the way fail2ban 1.x does, and converts
// each enabled jail into moat [[login.rule]] tables for
// `moat import fail2ban`.
//
// fail2ban's filters are Python regular expressions matched against a log
// line with its date cut out; moat's rules are Go (RE2) expressions that
// match the whole line. The conversion puts the date back as a pattern of
// its own, translates what RE2 can express and refuses, naming the
// construct, what it cannot (lookbehind, numbered backreferences; named
// ones, (?P=name), carry over: moat's rules check them). Every converted
// pattern must then pass moat's hostile-input shape check
// (authlog.CompileRule): a fail2ban regex that lets client text reach the
// address is reported, not imported. Where a filter matches a field of
// its service more loosely than the service writes it (postfix's client
// name, asterisk's log prefix, Domino's ids, nginx's and exim's line ends:
// serviceFields, servicePrefix), the field is narrowed to what the
// service's source writes; testdata/forged holds the lines, run through
// the real fail2ban by TestForgeableFilters, that show which refused
// regexes fail2ban itself can be made to ban an address of the client's
// choice with. fail2ban's multi-line bookkeeping
// (<F-MLFID>, <F-NOFAIL>, <F-MLFFORGET>, <F-MLFGAINED>) becomes rules with
// a connection id and a kind, which package login's guard keeps.
//
// It only reads and translates text: the host's fail2ban files are read at
// import time, and none of them is copied into moat.
package fail2ban
