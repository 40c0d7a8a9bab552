package tlspolicy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// curvePreferences are the key exchange groups offered. crypto/tls ignores
// the order and applies its own preference (hybrid post-quantum first).
var curvePreferences = []tls.CurveID{
	tls.X25519MLKEM768,
	tls.SecP256r1MLKEM768,
	tls.SecP384r1MLKEM1024,
	tls.X25519,
	tls.CurveP256,
	tls.CurveP384,
}

// Policy holds the TLS material of one listener and hands it to handshakes.
// It is safe for concurrent use.
type Policy struct {
	opts  *checked
	log   *slog.Logger
	base  *tls.Config // returned by TLSConfig; owns the session ticket keys
	cur   atomic.Pointer[material]
	stats HandshakeStats
	logRL logLimiter

	staples stapler // OCSP responses stapled to server certificates

	// reloadMu serialises loads. Lock order: reloadMu, then statusMu.
	reloadMu sync.Mutex

	// statusMu guards the following fields.
	statusMu    sync.Mutex
	reloads     uint64
	failures    uint64
	lastErr     string
	lastSuccess time.Time
	lastAttempt time.Time
	attempted   map[string][32]byte // file digests seen by the last load attempt
	files       []string
	notAfter    map[string]time.Time
}

// material is one immutable generation of certificates, keys and CAs, with
// the per-handshake configs built from it.
type material struct {
	opts      *checked
	base      *tls.Config
	certs     []*loadedCert
	exact     map[string][]*loadedCert
	wild      map[string][]*loadedCert // key: the suffix after "*."
	pool      *x509.CertPool
	ticketTag []byte
	files     map[string][32]byte
	fileList  []string
	notAfter  map[string]time.Time

	staples *stapler // the policy's OCSP staples

	cfgALPN   *tls.Config // NextProtos set: the client offered one of ours
	cfgNoALPN *tls.Config // no NextProtos: the client offered none of ours
}

// New checks opts, loads every file and returns a ready Policy. It fails,
// naming the file or option, if anything is wrong; it never starts with
// partial material.
func New(opts Options, log *slog.Logger) (*Policy, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := opts.check()
	if err != nil {
		return nil, err
	}
	p := &Policy{opts: c, log: log}
	p.base = &tls.Config{
		MinVersion:         c.minVersion,
		CipherSuites:       c.suites,
		CurvePreferences:   curvePreferences,
		ClientAuth:         c.clientAuth, // informational: handshakes use GetConfigForClient
		GetConfigForClient: p.configForClient,
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return p.cur.Load().getCertificate(h)
		},
		Renegotiation: tls.RenegotiateNever,
	}
	fr := newFileReader()
	m, err := p.load(fr)
	now := time.Now()
	if err != nil {
		return nil, err
	}
	p.cur.Store(m)
	p.attempted = m.files
	p.files = m.fileList
	p.notAfter = m.notAfter
	p.lastSuccess, p.lastAttempt = now, now
	for _, lc := range m.certs {
		log.Info("tls certificate loaded", "cert_file", lc.file, "names", lc.names,
			"subject", lc.cert.Leaf.Subject.String(), "not_after", lc.cert.Leaf.NotAfter)
	}
	log.Info("tls policy ready", "min_version", tls.VersionName(c.minVersion),
		"client_auth", c.clientAuthStr, "client_ca_files", c.caFiles, "alpn", c.alpn)
	return p, nil
}

// TLSConfig returns the listener config, for tls.NewListener, tls.Server or
// listener.HandshakeGate. Every handshake gets, through GetConfigForClient,
// a config built from the material current at that moment (certificates,
// client CAs, ALPN only when the client offers one of ours). The same
// pointer is returned on every call: it owns the session ticket keys, which
// crypto/tls rotates itself. Callers must not modify or Clone-and-modify it;
// all TLS settings belong in Options.
func (p *Policy) TLSConfig() *tls.Config { return p.base }

// ClientAuth returns the client authentication mode: "none", "optional" or
// "required".
func (p *Policy) ClientAuth() string { return p.opts.clientAuthStr }

// Stats returns the handshake failure counters of this policy.
func (p *Policy) Stats() *HandshakeStats { return &p.stats }

// ObserveHandshakeError classifies a failed server handshake, counts it and
// logs it (rate-limited; never secrets). It returns the reason. The broker
// calls it with the error of tls.Conn.HandshakeContext.
func (p *Policy) ObserveHandshakeError(remote string, err error) string {
	reason := p.stats.Record(err)
	if n, ok := p.logRL.allow(time.Now()); ok {
		args := []any{"remote", remote, "reason", reason, "err", err}
		if n > 0 {
			args = append(args, "suppressed_since_last", n)
		}
		lvl := slog.LevelInfo
		if reason == ReasonEOF || reason == ReasonTimeout {
			lvl = slog.LevelDebug
		}
		p.log.Log(context.Background(), lvl, "tls handshake failed", args...)
	}
	return reason
}

