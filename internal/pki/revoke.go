package pki

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Revocation reason codes (RFC 5280 section 5.3.1).
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonCACompromise         = 2
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
	ReasonCertificateHold      = 6
	ReasonPrivilegeWithdrawn   = 9
)

var reasonNames = map[int]string{
	ReasonUnspecified:          "unspecified",
	ReasonKeyCompromise:        "keyCompromise",
	ReasonCACompromise:         "cACompromise",
	ReasonAffiliationChanged:   "affiliationChanged",
	ReasonSuperseded:           "superseded",
	ReasonCessationOfOperation: "cessationOfOperation",
	ReasonCertificateHold:      "certificateHold",
	ReasonPrivilegeWithdrawn:   "privilegeWithdrawn",
}

// ReasonString returns the RFC 5280 name of a reason code.
func ReasonString(r int) string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return strconv.Itoa(r)
}

// ParseReason accepts a reason code number or its RFC 5280 name, case-
// and dash-insensitively ("keyCompromise", "key-compromise", "1"). The
// empty string is unspecified.
func ParseReason(s string) (int, error) {
	if strings.TrimSpace(s) == "" {
		return ReasonUnspecified, nil
	}
	if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
		if _, ok := reasonNames[n]; ok {
			return n, nil
		}
		return 0, fmt.Errorf("pki: revocation reason %q: %w", s, ErrInvalidRequest)
	}
	t := strings.ToLower(strings.NewReplacer("-", "", "_", "", " ", "").Replace(s))
	for code, name := range reasonNames {
		if strings.ToLower(name) == t {
			return code, nil
		}
	}
	return 0, fmt.Errorf("pki: revocation reason %q: %w", s, ErrInvalidRequest)
}

// leafReasonOK: reasons a leaf may be revoked for. certificateHold is
// refused because moat's revocations are final; cACompromise is for CAs.
func leafReasonOK(r int) bool {
	switch r {
	case ReasonUnspecified, ReasonKeyCompromise, ReasonAffiliationChanged, ReasonSuperseded,
		ReasonCessationOfOperation, ReasonPrivilegeWithdrawn:
		return true
	}
	return false
}

// FormatSerial renders a serial as upper-case hex with an even number of
// digits, as `openssl crl -text` and `openssl x509 -serial` print it.
func FormatSerial(s *big.Int) string {
	h := strings.ToUpper(s.Text(16))
	if len(h)%2 == 1 {
		h = "0" + h
	}
	return h
}

// ParseSerial parses a hex serial, with or without colons (as `openssl
// x509 -text` prints it) or a 0x prefix.
func ParseSerial(s string) (*big.Int, error) {
	t := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	t = strings.TrimPrefix(strings.TrimPrefix(t, "0x"), "0X")
	if t == "" || len(t) > 42 {
		return nil, fmt.Errorf("pki: serial %q: want hex: %w", s, ErrInvalidRequest)
	}
	if _, err := hex.DecodeString(strings.Repeat("0", len(t)%2) + t); err != nil {
		return nil, fmt.Errorf("pki: serial %q: want hex: %w", s, ErrInvalidRequest)
	}
	n, _ := new(big.Int).SetString(t, 16)
	if n.Sign() <= 0 {
		return nil, fmt.Errorf("pki: serial %q: must be positive: %w", s, ErrInvalidRequest)
	}
	return n, nil
}

// RevokedEntry is one revoked certificate.
type RevokedEntry struct {
	Serial    *big.Int
	Reason    int
	RevokedAt time.Time
	Subject   string    // as recorded at issuance, for humans
	NotAfter  time.Time // of the revoked certificate
}

// revState is revoked.json (or root-revoked.json) in memory.
type revState struct {
	crlNumber     int64
	generation    uint64 // bumped on every revocation
	crlGeneration uint64 // generation the stored CRL reflects
	entries       []RevokedEntry
}

type revRecord struct {
	Serial    string    `json:"serial"`
	Reason    int       `json:"reason"`
	RevokedAt time.Time `json:"revoked_at"`
	Subject   string    `json:"subject,omitempty"`
	NotAfter  time.Time `json:"not_after,omitzero"`
}

