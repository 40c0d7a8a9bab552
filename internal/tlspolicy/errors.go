package tlspolicy

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these (test
// with errors.Is) and carry a "tlspolicy:" prefix plus the file, option or
// environment variable concerned; they never contain a password or key.
var (
	// ErrInvalidOptions: an option is missing, malformed or contradictory.
	ErrInvalidOptions = errors.New("invalid TLS options")
	// ErrMinVersion: a minimum TLS version below 1.2 (or unknown) was asked for.
	ErrMinVersion = errors.New("TLS version not allowed (minimum is TLS 1.2)")
	// ErrCipherSuite: a configured cipher suite is not ECDHE with an AEAD.
	ErrCipherSuite = errors.New("cipher suite not allowed")
	// ErrReadFile: a certificate, key, password or CA file could not be read.
	ErrReadFile = errors.New("cannot read file")
	// ErrNoCertificate: a certificate file holds no usable certificate.
	ErrNoCertificate = errors.New("no certificate found")
	// ErrBadCertificate: a certificate in a file could not be parsed.
	ErrBadCertificate = errors.New("bad certificate")
	// ErrNoPrivateKey: a key file holds no private key block.
	ErrNoPrivateKey = errors.New("no private key found")
	// ErrUnsupportedKey: a key is in a format or algorithm moat does not load.
	ErrUnsupportedKey = errors.New("unsupported private key")
	// ErrWeakKey: the key is too small (RSA below 2048 bits).
	ErrWeakKey = errors.New("private key too weak")
	// ErrKeyMismatch: the private key does not belong to the certificate.
	ErrKeyMismatch = errors.New("private key does not match certificate")
	// ErrKeyPasswordRequired: the key is encrypted and no password is configured.
	ErrKeyPasswordRequired = errors.New("private key is encrypted but no password is configured")
	// ErrKeyPasswordSource: the password file or environment variable is unusable.
	ErrKeyPasswordSource = errors.New("key password unavailable")
	// ErrKeyPasswordIncorrect: decryption failed: wrong password or corrupted key.
	ErrKeyPasswordIncorrect = errors.New("wrong key password or corrupted encrypted key")
	// ErrEncryptedKeyFormat: the encrypted PKCS#8 structure is malformed or
	// uses an algorithm or parameter outside the supported, bounded set.
	ErrEncryptedKeyFormat = errors.New("unsupported or malformed encrypted private key")
	// ErrNoClientCAs: a CA bundle holds no certificate.
	ErrNoClientCAs = errors.New("no CA certificate found")

	// ErrBadEKU: a client certificate lacks the clientAuth extended key usage.
	ErrBadEKU = errors.New("client certificate lacks the clientAuth extended key usage")
	// ErrRevoked: a certificate of the client's chain is revoked.
	ErrRevoked = errors.New("client certificate revoked")
	// ErrChainTooDeep: a client chain has more intermediates than allowed.
	ErrChainTooDeep = errors.New("client certificate chain too deep")
	// ErrUnverifiedChain: a client certificate was presented but not verified.
	ErrUnverifiedChain = errors.New("client certificate not verified")

	// ErrIdentitySource: an identity source string is not recognised.
	ErrIdentitySource = errors.New("unknown identity source")
	// ErrIdentityMissing: the certificate has no value for the identity source.
	ErrIdentityMissing = errors.New("certificate has no value for identity source")
	// ErrIdentityInvalid: the value is not usable as an identity (not valid
	// UTF-8, control characters, not a string type).
	ErrIdentityInvalid = errors.New("certificate identity value unusable")
	// ErrTemplate: a client-id template is malformed.
	ErrTemplate = errors.New("invalid client id template")
)
