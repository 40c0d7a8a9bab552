package loadgen

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"moat/internal/tlspsk"
)

// connInfo describes the transport of one connection.
type connInfo struct {
	TLSVersion  uint16
	CipherSuite uint16
	Resumed     bool
}

// dialer opens transport connections: TCP, then TLS, TLS-PSK or a
// WebSocket upgrade.
type dialer struct {
	cfg     *Config
	addr    string // dial target host:port (an IP literal when spreading sources)
	tls     *tls.Config
	lean    *tlspsk.Config // transport tls with the lean client; tls is nil then
	psk     *tlspsk.Config
	wsURL   string
	sources []net.IP        // local addresses to spread over; nil: the kernel's choice
	life    context.Context // lifetime of WebSocket connections
}

func newDialer(life context.Context, cfg *Config, target string, sources []net.IP) (*dialer, error) {
	d := &dialer{cfg: cfg, addr: target, sources: sources, life: life}
	lean, err := cfg.leanTLS()
	if err != nil {
		return nil, err
	}
	switch {
	case lean:
		if d.lean, err = leanTLSConfig(cfg); err != nil {
			return nil, err
		}
	case cfg.isTLS():
		tc, err := clientTLSConfig(cfg)
		if err != nil {
			return nil, err
		}
		d.tls = tc
	}
	if cfg.Transport == TransportTLSPSK {
		lo, hi, _ := cfg.tlsVersions()
		d.psk = &tlspsk.Config{Identity: cfg.PSKIdentity, Key: cfg.PSKKey, MinVersion: lo, MaxVersion: hi}
		ids, _ := cfg.curveIDs()
		d.psk.CurvePreferences = tlspskGroups(ids)
	}
	switch cfg.Transport {
	case TransportWS:
		d.wsURL = "ws://" + target + cfg.WSPath
	case TransportWSS:
		d.wsURL = "wss://" + target + cfg.WSPath
	}
	return d, nil
}

// clientTLSConfig builds the client side of TLS for tls and wss.
func clientTLSConfig(cfg *Config) (*tls.Config, error) {
	lo, hi, _ := cfg.tlsVersions()
	curves, _ := cfg.curveIDs()
	tc := &tls.Config{
		ServerName:         cfg.ServerName,
		MinVersion:         lo,
		MaxVersion:         hi,
		CurvePreferences:   curves,
		InsecureSkipVerify: cfg.Insecure, //nolint:gosec // a benchmark flag, off by default
	}
	if tc.ServerName == "" {
		tc.ServerName = cfg.Host
	}
	pool, err := loadRoots(cfg)
	if err != nil {
		return nil, err
	}
	tc.RootCAs = pool
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loadgen: --cert/--key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if cfg.ALPN != "" {
		tc.NextProtos = splitList(cfg.ALPN)
	}
	if cfg.Resume {
		tc.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	return tc, nil
}

// loadRoots reads --cafile (nil without one: the system roots).
func loadRoots(cfg *Config) (*x509.CertPool, error) {
	if cfg.CAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("loadgen: --cafile: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, cfgErr("--cafile %s holds no PEM certificate", cfg.CAFile)
	}
	return pool, nil
}

// leanTLSConfig builds the lean client of transport tls: tlspsk in
// certificate mode, TLS 1.3, with one key share per group generated here
// and reused by every connection (the broker still makes its own per
// handshake and does its usual work; the generator skips a key generation
// per connection).
func leanTLSConfig(cfg *Config) (*tlspsk.Config, error) {
	lc := &tlspsk.Config{
		CertificateMode: true,
		ServerName:      cfg.ServerName,
		MinVersion:      tlspsk.VersionTLS13,
		NextProtos:      splitList(cfg.ALPN),
	}
	if lc.ServerName == "" {
		lc.ServerName = cfg.Host
	}
	ids, _ := cfg.curveIDs()
	groups := tlspskGroups(ids)
	if len(groups) == 0 {
		groups = []tlspsk.CurveID{tlspsk.X25519, tlspsk.P256}
	}
	for _, g := range groups {
		curve := ecdh.X25519()
		if g == tlspsk.P256 {
			curve = ecdh.P256()
		}
		k, err := curve.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("loadgen: key share: %w", err)
		}
		lc.CurvePreferences = append(lc.CurvePreferences, g)
		lc.StaticKeyShares = append(lc.StaticKeyShares, k)
	}
	if cfg.Insecure {
		// --insecure: no chain, name or signature check (crypto/tls would
		// still check the signature); the broker's Finished is checked.
		lc.VerifyServer = func(*tlspsk.ServerCertificate) error { return nil }
	} else {
		pool, err := loadRoots(cfg)
		if err != nil {
			return nil, err
		}
		lc.VerifyServer = tlspsk.VerifyServerX509(pool, lc.ServerName)
	}
	if cfg.Resume {
		lc.SessionCache = tlspsk.NewSessionCache(64)
	}
	return lc, nil
}

// tlspskGroups maps --curves onto the groups tlspsk speaks (X25519,
// P-256), in order; others are left out.
func tlspskGroups(ids []tls.CurveID) []tlspsk.CurveID {
	var gs []tlspsk.CurveID
	for _, id := range ids {
		switch id {
		case tls.X25519:
			gs = append(gs, tlspsk.X25519)
		case tls.CurveP256:
			gs = append(gs, tlspsk.P256)
		}
	}
	return gs
}

