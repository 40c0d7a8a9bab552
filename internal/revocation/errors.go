package revocation

import "errors"

var (
	// ErrRevoked: a certificate of the chain is revoked (by a CRL or an
	// OCSP response). Errors wrapping it also match tlspolicy.ErrRevoked.
	ErrRevoked = errors.New("certificate revoked")
	// ErrUnavailable: revocation data is missing, stale or unverifiable and
	// the policy is fail_closed.
	ErrUnavailable = errors.New("revocation data unavailable")
	// ErrBadCRL: a CRL could not be parsed or did not verify.
	ErrBadCRL = errors.New("bad CRL")
	// ErrBadOCSP: an OCSP response could not be parsed, did not verify or
	// was not fresh.
	ErrBadOCSP = errors.New("bad OCSP response")
	// ErrTooLarge: a fetched CRL or OCSP response exceeds its size limit.
	ErrTooLarge = errors.New("response too large")
	// ErrOptions: invalid Options.
	ErrOptions = errors.New("invalid options")
)
