package admin

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/registry"
)

type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func (c testCert) tls() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.cert.Raw}, PrivateKey: c.key, Leaf: c.cert}
}

var (
	serialMu sync.Mutex
	serial   int64 = 1
)

func makeCert(t testing.TB, parent *testCert, cn string, isCA bool, eku []x509.ExtKeyUsage, ips ...net.IP) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serialMu.Lock()
	serial++
	sn := serial
	serialMu.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(sn),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		IPAddresses:           ips,
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
	c, _ := x509.ParseCertificate(der)
	return testCert{cert: c, key: key}
}

// syncBuffer is an io.Writer safe for the server's goroutines.
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

// records parses the audit log.
func (s *syncBuffer) records(t *testing.T) []AuditRecord {
	t.Helper()
	var out []AuditRecord
	for _, line := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}
		var r AuditRecord
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// fakeClients is a ClientManager.
type fakeClients struct {
	mu      sync.Mutex
	clients []ClientInfo
	kicked  []string
}

func (f *fakeClients) Clients() []ClientInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ClientInfo(nil), f.clients...)
}

func (f *fakeClients) Disconnect(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range f.clients {
		if c.ClientID == id {
			f.clients = append(f.clients[:i], f.clients[i+1:]...)
			f.kicked = append(f.kicked, id)
			return true
		}
	}
	return false
}

// env is a running admin server with its PKI.
type env struct {
	t         *testing.T
	url       string
	addr      string
	reg       *registry.Registry
	srv       *Server
	audit     *syncBuffer
	clients   *fakeClients
	token     string
	serverCA  *x509.CertPool
	adminCert testCert // CN "admin": allowed by name
	fpCert    testCert // CN "robot": allowed by fingerprint
	userCert  testCert // CN "intruder": verified but not allowed
	foreign   testCert // from an unknown CA
}

func newEnv(t *testing.T) *env {
	t.Helper()
	mk, err := registry.NewMasterKey(registry.GenerateMasterKey())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(filepath.Join(t.TempDir(), "registry.db"), mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })

	ca := makeCert(t, nil, "admin CA", true, nil)
	otherCA := makeCert(t, nil, "other CA", true, nil)
	serverCert := makeCert(t, &ca, "127.0.0.1", false, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, net.ParseIP("127.0.0.1"))
	clientEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	e := &env{
		t:         t,
		reg:       reg,
		audit:     &syncBuffer{},
		clients:   &fakeClients{},
		adminCert: makeCert(t, &ca, "admin", false, clientEKU),
		fpCert:    makeCert(t, &ca, "robot", false, clientEKU),
		userCert:  makeCert(t, &ca, "intruder", false, clientEKU),
		foreign:   makeCert(t, &otherCA, "admin", false, clientEKU),
	}
	e.serverCA = x509.NewCertPool()
	e.serverCA.AddCert(ca.cert)
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca.cert)
	tok, rec := GenerateToken("ops")
	e.token = tok
	fp := registryFingerprint(e.fpCert.cert)
	e.srv, err = New(Options{
		Registry: reg,
		Clients:  e.clients,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{serverCert.tls()},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    clientCAs,
		},
		Tokens:                []Token{rec},
		AdminCertNames:        []string{"admin"},
		AdminCertFingerprints: []string{fp},
		Audit:                 e.audit,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.url = "https://" + e.addr
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		e.srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

func registryFingerprint(c *x509.Certificate) string {
	fp := registry.CertFingerprint(c)
	var b strings.Builder
	for i, x := range fp {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(strings.ToUpper(string("0123456789abcdef"[x>>4]) + string("0123456789abcdef"[x&15])))
	}
	return b.String()
}

// client returns an HTTPS client, presenting cert when not nil.
func (e *env) client(cert *testCert) *http.Client {
	cfg := &tls.Config{RootCAs: e.serverCA}
	if cert != nil {
		// Always present the certificate (Certificates would be skipped
		// when its issuer is not among the server's acceptable CAs).
		c := cert.tls()
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	// Generous: password credentials cost an argon2id hash at production
	// parameters, slow under -race on a busy machine.
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 2 * time.Minute}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a generic value.
func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

// do sends a request with the token (if not empty) and returns the
// response; a transport error fails the test.
func (e *env) do(c *http.Client, method, path, token, body string) response {
	e.t.Helper()
	r, err := e.try(c, method, path, token, body, nil)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (e *env) try(c *http.Client, method, path, token, body string, hdr map[string]string) (response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		return response{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// api sends an authenticated request (token) and checks the status.
func (e *env) api(method, path, body string, want int) response {
	e.t.Helper()
	r := e.do(e.client(nil), method, path, e.token, body)
	if r.status != want {
		e.t.Fatalf("%s %s: status %d (%s), want %d", method, path, r.status, r.body, want)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		e.t.Fatalf("%s %s: content type %q", method, path, ct)
	}
	if r.status >= 400 {
		var eb errorBody
		if err := json.Unmarshal(r.body, &eb); err != nil || eb.Error == "" {
			e.t.Fatalf("%s %s: error body %q is not {\"error\": ...}", method, path, r.body)
		}
	}
	return r
}
