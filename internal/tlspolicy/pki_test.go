package tlspolicy

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Test PKI, generated in-test with crypto/x509.

type testKeyType int

const (
	keyECDSA testKeyType = iota
	keyRSA
	keyEd25519
)

type certSpec struct {
	subject   pkix.Name
	dns       []string
	emails    []string
	uris      []string
	ips       []net.IP
	eku       []x509.ExtKeyUsage // nil: no EKU extension at all
	notBefore time.Time
	notAfter  time.Time
	isCA      bool
	keyType   testKeyType
	rsaBits   int
}

// issued is a certificate with its key and the chain of CAs above it (not
// including the root).
type issued struct {
	cert  *x509.Certificate
	key   crypto.Signer
	above []*x509.Certificate // intermediates, nearest first
	root  *issued             // nil for a root
}

var serial = big.NewInt(1000)
var serialMu sync.Mutex

func nextSerial() *big.Int {
	serialMu.Lock()
	defer serialMu.Unlock()
	serial = new(big.Int).Add(serial, big.NewInt(1))
	return new(big.Int).Set(serial)
}

func newKey(t testing.TB, kt testKeyType, bits int) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch kt {
	case keyRSA:
		if bits == 0 {
			bits = 2048
		}
		k, err = rsa.GenerateKey(rand.Reader, bits)
	case keyEd25519:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newRoot makes a self-signed root CA.
func newRoot(t testing.TB, cn string) *issued {
	t.Helper()
	return issue(t, nil, certSpec{subject: pkix.Name{CommonName: cn, Organization: []string{"moat test"}}, isCA: true})
}

// issue signs spec with parent (nil: self-signed).
func issue(t testing.TB, parent *issued, spec certSpec) *issued {
	t.Helper()
	key := newKey(t, spec.keyType, spec.rsaBits)
	nb, na := spec.notBefore, spec.notAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Hour)
	}
	if na.IsZero() {
		na = time.Now().Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               spec.subject,
		NotBefore:             nb,
		NotAfter:              na,
		DNSNames:              spec.dns,
		EmailAddresses:        spec.emails,
		IPAddresses:           spec.ips,
		ExtKeyUsage:           spec.eku,
		BasicConstraintsValid: true,
		IsCA:                  spec.isCA,
	}
	for _, u := range spec.uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	if spec.isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		if spec.keyType == keyRSA {
			tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
		}
	}
	signer, parentCert := key, tmpl
	if parent != nil {
		signer, parentCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	out := &issued{cert: c, key: key}
	if parent != nil {
		if parent.root == nil {
			out.root = parent
		} else {
			out.root = parent.root
			out.above = append([]*x509.Certificate{parent.cert}, parent.above...)
		}
	}
	return out
}

// tlsCert is the leaf with its intermediates, for a tls.Config.
func (i *issued) tlsCert() tls.Certificate {
	c := tls.Certificate{Certificate: [][]byte{i.cert.Raw}, PrivateKey: i.key, Leaf: i.cert}
	for _, a := range i.above {
		c.Certificate = append(c.Certificate, a.Raw)
	}
	return c
}

func (i *issued) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(i.cert)
	return p
}

func certPEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func pkcs8PEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// replaceFile writes atomically (temp file + rename), as deploy tools do.
func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// writeChain writes leaf+intermediates and a PKCS#8 key; returns the paths.
func writeChain(t testing.TB, dir, name string, i *issued) (certFile, keyFile string) {
	t.Helper()
	certFile = writeFile(t, dir, name+".crt", certPEM(append([]*x509.Certificate{i.cert}, i.above...)...))
	keyFile = writeFile(t, dir, name+".key", pkcs8PEM(t, i.key))
	return
}

