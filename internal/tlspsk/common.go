package tlspsk

import (
	"crypto"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"io"
	"time"
)

// Protocol versions.
const (
	VersionTLS12 uint16 = 0x0303
	VersionTLS13 uint16 = 0x0304
)

// Cipher suites. TLS 1.2 suites use a PSK (RFC 4279, 5487, 5489, 6655,
// 7905); TLS 1.3 suites are used with an external PSK and psk_dhe_ke.
const (
	TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256 uint16 = 0xCCAC
	TLS_PSK_WITH_AES_128_GCM_SHA256             uint16 = 0x00A8
	TLS_PSK_WITH_AES_256_GCM_SHA384             uint16 = 0x00A9
	TLS_PSK_WITH_CHACHA20_POLY1305_SHA256       uint16 = 0xCCAB
	TLS_PSK_WITH_AES_128_CCM                    uint16 = 0xC0A4
	TLS_PSK_WITH_AES_128_CCM_8                  uint16 = 0xC0A8

	TLS_AES_128_GCM_SHA256       uint16 = 0x1301
	TLS_AES_256_GCM_SHA384       uint16 = 0x1302
	TLS_CHACHA20_POLY1305_SHA256 uint16 = 0x1303
)

// CurveID is a TLS named group.
type CurveID uint16

// Supported key exchange groups.
const (
	X25519 CurveID = 29
	P256   CurveID = 23
)

// KeyStore finds the PSK for an identity (server side). Implementations must
// return a copy the caller may wipe, and must be safe for concurrent use.
type KeyStore interface {
	LookupPSK(identity string) (key []byte, ok bool)
}

// KeyHashStore is optionally implemented by a KeyStore whose keys are not
// all SHA-256 PSKs: it reports the hash (crypto.SHA256 or crypto.SHA384)
// that a TLS 1.3 PSK is bound to. Keys from a plain KeyStore are SHA-256,
// which is what OpenSSL's legacy PSK callbacks imply.
type KeyHashStore interface {
	KeyStore
	LookupPSKHash(identity string) (key []byte, hash crypto.Hash, ok bool)
}

// KeyStoreFunc adapts a function to KeyStore.
type KeyStoreFunc func(identity string) ([]byte, bool)

// LookupPSK calls f.
func (f KeyStoreFunc) LookupPSK(identity string) ([]byte, bool) { return f(identity) }

// Config configures a server or client. A Config may be shared by many
// connections and must not be modified after use.
type Config struct {
	// Keys finds client keys (server side; required for Server).
	Keys KeyStore
	// Identity and Key are the client's PSK (required for Client).
	Identity string
	Key      []byte
	// KeyHash is the hash the client's Key is bound to in TLS 1.3 (0 means
	// crypto.SHA256).
	KeyHash crypto.Hash
	// IdentityHint is sent by a TLS 1.2 server in ServerKeyExchange.
	IdentityHint string
	// CipherSuites lists the enabled suites of both versions in preference
	// order; nil means DefaultCipherSuites. CCM suites must be listed here
	// to be used.
	CipherSuites []uint16
	// CurvePreferences lists key exchange groups in preference order; nil
	// means X25519 then P-256. A client sends a key share for the first.
	CurvePreferences []CurveID
	// MinVersion and MaxVersion bound the protocol version; zero means
	// TLS 1.2 and TLS 1.3. Versions below TLS 1.2 are refused.
	MinVersion, MaxVersion uint16
	// MaxIdentityLength bounds PSK identities (default 128 bytes). A longer
	// identity fails exactly like an unknown one.
	MaxIdentityLength int
	// AllowLegacyMasterSecret accepts TLS 1.2 peers that do not support the
	// extended master secret (RFC 7627). Off by default: without it a TLS
	// 1.2 session is not bound to its handshake transcript.
	AllowLegacyMasterSecret bool
	// Rand is the entropy source; nil means crypto/rand.
	Rand io.Reader
	// Time returns the current time; nil means time.Now. Only the
	// certificate-mode client uses it (ticket lifetimes and ages).
	Time func() time.Time

	// StaticKeyShares (client, for load generation only) are ECDH keys
	// (X25519 or P-256) reused by every connection instead of a fresh key
	// per handshake: the client side of the exchange becomes static DH,
	// which gives up forward secrecy for the client's share. The server
	// still generates an ephemeral key per handshake and does exactly the
	// work it always does; the client saves its key generation. A group
	// without a key here gets a fresh key as usual.
	StaticKeyShares []*ecdh.PrivateKey

	// CertificateMode makes a client authenticate the server by its
	// certificate instead of a PSK: a TLS 1.3 handshake (whatever
	// MinVersion says) with psk_dhe_ke for resumption tickets only,
	// signature_algorithms, SNI and ALPN, and no client certificate (a
	// CertificateRequest is answered with an empty Certificate). It is a
	// lean client for load generation against certificate TLS servers;
	// Identity and Key must be empty, VerifyServer must be set.
	CertificateMode bool
	// VerifyServer authenticates the server in certificate mode: it gets
	// the chain and the CertificateVerify signature and returns nil to
	// accept them. It is required: a nil VerifyServer is a configuration
	// error, never a skipped check. VerifyServerX509 builds the usual
	// check (chain to roots, name, signature); a function that returns nil
	// skips verification and must be an explicit, visible choice. The
	// server's Finished is verified in any case.
	VerifyServer func(*ServerCertificate) error
	// ServerName (certificate mode) is sent as SNI unless it is an IP
	// address, and keys the session cache.
	ServerName string
	// NextProtos (certificate mode) are the ALPN protocols offered. A
	// server may select one of them or answer none.
	NextProtos []string
	// SessionCache (certificate mode) stores the server's session tickets
	// and offers them on the next connections to the same ServerName (or
	// address); nil means no resumption (tickets are ignored).
	SessionCache *SessionCache
}