func (p *Policy) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	m := p.cur.Load()
	if len(m.opts.alpn) > 0 {
		for _, offered := range hello.SupportedProtos {
			if slices.Contains(m.opts.alpn, offered) {
				return m.cfgALPN, nil
			}
		}
	}
	return m.cfgNoALPN, nil
}

// load reads every file and builds a new material generation.
func (p *Policy) load(fr *fileReader) (*material, error) {
	now := time.Now()
	m := &material{
		opts:     p.opts,
		base:     p.base,
		staples:  &p.staples,
		exact:    make(map[string][]*loadedCert),
		wild:     make(map[string][]*loadedCert),
		notAfter: make(map[string]time.Time),
	}
	var loadErr error
	for _, cs := range p.opts.certs {
		lc, err := loadCertSource(cs, fr, p.log, now)
		if err != nil {
			loadErr = err
			break
		}
		m.certs = append(m.certs, lc)
		m.notAfter[cs.CertFile] = lc.cert.Leaf.NotAfter
		for _, n := range lc.names {
			if suffix, ok := strings.CutPrefix(n, "*."); ok {
				m.wild[suffix] = append(m.wild[suffix], lc)
			} else {
				m.exact[n] = append(m.exact[n], lc)
			}
		}
	}
	if loadErr == nil {
		pool, digest, caNotAfter, err := loadCAFiles(p.opts.caFiles, fr, p.log, now)
		if err != nil {
			loadErr = err
		} else {
			m.pool = pool
			maps.Copy(m.notAfter, caNotAfter)
			m.ticketTag = fmt.Appendf(nil, "moat-tls/v1 auth=%s ca=%x", p.opts.clientAuthStr, digest)
		}
	}
	// Also record files not reached because of an earlier error, so the
	// watcher notices when any of them changes.
	p.touchAll(fr)
	m.files = fr.seen
	m.fileList = fr.list
	if loadErr != nil {
		return m, loadErr
	}
	m.cfgALPN = m.newConfig(p.opts.alpn)
	m.cfgNoALPN = m.newConfig(nil)
	return m, nil
}

// touchAll records every configured file in fr, hashing those the load did
// not reach (because of an earlier error), so that the watcher compares
// against the current content of every file.
func (p *Policy) touchAll(fr *fileReader) {
	add := func(f string) {
		if f == "" {
			return
		}
		if _, ok := fr.seen[f]; !ok {
			fr.seen[f] = fileDigest(f)
			fr.list = append(fr.list, f)
		}
	}
	for _, cs := range p.opts.certs {
		add(cs.CertFile)
		add(cs.KeyFile)
		add(cs.KeyPasswordFile)
	}
	for _, f := range p.opts.caFiles {
		add(f)
	}
}

func (m *material) newConfig(alpn []string) *tls.Config {
	cfg := &tls.Config{
		MinVersion:       m.opts.minVersion,
		CipherSuites:     m.opts.suites,
		CurvePreferences: curvePreferences,
		NextProtos:       alpn,
		GetCertificate:   m.getCertificate,
		ClientAuth:       m.opts.clientAuth,
		ClientCAs:        m.pool,
		VerifyConnection: m.verifyConnection,
		WrapSession:      m.wrapSession,
		UnwrapSession:    m.unwrapSession,
		Renegotiation:    tls.RenegotiateNever,
	}
	if m.opts.pinned != nil {
		// Certificateless clients: ask for any certificate and verify CA
		// chains in VerifyConnection; no CA list is sent, so clients with
		// a self-signed certificate do present it.
		switch m.opts.clientAuth {
		case tls.RequireAndVerifyClientCert:
			cfg.ClientAuth = tls.RequireAnyClientCert
		case tls.VerifyClientCertIfGiven:
			cfg.ClientAuth = tls.RequestClientCert
		}
		cfg.ClientCAs = nil
	}
	return cfg
}

// VerifyClient checks a client's certificate as the handshake did: pinned
// (a registered public key, TLS 1.3 only) or chained to a configured CA
// (with the explicit clientAuth EKU, depth and revocation checks). It
// returns the verified chains of a CA-issued certificate. The broker calls
// it after the handshake, when certificateless clients are enabled and
// ConnectionState.VerifiedChains is therefore empty.
func (p *Policy) VerifyClient(cs tls.ConnectionState) (pinned bool, chains [][]*x509.Certificate, err error) {
	return p.cur.Load().verifyClient(cs)
}

