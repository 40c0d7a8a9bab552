package tlspsk

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"moat/internal/testpki"
)

// testPKI is a CA and a server certificate for broker.test and 127.0.0.1,
// both ECDSA P-256.
type testPKI struct {
	roots *x509.CertPool
	cert  tls.Certificate
	key   *ecdsa.PrivateKey
}

var (
	pkiOnce   sync.Once
	sharedPKI *testPKI
)

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := testpki.NewRoot("tlspsk test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(testpki.Spec{
		Subject: pkix.Name{CommonName: "broker.test"},
		DNS:     []string{"broker.test"},
		IPs:     []net.IP{net.IPv4(127, 0, 0, 1)},
		EKU:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{
		roots: testpki.Pool(ca),
		key:   leaf.Key.(*ecdsa.PrivateKey),
		cert:  tls.Certificate{Certificate: [][]byte{leaf.Cert.Raw, ca.Cert.Cert.Raw}, PrivateKey: leaf.Key},
	}
}

func pki(t testing.TB) *testPKI {
	pkiOnce.Do(func() { sharedPKI = newPKI(t) })
	return sharedPKI
}

// tlsServerResult is what a crypto/tls server saw of one connection.
type tlsServerResult struct {
	state      tls.ConnectionState
	serverName string
	err        error
}

// startTLSServer runs a crypto/tls TLS 1.3 server that echoes every
// connection; each connection's state goes to the returned channel.
func startTLSServer(t testing.TB, mod func(*tls.Config)) (addr string, results <-chan tlsServerResult) {
	t.Helper()
	res := make(chan tlsServerResult, 1024)
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pki(t).cert},
	}
	var mu sync.Mutex
	var sni string
	cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		sni = h.ServerName
		mu.Unlock()
		return nil, nil
	}
	if mod != nil {
		mod(cfg)
	}
	addr = serveTCP(t, func(nc net.Conn) {
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		c := tls.Server(nc, cfg)
		err := c.Handshake()
		mu.Lock()
		r := tlsServerResult{state: c.ConnectionState(), serverName: sni, err: err}
		mu.Unlock()
		if err == nil {
			io.Copy(c, c)
		}
		select {
		case res <- r:
		default:
		}
	})
	return addr, res
}

// serveTCP listens on loopback and runs handle on each connection (then
// closes it) until the test ends.
func serveTCP(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				handle(nc)
			}()
		}
	}()
	return ln.Addr().String()
}

func noVerify(*ServerCertificate) error { return nil }

// certClient returns a certificate-mode config that verifies the test PKI
// for broker.test.
func certClient(t testing.TB) *Config {
	return &Config{CertificateMode: true, ServerName: "broker.test", VerifyServer: VerifyServerX509(pki(t).roots, "broker.test")}
}