// DefaultCipherSuites is the default suite list, in server preference order.
var DefaultCipherSuites = []uint16{
	TLS_AES_128_GCM_SHA256,
	TLS_CHACHA20_POLY1305_SHA256,
	TLS_AES_256_GCM_SHA384,
	TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256,
	TLS_PSK_WITH_AES_128_GCM_SHA256,
	TLS_PSK_WITH_AES_256_GCM_SHA384,
	TLS_PSK_WITH_CHACHA20_POLY1305_SHA256,
}

const defaultMaxIdentityLength = 128

func (c *Config) rand() io.Reader {
	if c.Rand != nil {
		return c.Rand
	}
	return rand.Reader
}

func (c *Config) minVersion() uint16 {
	if c.MinVersion == 0 {
		return VersionTLS12
	}
	return c.MinVersion
}

func (c *Config) maxVersion() uint16 {
	if c.MaxVersion == 0 {
		return VersionTLS13
	}
	return c.MaxVersion
}

func (c *Config) supportsVersion(v uint16) bool {
	return v >= c.minVersion() && v <= c.maxVersion()
}

func (c *Config) maxIdentityLength() int {
	if c.MaxIdentityLength <= 0 {
		return defaultMaxIdentityLength
	}
	return c.MaxIdentityLength
}

func (c *Config) curves() []CurveID {
	if len(c.CurvePreferences) == 0 {
		return []CurveID{X25519, P256}
	}
	return c.CurvePreferences
}

func (c *Config) supportsCurve(id CurveID) bool {
	for _, k := range c.curves() {
		if k == id {
			return true
		}
	}
	return false
}

// suites returns the enabled suites of one version, in preference order.
func (c *Config) suites(version uint16) []*cipherSuite {
	ids := c.CipherSuites
	if ids == nil {
		ids = DefaultCipherSuites
	}
	var out []*cipherSuite
	for _, id := range ids {
		if s := suiteByID(id); s != nil && s.version == version {
			out = append(out, s)
		}
	}
	return out
}