func (m *material) verifyClient(cs tls.ConnectionState) (bool, [][]*x509.Certificate, error) {
	if len(cs.PeerCertificates) == 0 {
		return false, nil, nil
	}
	leaf := cs.PeerCertificates[0]
	if m.opts.pinned != nil && m.opts.pinned(leaf) {
		if cs.Version < tls.VersionTLS13 {
			return false, nil, fmt.Errorf("tlspolicy: pinned key of %q needs TLS 1.3: %w", leaf.Subject.String(), ErrUnverifiedChain)
		}
		return true, nil, nil
	}
	chains := cs.VerifiedChains
	if m.opts.pinned != nil {
		if m.pool == nil {
			return false, nil, fmt.Errorf("tlspolicy: client certificate %q: public key not registered and no client CA: %w", leaf.Subject.String(), x509.UnknownAuthorityError{Cert: leaf})
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		var err error
		chains, err = leaf.Verify(x509.VerifyOptions{Roots: m.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if err != nil {
			return false, nil, err
		}
	}
	vcs := cs
	vcs.VerifiedChains = chains
	if err := m.checkChains(vcs); err != nil {
		return false, nil, err
	}
	return false, chains, nil
}

// getCertificate picks the certificate for the client's SNI name: an exact
// name first, then a wildcard for the parent domain, then the default. Among
// several candidates (an ECDSA and an RSA certificate for the same name) the
// first one the client can use wins.
func (m *material) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return m.staples.with(m.chooseCertificate(hello)), nil
}

func (m *material) chooseCertificate(hello *tls.ClientHelloInfo) *tls.Certificate {
	name := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
	if name != "" {
		if c := pick(hello, m.exact[name]); c != nil {
			return c
		}
		if i := strings.IndexByte(name, '.'); i > 0 {
			if c := pick(hello, m.wild[name[i+1:]]); c != nil {
				return c
			}
		}
	}
	return pick(hello, m.certs)
}

func pick(hello *tls.ClientHelloInfo, cands []*loadedCert) *tls.Certificate {
	if len(cands) == 0 {
		return nil
	}
	if len(cands) > 1 {
		// Names were matched above (Names may override the SANs), so ask
		// crypto/tls only whether the client can use the key and signature.
		h := *hello
		h.ServerName = ""
		for _, c := range cands {
			if h.SupportsCertificate(&c.cert) == nil {
				return &c.cert
			}
		}
	}
	return &cands[0].cert
}

// verifyConnection adds moat's client certificate rules to crypto/tls's
// chain verification: an explicit clientAuth EKU and the chain depth limit.
// It runs on full handshakes and on resumptions.
func (m *material) verifyConnection(cs tls.ConnectionState) error {
	if m.opts.pinned != nil {
		_, _, err := m.verifyClient(cs)
		return err
	}
	return m.checkChains(cs)
}

// checkChains applies the explicit clientAuth EKU, the depth limit and the
// revocation check to crypto/tls's verified chains.
func (m *material) checkChains(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil // "required" is enforced by crypto/tls before this
	}
	leaf := cs.PeerCertificates[0]
	if !hasEKU(leaf, x509.ExtKeyUsageClientAuth) {
		return fmt.Errorf("tlspolicy: client certificate %q (EKU %s): %w", leaf.Subject.String(), ekuNames(leaf), ErrBadEKU)
	}
	if len(cs.VerifiedChains) == 0 {
		return fmt.Errorf("tlspolicy: client certificate %q: %w", leaf.Subject.String(), ErrUnverifiedChain)
	}
	shortest := 0
	for i, ch := range cs.VerifiedChains {
		// ch is leaf, intermediates..., root.
		if len(ch)-2 <= m.opts.maxDepth {
			if m.opts.revocation != nil {
				if err := m.opts.revocation(ch); err != nil {
					return fmt.Errorf("tlspolicy: client certificate %q: %w", leaf.Subject.String(), err)
				}
			}
			return nil
		}
		if i == 0 || len(ch) < shortest {
			shortest = len(ch)
		}
	}
	return fmt.Errorf("tlspolicy: client certificate %q: %d intermediate CA certificate(s), at most %d allowed: %w",
		leaf.Subject.String(), shortest-2, m.opts.maxDepth, ErrChainTooDeep)
}

func ekuNames(c *x509.Certificate) string {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return "absent"
	}
	var names []string
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			names = append(names, "serverAuth")
		case x509.ExtKeyUsageClientAuth:
			names = append(names, "clientAuth")
		case x509.ExtKeyUsageAny:
			names = append(names, "any")
		default:
			names = append(names, fmt.Sprintf("eku(%d)", u))
		}
	}
	for _, o := range c.UnknownExtKeyUsage {
		names = append(names, o.String())
	}
	return strings.Join(names, ",")
}

// wrapSession tags the ticket with the client-CA generation, then encrypts
// it with the base config's automatically rotated ticket keys.
func (m *material) wrapSession(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	ss.Extra = append(ss.Extra, m.ticketTag)
	return m.base.EncryptTicket(cs, ss)
}

// unwrapSession ignores tickets issued under other client-CA material, so a
// CA removed by a reload cannot be bypassed through resumption.
func (m *material) unwrapSession(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	ss, err := m.base.DecryptTicket(identity, cs)
	if err != nil || ss == nil {
		return nil, err
	}
	for _, e := range ss.Extra {
		if bytes.Equal(e, m.ticketTag) {
			return ss, nil
		}
	}
	return nil, nil // full handshake
}