// dialCert runs a certificate-mode handshake with addr.
func dialCert(t testing.TB, addr string, cfg *Config) (*Conn, error) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := Client(nc, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Handshake(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// echo writes n bytes through an echo server and reads them back.
func echo(t testing.TB, c *Conn, n int) {
	t.Helper()
	out := make([]byte, n)
	rand.Read(out)
	errc := make(chan error, 1)
	go func() { _, err := c.Write(out); errc <- err }()
	in := make([]byte, n)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, in); err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(in, out) {
		t.Fatal("echo differs")
	}
}

func TestCertModeAgainstCryptoTLS(t *testing.T) {
	for _, tc := range []struct {
		name       string
		serverALPN []string
		clientALPN []string
		wantALPN   string
		curves     []CurveID
		suites     []uint16
		serverName string
		wantSNI    string
		clientAuth tls.ClientAuthType
	}{
		{name: "alpn mqtt", serverALPN: []string{"mqtt"}, clientALPN: []string{"mqtt"}, wantALPN: "mqtt", serverName: "broker.test", wantSNI: "broker.test"},
		{name: "server without alpn", clientALPN: []string{"mqtt"}, serverName: "broker.test", wantSNI: "broker.test"},
		{name: "client without alpn", serverALPN: []string{"mqtt"}, serverName: "broker.test", wantSNI: "broker.test"},
		{name: "p256 chacha", curves: []CurveID{P256}, suites: []uint16{TLS_CHACHA20_POLY1305_SHA256}, serverName: "broker.test", wantSNI: "broker.test"},
		{name: "aes256 sha384", suites: []uint16{TLS_AES_256_GCM_SHA384}, serverName: "broker.test", wantSNI: "broker.test"},
		{name: "ip address, no sni", serverName: "127.0.0.1"},
		{name: "client certificate requested", serverName: "broker.test", wantSNI: "broker.test", clientAuth: tls.RequestClientCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, results := startTLSServer(t, func(c *tls.Config) { c.NextProtos, c.ClientAuth = tc.serverALPN, tc.clientAuth })
			cfg := &Config{
				CertificateMode: true, ServerName: tc.serverName, NextProtos: tc.clientALPN,
				CurvePreferences: tc.curves, CipherSuites: tc.suites,
				VerifyServer: VerifyServerX509(pki(t).roots, tc.serverName),
			}
			c, err := dialCert(t, addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			echo(t, c, 100)
			echo(t, c, 70000) // several records each way
			st := c.ConnectionState()
			c.Close()
			r := <-results
			if r.err != nil {
				t.Fatal(r.err)
			}
			if st.Version != VersionTLS13 || !st.HandshakeComplete || st.DidResume || st.CipherSuite != r.state.CipherSuite {
				t.Errorf("client state %+v, server suite 0x%04x", st, r.state.CipherSuite)
			}
			if len(tc.suites) > 0 && st.CipherSuite != tc.suites[0] {
				t.Errorf("suite 0x%04x", st.CipherSuite)
			}
			if st.NegotiatedProtocol != tc.wantALPN || r.state.NegotiatedProtocol != tc.wantALPN {
				t.Errorf("ALPN client %q server %q, want %q", st.NegotiatedProtocol, r.state.NegotiatedProtocol, tc.wantALPN)
			}
			if r.serverName != tc.wantSNI || r.state.ServerName != tc.wantSNI {
				t.Errorf("server saw SNI %q / %q, want %q", r.serverName, r.state.ServerName, tc.wantSNI)
			}
		})
	}
}

// A server that requires a client certificate refuses the empty one.
func TestCertModeClientCertificateRequired(t *testing.T) {
	addr, results := startTLSServer(t, func(c *tls.Config) { c.ClientAuth = tls.RequireAnyClientCert })
	c, err := dialCert(t, addr, certClient(t))
	if err == nil { // the client is done before the server reads its empty Certificate
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if !errors.Is(err, ErrAlert) {
		t.Errorf("client: %v, want the server's alert", err)
	}
	if r := <-results; r.err == nil {
		t.Error("server accepted a client without a certificate")
	}
}

// TestCertModeHelloRetryRequest: the client's first share is X25519, the
// server only takes P-256.
func TestCertModeHelloRetryRequest(t *testing.T) {
	addr, results := startTLSServer(t, func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.CurveP256} })
	cfg := certClient(t)
	cfg.CurvePreferences = []CurveID{X25519, P256}
	c, err := dialCert(t, addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, c, 1000)
	if !c.didHRR {
		t.Error("no HelloRetryRequest")
	}
	c.Close()
	if r := <-results; r.err != nil || r.state.CurveID != tls.CurveP256 {
		t.Fatalf("server: %v, curve %v", r.err, r.state.CurveID)
	}
}

func TestCertModeResumption(t *testing.T) {
	for _, tc := range []struct {
		name   string
		curves []tls.CurveID // server's
		cache  bool
	}{
		{"resumed", nil, true},
		{"resumed after HelloRetryRequest", []tls.CurveID{tls.CurveP256}, true},
		{"no cache, no resumption", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, results := startTLSServer(t, func(c *tls.Config) { c.CurvePreferences = tc.curves })
			cfg := certClient(t)
			calls := 0
			verify := cfg.VerifyServer
			cfg.VerifyServer = func(sc *ServerCertificate) error { calls++; return verify(sc) }
			if tc.cache {
				cfg.SessionCache = NewSessionCache(4)
			}
			for i := range 3 {
				c, err := dialCert(t, addr, cfg)
				if err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
				echo(t, c, 10) // reads the ticket too
				st := c.ConnectionState()
				c.Close()
				r := <-results
				if r.err != nil {
					t.Fatal(r.err)
				}
				want := tc.cache && i > 0
				if st.DidResume != want || r.state.DidResume != want {
					t.Errorf("connection %d: client resumed %v, server %v, want %v", i, st.DidResume, r.state.DidResume, want)
				}
			}
			if want := map[bool]int{true: 1, false: 3}[tc.cache]; calls != want {
				t.Errorf("VerifyServer called %d times, want %d", calls, want)
			}
		})
	}
}

