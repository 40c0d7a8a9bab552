package broker

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"strings"

	"moat/internal/auth"
	"moat/internal/config"
	"moat/internal/listener"
	"moat/internal/packet"
	"moat/internal/registry"
	"moat/internal/tlspolicy"
	"moat/internal/tlspsk"
)

// tlsOptions maps a listener's [listener.tls] table onto the TLS policy.
func tlsOptions(t *config.TLS) (tlspolicy.Options, error) {
	minV, err := tlspolicy.ParseVersion(t.MinVersion)
	if err != nil {
		return tlspolicy.Options{}, err
	}
	if err := tlspolicy.ValidateIdentitySource(t.Identity); err != nil {
		return tlspolicy.Options{}, fmt.Errorf("identity: %w", err)
	}
	if err := tlspolicy.ValidateClientIDTemplate(t.ClientIDTemplate); err != nil {
		return tlspolicy.Options{}, fmt.Errorf("client_id_template: %w", err)
	}
	opts := tlspolicy.Options{
		Certs: []tlspolicy.CertSource{{
			CertFile:        t.Cert,
			KeyFile:         t.Key,
			KeyPasswordFile: t.KeyPasswordFile,
			KeyPasswordEnv:  t.KeyPasswordEnv,
		}},
		MinVersion:    minV,
		CipherSuites:  t.CipherSuites,
		ClientAuth:    t.ClientAuth,
		ClientCAFiles: t.ClientCA,
		MaxChainDepth: t.MaxChainDepth,
		ALPN:          t.ALPN,
	}
	for _, s := range t.SNI {
		opts.Certs = append(opts.Certs, tlspolicy.CertSource{
			CertFile:        s.Cert,
			KeyFile:         s.Key,
			KeyPasswordFile: s.KeyPasswordFile,
			KeyPasswordEnv:  s.KeyPasswordEnv,
			Names:           s.Names,
		})
	}
	return opts, nil
}

// bind opens the transport of one configured listener: plain TCP or
// WebSocket, or the same over TLS, always behind the per-IP rate limit and
// the handshake gate.
func (s *Server) bind(l *config.Listener) (*boundListener, error) {
	raw, err := listener.TCP(l.Address)
	if err != nil {
		return nil, err
	}
	base := raw
	rate := l.ConnRatePerIP
	if l.Proxy != nil {
		base, err = s.proxyListener(raw, l)
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("broker: listener %q: %w", l.Name, err)
		}
	}
	guarded := listener.Guard(base, listener.GuardOptions{
		// Below the PROXY protocol every connection comes from the
		// balancer: the limit applies to the real client address, once
		// the header has been read.
		DeferRateLimit:   l.Proxy != nil,
		MaxConnRatePerIP: rate,
		Burst:            l.ConnBurstPerIP,
		MaxHandshakes:    l.MaxHandshakes,
		HandshakeTimeout: l.HandshakeTimeout.Duration,
		Log:              s.log.With("listener", l.Name),
	})
	bl := &boundListener{cfg: l, gate: guarded.(*listener.GuardedListener).Gate(), guard: guarded.(*listener.GuardedListener)}
	if l.Type == config.ListenerTLS && (l.TLS.PSKFile != "" || s.reg != nil) {
		bl.psk, bl.pskStore, err = pskConfig(l.TLS, s.reg)
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("broker: listener %q: %w", l.Name, err)
		}
	}
	if l.IsTLS() && l.TLS.Cert != "" {
		opts, err := tlsOptions(l.TLS)
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("broker: listener %q: tls: %w", l.Name, err)
		}
		opts.Revocation, bl.revocation, err = s.revocationFor(l)
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("broker: listener %q: revocation: %w", l.Name, err)
		}
		if s.reg != nil && l.TLS.ClientAuth != "none" {
			// Certificateless devices: a self-signed certificate whose
			// public key is registered is accepted over TLS 1.3.
			reg := s.reg
			opts.PinnedKey = func(leaf *x509.Certificate) bool {
				pin := registry.SPKISHA256(leaf)
				_, ok := reg.ByPinnedKey(pin[:])
				return ok
			}
			bl.pinned = true
		}
		bl.policy, err = tlspolicy.New(opts, s.log.With("listener", l.Name))
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("broker: listener %q: %w", l.Name, err)
		}
	}
	wsOpts := listener.WSOptions{
		Path:          l.Path,
		MaxPacketSize: int(s.limits.maxPacket),
		Log:           s.log.With("listener", l.Name),
	}
	switch l.Type {
	case config.ListenerTCP, config.ListenerTLS:
		bl.ln = guarded
	case config.ListenerWS:
		bl.ln = listener.ServeWebSocket(guarded, wsOpts)
	case config.ListenerWSS:
		tl := bl.gate.TLSListener(guarded, bl.policy.TLSConfig(), func(remote net.Addr, err error) {
			bl.policy.ObserveHandshakeError(remote.String(), err)
		})
		bl.ln = listener.ServeWebSocket(tl, wsOpts)
	default:
		raw.Close()
		return nil, fmt.Errorf("broker: listener %q: unsupported type %q", l.Name, l.Type)
	}
	return bl, nil
}