// tlsClientName names the TLS client of a run ("" without TLS).
func (d *dialer) tlsClientName() string {
	switch {
	case d.lean != nil:
		return TLSClientLean
	case d.tls != nil:
		return TLSClientGo
	}
	return ""
}

// netDialer is the TCP dialer of connection i: its source address is one
// of the spread addresses, with the port left to connect time.
func (d *dialer) netDialer(i int) *net.Dialer {
	nd := &net.Dialer{Timeout: d.cfg.Timeout, KeepAlive: -1}
	if len(d.sources) > 0 {
		nd.LocalAddr = &net.TCPAddr{IP: d.sources[i%len(d.sources)]}
		nd.Control = bindNoPort
	}
	return nd
}

// dial opens connection i and runs its transport handshake.
func (d *dialer) dial(ctx context.Context, i int) (net.Conn, connInfo, error) {
	var info connInfo
	nd := d.netDialer(i)
	switch d.cfg.Transport {
	case TransportWS, TransportWSS:
		return d.dialWS(ctx, nd)
	}
	raw, err := nd.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, info, err
	}
	switch d.cfg.Transport {
	case TransportTLS:
		if d.lean != nil {
			c := tlspsk.Client(raw, d.lean)
			if err := c.Handshake(ctx); err != nil {
				raw.Close()
				return nil, info, fmt.Errorf("tls handshake (lean client): %w", err)
			}
			st := c.ConnectionState()
			info = connInfo{TLSVersion: st.Version, CipherSuite: st.CipherSuite, Resumed: st.DidResume}
			return c, info, nil
		}
		c := tls.Client(raw, d.tls)
		if err := c.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, info, fmt.Errorf("tls handshake: %w", err)
		}
		st := c.ConnectionState()
		info = connInfo{TLSVersion: st.Version, CipherSuite: st.CipherSuite, Resumed: st.DidResume}
		return c, info, nil
	case TransportTLSPSK:
		c := tlspsk.Client(raw, d.psk)
		if err := c.Handshake(ctx); err != nil {
			raw.Close()
			return nil, info, fmt.Errorf("tls-psk handshake: %w", err)
		}
		st := c.ConnectionState()
		info = connInfo{TLSVersion: st.Version, CipherSuite: st.CipherSuite}
		return c, info, nil
	}
	return raw, info, nil
}

func (d *dialer) dialWS(ctx context.Context, nd *net.Dialer) (net.Conn, connInfo, error) {
	var info connInfo
	tr := &http.Transport{
		DialContext:         nd.DialContext,
		TLSClientConfig:     d.tls,
		TLSHandshakeTimeout: d.cfg.Timeout,
	}
	defer tr.CloseIdleConnections()
	c, resp, err := websocket.Dial(ctx, d.wsURL, &websocket.DialOptions{
		HTTPClient:   &http.Client{Transport: tr, Timeout: d.cfg.Timeout},
		Subprotocols: []string{"mqtt"},
	})
	if err != nil {
		return nil, info, err
	}
	if resp != nil && resp.TLS != nil {
		info = connInfo{TLSVersion: resp.TLS.Version, CipherSuite: resp.TLS.CipherSuite, Resumed: resp.TLS.DidResume}
	}
	c.SetReadLimit(-1)
	return websocket.NetConn(d.life, c, websocket.MessageBinary), info, nil
}

// resolveTarget resolves cfg.Host and enforces the loopback rule. It
// returns the address to dial: an IPv4 literal when sources are spread.
func resolveTarget(ctx context.Context, cfg *Config) (ips []net.IP, err error) {
	if ip := net.ParseIP(cfg.Host); ip != nil {
		ips = []net.IP{ip}
	} else {
		addrs, err := net.DefaultResolver.LookupIPAddr(ctx, cfg.Host)
		if err != nil {
			return nil, fmt.Errorf("loadgen: resolve %s: %w", cfg.Host, err)
		}
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
	}
	if !cfg.AllowRemote {
		for _, ip := range ips {
			if !ip.IsLoopback() {
				return nil, fmt.Errorf("%w: %s resolves to %s", ErrRemote, cfg.Host, ip)
			}
		}
	}
	return ips, nil
}

// sourcePlan decides how many loopback source addresses to spread n
// connections over: one address has about ports ephemeral ports (28,232 by
// default), of which a margin is kept free for everything else.
func sourcePlan(n, ports, forced int) int {
	if forced > 0 {
		return forced
	}
	per := ports * 9 / 10
	if per < 1 {
		per = 1
	}
	k := (n + per - 1) / per
	return max(1, min(k, 254))
}

// classify turns a connection error into a short, countable label (no
// addresses or ports).
func classify(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case isErrno(err, "EMFILE"), isErrno(err, "ENFILE"):
		return "too many open files (RLIMIT_NOFILE " + limitString() + ")"
	case isErrno(err, "EADDRNOTAVAIL"):
		return "no free source port (EADDRNOTAVAIL): spread sources with --source-ips"
	case isErrno(err, "ECONNREFUSED"):
		return "connection refused"
	case isErrno(err, "ECONNRESET"):
		return "connection reset by broker"
	case errors.Is(err, ErrConnack), errors.Is(err, ErrSuback), errors.Is(err, ErrProtocol):
		return err.Error()
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

func limitString() string {
	soft, _, ok := fileLimit()
	if !ok {
		return "unknown"
	}
	return strconv.FormatUint(soft, 10)
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// dialDeadline bounds one connection's setup.
func dialDeadline(cfg *Config) time.Time { return time.Now().Add(cfg.Timeout) }
