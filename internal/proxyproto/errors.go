package proxyproto

import "errors"

// Errors of the PROXY protocol parser and listener. Every error from Parse
// that is about the bytes on the wire wraps ErrInvalidHeader and, where it
// applies, one of the more specific sentinels below; I/O errors (timeouts,
// resets) are wrapped as they are.
var (
	// ErrNoHeader: the input does not start with a PROXY protocol
	// signature. Parse consumed nothing.
	ErrNoHeader = errors.New("proxyproto: no PROXY protocol header")

	// ErrInvalidHeader: the input starts with a PROXY signature but the
	// header is malformed, truncated, too long or fails its checksum.
	ErrInvalidHeader = errors.New("proxyproto: invalid PROXY header")

	// ErrHeaderTooLong: a v1 line without CRLF in its first 107 bytes, or
	// a v2 header longer than MaxV2HeaderLen.
	ErrHeaderTooLong = errors.New("header too long")

	// ErrInvalidAddress: an address or port that does not match its family
	// or the strict v1 syntax.
	ErrInvalidAddress = errors.New("invalid address")

	// ErrInvalidTLV: a v2 TLV (or SSL sub-TLV) that is truncated,
	// duplicated, of the wrong size or inconsistent with the others.
	ErrInvalidTLV = errors.New("invalid TLV")

	// ErrChecksum: the PP2_TYPE_CRC32C checksum does not match.
	ErrChecksum = errors.New("CRC32c checksum mismatch")

	// ErrUntrustedProxy: a connection from an address outside
	// Options.Trusted sent a PROXY header. The connection is closed.
	ErrUntrustedProxy = errors.New("proxyproto: PROXY header from an untrusted address")

	// ErrUntrustedSource: a listener with Options.Required accepted a
	// connection from an address outside Options.Trusted. The connection
	// is closed.
	ErrUntrustedSource = errors.New("proxyproto: connection from an untrusted address on a PROXY-only listener")

	// ErrMissingHeader: a trusted proxy connected to a listener with
	// Options.Required and sent no PROXY header. The connection is closed.
	ErrMissingHeader = errors.New("proxyproto: PROXY header required")

	// ErrInvalidOptions: Options.Validate found options that cannot work.
	ErrInvalidOptions = errors.New("proxyproto: invalid options")

	// ErrNoClientCert: SSLInfo.Certificate was called but the balancer
	// forwarded no client certificate.
	ErrNoClientCert = errors.New("proxyproto: no client certificate forwarded")
)
