package sshd

import (
	"slices"
	"strings"
)

// Algorithms are judged the way ssh-audit judges them (its database,
// src/ssh_audit/ssh2_kexdb.py in github.com/jtesta/ssh-audit): what it
// fails is High here and what it warns about is Low. Each verdict was
// checked against OpenSSH's release notes (what OpenSSH itself removed or
// disabled by default, and when) and the RFCs that retire algorithms:
// RFC 9142 (key exchange), RFC 8758 (RC4), RFC 8332 (rsa-sha2 replacing
// ssh-rsa's SHA-1 signatures), RFC 8709 (Ed25519).
//
// One deliberate difference: ssh-audit fails the NIST P-curves
// (ecdh-sha2-nistp*, ecdsa-sha2-nistp*) because their constants' origin is
// distrusted, not because of a known break, and removing them cuts off
// older clients and many FIDO keys: Low here, and harden removes them only
// with --all. Terrapin (CVE-2023-48795, chacha20-poly1305 and *-etm MACs)
// is not flagged: OpenSSH 9.6 and Debian's 9.2p1-2+deb12u2 negotiate strict
// key exchange, which closes it, and sshd -T cannot show that.

type algKind int

const (
	kexAlg algKind = iota
	cipherAlg
	macAlg
	keyAlg // host key, user key and CA signature algorithms
)

type verdict struct {
	sev Severity
	why string
}

const (
	whySHA1      = "SHA-1, broken for collisions (ssh-audit: fail)"
	whyMD5       = "MD5, broken (ssh-audit: fail)"
	why1024      = "1024-bit group, breakable (Logjam), with SHA-1 (ssh-audit: fail; off by default since OpenSSH 6.9)"
	whyNIST      = "NIST P-curve: ssh-audit fails it on distrust of its origin, not on a known break"
	why2048      = "2048-bit modulus: 112-bit strength (ssh-audit: warn)"
	whyCBC       = "CBC mode (ssh-audit: warn; out of OpenSSH's server defaults since 6.7)"
	whyEaM       = "encrypt-and-MAC, the MAC covers the plaintext (ssh-audit: warn, the -etm@openssh.com variant is fine)"
	whyTag64     = "64-bit tag (ssh-audit: warn)"
	why3DES      = "3DES: 64-bit blocks, Sweet32 (ssh-audit: fail)"
	whyRC4       = "RC4, broken (RFC 8758; removed in OpenSSH 7.6)"
	whyDSA       = "DSA: 1024-bit keys only (ssh-audit: fail; off by default since OpenSSH 7.0)"
	whyRSASHA1   = "RSA signatures with SHA-1 (ssh-audit: fail; off by default since OpenSSH 8.8, RFC 8332)"
	whyPlaintext = "no encryption or integrity at all"
)