// check validates the config for one side.
func (c *Config) check(isClient bool) error {
	if c == nil {
		return fmt.Errorf("%w: nil config", ErrConfig)
	}
	min, max := c.minVersion(), c.maxVersion()
	if min < VersionTLS12 || max > VersionTLS13 || min > max {
		return fmt.Errorf("%w: versions must be within TLS 1.2 and TLS 1.3", ErrConfig)
	}
	for _, id := range c.CipherSuites {
		if suiteByID(id) == nil {
			return fmt.Errorf("%w: unsupported cipher suite 0x%04x", ErrConfig, id)
		}
	}
	for _, g := range c.curves() {
		if g != X25519 && g != P256 {
			return fmt.Errorf("%w: unsupported group %d", ErrConfig, g)
		}
	}
	n := 0
	for v := min; v <= max; v++ {
		n += len(c.suites(v))
	}
	if n == 0 {
		return fmt.Errorf("%w: no cipher suite enabled for the configured versions", ErrConfig)
	}
	certFields := c.VerifyServer != nil || c.ServerName != "" || len(c.NextProtos) > 0 || c.SessionCache != nil
	switch {
	case isClient && c.CertificateMode:
		if err := c.checkCertificateMode(); err != nil {
			return err
		}
	case isClient:
		if c.Identity == "" || len(c.Identity) > 0xffff || len(c.Key) == 0 {
			return fmt.Errorf("%w: client needs Identity and Key", ErrConfig)
		}
		if c.KeyHash != 0 && c.KeyHash != crypto.SHA256 && c.KeyHash != crypto.SHA384 {
			return fmt.Errorf("%w: KeyHash must be SHA-256 or SHA-384", ErrConfig)
		}
		if certFields {
			return fmt.Errorf("%w: VerifyServer, ServerName, NextProtos and SessionCache need CertificateMode", ErrConfig)
		}
	case c.Keys == nil:
		return fmt.Errorf("%w: server needs Keys", ErrConfig)
	case c.CertificateMode || certFields || len(c.StaticKeyShares) > 0:
		return fmt.Errorf("%w: CertificateMode, VerifyServer, ServerName, NextProtos, SessionCache and StaticKeyShares are client settings", ErrConfig)
	}
	for _, k := range c.StaticKeyShares {
		if k == nil || (k.Curve() != ecdh.X25519() && k.Curve() != ecdh.P256()) {
			return fmt.Errorf("%w: StaticKeyShares must be X25519 or P-256 keys", ErrConfig)
		}
	}
	return nil
}

// checkCertificateMode validates a certificate-mode client config.
func (c *Config) checkCertificateMode() error {
	if c.Identity != "" || len(c.Key) > 0 || c.KeyHash != 0 {
		return fmt.Errorf("%w: CertificateMode takes no Identity, Key or KeyHash", ErrConfig)
	}
	if c.VerifyServer == nil {
		return fmt.Errorf("%w: CertificateMode needs VerifyServer (VerifyServerX509, or an explicit function that skips verification)", ErrConfig)
	}
	if c.maxVersion() < VersionTLS13 || len(c.suites(VersionTLS13)) == 0 {
		return fmt.Errorf("%w: CertificateMode is TLS 1.3 only: enable TLS 1.3 and one of its suites", ErrConfig)
	}
	total := 0
	for _, p := range c.NextProtos {
		if p == "" || len(p) > 255 {
			return fmt.Errorf("%w: ALPN protocol of %d bytes", ErrConfig, len(p))
		}
		total += 1 + len(p)
	}
	if total > 0xffff-8 || len(c.ServerName) > 0xffff-16 {
		return fmt.Errorf("%w: NextProtos or ServerName too long", ErrConfig)
	}
	return nil
}

func (c *Config) now() time.Time {
	if c.Time != nil {
		return c.Time()
	}
	return time.Now()
}

func (c *Config) keyHash() crypto.Hash {
	if c.KeyHash == 0 {
		return crypto.SHA256
	}
	return c.KeyHash
}

// State describes a connection.
type State struct {
	Version           uint16
	CipherSuite       uint16
	Identity          string // the PSK identity in use
	HandshakeComplete bool
	// Certificate-mode client only.
	DidResume          bool   // a session ticket was accepted
	NegotiatedProtocol string // ALPN; "" when the server selected none
}

// CipherSuiteName returns the IANA name of a suite this package knows.
func CipherSuiteName(id uint16) string {
	if s := suiteByID(id); s != nil {
		return s.name
	}
	return fmt.Sprintf("0x%04X", id)
}
