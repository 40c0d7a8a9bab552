package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"strings"
)

// KeyAlg is a key algorithm for a CA or a leaf. The zero value is ECDSA
// P-256, the default everywhere (cheap TLS handshakes).
type KeyAlg int

// Key algorithms.
const (
	ECDSAP256 KeyAlg = iota
	ECDSAP384
	Ed25519
	RSA3072
)

var keyAlgNames = map[KeyAlg]string{
	ECDSAP256: "ecdsa-p256",
	ECDSAP384: "ecdsa-p384",
	Ed25519:   "ed25519",
	RSA3072:   "rsa-3072",
}

// String returns the canonical name: ecdsa-p256, ecdsa-p384, ed25519 or
// rsa-3072.
func (a KeyAlg) String() string {
	if s, ok := keyAlgNames[a]; ok {
		return s
	}
	return fmt.Sprintf("KeyAlg(%d)", int(a))
}

// ParseKeyAlg accepts the canonical names and the usual short forms
// (p256, ec, ecdsa, p384, rsa, rsa3072, ...), case-insensitively. The
// empty string is ECDSAP256.
func ParseKeyAlg(s string) (KeyAlg, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "ecdsa-p256", "ecdsa", "ec", "p256", "p-256", "ecdsa-p-256", "prime256v1", "secp256r1":
		return ECDSAP256, nil
	case "ecdsa-p384", "p384", "p-384", "ecdsa-p-384", "secp384r1":
		return ECDSAP384, nil
	case "ed25519":
		return Ed25519, nil
	case "rsa-3072", "rsa3072", "rsa":
		return RSA3072, nil
	}
	return 0, fmt.Errorf("pki: key algorithm %q (want ecdsa-p256, ecdsa-p384, ed25519 or rsa-3072): %w", s, ErrInvalidRequest)
}

func (a KeyAlg) valid() bool { _, ok := keyAlgNames[a]; return ok }

func generateKey(a KeyAlg) (crypto.Signer, error) {
	switch a {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	}
	return nil, fmt.Errorf("pki: key algorithm %v: %w", a, ErrInvalidRequest)
}

// checkPublicKey accepts the public keys moat issues for: ECDSA on P-256,
// P-384 or P-521, Ed25519, and RSA of 2048 to 8192 bits.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("pki: unsupported ECDSA curve: %w", ErrInvalidRequest)
	case ed25519.PublicKey:
		return nil
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 8192 {
			return fmt.Errorf("pki: RSA key of %d bits (want 2048 to 8192): %w", n, ErrInvalidRequest)
		}
		return nil
	}
	return fmt.Errorf("pki: unsupported public key type %T: %w", pub, ErrInvalidRequest)
}

// subjectKeyID is RFC 7093 method 1: the leftmost 160 bits of the SHA-256
// of the subjectPublicKey BIT STRING (what Go uses for CA certificates).
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("pki: public key: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("pki: public key: %w", err)
	}
	h := sha256.Sum256(spki.PublicKey.Bytes)
	return h[:20], nil
}

// publicKeyEqual reports whether signer's public key is pub.
func publicKeyEqual(signer crypto.Signer, pub crypto.PublicKey) bool {
	k, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(pub)
}
