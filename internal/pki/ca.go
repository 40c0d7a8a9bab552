package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Defaults.
const (
	DefaultRootValidity         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateValidity = 5 * 365 * 24 * time.Hour
	DefaultServerValidity       = 90 * 24 * time.Hour
	DefaultClientValidity       = 365 * 24 * time.Hour
	DefaultCRLValidity          = 7 * 24 * time.Hour
	DefaultRootCRLValidity      = 180 * 24 * time.Hour
	DefaultOrganization         = "moat"

	// backdate is how far NotBefore (and a CRL's thisUpdate is not) is set
	// in the past, for peers whose clocks run a little slow.
	backdate = 5 * time.Minute
)

// File names inside a CA directory.
const (
	fileMeta             = "ca.json"
	fileRootCert         = "root.pem"
	fileRootKey          = "root.key"
	fileIntermediateCert = "intermediate.pem"
	fileIntermediateKey  = "intermediate.key"
	fileIssued           = "issued.jsonl"
	fileRevoked          = "revoked.json"
	fileCRL              = "crl.der"
	fileRootRevoked      = "root-revoked.json"
	fileRootCRL          = "root.crl"
)

// InitOptions configures a new CA. The zero value (plus a Protector) is a
// one-tier ECDSA P-256 CA valid 10 years.
type InitOptions struct {
	// Protector seals the CA private keys. Required: a *MasterKey, or
	// PlainProtector{} to opt in to unencrypted keys.
	Protector KeyProtector
	// KeyAlg of the CA keys (root and intermediate). Leaves choose their
	// own (ECDSA P-256 by default).
	KeyAlg KeyAlg
	// TwoTier creates an offline root that signs an online intermediate;
	// the intermediate issues leaves and CRLs. The root key is written to
	// RootKeyFile (default dir/root.key) and is never read by Open: move
	// it off the machine after Init, and bring it back only for OpenRoot
	// (revoking the intermediate, signing the root CRL).
	TwoTier bool
	// RootKeyFile is where a two-tier CA's root key is written, for
	// example on removable media. Default dir/root.key. Ignored for a
	// one-tier CA, whose root key stays in dir/root.key.
	RootKeyFile string

	// CommonName of the root. Default "moat CA <random hex>" (one-tier) or
	// "moat Root CA <random hex>"; the suffix tells installations apart.
	CommonName string
	// IntermediateCommonName, default "moat Intermediate CA <same hex>".
	IntermediateCommonName string
	// Organization of the CA subjects, default "moat".
	Organization string

	RootValidity         time.Duration // default 10 years
	IntermediateValidity time.Duration // default 5 years, never past the root

	// CRLURL is put in every leaf's CRL Distribution Points, for example
	// http://broker.example:8080/pki/crl. Empty: leaves carry none until
	// SetCRLURL is called.
	CRLURL string
	// OCSPURL, when set, goes in every leaf's Authority Information Access.
	OCSPURL string
	// RootCRLURL, when set, goes in the intermediate's CRL Distribution
	// Points (two-tier only); serve root.crl there.
	RootCRLURL string
	// CRLValidity is nextUpdate - thisUpdate of the issuing CA's CRL,
	// default 7 days.
	CRLValidity time.Duration
	// RootCRLValidity is the same for the offline root's CRL, default 180
	// days: the root CRL must be re-signed offline before it lapses.
	RootCRLValidity time.Duration
}

// meta is ca.json.
type meta struct {
	Version         int       `json:"version"`
	KeyAlg          string    `json:"key_alg"`
	TwoTier         bool      `json:"two_tier"`
	CRLURL          string    `json:"crl_url,omitempty"`
	OCSPURL         string    `json:"ocsp_url,omitempty"`
	RootCRLURL      string    `json:"root_crl_url,omitempty"`
	CRLValidity     string    `json:"crl_validity"`
	RootCRLValidity string    `json:"root_crl_validity"`
	Created         time.Time `json:"created"`
}

func (m *meta) crlValidity() time.Duration {
	d, err := time.ParseDuration(m.CRLValidity)
	if err != nil || d <= 0 {
		return DefaultCRLValidity
	}
	return d
}

