package pki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"time"
)

// NeedsRenewal reports whether cert expires within threshold of now (or
// has expired). A nil cert needs renewal.
func NeedsRenewal(cert *x509.Certificate, threshold time.Duration, now time.Time) bool {
	if cert == nil {
		return true
	}
	return !now.Add(threshold).Before(cert.NotAfter)
}

// RenewServer keeps a server certificate issued by this CA fresh. It
// (re)issues the certificate, with a new key, when certFile does not
// exist, when keyFile does not exist, when the certificate expires within
// threshold (threshold <= 0 means a third of its lifetime, 30 days for a
// 90-day certificate), when it was revoked, or when req names other DNS
// names or IPs than it carries. req's names default to the certificate's.
//
// Files are replaced atomically (temporary file, then rename): the key
// first, then the certificate (leaf followed by intermediates, the form
// tlspolicy's reloader reads), so a reloader polling in between sees a
// mismatched pair at worst, rejects it and keeps the old material until
// the certificate lands. keyFile may equal certFile (or be empty) for a
// single file holding the key then the chain. A certificate this CA did
// not issue is left alone (ErrForeignCert).
func (c *CA) RenewServer(certFile, keyFile string, req ServerRequest, threshold time.Duration) (renewed bool, err error) {
	if keyFile == "" {
		keyFile = certFile
	}
	cert, err := readLeaf(certFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		cert = nil
	case err != nil:
		return false, err
	}
	due := cert == nil
	if cert != nil {
		if cert.CheckSignatureFrom(c.issuer) != nil {
			return false, fmt.Errorf("pki: renew %s: %w", certFile, ErrForeignCert)
		}
		if len(req.DNS) == 0 && len(req.IPs) == 0 {
			req.DNS, req.IPs = cert.DNSNames, cert.IPAddresses
		}
		if threshold <= 0 {
			threshold = cert.NotAfter.Sub(cert.NotBefore) / 3
		}
		if _, err := os.Stat(keyFile); err != nil {
			due = true
		}
		due = due || NeedsRenewal(cert, threshold, time.Now()) || c.IsRevoked(cert.SerialNumber) || !sameNames(cert, req)
	}
	if !due {
		return false, nil
	}
	iss, err := c.IssueServer(req)
	if err != nil {
		return false, err
	}
	keyPEM, err := KeyPEM(iss.Key)
	if err != nil {
		return false, err
	}
	defer clear(keyPEM)
	chainPEM := CertsPEM(append([]*x509.Certificate{iss.Cert}, c.intermediates()...)...)
	if keyFile == certFile {
		both := append(append([]byte(nil), keyPEM...), chainPEM...)
		defer clear(both)
		if err := writeFileAtomic(certFile, both, 0o600); err != nil {
			return false, fmt.Errorf("pki: renew: %w", err)
		}
		return true, nil
	}
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return false, fmt.Errorf("pki: renew: %w", err)
	}
	if err := writeFileAtomic(certFile, chainPEM, 0o644); err != nil {
		return false, fmt.Errorf("pki: renew: %w", err)
	}
	return true, nil
}

// readLeaf returns the first certificate in a PEM file.
func readLeaf(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("pki: %s: no PEM certificate: %w", path, ErrCorrupt)
		}
		if block.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("pki: %s: %v: %w", path, err, ErrCorrupt)
			}
			return c, nil
		}
	}
}

func sameNames(cert *x509.Certificate, req ServerRequest) bool {
	dns, err := normDNSNames(req.DNS)
	if err != nil {
		return false
	}
	ips, err := normIPs(req.IPs)
	if err != nil {
		return false
	}
	have := slices.Clone(cert.DNSNames)
	slices.Sort(have)
	slices.Sort(dns)
	if !slices.Equal(have, dns) || len(ips) != len(cert.IPAddresses) {
		return false
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(cert.IPAddresses, func(x net.IP) bool { return x.Equal(ip) }) {
			return false
		}
	}
	return true
}
