package registry

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"moat/internal/auth"
	"moat/internal/config"
	"moat/internal/tlspolicy"
)

// Status is a device's status.
type Status string

// Device statuses.
const (
	StatusEnabled  Status = "enabled"
	StatusDisabled Status = "disabled"
)

// Kind is a credential kind.
type Kind string

// Credential kinds.
const (
	KindX509      Kind = "x509"       // a CA-issued client certificate
	KindPSK       Kind = "psk"        // TLS-PSK identity and key
	KindPinnedKey Kind = "pinned-key" // SHA-256 of a SubjectPublicKeyInfo; no CA
	KindECDH      Kind = "ecdh"       // device X25519 public key; PSK derived
	KindPassword  Kind = "password"   // MQTT username (= device id) and password
)

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	switch k {
	case KindX509, KindPSK, KindPinnedKey, KindECDH, KindPassword:
		return true
	}
	return false
}

// Permission and Action of a device ACL rule.
const (
	PermissionAllow = config.PermissionAllow
	PermissionDeny  = config.PermissionDeny
	ActionPublish   = config.ActionPublish
	ActionSubscribe = config.ActionSubscribe
	ActionAll       = config.ActionAll
)

// Rule is one per-device ACL rule. Topic is an MQTT topic filter and may
// contain %i (the device id) and %c (the client id); see package auth for
// how templates are substituted. Action "" means "all".
type Rule struct {
	Permission string `json:"permission"` // "allow" | "deny"
	Action     string `json:"action"`     // "publish" | "subscribe" | "all"
	Topic      string `json:"topic"`
}

// Device is a registered device. Values returned by the registry are
// copies: modifying one changes nothing.
type Device struct {
	ID          string            `json:"id"`
	Status      Status            `json:"status"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	ACL         []Rule            `json:"acl,omitempty"`
	Credentials []Credential      `json:"credentials"`
	Created     time.Time         `json:"created"`
	Updated     time.Time         `json:"updated"`
}

// Enabled reports whether the device may connect.
func (d *Device) Enabled() bool { return d != nil && d.Status == StatusEnabled }

// Credential is one way a device proves its identity. It never holds a
// secret: PSK keys are kept encrypted inside the registry and password
// hashes are not exported.
type Credential struct {
	ID      string    `json:"id"`
	Kind    Kind      `json:"kind"`
	Created time.Time `json:"created"`

	// x509: exactly one of Fingerprint, Issuer+Serial, Subject.
	//
	// Fingerprint is the lower-case hex SHA-256 of the certificate's DER.
	// Issuer is the issuer DN as RFC 4514 / `openssl x509 -issuer -nameopt
	// RFC2253` prints it ("CN=Moat CA,O=moat"), Serial the serial number in
	// lower-case hex without leading zeros. Subject is "<field>=<value>":
	// a subject attribute ("CN=sensor-17", "OU=plant-a", "UID=x") or a
	// tlspolicy identity source ("dn=CN=a,O=b", "san:dns=dev.example",
	// "subject:1.2.3.4=x"); it matches the first such value of the
	// certificate.
	Fingerprint string `json:"fingerprint,omitempty"`
	Issuer      string `json:"issuer,omitempty"`
	Serial      string `json:"serial,omitempty"`
	Subject     string `json:"subject,omitempty"`

	// psk and ecdh: the TLS-PSK identity the device connects with.
	Identity string `json:"identity,omitempty"`
	// psk: the key is HMAC-SHA256(fleet key, Identity) rather than stored.
	Derived bool `json:"derived,omitempty"`

	// pinned-key: lower-case hex SHA-256 of the SubjectPublicKeyInfo.
	SPKISHA256 string `json:"spki_sha256,omitempty"`

	// ecdh: the device's X25519 public key, lower-case hex.
	PublicKey string `json:"public_key,omitempty"`
}

// NewDevice describes a device to add.
type NewDevice struct {
	ID          string
	Disabled    bool
	Metadata    map[string]string
	ACL         []Rule
	Credentials []NewCredential
}

