package tlspsk

import (
	"crypto"
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
	// Time returns the current time; nil means time.Now. It is not used by
	// the protocol today (no tickets, no ticket ages) and exists so that
	// callers can pin it in tests of future time-dependent features.
	Time func() time.Time
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
	if isClient {
		if c.Identity == "" || len(c.Identity) > 0xffff || len(c.Key) == 0 {
			return fmt.Errorf("%w: client needs Identity and Key", ErrConfig)
		}
		if c.KeyHash != 0 && c.KeyHash != crypto.SHA256 && c.KeyHash != crypto.SHA384 {
			return fmt.Errorf("%w: KeyHash must be SHA-256 or SHA-384", ErrConfig)
		}
	} else if c.Keys == nil {
		return fmt.Errorf("%w: server needs Keys", ErrConfig)
	}
	return nil
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
}

// CipherSuiteName returns the IANA name of a suite this package knows.
func CipherSuiteName(id uint16) string {
	if s := suiteByID(id); s != nil {
		return s.name
	}
	return fmt.Sprintf("0x%04X", id)
}
