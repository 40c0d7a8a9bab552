package tlspolicy

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Handshake failure reasons returned by ClassifyHandshakeError; stable
// strings, suitable as metric labels.
const (
	ReasonUnknownCA       = "unknown_ca"       // client chain does not lead to a configured CA
	ReasonExpired         = "expired"          // a certificate is expired or not yet valid
	ReasonBadEKU          = "bad_eku"          // no explicit clientAuth EKU (or incompatible usage)
	ReasonNoCertificate   = "no_certificate"   // no client certificate on a "required" listener
	ReasonProtocolVersion = "protocol_version" // client offered only TLS < 1.2, or not TLS at all
	ReasonCipherMismatch  = "cipher_mismatch"  // no common cipher suite or key exchange group
	ReasonTimeout         = "timeout"          // handshake deadline passed
	ReasonBadCertificate  = "bad_certificate"  // other certificate problems (malformed, chain too deep, ...)
	ReasonRevoked         = "revoked"          // a certificate of the chain is revoked
	ReasonEOF             = "eof"              // peer closed or reset the connection
	ReasonOther           = "other"
)

// Reasons returns every reason, in a stable order.
func Reasons() []string { return slices.Clone(reasonIndexTable[:]) }

// ClassifyHandshakeError maps a handshake error to one of the Reason*
// strings ("" for nil). It understands server-side errors from
// tls.Conn.HandshakeContext (including this package's VerifyConnection
// errors) and, on the client side, the alert the peer sent ("remote error:
// tls: unknown certificate authority").
func ClassifyHandshakeError(err error) string {
	if err == nil {
		return ""
	}
	// Certificate verification (server side; wrapped in
	// tls.CertificateVerificationError by crypto/tls).
	switch {
	case errors.Is(err, ErrBadEKU):
		return ReasonBadEKU
	case errors.Is(err, ErrRevoked):
		return ReasonRevoked
	case errors.Is(err, ErrChainTooDeep), errors.Is(err, ErrUnverifiedChain):
		return ReasonBadCertificate
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return ReasonUnknownCA
	}
	if ci, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		switch ci.Reason {
		case x509.Expired:
			return ReasonExpired
		case x509.IncompatibleUsage:
			return ReasonBadEKU
		}
		return ReasonBadCertificate
	}
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return ReasonBadCertificate
	}
	if _, ok := errors.AsType[x509.ConstraintViolationError](err); ok {
		return ReasonBadCertificate
	}
	if _, ok := errors.AsType[x509.UnhandledCriticalExtension](err); ok {
		return ReasonBadCertificate
	}

	// Alerts received from the peer.
	if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Op == "remote error" && oe.Err != nil {
		if r := classifyAlert(oe.Err.Error()); r != "" {
			return r
		}
		return ReasonOther
	}

	// Timeouts and closed connections.
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return ReasonTimeout
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return ReasonTimeout
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, net.ErrClosed) {
		return ReasonEOF
	}

	// crypto/tls reports the remaining cases only as text.
	msg := err.Error()
	switch {
	case strings.Contains(msg, "client didn't provide a certificate"):
		return ReasonNoCertificate
	case strings.Contains(msg, "offered only unsupported versions"),
		strings.Contains(msg, "unsupported SSLv2 handshake"),
		strings.Contains(msg, "first record does not look like a TLS handshake"),
		strings.Contains(msg, "legacy version field to negotiate TLS 1.3"),
		strings.Contains(msg, "inappropriate protocol fallback"),
		strings.Contains(msg, "server selected unsupported protocol version"),
		strings.Contains(msg, "no mutually supported protocol versions"):
		return ReasonProtocolVersion
	case strings.Contains(msg, "no cipher suite supported by both"),
		strings.Contains(msg, "no key exchanges supported by both"),
		strings.Contains(msg, "no ECDHE curve supported"),
		strings.Contains(msg, "server chose an unconfigured cipher suite"):
		return ReasonCipherMismatch
	case strings.Contains(msg, "failed to parse client certificate"),
		strings.Contains(msg, "failed to parse certificate"),
		strings.Contains(msg, "unsupported public key"),
		strings.Contains(msg, "RSA key larger than"):
		return ReasonBadCertificate
	}
	return ReasonOther
}

// classifyAlert maps the text of a received TLS alert.
func classifyAlert(text string) string {
	text = strings.TrimPrefix(text, "tls: ")
	switch text {
	case "unknown certificate authority":
		return ReasonUnknownCA
	case "expired certificate":
		return ReasonExpired
	case "unsupported certificate":
		return ReasonBadEKU // OpenSSL's answer to a wrong purpose/EKU
	case "certificate required":
		return ReasonNoCertificate
	case "protocol version not supported":
		return ReasonProtocolVersion
	case "insufficient security level":
		return ReasonCipherMismatch
	case "bad certificate", "unknown certificate", "revoked certificate",
		"certificate unobtainable", "bad certificate hash value":
		return ReasonBadCertificate
	}
	return ""
}

// HandshakeStats counts handshake outcomes. The zero value is ready; all
// methods are safe for concurrent use.
type HandshakeStats struct {
	ok     atomic.Uint64
	counts [len(reasonIndexTable)]atomic.Uint64
}

var reasonIndexTable = [...]string{
	ReasonUnknownCA, ReasonExpired, ReasonBadEKU, ReasonNoCertificate,
	ReasonProtocolVersion, ReasonCipherMismatch, ReasonTimeout,
	ReasonBadCertificate, ReasonRevoked, ReasonEOF, ReasonOther,
}

func reasonIndex(reason string) int {
	for i, r := range reasonIndexTable {
		if r == reason {
			return i
		}
	}
	return len(reasonIndexTable) - 1 // other
}

// Record classifies err, counts it and returns the reason. A nil error
// counts a successful handshake and returns "".
func (s *HandshakeStats) Record(err error) string {
	if err == nil {
		s.ok.Add(1)
		return ""
	}
	r := ClassifyHandshakeError(err)
	s.counts[reasonIndex(r)].Add(1)
	return r
}

// Inc counts one failure with the given reason (unknown reasons count as
// "other").
func (s *HandshakeStats) Inc(reason string) { s.counts[reasonIndex(reason)].Add(1) }

// Succeeded returns the number of successful handshakes recorded.
func (s *HandshakeStats) Succeeded() uint64 { return s.ok.Load() }

// Snapshot returns the failure count of every reason (zeros included).
func (s *HandshakeStats) Snapshot() map[string]uint64 {
	out := make(map[string]uint64, len(reasonIndexTable))
	for i, r := range reasonIndexTable {
		out[r] = s.counts[i].Load()
	}
	return out
}

// logLimiter lets at most logBurst handshake failure logs through per
// second, so a flood of bad handshakes cannot flood the log; the next
// allowed line reports how many were suppressed.
type logLimiter struct {
	mu         sync.Mutex
	window     time.Time
	n          int
	suppressed uint64
}

const logBurst = 20

func (l *logLimiter) allow(now time.Time) (suppressed uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.window) >= time.Second {
		l.window = now
		l.n = 0
	}
	if l.n >= logBurst {
		l.suppressed++
		return 0, false
	}
	l.n++
	s := l.suppressed
	l.suppressed = 0
	return s, true
}
