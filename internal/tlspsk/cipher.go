package tlspsk

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	_ "crypto/sha256" // registers crypto.SHA256
	_ "crypto/sha512" // registers crypto.SHA384

	"golang.org/x/crypto/chacha20poly1305"
)

// cipherSuite describes one suite: its record protection and its hash.
type cipherSuite struct {
	id      uint16
	name    string // IANA name
	version uint16
	hash    crypto.Hash
	keyLen  int
	ivLen   int  // TLS 1.2: implicit IV bytes from the key block; TLS 1.3: 12
	ecdhe   bool // TLS 1.2 ECDHE_PSK key exchange
	aead    func(key, iv []byte, tls13 bool) recordAEAD
}

var cipherSuites = []*cipherSuite{
	{TLS_AES_128_GCM_SHA256, "TLS_AES_128_GCM_SHA256", VersionTLS13, crypto.SHA256, 16, 12, false, newGCM},
	{TLS_AES_256_GCM_SHA384, "TLS_AES_256_GCM_SHA384", VersionTLS13, crypto.SHA384, 32, 12, false, newGCM},
	{TLS_CHACHA20_POLY1305_SHA256, "TLS_CHACHA20_POLY1305_SHA256", VersionTLS13, crypto.SHA256, 32, 12, false, newChaCha},
	{TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256, "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256", VersionTLS12, crypto.SHA256, 32, 12, true, newChaCha},
	{TLS_PSK_WITH_AES_128_GCM_SHA256, "TLS_PSK_WITH_AES_128_GCM_SHA256", VersionTLS12, crypto.SHA256, 16, 4, false, newGCM},
	{TLS_PSK_WITH_AES_256_GCM_SHA384, "TLS_PSK_WITH_AES_256_GCM_SHA384", VersionTLS12, crypto.SHA384, 32, 4, false, newGCM},
	{TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256", VersionTLS12, crypto.SHA256, 32, 12, false, newChaCha},
	{TLS_PSK_WITH_AES_128_CCM, "TLS_PSK_WITH_AES_128_CCM", VersionTLS12, crypto.SHA256, 16, 4, false, newCCM16},
	{TLS_PSK_WITH_AES_128_CCM_8, "TLS_PSK_WITH_AES_128_CCM_8", VersionTLS12, crypto.SHA256, 16, 4, false, newCCM8},
}

func suiteByID(id uint16) *cipherSuite {
	for _, s := range cipherSuites {
		if s.id == id {
			return s
		}
	}
	return nil
}

// recordAEAD seals records. Its nonce argument is always 8 bytes: the
// explicit nonce (TLS 1.2 GCM/CCM) or the record sequence number.
type recordAEAD interface {
	cipher.AEAD
	// explicitNonceLen is the number of nonce bytes sent in each record.
	explicitNonceLen() int
}

// prefixNonceAEAD builds the nonce as implicit IV (4 bytes) || explicit
// nonce (8 bytes), as TLS 1.2 AES-GCM (RFC 5288) and AES-CCM (RFC 6655) do.
type prefixNonceAEAD struct {
	nonce [12]byte
	aead  cipher.AEAD
}

func (f *prefixNonceAEAD) NonceSize() int        { return 8 }
func (f *prefixNonceAEAD) Overhead() int         { return f.aead.Overhead() }
func (f *prefixNonceAEAD) explicitNonceLen() int { return 8 }

func (f *prefixNonceAEAD) Seal(out, nonce, plaintext, aad []byte) []byte {
	copy(f.nonce[4:], nonce)
	return f.aead.Seal(out, f.nonce[:], plaintext, aad)
}

func (f *prefixNonceAEAD) Open(out, nonce, ciphertext, aad []byte) ([]byte, error) {
	copy(f.nonce[4:], nonce)
	return f.aead.Open(out, f.nonce[:], ciphertext, aad)
}

// xorNonceAEAD builds the nonce as IV XOR sequence number, as TLS 1.3 and
// TLS 1.2 ChaCha20-Poly1305 (RFC 7905) do.
type xorNonceAEAD struct {
	mask [12]byte
	aead cipher.AEAD
}

func (f *xorNonceAEAD) NonceSize() int        { return 8 }
func (f *xorNonceAEAD) Overhead() int         { return f.aead.Overhead() }
func (f *xorNonceAEAD) explicitNonceLen() int { return 0 }

func (f *xorNonceAEAD) xor(nonce []byte) {
	for i, b := range nonce {
		f.mask[4+i] ^= b
	}
}

func (f *xorNonceAEAD) Seal(out, nonce, plaintext, aad []byte) []byte {
	f.xor(nonce)
	r := f.aead.Seal(out, f.mask[:], plaintext, aad)
	f.xor(nonce)
	return r
}

func (f *xorNonceAEAD) Open(out, nonce, ciphertext, aad []byte) ([]byte, error) {
	f.xor(nonce)
	r, err := f.aead.Open(out, f.mask[:], ciphertext, aad)
	f.xor(nonce)
	return r, err
}

// The constructors below get keys of the sizes the suite table states, so
// the primitives cannot fail.

func newGCM(key, iv []byte, tls13 bool) recordAEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("tlspsk: " + err.Error())
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		panic("tlspsk: " + err.Error())
	}
	if tls13 {
		a := &xorNonceAEAD{aead: g}
		copy(a.mask[:], iv)
		return a
	}
	a := &prefixNonceAEAD{aead: g}
	copy(a.nonce[:4], iv)
	return a
}

func newChaCha(key, iv []byte, _ bool) recordAEAD {
	c, err := chacha20poly1305.New(key)
	if err != nil {
		panic("tlspsk: " + err.Error())
	}
	a := &xorNonceAEAD{aead: c}
	copy(a.mask[:], iv)
	return a
}

func newCCMn(key, iv []byte, tagLen int) recordAEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("tlspsk: " + err.Error())
	}
	a := &prefixNonceAEAD{aead: newCCM(block, 12, tagLen)}
	copy(a.nonce[:4], iv)
	return a
}

func newCCM16(key, iv []byte, _ bool) recordAEAD { return newCCMn(key, iv, 16) }
func newCCM8(key, iv []byte, _ bool) recordAEAD  { return newCCMn(key, iv, 8) }
