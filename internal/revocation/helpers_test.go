package revocation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testCA is a CA made in Go for the tests.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

var serialCounter atomic.Int64

func nextSerial() *big.Int { return big.NewInt(1000 + serialCounter.Add(1)) }

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// certOpts are the optional parts of a test certificate.
type certOpts struct {
	cdp  []string
	ocsp []string
	eku  []x509.ExtKeyUsage
}

func issue(t testing.TB, parent *testCA, cn string, isCA bool, o certOpts) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		CRLDistributionPoints: o.cdp,
		OCSPServer:            o.ocsp,
		ExtKeyUsage:           o.eku,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		if tmpl.ExtKeyUsage == nil {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
	}
	signerCert, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func newRoot(t testing.TB, cn string) *testCA { return issue(t, nil, cn, true, certOpts{}) }

// crl makes a CRL of ca revoking serials, valid from thisUpdate for validity.
func (ca *testCA) crl(t testing.TB, thisUpdate time.Time, validity time.Duration, serials ...*big.Int) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: thisUpdate.Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    nextSerial(),
		ThisUpdate:                thisUpdate,
		NextUpdate:                thisUpdate.Add(validity),
		RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func pemKey(t testing.TB, k crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// crlServer serves CRLs by path and counts requests.
type crlServer struct {
	*httptest.Server
	mu   sync.Mutex
	crls map[string][]byte
	hits map[string]int
}

func newCRLServer(t testing.TB) *crlServer {
	s := &crlServer{crls: map[string][]byte{}, hits: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		body, ok := s.crls[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *crlServer) set(path string, der []byte) {
	s.mu.Lock()
	s.crls[path] = der
	s.mu.Unlock()
}

func (s *crlServer) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// deadURL is the address of a server that has gone away.
func deadURL(t testing.TB) string {
	s := httptest.NewServer(http.NotFoundHandler())
	u := s.URL
	s.Close()
	return u
}

// opensslCA is an `openssl ca` directory for a CA made in Go.
type opensslCA struct {
	t   testing.TB
	dir string
}

func newOpenSSLCA(t testing.TB, ca *testCA) *opensslCA {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ca.pem"), pemCert(ca.cert))
	writeFile(t, filepath.Join(dir, "ca.key"), pemKey(t, ca.key))
	writeFile(t, filepath.Join(dir, "index.txt"), nil)
	writeFile(t, filepath.Join(dir, "serial"), []byte("1000\n"))
	writeFile(t, filepath.Join(dir, "crlnumber"), []byte("01\n"))
	cnf := `[ ca ]
default_ca = CA_default
[ CA_default ]
dir              = ` + dir + `
database         = $dir/index.txt
serial           = $dir/serial
crlnumber        = $dir/crlnumber
certificate      = $dir/ca.pem
private_key      = $dir/ca.key
new_certs_dir    = $dir
default_md       = sha256
default_crl_days = 7
policy           = policy_any
[ policy_any ]
commonName = supplied
`
	writeFile(t, filepath.Join(dir, "ca.cnf"), []byte(cnf))
	return &opensslCA{t: t, dir: dir}
}

func (o *opensslCA) run(args ...string) {
	o.t.Helper()
	args = append(args, "-config", filepath.Join(o.dir, "ca.cnf"), "-batch")
	out, err := exec.Command("openssl", append([]string{"ca"}, args...)...).CombinedOutput()
	if err != nil {
		o.t.Fatalf("openssl ca %v: %v\n%s", args, err, out)
	}
}

// revoke records cert as revoked in index.txt.
func (o *opensslCA) revoke(cert *x509.Certificate) {
	o.t.Helper()
	f := filepath.Join(o.dir, cert.SerialNumber.String()+".pem")
	writeFile(o.t, f, pemCert(cert))
	o.run("-revoke", f, "-crl_reason", "keyCompromise")
}

// gencrl writes a PEM CRL to path.
func (o *opensslCA) gencrl(path string) {
	o.t.Helper()
	o.run("-gencrl", "-out", path)
}