func TestCertModeConfigErrors(t *testing.T) {
	verify := VerifyServerX509(nil, "x")
	for name, cfg := range map[string]*Config{
		"no VerifyServer":            {CertificateMode: true, ServerName: "broker.test"},
		"with a PSK":                 {CertificateMode: true, VerifyServer: verify, Identity: "a", Key: []byte("k")},
		"TLS 1.2 only":               {CertificateMode: true, VerifyServer: verify, MaxVersion: VersionTLS12},
		"no TLS 1.3 suite":           {CertificateMode: true, VerifyServer: verify, CipherSuites: []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256}},
		"empty ALPN":                 {CertificateMode: true, VerifyServer: verify, NextProtos: []string{""}},
		"VerifyServer in PSK mode":   {Identity: testIdentity, Key: testKey, VerifyServer: verify},
		"SessionCache in PSK mode":   {Identity: testIdentity, Key: testKey, SessionCache: NewSessionCache(1)},
		"P-384 static key":           {Identity: testIdentity, Key: testKey, StaticKeyShares: []*ecdh.PrivateKey{mustKey(t, ecdh.P384())}},
		"certificate mode on server": {Keys: testStore(), CertificateMode: true},
	} {
		c1, c2 := net.Pipe()
		var err error
		if cfg.Keys != nil {
			err = Server(c1, cfg).Handshake(context.Background())
		} else {
			err = Client(c1, cfg).Handshake(context.Background())
		}
		c1.Close()
		c2.Close()
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

func mustKey(t testing.TB, c ecdh.Curve) *ecdh.PrivateKey {
	k, err := c.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signCV signs a TLS 1.3 server CertificateVerify content with ECDSA P-256.
func signCV(t testing.TB, key *ecdsa.PrivateKey, signed []byte) []byte {
	d := sha256.Sum256(signed)
	sig, err := ecdsa.SignASN1(rand.Reader, key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func TestVerifyServerX509(t *testing.T) {
	p := pki(t)
	other := newPKI(t)
	signed := signedContent(serverSignatureContext, bytes.Repeat([]byte{7}, 32))
	good := &ServerCertificate{Chain: p.cert.Certificate, SignatureScheme: SignatureECDSAP256SHA256, Signed: signed, Signature: signCV(t, p.key, signed)}
	badSig := *good
	badSig.Signature = signCV(t, other.key, signed)
	wrongScheme := *good
	wrongScheme.SignatureScheme = SignatureECDSAP384SHA384
	for _, tc := range []struct {
		name    string
		roots   *x509.CertPool
		host    string
		sc      *ServerCertificate
		wantErr bool
		sigErr  bool
	}{
		{"trusted", p.roots, "broker.test", good, false, false},
		{"trusted by IP", p.roots, "127.0.0.1", good, false, false},
		{"untrusted chain", other.roots, "broker.test", good, true, false},
		{"wrong name", p.roots, "other.test", good, true, false},
		{"wrong IP", p.roots, "127.0.0.2", good, true, false},
		{"no name", p.roots, "", good, true, false},
		{"signature by another key", p.roots, "broker.test", &badSig, true, true},
		{"scheme does not match the key", p.roots, "broker.test", &wrongScheme, true, true},
		{"empty chain", p.roots, "broker.test", &ServerCertificate{SignatureScheme: SignatureECDSAP256SHA256}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			verify := VerifyServerX509(tc.roots, tc.host)
			for i := range 2 { // the second time from the verified-chain cache
				err := verify(tc.sc)
				if (err != nil) != tc.wantErr || errors.Is(err, ErrBadSignature) != tc.sigErr {
					t.Fatalf("call %d: %v", i, err)
				}
			}
		})
	}
	// A cached chain still has its signature checked.
	verify := VerifyServerX509(p.roots, "broker.test")
	if err := verify(good); err != nil {
		t.Fatal(err)
	}
	if err := verify(&badSig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("bad signature after a cached chain: %v", err)
	}
}

// fakeCertServer plays a TLS 1.3 certificate server on nc with this
// package's record layer, so that a test can corrupt what a real server
// never would: the CertificateVerify signature or the Finished.
func fakeCertServer(t testing.TB, nc net.Conn, signer *ecdsa.PrivateKey, chain [][]byte, corrupt string) {
	s := Server(nc, &Config{Keys: testStore()})
	s.in.Lock()
	defer s.in.Unlock()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	msg, err := s.readHandshake()
	if err != nil {
		return
	}
	var ch clientHelloMsg
	if err := ch.unmarshal(msg); err != nil || len(ch.keyShares) == 0 || ch.keyShares[0].group != X25519 {
		t.Errorf("fake server: ClientHello %v", err)
		return
	}
	suite := suiteByID(TLS_AES_128_GCM_SHA256)
	h := suite.hash
	var ts transcript
	ts.setHash(h)
	ts.Write(msg)
	priv := mustKey(t, ecdh.X25519())
	shared, err := sharedSecret(priv, ch.keyShares[0].data)
	if err != nil {
		t.Error(err)
		return
	}
	sh := &serverHelloMsg{vers: VersionTLS12, random: make([]byte, 32), sessionID: ch.sessionID, cipherSuite: suite.id,
		hasExtensions: true, supportedVersion: VersionTLS13, serverShare: keyShare{X25519, priv.PublicKey().Bytes()}}
	rand.Read(sh.random)
	ts.Write(sh.marshal())
	hsSecret := handshakeSecret(h, earlySecret(h, nil), shared)
	sHS := deriveSecret(h, hsSecret, "s hs traffic", ts.Sum())
	s.writeHandshake(sh.raw)
	s.out.Lock()
	s.out.setTrafficSecret13(suite, sHS)
	s.out.Unlock()
	ee := (&encryptedExtensionsMsg{}).marshal()
	ts.Write(ee)
	cm := (&certificateMsg{chain: chain}).marshal()
	ts.Write(cm)
	cv := &certificateVerifyMsg{scheme: SignatureECDSAP256SHA256, signature: signCV(t, signer, signedContent(serverSignatureContext, ts.Sum()))}
	if corrupt == "signature" {
		cv.signature = signCV(t, signer, signedContent(serverSignatureContext, make([]byte, 32)))
	}
	ts.Write(cv.marshal())
	fin := &finishedMsg{verifyData: finishedMAC(h, sHS, ts.Sum())}
	if corrupt == "finished" {
		fin.verifyData[0] ^= 1
	}
	s.writeHandshake(ee, cm, cv.raw, fin.marshal())
	s.flush()
	io.Copy(io.Discard, nc) // until the client's alert and close
}

func TestCertModeRefusesForgedServer(t *testing.T) {
	p := pki(t)
	for _, tc := range []struct {
		corrupt   string
		noVerify  bool
		wantErr   error
		wantAlert uint8
	}{
		{"", false, nil, 0}, // the fake server itself is sound
		{"signature", false, ErrBadSignature, alertDecryptError},
		{"finished", false, ErrServerAuth, alertDecryptError},
		{"finished", true, ErrServerAuth, alertDecryptError}, // Finished is checked even without verification
	} {
		cc, sc := tcpPair(t)
		done := make(chan struct{})
		go func() { defer close(done); fakeCertServer(t, sc, p.key, p.cert.Certificate, tc.corrupt) }()
		cfg := certClient(t)
		if tc.noVerify {
			cfg.VerifyServer = noVerify
		}
		c := Client(cc, cfg)
		err := c.Handshake(context.Background())
		var he *handshakeError
		switch {
		case tc.wantErr == nil && err != nil:
			t.Errorf("%q: %v", tc.corrupt, err)
		case tc.wantErr != nil && (!errors.Is(err, tc.wantErr) || !errors.As(err, &he) || he.alert != tc.wantAlert):
			t.Errorf("%q (no verify %v): %v, want %v with alert %d", tc.corrupt, tc.noVerify, err, tc.wantErr, tc.wantAlert)
		}
		if tc.corrupt == "signature" && !errors.Is(err, ErrServerAuth) {
			t.Errorf("bad signature: %v does not wrap ErrServerAuth", err)
		}
		cc.Close()
		<-done
	}
}

// TestCertModeStaticKeyShare: with StaticKeyShares every ClientHello
// carries the same key share, and handshakes still work.
func TestCertModeStaticKeyShare(t *testing.T) {
	addr, results := startTLSServer(t, nil)
	key := mustKey(t, ecdh.X25519())
	cfg := certClient(t)
	cfg.StaticKeyShares = []*ecdh.PrivateKey{key}
	for range 2 {
		c, err := dialCert(t, addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		echo(t, c, 10)
		c.Close()
		if r := <-results; r.err != nil {
			t.Fatal(r.err)
		}
	}
	a, b := clientFlight(t, cfg), clientFlight(t, cfg)
	pub := key.PublicKey().Bytes()
	if !bytes.Contains(a, pub) || !bytes.Contains(b, pub) {
		t.Fatal("the static key share is not sent")
	}
	cfg.StaticKeyShares = nil
	if bytes.Contains(clientFlight(t, cfg), pub) {
		t.Fatal("static key share sent without StaticKeyShares")
	}
}

// benchServer is a crypto/tls server for client benchmarks: it completes
// the handshake (and sends a ticket), reads one byte and closes.
func benchServer(b *testing.B) string {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pki(b).cert}}
	return serveTCP(b, func(nc net.Conn) {
		c := tls.Server(nc, cfg)
		if c.Handshake() == nil {
			c.Read(make([]byte, 1))
		}
	})
}

// BenchmarkClientHandshake compares the certificate-mode client with
// crypto/tls's, each against an in-process crypto/tls server (X25519,
// ECDSA P-256): ns/op is the whole loop, server included, so the
// difference is the clients' cost. Each op is one connection: TCP, the
// handshake, one byte of application data, the close.
func BenchmarkClientHandshake(b *testing.B) {
	addr := benchServer(b)
	p := pki(b)
	static := mustKey(b, ecdh.X25519())
	goCfg := func(resume bool) *tls.Config {
		c := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: "broker.test", RootCAs: p.roots, CurvePreferences: []tls.CurveID{tls.X25519}}
		if resume {
			c.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		}
		return c
	}
	runGo := func(cfg *tls.Config) func(*testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				c := tls.Client(nc, cfg)
				if err := c.Handshake(); err != nil {
					b.Fatal(err)
				}
				c.Write([]byte{1})
				io.Copy(io.Discard, c) // the ticket, then the server's close
				c.Close()
			}
		}
	}
	runLean := func(cfg *Config) func(*testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				c := Client(nc, cfg)
				if err := c.Handshake(context.Background()); err != nil {
					b.Fatal(err)
				}
				c.Write([]byte{1})
				io.Copy(io.Discard, c) // the ticket, then the server's close
				c.Close()
			}
		}
	}
	lean := func(verify bool, keys []*ecdh.PrivateKey, cache bool) *Config {
		c := &Config{CertificateMode: true, ServerName: "broker.test", CurvePreferences: []CurveID{X25519}, VerifyServer: noVerify, StaticKeyShares: keys}
		if verify {
			c.VerifyServer = VerifyServerX509(p.roots, "broker.test")
		}
		if cache {
			c.SessionCache = NewSessionCache(4)
		}
		return c
	}
	b.Run("go", runGo(goCfg(false)))
	b.Run("go-insecure", runGo(&tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, CurvePreferences: []tls.CurveID{tls.X25519}}))
	b.Run("lean-verify", runLean(lean(true, nil, false)))
	b.Run("lean-verify-static", runLean(lean(true, []*ecdh.PrivateKey{static}, false)))
	b.Run("lean-noverify-static", runLean(lean(false, []*ecdh.PrivateKey{static}, false)))
	b.Run("go-resume", runGo(goCfg(true)))
	b.Run("lean-resume-static", runLean(lean(true, []*ecdh.PrivateKey{static}, true)))
}
