package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-fw/moat/internal/daemon"
	"github.com/moat-fw/moat/internal/netnstest"
)

func (h *host) blocklist(t *testing.T, name string) daemon.BlocklistStatus {
	t.Helper()
	for _, b := range h.status(t).Blocklists {
		if b.Name == name {
			return b
		}
	}
	t.Fatalf("no blocklist %q in status", name)
	return daemon.BlocklistStatus{}
}

func blocklistTOML(name, source, format, extra string) string {
	return fmt.Sprintf("\n[[blocklist]]\nname = %q\nsource = %q\nformat = %q\n%s", name, source, format, extra)
}

// A list naming the whole link drops a listed client, but never the
// host's router, its own address or an allow-listed client: they are cut
// out of the list's ranges.
func TestBlocklistNeverCoversProtected(t *testing.T) {
	h := newHost(t, "")
	listed, allowed := h.link.Host4(3), h.link.Host4(5)
	for _, a := range []netip.Addr{listed, allowed} {
		h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(a, 24))
	}
	// The client is the server's default router.
	h.server.IP(t, "route", "add", "default", "via", h.link.B4.String())
	list := filepath.Join(h.dir, "drop.txt")
	text := fmt.Sprintf("; Spamhaus DROP style\n%s ; SBL1\n%s ; SBL2\n", h.link.Prefix4, h.link.Prefix6)
	if err := os.WriteFile(list, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\nallow = [%q]\n%s", openPort, allowed, blocklistTOML("drop", list, "spamhaus", "")))
	h.start()
	netnstest.Eventually(t, 10*time.Second, "the list to be loaded", func() bool { return h.blocklist(t, "drop").Ranges > 0 })
	h.expect(listed, openPort, netnstest.TimedOut)
	h.expect(h.link.B6, openPort, netnstest.TimedOut)
	h.expect(h.link.B4, openPort, netnstest.Connected) // the router
	h.expect(allowed, openPort, netnstest.Connected)   // the allow list
	b := h.blocklist(t, "drop")
	if b.Entries != 2 || b.Protected < 3 || b.Packets == 0 {
		t.Fatalf("status %+v: want 2 entries, at least 3 protected holes (router, host, allowed), dropped packets", b)
	}
	// An address allowed at run time is cut out too.
	h.moat("allow", "add", listed.String())
	h.eventually("the newly allowed client to get through", listed, openPort, netnstest.Connected)
}

// blocklistFile writes n IPv6 host entries from fd00:210:ff00::/40,
// spaced so no two merge, numbered from first; extra lines are appended.
func blocklistFile(t *testing.T, path string, first, n int, skip map[int]bool, extra ...netip.Addr) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "# generated")
	for i := first; i < first+n; i++ {
		if skip[i] {
			continue
		}
		var b [16]byte
		copy(b[:], []byte{0xfd, 0x00, 0x02, 0x10, 0xff})
		binary.BigEndian.PutUint64(b[8:], uint64(i)*2)
		fmt.Fprintln(w, netip.AddrFrom16(b))
	}
	for _, a := range extra {
		fmt.Fprintln(w, a)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// A 500,000-entry list refreshed with 1% changed sends the kernel the
// changes only: the transaction carries the elements of the 5,000 ranges
// removed and the 5,000 added (two each: start and end), counted as they
// are queued on the netlink batch, and the packets show the change (a
// client taken off the list gets in, one put on it does not).
func TestBlocklistRefreshSendsOnlyChanges(t *testing.T) {
	const n, changed = 500_000, 5_000
	h := newHost(t, "")
	gone, added := h.link.Host6(7), h.link.Host6(8)
	for _, a := range []netip.Addr{gone, added} {
		h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(a, 64))
	}
	list := filepath.Join(h.dir, "big.txt")
	blocklistFile(t, list, 0, n-1, nil, gone)
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\n%s", openPort, blocklistTOML("big", list, "plain", "")))
	h.start()
	netnstest.Eventually(t, 60*time.Second, "the list to be loaded", func() bool { return h.blocklist(t, "big").Ranges == n })
	h.expect(gone, openPort, netnstest.TimedOut)
	h.expect(added, openPort, netnstest.Connected)
	before := h.blocklist(t, "big")

	// 1% changes: the first changed-1 entries and gone leave, as many new
	// entries and added come.
	skip := map[int]bool{}
	for i := range changed - 1 {
		skip[i] = true
	}
	blocklistFile(t, list, 0, n-1+changed-1, skip, added)

	h.moat("blocklist", "refresh")
	netnstest.Eventually(t, 60*time.Second, "the refresh", func() bool {
		b := h.blocklist(t, "big")
		return b.LastAttempt.After(before.LastAttempt) && b.LastAdded > 0
	})
	b := h.blocklist(t, "big")
	if b.LastAdded != changed || b.LastRemoved != changed || b.LastSent != 4*changed || b.Ranges != n {
		t.Fatalf("status after the refresh: %+v; want %d ranges added, %d removed, %d elements in the transaction (not the list's %d), %d ranges", b, changed, changed, 4*changed, 2*n, n)
	}
	h.expect(gone, openPort, netnstest.Connected)
	h.expect(added, openPort, netnstest.TimedOut)
}