// pskSuites are the TLS 1.2 PSK suites by their OpenSSL names.
var pskSuites = map[string]uint16{
	"ECDHE-PSK-CHACHA20-POLY1305": tlspsk.TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256,
	"PSK-AES128-GCM-SHA256":       tlspsk.TLS_PSK_WITH_AES_128_GCM_SHA256,
	"PSK-AES256-GCM-SHA384":       tlspsk.TLS_PSK_WITH_AES_256_GCM_SHA384,
	"PSK-CHACHA20-POLY1305":       tlspsk.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256,
	"PSK-AES128-CCM":              tlspsk.TLS_PSK_WITH_AES_128_CCM,
	"PSK-AES128-CCM8":             tlspsk.TLS_PSK_WITH_AES_128_CCM_8,
}

// pskConfig builds the TLS-PSK server configuration of a listener: keys
// from the device registry first, then from the listener's psk_file.
func pskConfig(t *config.TLS, reg *registry.Registry) (*tlspsk.Config, *tlspsk.FileStore, error) {
	var store *tlspsk.FileStore
	var keys tlspsk.KeyStore
	if t.PSKFile != "" {
		var err error
		store, err = tlspsk.LoadPSKFile(t.PSKFile)
		if err != nil {
			return nil, nil, err
		}
		keys = store
	}
	if reg != nil {
		if store != nil {
			keys = reg.PSKStore(store)
		} else {
			keys = reg.PSKStore(nil)
		}
	}
	cfg := &tlspsk.Config{Keys: keys, IdentityHint: t.PSKIdentityHint}
	if len(t.PSKCipherSuites) > 0 {
		for _, name := range t.PSKCipherSuites {
			id, ok := pskSuites[strings.ToUpper(name)]
			if !ok {
				return nil, nil, fmt.Errorf("tls: psk_cipher_suites: %q is not an allowed PSK suite (allowed: ECDHE-PSK-CHACHA20-POLY1305, PSK-AES128-GCM-SHA256, PSK-AES256-GCM-SHA384, PSK-CHACHA20-POLY1305, PSK-AES128-CCM, PSK-AES128-CCM8)", name)
			}
			cfg.CipherSuites = append(cfg.CipherSuites, id)
		}
		// TLS 1.3 suites stay enabled.
		cfg.CipherSuites = append(cfg.CipherSuites, tlspsk.TLS_AES_128_GCM_SHA256, tlspsk.TLS_CHACHA20_POLY1305_SHA256, tlspsk.TLS_AES_256_GCM_SHA384)
	}
	return cfg, store, nil
}

// handshake runs the TLS handshake of a "tls" listener's connection, within
// the handshake gate's slots and deadline. With TLS-PSK enabled, a client
// whose ClientHello offers a PSK is handed to the TLS-PSK server, every
// other client to crypto/tls: certificate and PSK devices share the port.
func (c *conn) handshake() error {
	bl := c.bl
	if bl.cfg.Type != config.ListenerTLS {
		return nil
	}
	var nc net.Conn
	var err error
	ctx, cancel := context.WithDeadline(context.Background(), c.deadline)
	defer cancel()
	if bl.psk == nil {
		nc, err = bl.gate.Handshake(ctx, c.nc, bl.policy.TLSConfig())
	} else {
		nc, err = bl.gate.HandshakeWith(ctx, c.nc, func(ctx context.Context, pc net.Conn, first []byte) (net.Conn, error) {
			if psk, _ := tlspsk.ClientHelloOffersPSK(first); psk || bl.policy == nil {
				pc := tlspsk.Server(pc, bl.psk)
				if err := pc.Handshake(ctx); err != nil {
					return nil, err
				}
				return pc, nil
			}
			tc := tls.Server(pc, bl.policy.TLSConfig())
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, err
			}
			return tc, nil
		})
	}
	if err != nil {
		if bl.policy != nil {
			bl.policy.ObserveHandshakeError(c.remote, err)
		} else {
			c.s.log.Debug("tls-psk handshake failed", "listener", bl.cfg.Name, "remote", c.remote, "err", err)
		}
		return errKicked
	}
	c.nc = nc
	return nil
}

// tlsStater is a connection that knows its TLS state: *tls.Conn, and the
// WebSocket connections of a "wss" listener.
type tlsStater interface {
	ConnectionState() tls.ConnectionState
}

