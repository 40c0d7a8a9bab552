package broker

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	"moat/internal/config"
	"moat/internal/packet"
	"moat/internal/revocation"
)

// revocationFor builds the revocation check of a TLS listener with client
// certificates: CRL files, distribution-point CRLs and OCSP through
// package revocation, and the built-in CA's own revocation list for the
// certificates it issued.
func (s *Server) revocationFor(l *config.Listener) (func([]*x509.Certificate) error, *revocation.Checker, error) {
	t := l.TLS
	var chk *revocation.Checker
	if t.ClientAuth != "none" {
		var err error
		chk, err = revocation.New(revocation.Options{
			CRLFiles:      t.CRLFiles,
			FetchCDP:      t.FetchCRLDP,
			OCSP:          t.OCSP,
			OCSPResponder: t.OCSPResponder,
			Policy:        t.RevocationPolicy,
			Log:           s.log.With("listener", l.Name),
		})
		if err != nil {
			return nil, nil, err
		}
		chk.OnRevoked(s.recheckCertificates)
	}
	ca := s.ca
	if chk == nil && ca == nil {
		return nil, nil, nil
	}
	var check func([]*x509.Certificate) error
	if chk != nil {
		check = chk.Func()
	}
	return func(chain []*x509.Certificate) error {
		if ca != nil && len(chain) > 0 && issuedByCA(ca, chain[0]) {
			return caRevoked(ca, chain)
		}
		if check != nil {
			return check(chain)
		}
		return nil
	}, chk, nil
}

// recheckCertificates asks for the live connections' certificates to be
// checked again (new revocation data arrived). It never blocks.
func (s *Server) recheckCertificates() {
	select {
	case s.recheck <- struct{}{}:
	default:
	}
}

// certificateLoop closes connections whose client certificate expired or
// was revoked since they connected (MQTT 5 reason 0x98): expiry is checked
// every second, revocation whenever new revocation data arrives.
func (s *Server) certificateLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		var recheck bool
		select {
		case <-t.C:
		case <-s.recheck:
			recheck = true
		case <-s.done:
			return
		}
		now := time.Now()
		n := s.disconnectWhere(func(c *conn) bool {
			if c.leaf == nil {
				return false
			}
			if now.After(c.leaf.NotAfter) {
				return true
			}
			if !recheck || c.bl.revocation == nil || len(c.chain) == 0 {
				return false
			}
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			defer cancel()
			return errors.Is(c.bl.revocation.Check(ctx, c.chain), revocation.ErrRevoked)
		}, packet.AdministrativeAction)
		if n > 0 {
			s.log.Info("closed connections whose client certificate expired or was revoked", "count", n)
		}
	}
}