// testCA makes a CA and a server certificate for ip, signed by it; it
// returns the server's TLS certificate and the CA's PEM.
func testCA(t *testing.T, ip netip.Addr) (tls.Certificate, []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "moat test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "list mirror"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{ip.AsSlice()},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

// A list served over HTTPS (a private CA in ca_file) is fetched, asked
// again conditionally (a 304 changes nothing), and kept when its server
// goes away: across a refresh and across a restart, from the copy saved
// under state_dir.
func TestBlocklistUnreachableURLKeepsLastGood(t *testing.T) {
	h := newHost(t, "")
	listed := h.link.Host4(3)
	h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(listed, 24))
	cert, caPEM := testCA(t, h.link.B4)
	caFile := filepath.Join(h.dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := h.client.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(h.link.B4, 8443).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var full, notModified atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		const etag = `"v1"`
		if r.Header.Get("If-None-Match") == etag {
			notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		full.Add(1)
		w.Header().Set("ETag", etag)
		fmt.Fprintf(w, "# firehol-style\n%s\n", listed)
	}))
	srv.Listener = ln
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	url := fmt.Sprintf("https://%s:8443/level1.netset", h.link.B4)
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\n%s", openPort, blocklistTOML("mirror", url, "firehol", fmt.Sprintf("ca_file = %q\n", caFile))))
	h.start()
	netnstest.Eventually(t, 10*time.Second, "the list to be fetched", func() bool { return h.blocklist(t, "mirror").Ranges == 1 })
	h.expect(listed, openPort, netnstest.TimedOut)
	h.expect(h.link.B4, openPort, netnstest.Connected)

	h.moat("blocklist", "refresh")
	netnstest.Eventually(t, 10*time.Second, "a conditional request", func() bool { return notModified.Load() == 1 })
	if full.Load() != 1 {
		t.Fatalf("%d full downloads, want 1: the second request was not conditional", full.Load())
	}

	srv.Close()
	h.moat("blocklist", "refresh")
	netnstest.Eventually(t, 10*time.Second, "the failed refresh", func() bool { return h.blocklist(t, "mirror").LastError != "" })
	if b := h.blocklist(t, "mirror"); b.Ranges != 1 || b.Entries != 1 {
		t.Fatalf("after a failed refresh: %+v, want the last good list (1 entry)", b)
	}
	h.expect(listed, openPort, netnstest.TimedOut)

	// A restart with the server still gone: the saved copy.
	h.restart()
	netnstest.Eventually(t, 10*time.Second, "the saved copy to be loaded", func() bool {
		b := h.blocklist(t, "mirror")
		return b.Ranges == 1 && b.LastError != ""
	})
	h.expect(listed, openPort, netnstest.TimedOut)
	h.expect(h.link.B4, openPort, netnstest.Connected)
}

// moat ban import bans what a list file names, through the ban policy:
// the router and allow-listed addresses in it are refused.
func TestBanImport(t *testing.T) {
	h := newHost(t, "")
	listed, allowed := h.link.Host4(3), h.link.Host4(5)
	for _, a := range []netip.Addr{listed, allowed} {
		h.client.AddAddr(t, h.link.BIf, netip.PrefixFrom(a, 24))
	}
	h.server.IP(t, "route", "add", "default", "via", h.link.B4.String())
	h.writeConfig(fmt.Sprintf("open = [\"tcp/%d\"]\nallow = [%q]", openPort, allowed))
	h.start()
	file := filepath.Join(h.dir, "block.txt")
	text := fmt.Sprintf("Start\tEnd\tNetblock\tAttacks\n%s\t%s\t32\t10\n%s\t%s\t32\t5\n%s\t%s\t32\t1\n", listed, listed, h.link.B4, h.link.B4, allowed, allowed)
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out := h.moat("ban", "import", "--format", "dshield", file)
	if !strings.Contains(out, "banned 1 prefixes from 3 entries") || !strings.Contains(out, "refused 2") {
		t.Fatalf("moat ban import: %s", out)
	}
	if !hasBan(h.bans(t), listed.String(), daemon.OriginImport) {
		t.Fatalf("no import ban of %s: %+v", listed, h.bans(t))
	}
	h.expect(listed, openPort, netnstest.TimedOut)
	h.expect(h.link.B4, openPort, netnstest.Connected)
	h.expect(allowed, openPort, netnstest.Connected)
}