// NewCredential describes a credential to add. Fields not of its Kind must
// be empty.
type NewCredential struct {
	Kind Kind

	// x509: Fingerprint, or Issuer and Serial, or Subject (see
	// Credential); or Certificate alone, which binds its fingerprint.
	Fingerprint string
	Issuer      string
	Serial      string // hex, colons allowed
	Subject     string
	// Certificate (x509, pinned-key): the certificate whose fingerprint
	// (x509) or public key (pinned-key) is bound.
	Certificate *x509.Certificate

	// psk and ecdh: the TLS-PSK identity; default the device id.
	Identity string
	// psk: the key (16 to 64 bytes); 32 random bytes when empty and not
	// Derived.
	Key []byte
	// psk: derive the key from the fleet key (Key must be empty).
	Derived bool

	// pinned-key: SHA-256 of the SubjectPublicKeyInfo, hex (colons
	// allowed), unless Certificate is given.
	SPKISHA256 string

	// ecdh: the device's X25519 public key (32 bytes), hex.
	PublicKey string

	// password: the password (8 to 1024 bytes), or an existing argon2id or
	// bcrypt hash in PasswordHash (migration); a random password is made
	// when both are empty.
	Password     []byte
	PasswordHash string
}

// DeviceUpdate changes a device; nil fields are left alone.
type DeviceUpdate struct {
	Metadata *map[string]string // replaces the metadata
	ACL      *[]Rule            // replaces the ACL
}

// Issued is a secret the registry made (or derived) for a credential. It is
// returned once and not kept in clear: show it to the operator, then drop
// it.
type Issued struct {
	CredentialID string
	Kind         Kind
	Identity     string // psk: the identity the secret belongs to
	Secret       []byte // psk: the key; password: the password text
}

// Limits.
const (
	maxIDLen          = 128
	maxIdentityLen    = 256
	maxMetadata       = 64
	maxMetaKeyLen     = 64
	maxMetaValueLen   = 1024
	maxRules          = 256
	maxCredentials    = 16
	minPSKLen         = 16
	maxPSKLen         = 64
	defaultPSKLen     = 32
	minPasswordLen    = 8
	maxPasswordLen    = 1024
	generatedPassword = 24 // random bytes, base64url-encoded
)

// ValidDeviceID reports whether id can name a device: 1 to 128 characters
// of A-Z a-z 0-9 and - _ . : @, starting with a letter or digit. Such an id
// is safe in MQTT topic templates (no '/', '+', '#', '$'), URL paths and
// logs.
func ValidDeviceID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '-' || c == '_' || c == '.' || c == ':' || c == '@'):
		default:
			return false
		}
	}
	return true
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("registry: %w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// validIdentity: a PSK identity is 1 to 256 bytes of UTF-8 without
// control characters.
func validIdentity(s string) error {
	if !validText(s, maxIdentityLen) {
		return invalid("psk identity must be 1 to %d bytes of UTF-8 without control characters", maxIdentityLen)
	}
	return nil
}

// validText: 1 to max bytes of UTF-8 without control characters.
func validText(s string, max int) bool {
	return s != "" && len(s) <= max && utf8.ValidString(s) &&
		strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0
}

func checkMetadata(m map[string]string) error {
	if len(m) > maxMetadata {
		return invalid("at most %d metadata entries", maxMetadata)
	}
	for k, v := range m {
		if k == "" || len(k) > maxMetaKeyLen || !utf8.ValidString(k) || !utf8.ValidString(v) || len(v) > maxMetaValueLen {
			return invalid("metadata keys must be 1 to %d bytes and values at most %d bytes of UTF-8", maxMetaKeyLen, maxMetaValueLen)
		}
	}
	return nil
}

// compileACL checks rules and compiles them into one ACL per action
// family. For each family (publish; subscribe and delivery), a device with
// at least one allow rule there gets default deny (its allow rules are an
// allowlist); otherwise default allow (its deny rules only narrow).
func compileACL(rules []Rule) (*deviceACL, error) {
	if len(rules) > maxRules {
		return nil, invalid("at most %d ACL rules", maxRules)
	}
	var pub, sub []config.ACLRule
	pubAllow, subAllow := false, false
	for i, r := range rules {
		if r.Permission != PermissionAllow && r.Permission != PermissionDeny {
			return nil, invalid("acl[%d]: permission %q (want allow or deny)", i, r.Permission)
		}
		cr := config.ACLRule{Permission: r.Permission, Action: r.Action, Topic: r.Topic}
		switch r.Action {
		case ActionPublish:
			pub = append(pub, cr)
			pubAllow = pubAllow || r.Permission == PermissionAllow
		case ActionSubscribe:
			sub = append(sub, cr)
			subAllow = subAllow || r.Permission == PermissionAllow
		case ActionAll, "":
			pub, sub = append(pub, cr), append(sub, cr)
			pubAllow = pubAllow || r.Permission == PermissionAllow
			subAllow = subAllow || r.Permission == PermissionAllow
		default:
			return nil, invalid("acl[%d]: action %q (want publish, subscribe or all)", i, r.Action)
		}
	}
	p, err := auth.NewACL(pub, !pubAllow)
	if err != nil {
		return nil, fmt.Errorf("registry: %w: %v", ErrInvalid, err)
	}
	s, err := auth.NewACL(sub, !subAllow)
	if err != nil {
		return nil, fmt.Errorf("registry: %w: %v", ErrInvalid, err)
	}
	return &deviceACL{pub: p, sub: s}, nil
}

// normHex canonicalizes a hex string (colons and spaces allowed, any case)
// and checks its decoded length (0: any).
func normHex(s string, n int) (string, error) {
	s = strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(s)))
	b, err := hex.DecodeString(s)
	switch {
	case err != nil || len(b) == 0:
		return "", fmt.Errorf("must be hex")
	case n > 0 && len(b) != n:
		return "", fmt.Errorf("must be %d bytes (%d hex digits)", n, 2*n)
	}
	return s, nil
}