type revFile struct {
	CRLNumber     int64       `json:"crl_number"`
	Generation    uint64      `json:"generation"`
	CRLGeneration uint64      `json:"crl_generation"`
	Revoked       []revRecord `json:"revoked"`
}

func (s *revState) file() revFile {
	f := revFile{CRLNumber: s.crlNumber, Generation: s.generation, CRLGeneration: s.crlGeneration, Revoked: []revRecord{}}
	for _, e := range s.entries {
		f.Revoked = append(f.Revoked, revRecord{Serial: FormatSerial(e.Serial), Reason: e.Reason, RevokedAt: e.RevokedAt.UTC(), Subject: e.Subject, NotAfter: e.NotAfter.UTC()})
	}
	return f
}

func readRevState(path string) (revState, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return revState{}, fmt.Errorf("pki: %s: %w", path, err)
	}
	var f revFile
	if err := json.Unmarshal(b, &f); err != nil {
		return revState{}, fmt.Errorf("pki: %s: %v: %w", path, err, ErrCorrupt)
	}
	s := revState{crlNumber: f.CRLNumber, generation: f.Generation, crlGeneration: f.CRLGeneration}
	for _, r := range f.Revoked {
		n, err := ParseSerial(r.Serial)
		if err != nil {
			return revState{}, fmt.Errorf("pki: %s: %w", path, ErrCorrupt)
		}
		s.entries = append(s.entries, RevokedEntry{Serial: n, Reason: r.Reason, RevokedAt: r.RevokedAt, Subject: r.Subject, NotAfter: r.NotAfter})
	}
	return s, nil
}

func (s *revState) find(serial *big.Int) (RevokedEntry, bool) {
	for _, e := range s.entries {
		if e.Serial.Cmp(serial) == 0 {
			return e, true
		}
	}
	return RevokedEntry{}, false
}

// signCRL bumps s.crlNumber, marks s's generation as reflected and signs
// a CRL listing s's entries.
func signCRL(s *revState, issuer *x509.Certificate, key crypto.Signer, now time.Time, validity time.Duration) ([]byte, error) {
	s.crlNumber++
	s.crlGeneration = s.generation
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(s.crlNumber),
		ThisUpdate: now.UTC().Truncate(time.Second),
		NextUpdate: now.UTC().Truncate(time.Second).Add(validity),
	}
	if tmpl.NextUpdate.After(issuer.NotAfter) {
		// A CRL must not outlive its issuer's certificate.
		tmpl.NextUpdate = issuer.NotAfter
	}
	for _, e := range s.entries {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: e.Serial, RevocationTime: e.RevokedAt.UTC(), ReasonCode: e.Reason,
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign CRL: %w", err)
	}
	return der, nil
}

// fileStamp identifies a version of a file (written by rename).
type fileStamp struct {
	fi fs.FileInfo
}

func (f fileStamp) same(fi fs.FileInfo) bool {
	return f.fi != nil && os.SameFile(f.fi, fi) && f.fi.ModTime().Equal(fi.ModTime()) && f.fi.Size() == fi.Size()
}

// refreshRevLocked re-reads revoked.json if it changed since last read
// (or always when force). Called with c.mu held.
func (c *CA) refreshRevLocked(force bool) error {
	path := filepath.Join(c.dir, fileRevoked)
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("pki: %s: %v: %w", path, err, ErrCorrupt)
	}
	if !force && c.revSeen.same(fi) {
		return nil
	}
	s, err := readRevState(path)
	if err != nil {
		return err
	}
	c.rev, c.revSeen = s, fileStamp{fi}
	return nil
}