func (m *meta) rootCRLValidity() time.Duration {
	d, err := time.ParseDuration(m.RootCRLValidity)
	if err != nil || d <= 0 {
		return DefaultRootCRLValidity
	}
	return d
}

// CA is a certificate authority kept in a directory: the online issuing
// CA (the root of a one-tier CA, the intermediate of a two-tier one) with
// its key, the root certificate, the record of issued and revoked
// certificates and the current CRL. Its methods are safe for concurrent
// use, and several processes may use one directory at once (updates take
// a file lock).
//
// Directory layout (dir is created 0700):
//
//	ca.json            settings: key algorithm, tiers, CRL/OCSP URLs, CRL validity
//	root.pem           root certificate: the trust anchor to give clients and devices
//	root.key           root key, sealed (one-tier; two-tier: unless moved off-line)
//	intermediate.pem   two-tier: the online issuing CA certificate
//	intermediate.key   two-tier: its key, sealed
//	issued.jsonl       one JSON line per certificate issued (serial, subject, names, validity)
//	revoked.json       revoked serials with reason and time; CRL number
//	crl.der            the current CRL of the issuing CA (DER)
//	root-revoked.json  two-tier: what the root revoked (the intermediate)
//	root.crl           two-tier: the root's CRL (DER), signed off-line
//	.lock              advisory lock file
type CA struct {
	dir  string
	prot KeyProtector

	// mu guards the following fields.
	mu      sync.Mutex
	meta    meta
	root    *x509.Certificate
	issuer  *x509.Certificate
	key     crypto.Signer
	rev     revState
	revSeen fileStamp
	crl     *cachedCRL
}

