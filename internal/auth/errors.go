package auth

import "errors"

// Sentinel errors. Authenticate wraps ErrBadCredentials or ErrNotAuthorized
// with a short reason that never contains a secret; the broker maps them to
// CONNACK reason codes (0x86 Bad User Name or Password / 3.1.1 code 4, and
// 0x87 Not Authorized / 3.1.1 code 5).
var (
	// ErrBadCredentials: credentials were presented and did not prove an
	// identity (unknown user, wrong password, username without password).
	ErrBadCredentials = errors.New("bad username or password")
	// ErrNotAuthorized: the connection may not proceed as it is (no
	// credentials where anonymous access is not allowed).
	ErrNotAuthorized = errors.New("not authorized")
	// ErrInvalidHash: a password hash that is malformed, of an unsupported
	// kind, or whose parameters exceed the limits.
	ErrInvalidHash = errors.New("invalid password hash")
	// ErrInvalidRule: an ACL rule that cannot be used.
	ErrInvalidRule = errors.New("invalid ACL rule")
)
