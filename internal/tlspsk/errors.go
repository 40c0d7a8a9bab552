package tlspsk

import (
	"errors"
	"strconv"
)

// Sentinel errors. Every error returned by this package wraps one of these
// (test with errors.Is); none of them ever carries key material.
var (
	// ErrConfig: the Config cannot be used (missing keys, bad versions, ...).
	ErrConfig = errors.New("tlspsk: invalid config")
	// ErrUnknownIdentity: the server does not know the client's PSK identity.
	// The peer is told exactly what it would be told for a wrong key.
	ErrUnknownIdentity = errors.New("tlspsk: unknown PSK identity")
	// ErrBadKey: the peer proved knowledge of a different key (TLS 1.3
	// binder or TLS 1.2 Finished did not verify).
	ErrBadKey = errors.New("tlspsk: PSK verification failed")
	// ErrAlert: the peer sent a fatal alert; the error is an *AlertError.
	ErrAlert = errors.New("tlspsk: alert from peer")
	// ErrProtocol: the peer broke the protocol (malformed or unexpected
	// message, bad record, oversized message, ...).
	ErrProtocol = errors.New("tlspsk: protocol error")
	// ErrNegotiation: no common version, cipher suite, group or PSK mode.
	ErrNegotiation = errors.New("tlspsk: negotiation failed")
	// ErrRenegotiation: the peer tried to renegotiate; it is always refused.
	ErrRenegotiation = errors.New("tlspsk: renegotiation refused")
	// ErrHandshakeTimeout: the handshake context ended first.
	ErrHandshakeTimeout = errors.New("tlspsk: handshake interrupted")
	// ErrClosed: the connection was closed locally.
	ErrClosed = errors.New("tlspsk: use of closed connection")
	// ErrNotTLS: PeekClientHello did not find a TLS ClientHello.
	ErrNotTLS = errors.New("tlspsk: not a TLS ClientHello")
	// ErrKeyFile: a PSK key file could not be loaded.
	ErrKeyFile = errors.New("tlspsk: key file")
	// ErrServerAuth: in certificate mode, Config.VerifyServer refused the
	// server's certificate or signature (the error wraps its error too).
	ErrServerAuth = errors.New("tlspsk: server authentication failed")
	// ErrBadSignature: a CertificateVerify signature does not verify
	// (returned by ServerCertificate.VerifySignature).
	ErrBadSignature = errors.New("tlspsk: bad server signature")
)

// AlertError is a TLS alert, either received from the peer (Remote) or sent
// by us. A remote one wraps ErrAlert.
type AlertError struct {
	Alert  uint8
	Remote bool
}

func (e *AlertError) Error() string {
	if e.Remote {
		return "tlspsk: remote alert: " + alertText(e.Alert)
	}
	return "tlspsk: local alert: " + alertText(e.Alert)
}

// Is makes errors.Is(err, ErrAlert) true for remote alerts.
func (e *AlertError) Is(target error) bool { return target == ErrAlert && e.Remote }

// TLS alert descriptions used by this package (RFC 8446 §6, RFC 4279).
const (
	alertCloseNotify           uint8 = 0
	alertUnexpectedMessage     uint8 = 10
	alertBadRecordMAC          uint8 = 20
	alertRecordOverflow        uint8 = 22
	alertHandshakeFailure      uint8 = 40
	alertBadCertificate        uint8 = 42
	alertIllegalParameter      uint8 = 47
	alertDecodeError           uint8 = 50
	alertDecryptError          uint8 = 51
	alertProtocolVersion       uint8 = 70
	alertInsufficientSecurity  uint8 = 71
	alertInternalError         uint8 = 80
	alertInappropriateFallback uint8 = 86
	alertUserCanceled          uint8 = 90
	alertNoRenegotiation       uint8 = 100
	alertMissingExtension      uint8 = 109
	alertUnsupportedExtension  uint8 = 110
	alertUnknownPSKIdentity    uint8 = 115
)

var alertNames = map[uint8]string{
	alertCloseNotify:           "close_notify",
	alertUnexpectedMessage:     "unexpected_message",
	alertBadRecordMAC:          "bad_record_mac",
	alertRecordOverflow:        "record_overflow",
	alertHandshakeFailure:      "handshake_failure",
	alertBadCertificate:        "bad_certificate",
	alertIllegalParameter:      "illegal_parameter",
	alertDecodeError:           "decode_error",
	alertDecryptError:          "decrypt_error",
	alertProtocolVersion:       "protocol_version",
	alertInsufficientSecurity:  "insufficient_security",
	alertInternalError:         "internal_error",
	alertInappropriateFallback: "inappropriate_fallback",
	alertUserCanceled:          "user_canceled",
	alertNoRenegotiation:       "no_renegotiation",
	alertMissingExtension:      "missing_extension",
	alertUnsupportedExtension:  "unsupported_extension",
	alertUnknownPSKIdentity:    "unknown_psk_identity",
	21:                         "decryption_failed",
	30:                         "decompression_failure",
	48:                         "unknown_ca",
	49:                         "access_denied",
	60:                         "export_restriction",
	112:                        "unrecognized_name",
	116:                        "certificate_required",
	120:                        "no_application_protocol",
}

func alertText(a uint8) string {
	if s, ok := alertNames[a]; ok {
		return s
	}
	return "alert(" + strconv.Itoa(int(a)) + ")"
}

// handshakeError is a local failure: the alert we send and the error we
// return. It is created by fail and carried up the step functions.
type handshakeError struct {
	alert uint8
	err   error
}

func (e *handshakeError) Error() string {
	return e.err.Error() + " (sent " + alertText(e.alert) + ")"
}

func (e *handshakeError) Unwrap() error { return e.err }

func asHandshakeError(err error, target **handshakeError) bool {
	he, ok := err.(*handshakeError)
	if ok {
		*target = he
	}
	return ok
}