func (c *CA) saveRevLocked() error {
	path := filepath.Join(c.dir, fileRevoked)
	if err := writeFileAtomic(path, mustJSON(c.rev.file()), 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if fi, err := os.Stat(path); err == nil {
		c.revSeen = fileStamp{fi}
	}
	return nil
}

// IsRevoked reports whether this CA revoked serial. It notices
// revocations made by other processes on the same directory.
func (c *CA) IsRevoked(serial *big.Int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.refreshRevLocked(false) // on error, answer from the last good state
	_, ok := c.rev.find(serial)
	return ok
}

// Revoked lists the revoked certificates, oldest revocation first.
func (c *CA) Revoked() []RevokedEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.refreshRevLocked(false)
	out := slices.Clone(c.rev.entries)
	for i := range out {
		out[i].Serial = new(big.Int).Set(out[i].Serial)
	}
	return out
}

// Revoke records the revocation of a certificate this CA issued and
// re-issues the CRL at once. reason is an RFC 5280 code (ReasonX);
// certificateHold and cACompromise are refused for leaves. A serial this
// CA did not issue gives ErrUnknownSerial (a mistyped serial must not look
// like a successful revocation); one already revoked gives
// ErrAlreadyRevoked. The revocation is persisted before the CRL is signed:
// if signing fails the error is returned and the next CRL() includes it.
func (c *CA) Revoke(serial *big.Int, reason int) error {
	if serial == nil || serial.Sign() <= 0 {
		return fmt.Errorf("pki: revoke: bad serial: %w", ErrInvalidRequest)
	}
	if !leafReasonOK(reason) {
		return fmt.Errorf("pki: revoke: reason %s not allowed for a leaf: %w", ReasonString(reason), ErrInvalidRequest)
	}
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
	if err := c.refreshRevLocked(true); err != nil {
		return err
	}
	if _, ok := c.rev.find(serial); ok {
		return fmt.Errorf("pki: revoke %s: %w", FormatSerial(serial), ErrAlreadyRevoked)
	}
	rec, err := c.lookupIssuedLocked(serial)
	if err != nil {
		return err
	}
	now := time.Now()
	c.rev.entries = append(c.rev.entries, RevokedEntry{
		Serial: new(big.Int).Set(serial), Reason: reason, RevokedAt: now.UTC().Truncate(time.Second),
		Subject: rec.Subject, NotAfter: rec.NotAfter,
	})
	c.rev.generation++
	if err := c.saveRevLocked(); err != nil {
		return err
	}
	_, err = c.issueCRLLocked(now)
	return err
}

type cachedCRL struct {
	der    []byte
	parsed *x509.RevocationList
}

// CRL returns the issuing CA's current CRL (DER). It is re-signed (with
// the next CRL number) when revocations were recorded since the stored
// one was signed, or when half of its validity has passed; otherwise the
// stored CRL is returned, so it is cheap to call per HTTP request.
func (c *CA) CRL() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if err := c.refreshRevLocked(false); err == nil {
		if der, ok := c.freshCRLLocked(now); ok {
			return der, nil
		}
	}
	unlock, err := lockDir(c.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := c.reloadMetaLocked(); err != nil {
		return nil, err
	}
	if err := c.refreshRevLocked(true); err != nil {
		return nil, err
	}
	if der, ok := c.freshCRLLocked(now); ok {
		return der, nil
	}
	return c.issueCRLLocked(now)
}

// IssueCRL signs and stores a new CRL now, whatever the state of the
// stored one, and returns it (DER).
func (c *CA) IssueCRL() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	unlock, err := lockDir(c.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := c.reloadMetaLocked(); err != nil {
		return nil, err
	}
	if err := c.refreshRevLocked(true); err != nil {
		return nil, err
	}
	return c.issueCRLLocked(time.Now())
}

// freshCRLLocked returns the stored CRL if it reflects every revocation
// and is in the first half of its validity.
func (c *CA) freshCRLLocked(now time.Time) ([]byte, bool) {
	if c.rev.crlGeneration != c.rev.generation {
		return nil, false
	}
	if c.crl == nil || c.crl.parsed.Number.Cmp(big.NewInt(c.rev.crlNumber)) != 0 {
		der, err := os.ReadFile(filepath.Join(c.dir, fileCRL))
		if err != nil {
			return nil, false
		}
		rl, err := x509.ParseRevocationList(der)
		if err != nil || rl.Number == nil || rl.Number.Cmp(big.NewInt(c.rev.crlNumber)) != 0 {
			return nil, false
		}
		c.crl = &cachedCRL{der: der, parsed: rl}
	}
	rl := c.crl.parsed
	half := rl.ThisUpdate.Add(rl.NextUpdate.Sub(rl.ThisUpdate) / 2)
	if !now.Before(half) || !bytes.Equal(rl.RawIssuer, c.issuer.RawSubject) {
		return nil, false
	}
	return c.crl.der, true
}

