package tlspolicy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestClassifyHandshakeError(t *testing.T) {
	remote := func(a uint8) error { return &net.OpError{Op: "remote error", Err: tls.AlertError(a)} }
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, ReasonUnknownCA},
		{&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired}}, ReasonExpired},
		{&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.IncompatibleUsage}}, ReasonBadEKU},
		{&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.NotAuthorizedToSign}}, ReasonBadCertificate},
		{&tls.CertificateVerificationError{Err: x509.HostnameError{}}, ReasonBadCertificate},
		{fmt.Errorf("tlspolicy: x: %w", ErrBadEKU), ReasonBadEKU},
		{fmt.Errorf("tlspolicy: x: %w", ErrChainTooDeep), ReasonBadCertificate},
		{errors.New("tls: client didn't provide a certificate"), ReasonNoCertificate},
		{errors.New("tls: client offered only unsupported versions: [302 301]"), ReasonProtocolVersion},
		{errors.New("tls: unsupported SSLv2 handshake received"), ReasonProtocolVersion},
		{errors.New("tls: first record does not look like a TLS handshake"), ReasonProtocolVersion},
		{errors.New("tls: no cipher suite supported by both client and server; client offered: [3c]"), ReasonCipherMismatch},
		{errors.New("tls: no key exchanges supported by both client and server"), ReasonCipherMismatch},
		{errors.New("tls: failed to parse client certificate: x509: malformed"), ReasonBadCertificate},
		{fmt.Errorf("listener: waiting for a handshake slot: %w", context.DeadlineExceeded), ReasonTimeout},
		{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, ReasonTimeout},
		{io.EOF, ReasonEOF},
		{fmt.Errorf("x: %w", io.ErrUnexpectedEOF), ReasonEOF},
		{&net.OpError{Op: "read", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}, ReasonEOF},
		{remote(48), ReasonUnknownCA},
		{remote(45), ReasonExpired},
		{remote(43), ReasonBadEKU},
		{remote(116), ReasonNoCertificate},
		{remote(70), ReasonProtocolVersion},
		{remote(71), ReasonCipherMismatch},
		{remote(42), ReasonBadCertificate},
		{remote(40), ReasonOther}, // handshake_failure is ambiguous
		{errors.New("something else"), ReasonOther},
	} {
		if got := ClassifyHandshakeError(tc.err); got != tc.want {
			t.Errorf("%v: got %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestHandshakeStats(t *testing.T) {
	var s HandshakeStats
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				s.Record(nil)
				s.Record(io.EOF)
				s.Record(fmt.Errorf("w: %w", ErrBadEKU))
			}
		}()
	}
	wg.Wait()
	s.Inc("not-a-reason")
	snap := s.Snapshot()
	if snap[ReasonEOF] != 800 || snap[ReasonBadEKU] != 800 || snap[ReasonOther] != 1 || s.Succeeded() != 800 {
		t.Errorf("snapshot %v ok=%d", snap, s.Succeeded())
	}
	if len(snap) != len(Reasons()) {
		t.Errorf("snapshot must hold every reason: %v", snap)
	}
}

func TestObserveHandshakeErrorRateLimitsLogs(t *testing.T) {
	pki := newTestPKI(t)
	log, buf := testLogger(t)
	p, err := New(Options{Certs: []CertSource{pki.serverSource()}}, log)
	if err != nil {
		t.Fatal(err)
	}
	before := strings.Count(buf.String(), "tls handshake failed")
	for range 500 {
		if r := p.ObserveHandshakeError("192.0.2.1:1234", errors.New("tls: client offered only unsupported versions: [302]")); r != ReasonProtocolVersion {
			t.Fatal(r)
		}
	}
	lines := strings.Count(buf.String(), "tls handshake failed") - before
	if lines == 0 || lines > 2*logBurst {
		t.Errorf("%d log lines for 500 failures", lines)
	}
	if got := p.Stats().Snapshot()[ReasonProtocolVersion]; got != 500 {
		t.Errorf("counted %d", got)
	}
}
