package pki

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ServerRequest asks for a TLS server certificate.
type ServerRequest struct {
	DNS      []string // DNS names (wildcards "*.example.com" allowed)
	IPs      []net.IP
	Validity time.Duration // default 90 days; never past the issuer's NotAfter
	KeyAlg   KeyAlg        // of the new key, default ECDSA P-256
}

// ClientRequest asks for a TLS client (device) certificate.
type ClientRequest struct {
	CommonName string   // required: the device identity
	OU         []string // organizational units, e.g. fleet names
	Emails     []string // rfc822Name SANs
	URIs       []string // URI SANs, e.g. spiffe://example/device/x
	Validity   time.Duration
	KeyAlg     KeyAlg // of the new key, default ECDSA P-256; ignored by SignCSR
}

// Issued is a certificate with its new private key.
type Issued struct {
	Cert *x509.Certificate
	// Chain is the CA certificates above Cert, nearest first, ending with
	// the root: [root] or [intermediate, root].
	Chain []*x509.Certificate
	Key   crypto.Signer
}

// IssuedRecord is one line of issued.jsonl.
type IssuedRecord struct {
	Serial    string    `json:"serial"` // FormatSerial
	Kind      string    `json:"kind"`   // server, client, csr-server, csr-client
	Subject   string    `json:"subject"`
	DNS       []string  `json:"dns,omitempty"`
	IPs       []string  `json:"ips,omitempty"`
	Emails    []string  `json:"emails,omitempty"`
	URIs      []string  `json:"uris,omitempty"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	IssuedAt  time.Time `json:"issued_at"`
}

// IssueServer issues a server certificate for the names in req with a new
// key: EKU serverAuth, KeyUsage digitalSignature (plus keyEncipherment for
// RSA), the names as SANs (the first one also as CN).
func (c *CA) IssueServer(req ServerRequest) (*Issued, error) {
	key, err := generateKey(req.KeyAlg)
	if err != nil {
		return nil, err
	}
	cert, err := c.signServer(req, key.Public(), "server")
	if err != nil {
		return nil, err
	}
	return &Issued{Cert: cert, Chain: c.Chain(), Key: key}, nil
}

// IssueClient issues a client certificate with a new key: EKU clientAuth,
// KeyUsage digitalSignature, subject CN and OUs, email and URI SANs.
func (c *CA) IssueClient(req ClientRequest) (*Issued, error) {
	if err := checkClientRequest(&req); err != nil {
		return nil, err
	}
	key, err := generateKey(req.KeyAlg)
	if err != nil {
		return nil, err
	}
	cert, err := c.signClient(req, key.Public(), "client")
	if err != nil {
		return nil, err
	}
	return &Issued{Cert: cert, Chain: c.Chain(), Key: key}, nil
}

// SignCSR issues a client certificate for the key in a CSR (PEM or DER),
// for devices that generate their key and never reveal it. The CSR's
// signature is verified; only its public key and subject CN and OU are
// used: its extensions (basicConstraints, key usages, SANs...) and other
// subject attributes are ignored, and the profile is that of IssueClient.
// req.CommonName, when set, must equal the CSR's CN (if the CSR has one);
// req.OU, when set, replaces the CSR's OUs. SANs come from req only.
func (c *CA) SignCSR(csrPEM []byte, req ClientRequest) (*x509.Certificate, error) {
	csr, err := parseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	cn := csr.Subject.CommonName
	switch {
	case req.CommonName == "":
		req.CommonName = cn
	case cn != "" && cn != req.CommonName:
		return nil, fmt.Errorf("pki: CSR subject CN %q differs from the requested %q: %w", cn, req.CommonName, ErrInvalidRequest)
	}
	if len(req.OU) == 0 {
		req.OU = slices.Clone(csr.Subject.OrganizationalUnit)
	}
	if err := checkClientRequest(&req); err != nil {
		return nil, err
	}
	return c.signClient(req, csr.PublicKey, "csr-client")
}

// SignServerCSR issues a server certificate for the key in a CSR. Names
// come from req only (the CSR's SANs are ignored); see SignCSR.
func (c *CA) SignServerCSR(csrPEM []byte, req ServerRequest) (*x509.Certificate, error) {
	csr, err := parseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	return c.signServer(req, csr.PublicKey, "csr-server")
}

func parseCSR(in []byte) (*x509.CertificateRequest, error) {
	der := in
	if block, _ := pem.Decode(in); block != nil {
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("pki: PEM block %q is not a CSR: %w", block.Type, ErrBadCSR)
		}
		der = block.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("pki: %v: %w", err, ErrBadCSR)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("pki: CSR signature: %v: %w", err, ErrBadCSR)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, err
	}
	return csr, nil
}

func (c *CA) signServer(req ServerRequest, pub crypto.PublicKey, kind string) (*x509.Certificate, error) {
	dns, err := normDNSNames(req.DNS)
	if err != nil {
		return nil, err
	}
	ips, err := normIPs(req.IPs)
	if err != nil {
		return nil, err
	}
	if len(dns) == 0 && len(ips) == 0 {
		return nil, fmt.Errorf("pki: server certificate needs at least one DNS name or IP: %w", ErrInvalidRequest)
	}
	validity, err := validityOr(req.Validity, DefaultServerValidity)
	if err != nil {
		return nil, err
	}
	cn := ""
	if len(dns) > 0 {
		cn = dns[0]
	} else {
		cn = ips[0].String()
	}
	ku := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		ku |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              dns,
		IPAddresses:           ips,
		KeyUsage:              ku,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	return c.sign(tmpl, pub, validity, kind)
}

func (c *CA) signClient(req ClientRequest, pub crypto.PublicKey, kind string) (*x509.Certificate, error) {
	validity, err := validityOr(req.Validity, DefaultClientValidity)
	if err != nil {
		return nil, err
	}
	var uris []*url.URL
	for _, s := range req.URIs {
		u, _ := url.Parse(s) // checked by checkClientRequest
		uris = append(uris, u)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: req.CommonName, OrganizationalUnit: req.OU},
		EmailAddresses:        req.Emails,
		URIs:                  uris,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	return c.sign(tmpl, pub, validity, kind)
}

// sign completes tmpl (serial, validity, key ids, CRL DP, OCSP), signs it
// with the issuing CA and records it in issued.jsonl.
func (c *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey, validity time.Duration, kind string) (*x509.Certificate, error) {
	if err := checkPublicKey(pub); err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
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
	now := time.Now()
	if now.Before(c.issuer.NotBefore) || !now.Before(c.issuer.NotAfter) {
		return nil, fmt.Errorf("pki: issuer valid %s to %s: %w", c.issuer.NotBefore.UTC().Format(time.RFC3339), c.issuer.NotAfter.UTC().Format(time.RFC3339), ErrCAExpired)
	}
	if tmpl.SerialNumber, err = randomSerial(); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	tmpl.NotBefore = maxTime(now.Add(-backdate), c.issuer.NotBefore)
	tmpl.NotAfter = minTime(now.Add(validity), c.issuer.NotAfter)
	tmpl.SubjectKeyId = ski
	tmpl.IsCA = false
	if c.meta.CRLURL != "" {
		tmpl.CRLDistributionPoints = []string{c.meta.CRLURL}
	}
	if c.meta.OCSPURL != "" {
		tmpl.OCSPServer = []string{c.meta.OCSPURL}
	}
	cert, err := createCert(tmpl, c.issuer, pub, c.key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign: %v: %w", err, ErrInvalidRequest)
	}
	rec := IssuedRecord{
		Serial: FormatSerial(cert.SerialNumber), Kind: kind, Subject: cert.Subject.String(),
		DNS: cert.DNSNames, Emails: cert.EmailAddresses,
		NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC(), IssuedAt: now.UTC(),
	}
	for _, ip := range cert.IPAddresses {
		rec.IPs = append(rec.IPs, ip.String())
	}
	for _, u := range cert.URIs {
		rec.URIs = append(rec.URIs, u.String())
	}
	if err := c.appendIssuedLocked(rec); err != nil {
		// Not recorded means not revocable by serial: do not hand it out.
		return nil, err
	}
	return cert, nil
}

func (c *CA) appendIssuedLocked(rec IssuedRecord) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(c.dir, fileIssued), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("pki: record issued certificate: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("pki: record issued certificate: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("pki: record issued certificate: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pki: record issued certificate: %w", err)
	}
	return nil
}

// IssuedCerts lists the certificates this CA issued, oldest first.
func (c *CA) IssuedCerts() ([]IssuedRecord, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []IssuedRecord
	err := c.scanIssuedLocked(func(r IssuedRecord) bool { out = append(out, r); return true })
	return out, err
}

func (c *CA) scanIssuedLocked(f func(IssuedRecord) bool) error {
	b, err := os.ReadFile(filepath.Join(c.dir, fileIssued))
	if err != nil {
		return fmt.Errorf("pki: %s: %w", fileIssued, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r IssuedRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			// A torn last line (crash mid-append) is skipped.
			continue
		}
		if !f(r) {
			return nil
		}
	}
	return sc.Err()
}

func (c *CA) lookupIssuedLocked(serial *big.Int) (IssuedRecord, error) {
	want := FormatSerial(serial)
	var found *IssuedRecord
	if err := c.scanIssuedLocked(func(r IssuedRecord) bool {
		if r.Serial == want {
			found = &r
			return false
		}
		return true
	}); err != nil {
		return IssuedRecord{}, err
	}
	if found == nil {
		return IssuedRecord{}, fmt.Errorf("pki: serial %s: %w", want, ErrUnknownSerial)
	}
	return *found, nil
}

func validityOr(d, def time.Duration) (time.Duration, error) {
	if d < 0 {
		return 0, fmt.Errorf("pki: negative validity %v: %w", d, ErrInvalidRequest)
	}
	if d == 0 {
		return def, nil
	}
	return d, nil
}

func checkClientRequest(req *ClientRequest) error {
	if req.CommonName == "" {
		return fmt.Errorf("pki: client certificate needs a common name: %w", ErrInvalidRequest)
	}
	if err := checkText("common name", req.CommonName); err != nil {
		return err
	}
	for _, ou := range req.OU {
		if err := checkText("OU", ou); err != nil {
			return err
		}
	}
	for _, e := range req.Emails {
		at := strings.LastIndexByte(e, '@')
		if at <= 0 || at == len(e)-1 || !isPrintableASCII(e) || strings.ContainsAny(e, " <>") {
			return fmt.Errorf("pki: email %q: %w", e, ErrInvalidRequest)
		}
	}
	for _, s := range req.URIs {
		u, err := url.Parse(s)
		if err != nil || u.Scheme == "" || !isPrintableASCII(s) {
			return fmt.Errorf("pki: URI %q: want an absolute URI: %w", s, ErrInvalidRequest)
		}
	}
	return nil
}

// checkText accepts 1 to 64 characters of UTF-8 without control
// characters (X.520's upper bound for CN, O and OU).
func checkText(what, s string) error {
	if s == "" || utf8.RuneCountInString(s) > 64 || !utf8.ValidString(s) {
		return fmt.Errorf("pki: %s %q: want 1 to 64 characters: %w", what, s, ErrInvalidRequest)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("pki: %s %q: control character: %w", what, s, ErrInvalidRequest)
		}
	}
	return nil
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// normDNSNames lower-cases names, drops a trailing dot and checks the
// syntax (LDH labels, a wildcard only as the whole leftmost label).
func normDNSNames(names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
		if d == "" || len(d) > 253 {
			return nil, fmt.Errorf("pki: DNS name %q: %w", n, ErrInvalidRequest)
		}
		labels := strings.Split(d, ".")
		for i, l := range labels {
			if i == 0 && l == "*" && len(labels) > 2 {
				continue
			}
			if !validLabel(l) {
				return nil, fmt.Errorf("pki: DNS name %q: %w", n, ErrInvalidRequest)
			}
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out, nil
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		b := l[i]
		if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
			return false
		}
	}
	return true
}

func normIPs(ips []net.IP) ([]net.IP, error) {
	var out []net.IP
	for _, ip := range ips {
		if ip4 := ip.To4(); ip4 != nil {
			ip = ip4
		} else if len(ip) != net.IPv6len {
			return nil, fmt.Errorf("pki: IP %v: %w", ip, ErrInvalidRequest)
		}
		if !slices.ContainsFunc(out, ip.Equal) {
			out = append(out, ip)
		}
	}
	return out, nil
}