// issueCRLLocked signs a CRL, saves the state (number first: numbers never
// repeat even if writing the CRL fails) and the CRL. Called with c.mu and
// the directory lock held.
func (c *CA) issueCRLLocked(now time.Time) ([]byte, error) {
	next := c.rev
	der, err := signCRL(&next, c.issuer, c.key, now, c.meta.crlValidity())
	if err != nil {
		return nil, err
	}
	c.rev = next
	if err := c.saveRevLocked(); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(c.dir, fileCRL), der, 0o644); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	c.crl = &cachedCRL{der: der, parsed: rl}
	return der, nil
}

// StoredRootCRL returns root.crl, the two-tier root's CRL as last signed
// off-line (see RootCA), for serving at InitOptions.RootCRLURL.
func (c *CA) StoredRootCRL() ([]byte, error) {
	if c.issuer == c.root {
		return nil, fmt.Errorf("pki: root CRL: %w", ErrNotTwoTier)
	}
	b, err := os.ReadFile(filepath.Join(c.dir, fileRootCRL))
	if err != nil {
		return nil, fmt.Errorf("pki: root CRL: %w", err)
	}
	return b, nil
}

// CRLHandler serves CRL() over HTTP GET/HEAD as application/pkix-crl,
// to be mounted at the CRL URL the leaves carry.
func (c *CA) CRLHandler() http.Handler {
	return crlHandler(c.CRL)
}

// RootCRLHandler serves StoredRootCRL() the same way (two-tier), to be
// mounted at InitOptions.RootCRLURL.
func (c *CA) RootCRLHandler() http.Handler {
	return crlHandler(c.StoredRootCRL)
}

func crlHandler(get func() ([]byte, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		der, err := get()
		if err != nil {
			http.Error(w, "CRL unavailable", http.StatusServiceUnavailable)
			return
		}
		var mod time.Time
		if rl, err := x509.ParseRevocationList(der); err == nil {
			mod = rl.ThisUpdate
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		// Revocations must reach relying parties quickly: short caching.
		w.Header().Set("Cache-Control", "public, max-age=60")
		http.ServeContent(w, r, "", mod, bytes.NewReader(der))
	})
}

// RootCA is the off-line root of a two-tier CA, opened only for the rare
// operations that need its key: revoking the intermediate and signing the
// root CRL. Bring the sealed root key back (or point rootKeyFile at the
// removable medium), run the operation, then copy the CA directory's
// root.crl to wherever RootCRLURL is served (the broker serves it from
// the CA directory) and take the key away again.
type RootCA struct {
	dir          string
	meta         meta
	cert         *x509.Certificate
	intermediate *x509.Certificate
	key          crypto.Signer
}

// OpenRoot opens the root of the two-tier CA in dir with the sealed root
// key at rootKeyFile (default dir/root.key).
func OpenRoot(dir, rootKeyFile string, key KeyProtector) (*RootCA, error) {
	if key == nil {
		return nil, fmt.Errorf("pki: open root: %w", ErrNoProtector)
	}
	m, err := readMeta(dir)
	if err != nil {
		return nil, err
	}
	if !m.TwoTier {
		return nil, fmt.Errorf("pki: open root: %w", ErrNotTwoTier)
	}
	if rootKeyFile == "" {
		rootKeyFile = filepath.Join(dir, fileRootKey)
	}
	root, err := readCertFile(filepath.Join(dir, fileRootCert))
	if err != nil {
		return nil, err
	}
	inter, err := readCertFile(filepath.Join(dir, fileIntermediateCert))
	if err != nil {
		return nil, err
	}
	signer, err := readSealedKey(rootKeyFile, key)
	if err != nil {
		return nil, err
	}
	if !publicKeyEqual(signer, root.PublicKey) {
		return nil, fmt.Errorf("pki: %s does not match %s: %w", rootKeyFile, fileRootCert, ErrCorrupt)
	}
	return &RootCA{dir: dir, meta: *m, cert: root, intermediate: inter, key: signer}, nil
}