// testPKI is the standard set of certificates used across tests.
type testPKI struct {
	dir        string
	root       *issued
	inter      *issued
	server     *issued // localhost, 127.0.0.1; issued by inter
	caFile     string  // root only
	serverCert string
	serverKey  string

	clientGood       *issued
	clientExpired    *issued
	clientUntrusted  *issued
	clientNoEKU      *issued
	clientServerOnly *issued
	clientDeep       *issued // root -> inter -> inter2 -> inter3 -> leaf
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	p := &testPKI{dir: dir}
	p.root = newRoot(t, "moat test root")
	p.inter = issue(t, p.root, certSpec{subject: pkix.Name{CommonName: "moat test intermediate"}, isCA: true})
	p.server = issue(t, p.inter, certSpec{
		subject: pkix.Name{CommonName: "localhost"},
		dns:     []string{"localhost", "mqtt.example.test"},
		ips:     []net.IP{net.IPv4(127, 0, 0, 1)},
		eku:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	p.caFile = writeFile(t, dir, "ca.pem", certPEM(p.root.cert))
	p.serverCert, p.serverKey = writeChain(t, dir, "server", p.server)

	clientEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	p.clientGood = issue(t, p.inter, certSpec{subject: pkix.Name{CommonName: "sensor-17", OrganizationalUnit: []string{"plant-a"}}, eku: clientEKU})
	p.clientExpired = issue(t, p.inter, certSpec{subject: pkix.Name{CommonName: "old"}, eku: clientEKU,
		notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-24 * time.Hour)})
	other := newRoot(t, "someone else's root")
	p.clientUntrusted = issue(t, other, certSpec{subject: pkix.Name{CommonName: "stranger"}, eku: clientEKU})
	p.clientNoEKU = issue(t, p.inter, certSpec{subject: pkix.Name{CommonName: "no-eku"}})
	p.clientServerOnly = issue(t, p.inter, certSpec{subject: pkix.Name{CommonName: "server-only"}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	i2 := issue(t, p.inter, certSpec{subject: pkix.Name{CommonName: "intermediate 2"}, isCA: true})
	i3 := issue(t, i2, certSpec{subject: pkix.Name{CommonName: "intermediate 3"}, isCA: true})
	p.clientDeep = issue(t, i3, certSpec{subject: pkix.Name{CommonName: "deep"}, eku: clientEKU})
	return p
}

func (p *testPKI) serverSource() CertSource {
	return CertSource{CertFile: p.serverCert, KeyFile: p.serverKey}
}

// testLogger returns a logger writing to the test log, and a buffer with
// everything logged (to check that secrets are never logged).
func testLogger(t testing.TB) (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(io.MultiWriter(buf, tWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func mustNew(t testing.TB, opts Options) *Policy {
	t.Helper()
	log, _ := testLogger(t)
	p, err := New(opts, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// echoServer is a TLS echo server on 127.0.0.1 built from a Policy. The
// listening socket exists when startEcho returns, so clients can connect at
// once (no readiness wait needed).
type echoServer struct {
	addr string
	errs chan error // server-side handshake errors
	ok   chan tls.ConnectionState
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]bool
}

func startEcho(t testing.TB, cfg *tls.Config) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{addr: ln.Addr().String(), errs: make(chan error, 256), ok: make(chan tls.ConnectionState, 256), ln: ln, open: map[net.Conn]bool{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.open[c] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					s.mu.Lock()
					delete(s.open, c)
					s.mu.Unlock()
					c.Close()
				}()
				tc := tls.Server(c, cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := tc.HandshakeContext(ctx)
				cancel()
				if err != nil {
					select {
					case s.errs <- err:
					default:
					}
					return
				}
				select {
				case s.ok <- tc.ConnectionState():
				default:
				}
				_, _ = io.Copy(tc, tc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// nextErr waits for the next server-side handshake error.
func (s *echoServer) nextErr(t testing.TB) error {
	t.Helper()
	select {
	case err := <-s.errs:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no server-side handshake error")
		return nil
	}
}

// roundTrip writes and reads back a line through a client conn.
func roundTrip(c *tls.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echo mismatch")
	}
	return nil
}

// dialClient connects with the given client config (ServerName defaults to
// localhost) and checks an echo round trip.
func dialClient(addr string, cfg *tls.Config) (*tls.Conn, error) {
	if cfg.ServerName == "" {
		cfg.ServerName = "localhost"
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	if err := roundTrip(c, "ping\n"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