var algVerdicts = map[algKind]map[string]verdict{
	kexAlg: {
		"diffie-hellman-group1-sha1":         {High, why1024},
		"diffie-hellman-group14-sha1":        {High, whySHA1},
		"diffie-hellman-group-exchange-sha1": {High, whySHA1},
		"rsa1024-sha1":                       {High, "1024-bit RSA with SHA-1 (ssh-audit: fail)"},
		"diffie-hellman-group14-sha256":      {Low, why2048},
		"rsa2048-sha256":                     {Low, why2048},
		"ecdh-sha2-nistp256":                 {Low, whyNIST},
		"ecdh-sha2-nistp384":                 {Low, whyNIST},
		"ecdh-sha2-nistp521":                 {Low, whyNIST},
	},
	cipherAlg: {
		"3des-cbc":                    {High, why3DES},
		"blowfish-cbc":                {High, "Blowfish: 64-bit blocks (ssh-audit: fail)"},
		"cast128-cbc":                 {High, "CAST-128: 64-bit blocks (ssh-audit: fail)"},
		"arcfour":                     {High, whyRC4},
		"arcfour128":                  {High, whyRC4},
		"arcfour256":                  {High, whyRC4},
		"rijndael-cbc@lysator.liu.se": {High, "pre-standard Rijndael (ssh-audit: fail; removed in OpenSSH 7.0)"},
		"des-cbc":                     {High, "DES, broken (ssh-audit: fail)"},
		"none":                        {High, whyPlaintext},
		"aes128-cbc":                  {Low, whyCBC},
		"aes192-cbc":                  {Low, whyCBC},
		"aes256-cbc":                  {Low, whyCBC},
	},
	macAlg: {
		"hmac-md5":                         {High, whyMD5},
		"hmac-md5-96":                      {High, whyMD5},
		"hmac-md5-etm@openssh.com":         {High, whyMD5},
		"hmac-md5-96-etm@openssh.com":      {High, whyMD5},
		"hmac-sha1":                        {High, whySHA1},
		"hmac-sha1-96":                     {High, whySHA1},
		"hmac-sha1-etm@openssh.com":        {High, whySHA1},
		"hmac-sha1-96-etm@openssh.com":     {High, whySHA1},
		"hmac-ripemd160":                   {High, "RIPEMD-160 (ssh-audit: fail; removed in OpenSSH 7.6)"},
		"hmac-ripemd160@openssh.com":       {High, "RIPEMD-160 (ssh-audit: fail; removed in OpenSSH 7.6)"},
		"hmac-ripemd160-etm@openssh.com":   {High, "RIPEMD-160 (ssh-audit: fail; removed in OpenSSH 7.6)"},
		"none":                             {High, whyPlaintext},
		"umac-64@openssh.com":              {Low, "64-bit tag and encrypt-and-MAC (ssh-audit: warn)"},
		"umac-64-etm@openssh.com":          {Low, whyTag64},
		"umac-128@openssh.com":             {Low, whyEaM},
		"hmac-sha2-256":                    {Low, whyEaM},
		"hmac-sha2-512":                    {Low, whyEaM},
		"hmac-sha2-256-96":                 {Low, whyEaM},
		"hmac-sha2-512-96":                 {Low, whyEaM},
		"hmac-sha2-256-96-etm@openssh.com": {Low, "96-bit tag (ssh-audit: warn)"},
	},
	keyAlg: {
		"ssh-dss":                                     {High, whyDSA},
		"ssh-dss-cert-v01@openssh.com":                {High, whyDSA},
		"ssh-rsa":                                     {High, whyRSASHA1},
		"ssh-rsa-cert-v01@openssh.com":                {High, whyRSASHA1},
		"ecdsa-sha2-nistp256":                         {Low, whyNIST},
		"ecdsa-sha2-nistp384":                         {Low, whyNIST},
		"ecdsa-sha2-nistp521":                         {Low, whyNIST},
		"ecdsa-sha2-nistp256-cert-v01@openssh.com":    {Low, whyNIST},
		"ecdsa-sha2-nistp384-cert-v01@openssh.com":    {Low, whyNIST},
		"ecdsa-sha2-nistp521-cert-v01@openssh.com":    {Low, whyNIST},
		"sk-ecdsa-sha2-nistp256@openssh.com":          {Low, whyNIST},
		"sk-ecdsa-sha2-nistp256-cert-v01@openssh.com": {Low, whyNIST},
		"webauthn-sk-ecdsa-sha2-nistp256@openssh.com": {Low, whyNIST},
	},
}

// gssVerdicts judge GSSAPIKexAlgorithms, which sshd -T prints as prefixes
// ("gss-group14-sha1-"); the mechanism's OID hash follows on the wire.
var gssVerdicts = []struct {
	prefix string
	v      verdict
}{
	{"gss-group1-sha1-", verdict{High, why1024}},
	{"gss-group14-sha1-", verdict{High, whySHA1}},
	{"gss-gex-sha1-", verdict{High, whySHA1}},
	{"gss-group14-sha256-", verdict{Low, why2048}},
	{"gss-nistp256-sha256-", verdict{Low, whyNIST}},
}

// judgeAlg returns the verdict on one algorithm; ok is false for the ones
// ssh-audit passes and for names it does not know.
func judgeAlg(kind algKind, name string) (verdict, bool) {
	name = strings.ToLower(name)
	if kind == kexAlg && strings.HasPrefix(name, "gss-") {
		for _, g := range gssVerdicts {
			if strings.HasPrefix(name, g.prefix) {
				return g.v, true
			}
		}
		return verdict{}, false
	}
	v, ok := algVerdicts[kind][name]
	return v, ok
}

// strongDefaults replace a list whose every entry is weak: OpenSSH 9.x's
// own defaults without what is judged above.
var strongDefaults = map[algKind][]string{
	kexAlg:    {"sntrup761x25519-sha512@openssh.com", "curve25519-sha256", "curve25519-sha256@libssh.org", "diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512", "diffie-hellman-group-exchange-sha256"},
	cipherAlg: {"chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com", "aes256-ctr", "aes192-ctr", "aes128-ctr"},
	macAlg:    {"hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "umac-128-etm@openssh.com"},
	keyAlg:    {"ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"},
}

// without returns list minus the algorithms judged at or above min, or
// the strong defaults if nothing would remain.
func without(kind algKind, list []string, min Severity) []string {
	out := slices.DeleteFunc(slices.Clone(list), func(a string) bool {
		v, ok := judgeAlg(kind, a)
		return ok && v.sev >= min
	})
	if len(out) == 0 {
		return slices.Clone(strongDefaults[kind])
	}
	return out
}

// hostKeyAlgs lists the signature algorithms a host key of this type can
// serve: a HostKeyAlgorithms without any of them makes sshd start fine and
// every client fail with "no matching host key type".
func hostKeyAlgs(keyType string) []string {
	switch keyType {
	case "ssh-rsa":
		return []string{"rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"}
	case "ssh-ed25519", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
		"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com":
		return []string{keyType}
	}
	return nil
}
