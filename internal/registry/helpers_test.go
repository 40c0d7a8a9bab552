package registry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestMain makes password hashing cheap (bcrypt cost 4); the production
// argon2id path is exercised once explicitly (TestPasswordArgon2id).
func TestMain(m *testing.M) {
	hashPassword = func(pw []byte) (string, error) {
		h, err := bcrypt.GenerateFromPassword(pw, bcrypt.MinCost)
		return string(h), err
	}
	os.Exit(m.Run())
}

type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func (c testCert) tls() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.cert.Raw}, PrivateKey: c.key, Leaf: c.cert}
}

var serial int64 = 1000

// makeCert issues a certificate: self-signed when parent is nil.
func makeCert(t testing.TB, parent *testCert, subject pkix.Name, isCA bool, eku []x509.ExtKeyUsage, dns ...string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               subject,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		DNSNames:              dns,
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	signer, signerCert := key, tmpl
	if parent != nil {
		signer, signerCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{cert: c, key: key}
}

func newCA(t testing.TB, cn string) testCert {
	return makeCert(t, nil, pkix.Name{CommonName: cn, Organization: []string{"moat test"}}, true, nil)
}

func clientCert(t testing.TB, ca testCert, cn string) testCert {
	return makeCert(t, &ca, pkix.Name{CommonName: cn, OrganizationalUnit: []string{"plant-a"}}, false, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
}

func selfSigned(t testing.TB, cn string) testCert {
	return makeCert(t, nil, pkix.Name{CommonName: cn}, false, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
}

// openTest opens a registry in a temporary directory.
func openTest(t testing.TB) (*Registry, *MasterKey, string) {
	t.Helper()
	mk, err := NewMasterKey(GenerateMasterKey())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "registry.db")
	r, err := Open(path, mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.db.NoSync = true // tests do not need durability; fsync is slow on CI disks
	t.Cleanup(func() { r.Close() })
	return r, mk, path
}

func mustAdd(t testing.TB, r *Registry, nd NewDevice) (*Device, []Issued) {
	t.Helper()
	d, is, err := r.Add(nd)
	if err != nil {
		t.Fatalf("Add(%s): %v", nd.ID, err)
	}
	return d, is
}
