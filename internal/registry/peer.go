package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
)

type peerCertKey struct{}

// WithPeerCertificate returns a context carrying the client's leaf
// certificate, for Authenticator.Authenticate. Pass only a certificate the
// handshake accepted (a verified chain or a registered pin).
func WithPeerCertificate(ctx context.Context, cert *x509.Certificate) context.Context {
	return context.WithValue(ctx, peerCertKey{}, cert)
}

func peerCert(ctx context.Context) *x509.Certificate {
	if ctx == nil {
		return nil
	}
	c, _ := ctx.Value(peerCertKey{}).(*x509.Certificate)
	return c
}

// PeerResult is how VerifyPeer accepted a client certificate.
type PeerResult struct {
	// Pinned: the leaf's public key is a registered pin of an enabled
	// device (Device), over TLS 1.3; no CA was involved.
	Pinned bool
	Device *Device
	// Chains are the verified chains when the certificate was accepted
	// through the client CAs.
	Chains [][]*x509.Certificate
}

// VerifyPeer decides whether the client certificate of a handshake is
// acceptable on a listener that takes both CA-issued certificates and
// certificateless (pinned-key) devices. Use it from tls.Config's
// VerifyConnection (which, unlike VerifyPeerCertificate, also runs on
// resumed sessions) with ClientAuth RequestClientCert or
// RequireAnyClientCert: crypto/tls then checks only that the client holds
// the certificate's key, and VerifyPeer does the rest:
//
//   - no certificate: accepted with a zero PeerResult (the caller decides
//     whether a certificate is required);
//   - the leaf's SPKI SHA-256 is the pin of a device: accepted when the
//     device is enabled and the connection is TLS 1.3 (the certificate's
//     issuer, validity and extensions do not matter: the pin is the
//     identity); a pin of a disabled device is refused outright;
//   - otherwise the chain must verify against opts.Roots (the client CAs;
//     opts.Intermediates defaults to the certificates the client sent after
//     its leaf, opts.KeyUsages to clientAuth).
//
// Errors wrap ErrPeerRefused and never contain secrets.
func (r *Registry) VerifyPeer(cs tls.ConnectionState, opts x509.VerifyOptions) (PeerResult, error) {
	if len(cs.PeerCertificates) == 0 {
		return PeerResult{}, nil
	}
	leaf := cs.PeerCertificates[0]
	pin := SPKISHA256(leaf)
	if ce := r.byPin(pin[:]); ce != nil {
		if !ce.dev.dev.Enabled() {
			return PeerResult{}, fmt.Errorf("registry: %w: device %q is disabled", ErrPeerRefused, ce.dev.rec.ID)
		}
		if cs.Version >= tls.VersionTLS13 {
			return PeerResult{Pinned: true, Device: ce.dev.dev.clone()}, nil
		}
		// A pinned key over TLS 1.2 is not accepted as such (the
		// certificate would travel in clear); it may still be a
		// CA-issued certificate.
	}
	if opts.Roots == nil {
		return PeerResult{}, fmt.Errorf("registry: %w: public key not registered (or not over TLS 1.3) and no client CA configured", ErrPeerRefused)
	}
	if opts.Intermediates == nil && len(cs.PeerCertificates) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
	}
	if len(opts.KeyUsages) == 0 {
		opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return PeerResult{}, fmt.Errorf("registry: %w: public key not registered and certificate not verified: %v", ErrPeerRefused, err)
	}
	return PeerResult{Chains: chains}, nil
}