// Init creates a new CA in dir and returns it opened. It refuses (with
// ErrExists) when dir already holds a CA or any of its files, and writes
// nothing in that case.
func Init(dir string, opts InitOptions) (*CA, error) {
	if opts.Protector == nil {
		return nil, fmt.Errorf("pki: init: %w", ErrNoProtector)
	}
	if !opts.KeyAlg.valid() {
		return nil, fmt.Errorf("pki: init: key algorithm %v: %w", opts.KeyAlg, ErrInvalidRequest)
	}
	for name, d := range map[string]time.Duration{"root validity": opts.RootValidity, "intermediate validity": opts.IntermediateValidity,
		"CRL validity": opts.CRLValidity, "root CRL validity": opts.RootCRLValidity} {
		if d < 0 {
			return nil, fmt.Errorf("pki: init: negative %s: %w", name, ErrInvalidRequest)
		}
	}
	for _, u := range []string{opts.CRLURL, opts.OCSPURL, opts.RootCRLURL} {
		if err := checkURL(u); err != nil {
			return nil, fmt.Errorf("pki: init: %w", err)
		}
	}
	if opts.RootValidity == 0 {
		opts.RootValidity = DefaultRootValidity
	}
	if opts.IntermediateValidity == 0 {
		opts.IntermediateValidity = DefaultIntermediateValidity
	}
	if opts.CRLValidity == 0 {
		opts.CRLValidity = DefaultCRLValidity
	}
	if opts.RootCRLValidity == 0 {
		opts.RootCRLValidity = DefaultRootCRLValidity
	}
	if opts.Organization == "" {
		opts.Organization = DefaultOrganization
	}
	var tag [3]byte
	if _, err := rand.Read(tag[:]); err != nil {
		return nil, fmt.Errorf("pki: init: %w", err)
	}
	if opts.CommonName == "" {
		if opts.TwoTier {
			opts.CommonName = "moat Root CA " + hex.EncodeToString(tag[:])
		} else {
			opts.CommonName = "moat CA " + hex.EncodeToString(tag[:])
		}
	}
	if opts.IntermediateCommonName == "" {
		opts.IntermediateCommonName = "moat Intermediate CA " + hex.EncodeToString(tag[:])
	}
	for _, cn := range []string{opts.CommonName, opts.IntermediateCommonName, opts.Organization} {
		if err := checkText("CA subject", cn); err != nil {
			return nil, fmt.Errorf("pki: init: %w", err)
		}
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: init: %w", err)
	}
	rootKeyPath := filepath.Join(dir, fileRootKey)
	if opts.TwoTier && opts.RootKeyFile != "" {
		rootKeyPath = opts.RootKeyFile
	}
	paths := []string{filepath.Join(dir, fileMeta), filepath.Join(dir, fileRootCert), rootKeyPath,
		filepath.Join(dir, fileIntermediateCert), filepath.Join(dir, fileIntermediateKey),
		filepath.Join(dir, fileIssued), filepath.Join(dir, fileRevoked), filepath.Join(dir, fileCRL),
		filepath.Join(dir, fileRootRevoked), filepath.Join(dir, fileRootCRL)}
	if !opts.TwoTier {
		paths = append(paths, filepath.Join(dir, fileRootKey))
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for _, p := range paths {
		ok, err := exists(p)
		if err != nil {
			return nil, fmt.Errorf("pki: init: %w", err)
		}
		if ok {
			return nil, fmt.Errorf("pki: init: %s: %w (refusing to overwrite a CA)", p, ErrExists)
		}
	}

	now := time.Now()
	rootKey, err := generateKey(opts.KeyAlg)
	if err != nil {
		return nil, fmt.Errorf("pki: init: %w", err)
	}
	rootTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: opts.CommonName, Organization: []string{opts.Organization}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(opts.RootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if opts.TwoTier {
		rootTmpl.MaxPathLen = 1
	} else {
		rootTmpl.MaxPathLen = 0
		rootTmpl.MaxPathLenZero = true
		// The one-tier root is also the online issuer (OCSP signing later).
		rootTmpl.KeyUsage |= x509.KeyUsageDigitalSignature
	}
	if rootTmpl.SerialNumber, err = randomSerial(); err != nil {
		return nil, fmt.Errorf("pki: init: %w", err)
	}
	root, err := createCert(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("pki: init: root: %w", err)
	}
	issuer, issuerKey := root, rootKey
	if opts.TwoTier {
		ik, err := generateKey(opts.KeyAlg)
		if err != nil {
			return nil, fmt.Errorf("pki: init: %w", err)
		}
		it := &x509.Certificate{
			Subject:               pkix.Name{CommonName: opts.IntermediateCommonName, Organization: []string{opts.Organization}},
			NotBefore:             now.Add(-backdate),
			NotAfter:              minTime(now.Add(opts.IntermediateValidity), root.NotAfter),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLen:            0,
			MaxPathLenZero:        true,
		}
		if opts.RootCRLURL != "" {
			it.CRLDistributionPoints = []string{opts.RootCRLURL}
		}
		if it.SerialNumber, err = randomSerial(); err != nil {
			return nil, fmt.Errorf("pki: init: %w", err)
		}
		if issuer, err = createCert(it, root, ik.Public(), rootKey); err != nil {
			return nil, fmt.Errorf("pki: init: intermediate: %w", err)
		}
		issuerKey = ik
	}

	m := meta{
		Version:         1,
		KeyAlg:          opts.KeyAlg.String(),
		TwoTier:         opts.TwoTier,
		CRLURL:          opts.CRLURL,
		OCSPURL:         opts.OCSPURL,
		RootCRLURL:      opts.RootCRLURL,
		CRLValidity:     opts.CRLValidity.String(),
		RootCRLValidity: opts.RootCRLValidity.String(),
		Created:         now.UTC(),
	}
	// Write everything; ca.json last, as the mark of a complete CA. On
	// failure remove what was written.
	var written []string
	fail := func(err error) (*CA, error) {
		for _, p := range written {
			os.Remove(p)
		}
		return nil, fmt.Errorf("pki: init: %w", err)
	}
	write := func(path string, data []byte, perm fs.FileMode) error {
		if err := writeFileExclusive(path, data, perm); err != nil {
			return err
		}
		written = append(written, path)
		return nil
	}
	rootKeyPEM, err := sealKey(rootKey, opts.Protector)
	if err != nil {
		return fail(err)
	}
	if err := write(filepath.Join(dir, fileRootCert), CertsPEM(root), 0o644); err != nil {
		return fail(err)
	}
	if err := write(rootKeyPath, rootKeyPEM, 0o600); err != nil {
		return fail(err)
	}
	if opts.TwoTier {
		ikPEM, err := sealKey(issuerKey, opts.Protector)
		if err != nil {
			return fail(err)
		}
		if err := write(filepath.Join(dir, fileIntermediateCert), CertsPEM(issuer), 0o644); err != nil {
			return fail(err)
		}
		if err := write(filepath.Join(dir, fileIntermediateKey), ikPEM, 0o600); err != nil {
			return fail(err)
		}
		// An empty root CRL, so the intermediate's distribution point
		// answers until the next off-line root operation.
		rs := revState{}
		der, err := signCRL(&rs, root, rootKey, now, opts.RootCRLValidity)
		if err != nil {
			return fail(err)
		}
		if err := write(filepath.Join(dir, fileRootRevoked), mustJSON(rs.file()), 0o644); err != nil {
			return fail(err)
		}
		if err := write(filepath.Join(dir, fileRootCRL), der, 0o644); err != nil {
			return fail(err)
		}
	}
	if err := write(filepath.Join(dir, fileIssued), nil, 0o644); err != nil {
		return fail(err)
	}
	rs := revState{}
	der, err := signCRL(&rs, issuer, issuerKey, now, opts.CRLValidity)
	if err != nil {
		return fail(err)
	}
	if err := write(filepath.Join(dir, fileRevoked), mustJSON(rs.file()), 0o644); err != nil {
		return fail(err)
	}
	if err := write(filepath.Join(dir, fileCRL), der, 0o644); err != nil {
		return fail(err)
	}
	if err := write(filepath.Join(dir, fileMeta), mustJSON(m), 0o644); err != nil {
		return fail(err)
	}
	ca := &CA{dir: dir, prot: opts.Protector, meta: m, root: root, issuer: issuer, key: issuerKey, rev: rs}
	return ca, nil
}

// Open opens the CA in dir, unsealing the issuing CA's key with key. It
// never reads a two-tier CA's root key. It fails with ErrNotInitialized
// when dir holds no CA, ErrWrongKey when key cannot open the CA key, and
// ErrCorrupt when files are missing or inconsistent.
func Open(dir string, key KeyProtector) (*CA, error) {
	if key == nil {
		return nil, fmt.Errorf("pki: open: %w", ErrNoProtector)
	}
	m, err := readMeta(dir)
	if err != nil {
		return nil, err
	}
	root, err := readCertFile(filepath.Join(dir, fileRootCert))
	if err != nil {
		return nil, err
	}
	issuer, keyFile := root, filepath.Join(dir, fileRootKey)
	if m.TwoTier {
		if issuer, err = readCertFile(filepath.Join(dir, fileIntermediateCert)); err != nil {
			return nil, err
		}
		if err := issuer.CheckSignatureFrom(root); err != nil {
			return nil, fmt.Errorf("pki: %s is not signed by %s: %w", fileIntermediateCert, fileRootCert, ErrCorrupt)
		}
		keyFile = filepath.Join(dir, fileIntermediateKey)
	}
	signer, err := readSealedKey(keyFile, key)
	if err != nil {
		return nil, err
	}
	if !publicKeyEqual(signer, issuer.PublicKey) {
		return nil, fmt.Errorf("pki: %s does not match its certificate: %w", keyFile, ErrCorrupt)
	}
	ca := &CA{dir: dir, prot: key, meta: *m, root: root, issuer: issuer, key: signer}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if err := ca.refreshRevLocked(true); err != nil {
		return nil, err
	}
	return ca, nil
}

func readMeta(dir string) (*meta, error) {
	b, err := os.ReadFile(filepath.Join(dir, fileMeta))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("pki: %s: %w", dir, ErrNotInitialized)
		}
		return nil, fmt.Errorf("pki: %w", err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("pki: %s: %v: %w", fileMeta, err, ErrCorrupt)
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("pki: %s: unsupported version %d: %w", fileMeta, m.Version, ErrCorrupt)
	}
	return &m, nil
}

// reloadMetaLocked re-reads ca.json, which another process may have
// changed (SetCRLURL). Called with c.mu and the directory lock held.
func (c *CA) reloadMetaLocked() error {
	m, err := readMeta(c.dir)
	if err != nil {
		return err
	}
	c.meta = *m
	return nil
}

func (c *CA) updateMeta(f func(m *meta)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	unlock, err := lockDir(c.dir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := c.reloadMetaLocked(); err != nil {
		return err
	}
	m := c.meta
	f(&m)
	if err := writeFileAtomic(filepath.Join(c.dir, fileMeta), mustJSON(m), 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	c.meta = m
	return nil
}

// SetCRLURL sets the CRL distribution point put in leaves issued from now
// on (certificates already issued keep theirs). Empty removes it.
func (c *CA) SetCRLURL(u string) error {
	if err := checkURL(u); err != nil {
		return err
	}
	return c.updateMeta(func(m *meta) { m.CRLURL = u })
}

// SetOCSPURL sets the OCSP responder URL put in leaves issued from now on.
func (c *CA) SetOCSPURL(u string) error {
	if err := checkURL(u); err != nil {
		return err
	}
	return c.updateMeta(func(m *meta) { m.OCSPURL = u })
}

// SetCRLValidity sets nextUpdate - thisUpdate for CRLs signed from now on.
func (c *CA) SetCRLValidity(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("pki: CRL validity %v: %w", d, ErrInvalidRequest)
	}
	return c.updateMeta(func(m *meta) { m.CRLValidity = d.String() })
}

// CRLURL returns the configured CRL distribution point.
func (c *CA) CRLURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.meta.CRLURL
}

// Dir returns the CA directory.
func (c *CA) Dir() string { return c.dir }

// TwoTier reports whether the CA has an off-line root and an intermediate.
func (c *CA) TwoTier() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.meta.TwoTier
}

