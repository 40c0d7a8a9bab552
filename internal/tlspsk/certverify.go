package tlspsk

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// TLS 1.3 signature schemes the certificate-mode client offers (RFC 8446
// §4.2.3), in the order offered.
const (
	SignatureECDSAP256SHA256 uint16 = 0x0403
	SignatureECDSAP384SHA384 uint16 = 0x0503
	SignatureECDSAP521SHA512 uint16 = 0x0603
	SignatureEd25519         uint16 = 0x0807
	SignatureRSAPSSSHA256    uint16 = 0x0804 // rsa_pss_rsae_sha256
	SignatureRSAPSSSHA384    uint16 = 0x0805
	SignatureRSAPSSSHA512    uint16 = 0x0806
)

var supportedSignatureSchemes = []uint16{
	SignatureECDSAP256SHA256, SignatureECDSAP384SHA384, SignatureECDSAP521SHA512,
	SignatureEd25519, SignatureRSAPSSSHA256, SignatureRSAPSSSHA384, SignatureRSAPSSSHA512,
}

// serverSignatureContext precedes the transcript hash in what a TLS 1.3
// server signs (RFC 8446 §4.4.3).
const serverSignatureContext = "TLS 1.3, server CertificateVerify"

// signedContent is the content a CertificateVerify signature covers: 64
// spaces, the context string, a zero byte and the transcript hash.
func signedContent(context string, transcriptHash []byte) []byte {
	b := make([]byte, 0, 64+len(context)+1+len(transcriptHash))
	b = append(b, bytes.Repeat([]byte{' '}, 64)...)
	b = append(b, context...)
	b = append(b, 0)
	return append(b, transcriptHash...)
}

// ServerCertificate is what a server presented in a certificate-mode
// handshake: its chain and the CertificateVerify signature over the
// handshake so far. Config.VerifyServer gets it after the signature
// arrived and before the server's Finished is checked; the slices must not
// be kept or modified.
type ServerCertificate struct {
	// ServerName is Config.ServerName (possibly an IP address).
	ServerName string
	// Chain is the server's certificate chain as sent, DER, leaf first.
	Chain [][]byte
	// SignatureScheme is the CertificateVerify algorithm (one of the
	// Signature* constants: the client offers nothing else).
	SignatureScheme uint16
	// Signed is the content the signature covers (64 spaces, the context
	// string, 0, the transcript hash), and Signature the signature itself.
	Signed, Signature []byte
}

// VerifySignature checks the CertificateVerify signature with pub, the
// public key of the leaf certificate (for example
// x509.Certificate.PublicKey). A bad signature wraps ErrBadSignature.
func (sc *ServerCertificate) VerifySignature(pub crypto.PublicKey) error {
	bad := fmt.Errorf("%w: scheme 0x%04x", ErrBadSignature, sc.SignatureScheme)
	var h crypto.Hash
	var curve elliptic.Curve
	switch sc.SignatureScheme {
	case SignatureECDSAP256SHA256:
		h, curve = crypto.SHA256, elliptic.P256()
	case SignatureECDSAP384SHA384:
		h, curve = crypto.SHA384, elliptic.P384()
	case SignatureECDSAP521SHA512:
		h, curve = crypto.SHA512, elliptic.P521()
	case SignatureRSAPSSSHA256:
		h = crypto.SHA256
	case SignatureRSAPSSSHA384:
		h = crypto.SHA384
	case SignatureRSAPSSSHA512:
		h = crypto.SHA512
	case SignatureEd25519:
		k, ok := pub.(ed25519.PublicKey)
		if !ok {
			return fmt.Errorf("%w: Ed25519 signature from a %T key", ErrBadSignature, pub)
		}
		if !ed25519.Verify(k, sc.Signed, sc.Signature) {
			return bad
		}
		return nil
	default:
		return fmt.Errorf("%w: unsupported scheme 0x%04x", ErrBadSignature, sc.SignatureScheme)
	}
	d := h.New()
	d.Write(sc.Signed)
	digest := d.Sum(nil)
	if curve != nil {
		// TLS 1.3 binds the curve to the scheme.
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != curve {
			return fmt.Errorf("%w: scheme 0x%04x does not match the %T key", ErrBadSignature, sc.SignatureScheme, pub)
		}
		if !ecdsa.VerifyASN1(k, digest, sc.Signature) {
			return bad
		}
		return nil
	}
	k, ok := pub.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: RSA-PSS signature from a %T key", ErrBadSignature, pub)
	}
	if rsa.VerifyPSS(k, h, digest, sc.Signature, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) != nil {
		return bad
	}
	return nil
}

// errNoServerName: VerifyServerX509 was given no name to check.
var errNoServerName = errors.New("no server name to verify")

// VerifyServerX509 returns a Config.VerifyServer function that verifies
// the chain with crypto/x509 against roots (nil: the system roots) for
// serverName (a DNS name or an IP address; empty fails every handshake),
// for server authentication, and the CertificateVerify signature with the
// leaf's key.
//
// The last chain accepted is remembered (by its exact bytes, until the
// first certificate in it expires), so that a client talking to one server
// parses and verifies the chain once; the signature, which covers this
// handshake, is checked every time. The function is safe for concurrent
// use. Errors wrap ErrBadSignature for a bad signature.
func VerifyServerX509(roots *x509.CertPool, serverName string) func(*ServerCertificate) error {
	v := &x509Verifier{roots: roots, name: serverName}
	return v.verify
}

type x509Verifier struct {
	roots *x509.CertPool
	name  string
	last  atomic.Pointer[verifiedChain]
}

// verifiedChain is an accepted chain: immutable once stored.
type verifiedChain struct {
	raw        [][]byte
	key        crypto.PublicKey
	validFrom  time.Time // latest NotBefore of the verified path
	validUntil time.Time // earliest NotAfter of the verified path
}

func (v *x509Verifier) verify(sc *ServerCertificate) error {
	if v.name == "" {
		return errNoServerName
	}
	if len(sc.Chain) == 0 {
		return errors.New("no server certificate")
	}
	now := time.Now()
	if vc := v.last.Load(); vc != nil && now.After(vc.validFrom) && now.Before(vc.validUntil) &&
		slices.EqualFunc(vc.raw, sc.Chain, bytes.Equal) {
		return sc.VerifySignature(vc.key)
	}
	certs := make([]*x509.Certificate, len(sc.Chain))
	for i, der := range sc.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	opts := x509.VerifyOptions{
		Roots:         v.roots,
		DNSName:       v.name,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	chains, err := certs[0].Verify(opts)
	if err != nil {
		return err
	}
	if err := sc.VerifySignature(certs[0].PublicKey); err != nil {
		return err
	}
	vc := &verifiedChain{raw: cloneChain(sc.Chain), key: certs[0].PublicKey}
	for i, c := range chains[0] {
		if i == 0 || c.NotBefore.After(vc.validFrom) {
			vc.validFrom = c.NotBefore
		}
		if i == 0 || c.NotAfter.Before(vc.validUntil) {
			vc.validUntil = c.NotAfter
		}
	}
	v.last.Store(vc)
	return nil
}

func cloneChain(chain [][]byte) [][]byte {
	out := make([][]byte, len(chain))
	for i, c := range chain {
		out[i] = bytes.Clone(c)
	}
	return out
}