// normSerial canonicalizes a hex serial number: lower case, no leading
// zeros.
func normSerial(s string) (string, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0x"), "0X")
	s = strings.NewReplacer(":", "", " ", "").Replace(s)
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() < 0 {
		return "", fmt.Errorf("serial must be hex")
	}
	return n.Text(16), nil
}

// subjectAttrs are the subject attributes accepted as "<ATTR>=value".
var subjectAttrs = map[string]bool{
	"O": true, "OU": true, "L": true, "ST": true, "C": true, "STREET": true,
	"POSTALCODE": true, "SERIALNUMBER": true, "UID": true, "DC": true, "EMAILADDRESS": true,
}

// parseSubject splits a subject match into a tlspolicy identity source
// (canonical, lower case) and the expected value.
func parseSubject(s string) (source, value string, err error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" || v == "" {
		return "", "", fmt.Errorf("subject must be <field>=<value>, e.g. CN=sensor-17")
	}
	up := strings.ToUpper(k)
	switch {
	case up == "CN":
		source = "cn"
	case subjectAttrs[up]:
		source = "subject:" + strings.ToLower(up)
	default:
		source = strings.ToLower(k)
		if source == "fingerprint" {
			return "", "", fmt.Errorf("use the fingerprint field for fingerprints")
		}
		if tlspolicy.ValidateIdentitySource(source) != nil {
			return "", "", fmt.Errorf("unknown subject field %q", k)
		}
	}
	return source, v, nil
}

// CertFingerprint returns the SHA-256 of a certificate's DER.
func CertFingerprint(cert *x509.Certificate) [32]byte { return sha256.Sum256(cert.Raw) }

// SPKISHA256 returns the SHA-256 of a certificate's SubjectPublicKeyInfo:
// the pin of a pinned-key credential (`openssl x509 -pubkey -noout | openssl
// pkey -pubin -outform DER | sha256sum`).
func SPKISHA256(cert *x509.Certificate) [32]byte {
	return sha256.Sum256(cert.RawSubjectPublicKeyInfo)
}

// issuerDN formats a certificate's issuer like tlspolicy formats subjects
// (RFC 4514, OpenSSL's attribute names).
func issuerDN(cert *x509.Certificate) string {
	dn, err := tlspolicy.Identity(&x509.Certificate{RawSubject: cert.RawIssuer}, "dn")
	if err != nil {
		return ""
	}
	return dn
}

// clone returns a deep copy.
func (d *Device) clone() *Device {
	c := *d
	c.Metadata = maps.Clone(d.Metadata)
	c.ACL = slices.Clone(d.ACL)
	c.Credentials = slices.Clone(d.Credentials)
	return &c
}