// KeyAlg returns the CA keys' algorithm.
func (c *CA) KeyAlg() KeyAlg {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, _ := ParseKeyAlg(c.meta.KeyAlg)
	return a
}

// Root returns the root certificate, the trust anchor.
func (c *CA) Root() *x509.Certificate { return c.root }

// Issuer returns the issuing CA certificate: the intermediate of a
// two-tier CA, else the root.
func (c *CA) Issuer() *x509.Certificate { return c.issuer }

// Chain returns the CA certificates above a leaf, nearest first, ending
// with the root: [root] or [intermediate, root].
func (c *CA) Chain() []*x509.Certificate {
	if c.issuer == c.root {
		return []*x509.Certificate{c.root}
	}
	return []*x509.Certificate{c.issuer, c.root}
}

// intermediates returns the chain without the root: what a leaf's holder
// presents after its certificate.
func (c *CA) intermediates() []*x509.Certificate {
	if c.issuer == c.root {
		return nil
	}
	return []*x509.Certificate{c.issuer}
}

// RootFile is the path of root.pem: the file to give clients and devices
// as their CA file, and the broker as its client CA for mutual TLS.
func (c *CA) RootFile() string { return filepath.Join(c.dir, fileRootCert) }

// IntermediateFile is the path of intermediate.pem, "" for a one-tier CA.
func (c *CA) IntermediateFile() string {
	if c.issuer == c.root {
		return ""
	}
	return filepath.Join(c.dir, fileIntermediateCert)
}

// CRLFile is the path of the current CRL (DER); CRL() keeps it fresh.
func (c *CA) CRLFile() string { return filepath.Join(c.dir, fileCRL) }

func createCert(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// randomSerial returns a random positive serial of up to 128 bits.
func randomSerial() (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		if s := new(big.Int).SetBytes(b[:]); s.BitLen() > 64 {
			return s, nil
		}
	}
}

func checkURL(u string) error {
	if u == "" {
		return nil
	}
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return fmt.Errorf("pki: URL %q: want an absolute http or https URL: %w", u, ErrInvalidRequest)
	}
	for _, r := range u {
		if r <= ' ' || r >= 0x7f {
			return fmt.Errorf("pki: URL %q: want printable ASCII: %w", u, ErrInvalidRequest)
		}
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // only plain structs are marshalled
	}
	return append(b, '\n')
}
