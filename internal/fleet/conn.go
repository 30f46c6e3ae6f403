package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/moat-fw/moat/internal/config"
)

// MinServer is the oldest NATS server moat uses: per-message TTL (and with
// it per-key TTL in a key-value bucket) came with 2.11. Older servers
// accept the TTL header and ignore it, so shared bans would never end.
var MinServer = [2]int{2, 11}

// ErrOldServer is returned by Dial for a server older than MinServer.
var ErrOldServer = errors.New("NATS server too old")

// markerTTL is how long the bucket keeps the marker of a key whose TTL
// ran out, so that a watcher that was away briefly still sees it go.
const markerTTL = 10 * time.Minute

// Handlers are told of connection changes after Dial.
type Handlers struct {
	Disconnected func(error)
}

// Dial connects to the fleet's NATS servers, refuses a server older than
// MinServer, and opens (creating it if needed) the bucket with per-key TTL.
func Dial(ctx context.Context, cfg config.Fleet, host string, h Handlers) (*nats.Conn, jetstream.KeyValue, error) {
	opts := []nats.Option{
		nats.Name("moat " + host),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.Timeout(5 * time.Second),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
	}
	auth, err := authOptions(cfg)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, auth...)
	if h.Disconnected != nil {
		opts = append(opts, nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { h.Disconnected(err) }))
	}
	urls := strings.Join(cfg.Servers, ",")
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet: connect to %s: %w", urls, err)
	}
	if err := CheckVersion(nc.ConnectedServerVersion()); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("fleet: %s: %w", nc.ConnectedUrlRedacted(), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("fleet: %w", err)
	}
	kv, err := OpenBucket(ctx, js, cfg.Bucket, cfg.Replicas)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, kv, nil
}

// OpenBucket opens the bucket, creating it with per-key TTL if it does not
// exist. An existing bucket without per-key TTL is refused: its keys would
// never end.
func OpenBucket(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         bucket,
		Description:    "moat: bans shared by the fleet (key: prefix; value: origin, reason, host, count, expiry)",
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       max(replicas, 1),
		LimitMarkerTTL: markerTTL,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("fleet: bucket %q: %w", bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("fleet: bucket %q: %w", bucket, err)
	}
	if s, ok := st.(*jetstream.KeyValueBucketStatus); ok && s.LimitMarkerTTL() == 0 {
		return nil, fmt.Errorf("fleet: bucket %q exists without per-key TTL (limit marker TTL), so shared bans would never end: delete it (nats kv del %s) and moat creates it anew", bucket, bucket)
	}
	return kv, nil
}

// CheckVersion refuses a server version older than MinServer.
func CheckVersion(v string) error {
	maj, mn, ok := parseVersion(v)
	if !ok {
		return fmt.Errorf("%w: it announces version %q, which moat cannot read; moat needs NATS %d.%d or later", ErrOldServer, v, MinServer[0], MinServer[1])
	}
	if maj < MinServer[0] || maj == MinServer[0] && mn < MinServer[1] {
		return fmt.Errorf("%w: it runs NATS %s; moat needs %d.%d or later, because older servers silently ignore per-key TTL and shared bans would never end (Debian 12's nats-server is 2.9: install a newer one or run `moat fleet server`)",
			ErrOldServer, v, MinServer[0], MinServer[1])
	}
	return nil
}

func parseVersion(v string) (maj, mn int, ok bool) {
	v = strings.TrimPrefix(v, "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	maj, err1 := strconv.Atoi(parts[0])
	mn, err2 := strconv.Atoi(parts[1])
	return maj, mn, err1 == nil && err2 == nil
}

// authOptions turns [fleet] credentials into connection options.
func authOptions(cfg config.Fleet) ([]nats.Option, error) {
	var out []nats.Option
	switch {
	case cfg.CredsFile != "":
		if _, err := os.Stat(cfg.CredsFile); err != nil {
			return nil, fmt.Errorf("fleet: creds_file: %w", err)
		}
		out = append(out, nats.UserCredentials(cfg.CredsFile))
	case cfg.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("fleet: nkey_file %s: %w", cfg.NKeyFile, err)
		}
		out = append(out, o)
	case cfg.User != "":
		pw, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("fleet: password_file: %w", err)
		}
		out = append(out, nats.UserInfo(cfg.User, strings.TrimRight(string(pw), "\r\n")))
	}
	if cfg.TLSCA != "" {
		out = append(out, nats.RootCAs(cfg.TLSCA))
	}
	if cfg.TLSCert != "" {
		out = append(out, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	return out, nil
}