// transportIdentity maps a verified client certificate to the identity the
// listener is configured to take from it. It returns nil when the client
// sent no certificate.
func (c *conn) transportIdentity() (*auth.TransportIdentity, *x509.Certificate, error) {
	if pc, ok := c.nc.(*tlspsk.Conn); ok {
		st := pc.ConnectionState()
		c.tlsVersion, c.tlsSuite = st.Version, st.CipherSuite
		return &auth.TransportIdentity{Method: auth.MethodPSK, ID: st.Identity, Attrs: map[string]string{
			"tls_version": tls.VersionName(st.Version),
			"tls_cipher":  tlspsk.CipherSuiteName(st.CipherSuite),
		}}, nil, nil
	}
	ts, ok := c.nc.(tlsStater)
	if !ok || c.bl.cfg.TLS == nil {
		return nil, nil, nil
	}
	st := ts.ConnectionState()
	c.tlsVersion, c.tlsSuite = st.Version, st.CipherSuite
	if len(st.PeerCertificates) == 0 {
		return nil, nil, nil
	}
	if c.bl.pinned && c.bl.policy != nil {
		// Certificateless clients are on: crypto/tls verified nothing
		// itself; ask the policy what the handshake decided.
		pinned, chains, err := c.bl.policy.VerifyClient(st)
		if err != nil {
			return nil, nil, err
		}
		if pinned {
			pin := registry.SPKISHA256(st.PeerCertificates[0])
			h := hex.EncodeToString(pin[:])
			c.leaf = st.PeerCertificates[0]
			return &auth.TransportIdentity{Method: auth.MethodPinnedKey, ID: h, Attrs: map[string]string{
				registry.AttrSPKISHA256: h,
				"tls_version":           tls.VersionName(st.Version),
				"tls_cipher":            tls.CipherSuiteName(st.CipherSuite),
			}}, nil, nil
		}
		st.VerifiedChains = chains
	}
	if len(st.VerifiedChains) == 0 {
		return nil, nil, nil
	}
	c.chain = st.VerifiedChains[0]
	leaf := st.PeerCertificates[0]
	c.leaf = leaf
	c.idFields = tlspolicy.CertIdentityFields(leaf)
	id, err := tlspolicy.Identity(leaf, c.bl.cfg.TLS.Identity)
	if err != nil {
		return nil, leaf, err
	}
	fp := sha256.Sum256(leaf.Raw)
	attrs := map[string]string{
		"fingerprint": hex.EncodeToString(fp[:]),
		"serial":      leaf.SerialNumber.String(),
		"issuer":      leaf.Issuer.String(),
		"tls_version": tls.VersionName(st.Version),
		"tls_cipher":  tls.CipherSuiteName(st.CipherSuite),
	}
	if cn, err := tlspolicy.Identity(leaf, "cn"); err == nil {
		attrs["cn"] = cn
	}
	if dn, err := tlspolicy.Identity(leaf, "dn"); err == nil {
		attrs["dn"] = dn
	}
	return &auth.TransportIdentity{Method: auth.MethodCert, ID: id, Attrs: attrs}, leaf, nil
}

// bindClientID applies client-id binding: on listeners that bind, a client
// with a certificate must use the client id the template makes from it; an
// empty client id is given that value.
func (c *conn) bindClientID(cp *connectPacket) error {
	bind, tmpl := c.binding()
	if c.idFields == nil || !bind {
		return nil
	}
	want, err := tlspolicy.ExpandClientIDTemplate(tmpl, c.idFields)
	if err != nil || want == "" {
		return c.refuse(cp.ProtocolVersion, packet.ClientIdentifierNotValid, packet.V3IdentifierRejected, "client certificate lacks the fields of client_id_template")
	}
	if cp.assignedID {
		cp.ClientID = want
		c.clientID = want
		return nil
	}
	if cp.ClientID != want {
		return c.refuse(cp.ProtocolVersion, packet.ClientIdentifierNotValid, packet.V3IdentifierRejected, fmt.Sprintf("client id %s does not match the client certificate (%s expected)", quote(cp.ClientID), quote(want)))
	}
	return nil
}

// Reload re-reads the certificates, keys and CA bundles of every TLS
// listener (SIGHUP). Established connections are kept; new handshakes use
// the new material. A listener whose files fail to load keeps its old
// material; the first error is returned.
func (s *Server) Reload() error {
	s.mu.RLock()
	ls := s.listeners
	s.mu.RUnlock()
	var first error
	for _, bl := range ls {
		if bl.pskStore != nil {
			if err := bl.pskStore.Reload(); err != nil && first == nil {
				first = fmt.Errorf("listener %q: psk_file: %w", bl.cfg.Name, err)
			}
		}
		if bl.policy == nil {
			continue
		}
		if err := bl.policy.Reload(); err != nil && first == nil {
			first = fmt.Errorf("listener %q: %w", bl.cfg.Name, err)
		}
	}
	return first
}

// TLSStatus returns the reload status of every TLS listener by name.
func (s *Server) TLSStatus() map[string]tlspolicy.ReloadStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]tlspolicy.ReloadStatus)
	for _, bl := range s.listeners {
		if bl.policy != nil {
			out[bl.cfg.Name] = bl.policy.Status()
		}
	}
	return out
}

// HandshakeFailures returns the failed-handshake counters by reason, summed
// over the TLS listeners.
func (s *Server) HandshakeFailures() map[string]uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]uint64)
	for _, bl := range s.listeners {
		if bl.policy != nil {
			for k, v := range bl.policy.Stats().Snapshot() {
				out[k] += v
			}
		}
	}
	return out
}
