package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"testing"
	"time"
)

// TestGenerate checks that the fixtures are what their names promise, so a
// TLS test that expects "expired" really gets an expired certificate.
func TestGenerate(t *testing.T) {
	s, err := Generate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	roots := Pool(s.Root)
	verify := func(f *Files, usage x509.ExtKeyUsage, at time.Time) error {
		inter := x509.NewCertPool()
		for _, c := range f.Chain {
			inter.AddCert(c)
		}
		_, err := f.Cert.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: at})
		return err
	}
	now := time.Now()
	if err := verify(s.Server, x509.ExtKeyUsageServerAuth, now); err != nil {
		t.Errorf("server: %v", err)
	}
	if err := s.Server.Cert.Cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("server: %v", err)
	}
	for _, f := range []*Files{s.Client, s.Client2} {
		if err := verify(f, x509.ExtKeyUsageClientAuth, now); err != nil {
			t.Errorf("%s: %v", f.Cert.Cert.Subject, err)
		}
	}
	var inv x509.CertificateInvalidError
	if err := verify(s.Expired, x509.ExtKeyUsageClientAuth, now); !errors.As(err, &inv) || inv.Reason != x509.Expired {
		t.Errorf("expired: %v", err)
	}
	var ua x509.UnknownAuthorityError
	if err := verify(s.Untrusted, x509.ExtKeyUsageClientAuth, now); !errors.As(err, &ua) {
		t.Errorf("untrusted: %v", err)
	}
	if len(s.NoEKU.Cert.Cert.ExtKeyUsage) != 0 || len(s.NoEKU.Cert.Cert.UnknownExtKeyUsage) != 0 {
		t.Errorf("noeku has EKUs %v", s.NoEKU.Cert.Cert.ExtKeyUsage)
	}
	if err := verify(s.ServerAuthOnly, x509.ExtKeyUsageClientAuth, now); !errors.As(err, &inv) || inv.Reason != x509.IncompatibleUsage {
		t.Errorf("serverauth: %v", err)
	}
	c := s.Client.Cert.Cert
	if c.Subject.CommonName != "device-1" || c.Subject.OrganizationalUnit[0] != "fleet-a" ||
		c.EmailAddresses[0] != "device-1@moat.test" || c.URIs[0].String() != "spiffe://moat.test/device/device-1" {
		t.Errorf("client subject/SANs: %v %v %v", c.Subject, c.EmailAddresses, c.URIs)
	}
	// The files load as a tls.Certificate (chain and key match).
	if _, err := tls.LoadX509KeyPair(s.Client.CertFile, s.Client.KeyFile); err != nil {
		t.Errorf("client files: %v", err)
	}
	if fi, err := os.Stat(s.Client.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v", fi.Mode(), err)
	}
}
