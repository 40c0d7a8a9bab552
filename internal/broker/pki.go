package broker

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"moat/internal/config"
	"moat/internal/packet"
	"moat/internal/pki"
	"moat/internal/tlspolicy"
)

// openCA opens the built-in CA when the configuration uses it: [pki]
// enabled, or by default when data_dir/pki holds a CA.
func openCA(cfg *config.Config) (*pki.CA, error) {
	dir := filepath.Join(cfg.DataDir, "pki")
	enabled := cfg.PKI.Enabled
	if enabled != nil && !*enabled {
		return nil, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.json")); err != nil {
		if enabled != nil && *enabled {
			return nil, fmt.Errorf("broker: [pki] enabled but %s holds no CA (run `moat pki init`)", dir)
		}
		return nil, nil
	}
	mk, err := pki.LoadMasterKey(cfg.MasterKeyFile, "MOAT_MASTER_KEY")
	if err != nil {
		return nil, fmt.Errorf("broker: built-in CA: %w", err)
	}
	ca, err := pki.Open(dir, mk)
	if err != nil {
		return nil, fmt.Errorf("broker: built-in CA: %w", err)
	}
	return ca, nil
}

// issuedByCA reports whether cert was signed by the CA's issuing
// certificate.
func issuedByCA(ca *pki.CA, cert *x509.Certificate) bool {
	iss := ca.Issuer()
	if !bytes.Equal(cert.RawIssuer, iss.RawSubject) {
		return false
	}
	return len(cert.AuthorityKeyId) == 0 || len(iss.SubjectKeyId) == 0 || bytes.Equal(cert.AuthorityKeyId, iss.SubjectKeyId)
}

// caRevoked is the revocation check of the built-in CA: a chain
// containing a certificate the CA revoked is refused.
func caRevoked(ca *pki.CA, chain []*x509.Certificate) error {
	for _, c := range chain {
		if issuedByCA(ca, c) && ca.IsRevoked(c.SerialNumber) {
			return fmt.Errorf("serial %s revoked by the built-in CA: %w", pki.FormatSerial(c.SerialNumber), tlspolicy.ErrRevoked)
		}
	}
	return nil
}

// startPKI runs the built-in CA's services: the CRL over HTTP, live
// enforcement of revocations, and renewal of the server certificates it
// issued.
func (s *Server) startPKI() error {
	if s.ca == nil {
		return nil
	}
	if a := s.cfg.PKI.CRLAddress; a != "" {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("broker: pki crl_address: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/pki/crl", s.ca.CRLHandler())
		s.crlSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		s.crlAddr = ln.Addr()
		s.log.Info("serving the CRL", "url", "http://"+ln.Addr().String()+"/pki/crl", "distribution_point", s.ca.CRLURL())
		s.goFunc(func() { _ = s.crlSrv.Serve(ln) })
	}
	s.goFunc(s.revocationLoop)
	s.goFunc(s.renewLoop)
	return nil
}

// CRLAddr returns the address the CRL is served on, or nil.
func (s *Server) CRLAddr() net.Addr { return s.crlAddr }

// revocationLoop closes live connections whose client certificate the CA
// has revoked since they connected (MQTT 5 reason 0x98).
func (s *Server) revocationLoop() {
	t := time.NewTicker(s.cfg.PKI.RevocationCheck.Duration)
	defer t.Stop()
	seen := 0
	for {
		select {
		case <-t.C:
		case <-s.done:
			return
		}
		revoked := s.ca.Revoked()
		if len(revoked) == seen {
			continue
		}
		seen = len(revoked)
		set := make(map[string]bool, len(revoked))
		for _, r := range revoked {
			set[pki.FormatSerial(r.Serial)] = true
		}
		n := s.disconnectWhere(func(c *conn) bool {
			return c.leaf != nil && issuedByCA(s.ca, c.leaf) && set[pki.FormatSerial(c.leaf.SerialNumber)]
		}, packet.AdministrativeAction)
		if n > 0 {
			s.log.Info("closed connections of revoked certificates", "count", n)
		}
	}
}

// disconnectWhere kicks every connected client matching f.
func (s *Server) disconnectWhere(f func(*conn) bool, code packet.ReasonCode) int {
	s.mu.RLock()
	var victims []*conn
	for c := range s.conns {
		if c.connected.Load() && f(c) {
			victims = append(victims, c)
		}
	}
	s.mu.RUnlock()
	for _, c := range victims {
		s.log.Info("disconnecting client", "client", c.clientID, "reason", code.String())
		c.kick(code)
	}
	return len(victims)
}

// renewLoop renews the server certificates of TLS listeners that the CA
// issued before they expire, then reloads the listener.
func (s *Server) renewLoop() {
	s.renewServerCerts()
	t := time.NewTicker(s.cfg.PKI.RenewCheck.Duration)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.renewServerCerts()
		case <-s.done:
			return
		}
	}
}

func (s *Server) renewServerCerts() {
	for _, bl := range s.listeners {
		if bl.policy == nil || bl.cfg.TLS == nil {
			continue
		}
		t := bl.cfg.TLS
		if _, err := os.Stat(t.Cert); err != nil {
			continue // not there: nothing of ours to renew
		}
		// RenewServer reads the certificate once and leaves alone what
		// this CA did not issue (or cannot parse): those are not ours.
		renewed, err := s.ca.RenewServer(t.Cert, t.Key, pki.ServerRequest{}, s.cfg.PKI.RenewBefore.Duration)
		if errors.Is(err, pki.ErrForeignCert) || errors.Is(err, pki.ErrCorrupt) {
			continue
		}
		if err != nil {
			s.log.Error("server certificate renewal failed", "listener", bl.cfg.Name, "cert", t.Cert, "err", err)
			continue
		}
		if renewed {
			if err := bl.policy.Reload(); err != nil {
				s.log.Error("renewed server certificate did not load", "listener", bl.cfg.Name, "err", err)
				continue
			}
			s.log.Info("server certificate renewed", "listener", bl.cfg.Name, "cert", t.Cert)
		}
	}
}

// RevokedSerial reports whether the built-in CA revoked serial (for tests
// and the admin API).
func (s *Server) RevokedSerial(serial *big.Int) bool {
	return s.ca != nil && s.ca.IsRevoked(serial)
}
