package tlspolicy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
)

// Options describe one TLS listener's policy. The zero value of every field
// except Certs is a secure default.
type Options struct {
	// Certs are the server certificates. The first one is the default, sent
	// to clients that send no SNI or a name no certificate matches; the
	// others are chosen by SNI. At least one is required.
	Certs []CertSource

	// MinVersion is the lowest TLS version accepted: tls.VersionTLS12 or
	// tls.VersionTLS13. 0 means TLS 1.2. Anything lower is refused by New
	// with ErrMinVersion. The highest version is always TLS 1.3 and is
	// preferred whenever the client offers it. See ParseVersion.
	MinVersion uint16

	// CipherSuites restricts the TLS 1.2 cipher suites, by IANA/Go name
	// ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256") or OpenSSL name
	// ("ECDHE-ECDSA-AES128-GCM-SHA256"). Only ECDHE-ECDSA / ECDHE-RSA with
	// AES-GCM or ChaCha20-Poly1305 are allowed; any other suite (CBC, RC4,
	// 3DES, static RSA key exchange, TLS 1.3 names) makes New fail with
	// ErrCipherSuite naming the suite. Empty means all allowed suites. The
	// order is not a preference: crypto/tls chooses among the enabled
	// suites itself (server side, hardware-aware).
	CipherSuites []string

	// ClientAuth is "none" (default when empty), "optional" (verify a
	// certificate if the client sends one; clients without one fall back to
	// other authentication) or "required".
	ClientAuth string

	// ClientCAFiles are PEM bundles of the CAs that issue client
	// certificates. Required when ClientAuth is not "none", refused
	// otherwise (so a half-configured mTLS listener cannot start silently
	// without client verification).
	ClientCAFiles []string

	// MaxChainDepth is the number of intermediate CA certificates allowed
	// between a client leaf and its root. 0 means the default (4); a
	// negative value allows none (the leaf must be issued by a configured
	// CA directly). Values above 16 are refused.
	MaxChainDepth int

	// Revocation, when set, is asked about every verified client chain
	// (leaf first, root last) on full handshakes and resumptions; an error
	// refuses the client. It should wrap ErrRevoked when a certificate is
	// revoked, so the failure is classified as "revoked".
	Revocation func(chain []*x509.Certificate) error
	// PinnedKey, when set, enables certificateless clients: a client whose
	// certificate (typically self-signed) carries a public key for which
	// PinnedKey returns true is accepted over TLS 1.3 without any CA. The
	// listener then asks for any client certificate and verifies CA chains
	// itself (VerifyClient), so that clients are not told which CAs to use.
	// Requires ClientAuth "optional" or "required".
	PinnedKey func(leaf *x509.Certificate) bool
	// ALPN lists the application protocols offered. nil means ["mqtt"]; an
	// empty non-nil slice disables ALPN. Clients that offer none of these
	// (or no ALPN at all) are still accepted, with no protocol negotiated.
	ALPN []string
}

// CertSource is one server certificate chain and its private key.
type CertSource struct {
	// CertFile is a PEM file: the leaf first, then intermediates.
	CertFile string
	// KeyFile is a PEM private key: PKCS#1 ("RSA PRIVATE KEY"), SEC1
	// ("EC PRIVATE KEY"), PKCS#8 ("PRIVATE KEY": RSA, ECDSA, Ed25519) or
	// encrypted PKCS#8 ("ENCRYPTED PRIVATE KEY", PBES2 with PBKDF2 or
	// scrypt and AES-CBC). Empty means the key is in CertFile.
	KeyFile string
	// KeyPasswordFile holds the password of an encrypted key. One trailing
	// newline (LF or CRLF) is removed. A file readable by group or others
	// is used but logged as a warning.
	KeyPasswordFile string
	// KeyPasswordEnv names an environment variable holding the password.
	// At most one of KeyPasswordFile and KeyPasswordEnv may be set; the
	// password itself never appears in the configuration.
	KeyPasswordEnv string
	// Names, when set, are the SNI names this certificate answers for
	// (exact names or "*.example.com" wildcards), replacing the DNS SANs
	// of the certificate.
	Names []string
}

// Client authentication modes for Options.ClientAuth.
const (
	ClientAuthNone     = "none"
	ClientAuthOptional = "optional"
	ClientAuthRequired = "required"
)

