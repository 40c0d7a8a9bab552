package registry

import "errors"

// Sentinel errors. Errors returned by the registry wrap one of these with a
// short "registry: " prefixed reason; they never contain a secret.
var (
	// ErrNotFound: no such device or credential.
	ErrNotFound = errors.New("not found")
	// ErrExists: a device id, PSK identity, certificate binding or pin that
	// is already registered.
	ErrExists = errors.New("already exists")
	// ErrInvalid: a device, credential, rule or key that cannot be used.
	ErrInvalid = errors.New("invalid")
	// ErrNotRotatable: the credential holds no broker-side secret to
	// rotate (x509, pinned-key, ecdh) or its secret is derived (fleet psk).
	ErrNotRotatable = errors.New("credential cannot be rotated")
	// ErrNoFleetKey: a fleet-derived PSK was asked for but no fleet key is
	// set.
	ErrNoFleetKey = errors.New("no fleet key")
	// ErrCorrupt: the registry file cannot be read as a moat registry. The
	// file is left untouched.
	ErrCorrupt = errors.New("unreadable registry file")
	// ErrInUse: another process holds the registry file.
	ErrInUse = errors.New("registry file in use")
	// ErrMasterKey: the master key is missing, malformed, stored unsafely,
	// or does not open the registry's secrets.
	ErrMasterKey = errors.New("master key")
	// ErrPeerRefused: VerifyPeer refused a client certificate.
	ErrPeerRefused = errors.New("client certificate refused")
	// ErrClosed: the registry was closed.
	ErrClosed = errors.New("registry closed")
)