// Revoke revokes a certificate the root issued, that is the
// intermediate (any other serial gives ErrUnknownSerial), and re-signs the
// root CRL. cACompromise is allowed here. After this, relying parties
// that check the root CRL reject every leaf of the intermediate; set up a
// new CA for the fleet.
func (r *RootCA) Revoke(serial *big.Int, reason int) error {
	if serial == nil || serial.Cmp(r.intermediate.SerialNumber) != 0 {
		return fmt.Errorf("pki: root revoke: %w", ErrUnknownSerial)
	}
	if reason != ReasonCACompromise && !leafReasonOK(reason) {
		return fmt.Errorf("pki: root revoke: reason %s: %w", ReasonString(reason), ErrInvalidRequest)
	}
	unlock, err := lockDir(r.dir)
	if err != nil {
		return err
	}
	defer unlock()
	path := filepath.Join(r.dir, fileRootRevoked)
	s, err := readRevState(path)
	if err != nil {
		return err
	}
	if _, ok := s.find(serial); ok {
		return fmt.Errorf("pki: root revoke %s: %w", FormatSerial(serial), ErrAlreadyRevoked)
	}
	now := time.Now()
	s.entries = append(s.entries, RevokedEntry{Serial: new(big.Int).Set(serial), Reason: reason,
		RevokedAt: now.UTC().Truncate(time.Second), Subject: r.intermediate.Subject.String(), NotAfter: r.intermediate.NotAfter})
	s.generation++
	if err := writeFileAtomic(path, mustJSON(s.file()), 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	_, err = r.crlLocked(now)
	return err
}

// RevokeIntermediate revokes the CA's intermediate.
func (r *RootCA) RevokeIntermediate(reason int) error {
	return r.Revoke(r.intermediate.SerialNumber, reason)
}

// CRL signs a new root CRL (valid InitOptions.RootCRLValidity, 180 days by
// default), writes it to dir/root.crl and returns it (DER). Run it off-line
// before the previous root CRL's nextUpdate.
func (r *RootCA) CRL() ([]byte, error) {
	unlock, err := lockDir(r.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return r.crlLocked(time.Now())
}

func (r *RootCA) crlLocked(now time.Time) ([]byte, error) {
	path := filepath.Join(r.dir, fileRootRevoked)
	s, err := readRevState(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	der, err := signCRL(&s, r.cert, r.key, now, r.meta.rootCRLValidity())
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, mustJSON(s.file()), 0o644); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(r.dir, fileRootCRL), der, 0o644); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return der, nil
}

// Certificate returns the root certificate.
func (r *RootCA) Certificate() *x509.Certificate { return r.cert }

// Intermediate returns the intermediate certificate the root issued.
func (r *RootCA) Intermediate() *x509.Certificate { return r.intermediate }

// RootCRL is the off-line operation for a two-tier CA: it opens the root
// with the sealed key at rootKeyFile (default dir/root.key), optionally
// revokes the intermediate (revokeReason >= 0; -1 revokes nothing) and
// signs a fresh root CRL into dir/root.crl, which it returns (DER).
func RootCRL(dir, rootKeyFile string, key KeyProtector, revokeReason int) ([]byte, error) {
	r, err := OpenRoot(dir, rootKeyFile, key)
	if err != nil {
		return nil, err
	}
	if revokeReason >= 0 {
		err := r.RevokeIntermediate(revokeReason)
		if err == nil {
			// Revoke signed the new root CRL already.
			b, err := os.ReadFile(filepath.Join(dir, fileRootCRL))
			if err != nil {
				return nil, fmt.Errorf("pki: %w", err)
			}
			return b, nil
		}
		if !errors.Is(err, ErrAlreadyRevoked) {
			return nil, err
		}
	}
	return r.CRL()
}