const (
	defaultMaxChainDepth = 4
	maxMaxChainDepth     = 16
)

// defaultALPN is offered when Options.ALPN is nil.
var defaultALPN = []string{"mqtt"}

// ParseVersion turns "1.2", "1.3", "tls1.2", "TLSv1.3" (any case) and the
// like into a crypto/tls version constant. It also parses "1.0" and "1.1" so
// that New, not the parser, gives the refusal message.
func ParseVersion(s string) (uint16, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	v = strings.TrimPrefix(v, "tls")
	v = strings.TrimPrefix(v, "v")
	v = strings.TrimPrefix(v, " ")
	switch v {
	case "1.0", "1":
		return tls.VersionTLS10, nil
	case "1.1":
		return tls.VersionTLS11, nil
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tlspolicy: TLS version %q: %w", s, ErrInvalidOptions)
}

// allowedSuites are the TLS 1.2 suites moat allows: ECDHE with an AEAD.
var allowedSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// AllowedCipherSuites returns the IANA names of the TLS 1.2 suites that
// Options.CipherSuites may contain.
func AllowedCipherSuites() []string {
	out := make([]string, len(allowedSuites))
	for i, id := range allowedSuites {
		out[i] = tls.CipherSuiteName(id)
	}
	return out
}

// openSSLSuiteNames maps OpenSSL spellings of the allowed suites.
var openSSLSuiteNames = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// cipherSuiteIDs resolves names to IDs, refusing everything outside the
// allowed set with an error naming the suite.
func cipherSuiteIDs(names []string) ([]uint16, error) {
	if len(names) == 0 {
		return append([]uint16(nil), allowedSuites...), nil
	}
	allowed := make(map[uint16]bool, len(allowedSuites))
	for _, id := range allowedSuites {
		allowed[id] = true
	}
	known := make(map[string]uint16)
	for _, cs := range tls.CipherSuites() {
		known[cs.Name] = cs.ID
	}
	for _, cs := range tls.InsecureCipherSuites() {
		known[cs.Name] = cs.ID
	}
	// Go's pre-1.16 aliases.
	known["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"] = tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
	known["TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"] = tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256

	var out []uint16
	seen := make(map[uint16]bool)
	for _, n := range names {
		name := strings.ToUpper(strings.TrimSpace(n))
		id, ok := known[name]
		if !ok {
			id, ok = openSSLSuiteNames[name]
		}
		switch {
		case !ok:
			return nil, fmt.Errorf("tlspolicy: cipher suite %q is unknown or not allowed (allowed: %s): %w",
				n, strings.Join(AllowedCipherSuites(), ", "), ErrCipherSuite)
		case id == tls.TLS_AES_128_GCM_SHA256 || id == tls.TLS_AES_256_GCM_SHA384 || id == tls.TLS_CHACHA20_POLY1305_SHA256:
			return nil, fmt.Errorf("tlspolicy: cipher suite %q is a TLS 1.3 suite; TLS 1.3 suites are always enabled and not configurable: %w", n, ErrCipherSuite)
		case !allowed[id]:
			return nil, fmt.Errorf("tlspolicy: cipher suite %q is not allowed: only ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 (allowed: %s): %w",
				n, strings.Join(AllowedCipherSuites(), ", "), ErrCipherSuite)
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// checked is the validated, defaulted form of Options.
type checked struct {
	certs         []CertSource
	minVersion    uint16
	suites        []uint16
	clientAuth    tls.ClientAuthType
	clientAuthStr string
	caFiles       []string
	maxDepth      int // max intermediates, >= 0
	alpn          []string
	revocation    func([]*x509.Certificate) error
	pinned        func(*x509.Certificate) bool
}

func (o Options) check() (*checked, error) {
	c := &checked{revocation: o.Revocation, pinned: o.PinnedKey}
	if len(o.Certs) == 0 {
		return nil, fmt.Errorf("tlspolicy: at least one certificate is required: %w", ErrInvalidOptions)
	}
	for i, cs := range o.Certs {
		if cs.CertFile == "" {
			return nil, fmt.Errorf("tlspolicy: certificate %d: cert file is empty: %w", i, ErrInvalidOptions)
		}
		if cs.KeyFile == "" {
			cs.KeyFile = cs.CertFile
		}
		if cs.KeyPasswordFile != "" && cs.KeyPasswordEnv != "" {
			return nil, fmt.Errorf("tlspolicy: %s: set key password file or key password env, not both: %w", cs.KeyFile, ErrInvalidOptions)
		}
		names := make([]string, 0, len(cs.Names))
		for _, n := range cs.Names {
			norm, err := normalizeSNIName(n)
			if err != nil {
				return nil, fmt.Errorf("tlspolicy: %s: name %q: %v: %w", cs.CertFile, n, err, ErrInvalidOptions)
			}
			names = append(names, norm)
		}
		cs.Names = names
		c.certs = append(c.certs, cs)
	}

	switch {
	case o.MinVersion == 0:
		c.minVersion = tls.VersionTLS12
	case o.MinVersion == tls.VersionTLS12 || o.MinVersion == tls.VersionTLS13:
		c.minVersion = o.MinVersion
	case o.MinVersion < tls.VersionTLS12:
		return nil, fmt.Errorf("tlspolicy: minimum version %s refused; TLS 1.2 is the lowest allowed: %w",
			tls.VersionName(o.MinVersion), ErrMinVersion)
	default:
		return nil, fmt.Errorf("tlspolicy: minimum version %s unknown: %w", tls.VersionName(o.MinVersion), ErrMinVersion)
	}

	suites, err := cipherSuiteIDs(o.CipherSuites)
	if err != nil {
		return nil, err
	}
	c.suites = suites

	switch strings.ToLower(o.ClientAuth) {
	case "", ClientAuthNone:
		c.clientAuth, c.clientAuthStr = tls.NoClientCert, ClientAuthNone
	case ClientAuthOptional:
		c.clientAuth, c.clientAuthStr = tls.VerifyClientCertIfGiven, ClientAuthOptional
	case ClientAuthRequired:
		c.clientAuth, c.clientAuthStr = tls.RequireAndVerifyClientCert, ClientAuthRequired
	default:
		return nil, fmt.Errorf("tlspolicy: client auth %q: want none, optional or required: %w", o.ClientAuth, ErrInvalidOptions)
	}
	for _, f := range o.ClientCAFiles {
		if f == "" {
			return nil, fmt.Errorf("tlspolicy: empty client CA file name: %w", ErrInvalidOptions)
		}
	}
	if c.clientAuth != tls.NoClientCert && len(o.ClientCAFiles) == 0 {
		return nil, fmt.Errorf("tlspolicy: client auth %q needs at least one client CA file: %w", c.clientAuthStr, ErrInvalidOptions)
	}
	if c.clientAuth == tls.NoClientCert && len(o.ClientCAFiles) > 0 {
		return nil, fmt.Errorf("tlspolicy: client CA files are set but client auth is none (set optional or required): %w", ErrInvalidOptions)
	}
	c.caFiles = append([]string(nil), o.ClientCAFiles...)

	switch {
	case o.MaxChainDepth == 0:
		c.maxDepth = defaultMaxChainDepth
	case o.MaxChainDepth < 0:
		c.maxDepth = 0
	case o.MaxChainDepth > maxMaxChainDepth:
		return nil, fmt.Errorf("tlspolicy: max chain depth %d above %d: %w", o.MaxChainDepth, maxMaxChainDepth, ErrInvalidOptions)
	default:
		c.maxDepth = o.MaxChainDepth
	}

	switch {
	case o.ALPN == nil:
		c.alpn = append([]string(nil), defaultALPN...)
	default:
		for _, p := range o.ALPN {
			if p == "" || len(p) > 255 {
				return nil, fmt.Errorf("tlspolicy: ALPN protocol %q: must be 1 to 255 bytes: %w", p, ErrInvalidOptions)
			}
		}
		c.alpn = append([]string{}, o.ALPN...)
	}
	return c, nil
}

// normalizeSNIName lower-cases a DNS name or "*.suffix" wildcard and checks
// its shape.
func normalizeSNIName(n string) (string, error) {
	n = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
	if n == "" {
		return "", fmt.Errorf("empty name")
	}
	rest := n
	if strings.HasPrefix(n, "*.") {
		rest = n[2:]
	}
	if rest == "" || strings.ContainsAny(rest, "* /\\:") {
		return "", fmt.Errorf("not a DNS name or *.wildcard")
	}
	for _, label := range strings.Split(rest, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("bad DNS label")
		}
	}
	return n, nil
}
