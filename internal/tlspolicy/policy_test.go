package tlspolicy

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestDefaultsOfTLSConfig(t *testing.T) {
	pki := newTestPKI(t)
	p := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}})
	base := p.TLSConfig()
	if base != p.TLSConfig() {
		t.Fatal("TLSConfig must return the same config (it owns the ticket keys)")
	}
	cfg, err := base.GetConfigForClient(&tls.ClientHelloInfo{SupportedProtos: []string{"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || cfg.MaxVersion != 0 {
		t.Errorf("versions: min %x max %x", cfg.MinVersion, cfg.MaxVersion)
	}
	if !slices.Contains(cfg.CurvePreferences, tls.X25519MLKEM768) || !slices.Contains(cfg.CurvePreferences, tls.X25519) ||
		!slices.Contains(cfg.CurvePreferences, tls.CurveP256) || !slices.Contains(cfg.CurvePreferences, tls.CurveP384) {
		t.Errorf("curves: %v", cfg.CurvePreferences)
	}
	if cfg.SessionTicketsDisabled || cfg.Renegotiation != tls.RenegotiateNever {
		t.Error("session tickets must be on, renegotiation never")
	}
	if !slices.Equal(cfg.NextProtos, []string{"mqtt"}) {
		t.Errorf("NextProtos %v", cfg.NextProtos)
	}
	for _, id := range cfg.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "GCM") || strings.Contains(name, "CHACHA20")) {
			t.Errorf("suite %s not ECDHE+AEAD", name)
		}
	}
	if len(cfg.CipherSuites) != 6 {
		t.Errorf("want the 6 allowed suites, got %d", len(cfg.CipherSuites))
	}
	if cfg.ClientAuth != tls.NoClientCert {
		t.Errorf("client auth %v", cfg.ClientAuth)
	}
	if p.ClientAuth() != "none" {
		t.Errorf("ClientAuth() = %q", p.ClientAuth())
	}
}

func TestALPN(t *testing.T) {
	pki := newTestPKI(t)
	p := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}})
	srv := startEcho(t, p.TLSConfig())
	for _, tc := range []struct {
		offer []string
		want  string
	}{
		{nil, ""},
		{[]string{"mqtt"}, "mqtt"},
		{[]string{"http/1.1", "mqtt"}, "mqtt"},
		{[]string{"http/1.1"}, ""}, // not refused, just no protocol
	} {
		c, err := dialClient(srv.addr, &tls.Config{RootCAs: pki.root.pool(), NextProtos: tc.offer})
		if err != nil {
			t.Errorf("offer %v: %v", tc.offer, err)
			continue
		}
		if got := c.ConnectionState().NegotiatedProtocol; got != tc.want {
			t.Errorf("offer %v: negotiated %q, want %q", tc.offer, got, tc.want)
		}
		c.Close()
	}
}

func TestSNISelection(t *testing.T) {
	pki := newTestPKI(t)
	dir := pki.dir
	mk := func(name string, dns ...string) (*issued, CertSource) {
		i := issue(t, pki.inter, certSpec{subject: pkix.Name{CommonName: name}, dns: dns, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		cf, kf := writeChain(t, dir, name, i)
		return i, CertSource{CertFile: cf, KeyFile: kf}
	}
	def, defSrc := mk("default", "default.test")
	a, aSrc := mk("a", "a.example.test")
	wild, wildSrc := mk("wild", "*.wild.test")
	over, overSrc := mk("override", "ignored.test")
	overSrc.Names = []string{"Named.Example.TEST", "*.named.test"}
	// An RSA certificate for a.example.test too: chosen only for clients
	// that cannot use the ECDSA one.
	aRSA := issue(t, pki.inter, certSpec{subject: pkix.Name{CommonName: "a-rsa"}, dns: []string{"a.example.test"}, keyType: keyRSA,
		eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	cf, kf := writeChain(t, dir, "a-rsa", aRSA)
	aRSASrc := CertSource{CertFile: cf, KeyFile: kf}

	p := mustNew(t, Options{Certs: []CertSource{defSrc, aSrc, aRSASrc, wildSrc, overSrc}})
	srv := startEcho(t, p.TLSConfig())

	for _, tc := range []struct {
		sni    string
		suites []uint16 // TLS 1.2 only, when set
		want   *issued
	}{
		{"default.test", nil, def},
		{"a.example.test", nil, a},
		{"A.Example.Test", nil, a},
		{"x.wild.test", nil, wild},
		{"deep.x.wild.test", nil, def}, // wildcards cover one label only
		{"named.example.test", nil, over},
		{"q.named.test", nil, over},
		{"ignored.test", nil, def}, // Names replace the SANs
		{"unknown.test", nil, def},
		{"a.example.test", []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, aRSA},
	} {
		cfg := &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true}
		if tc.suites != nil {
			cfg.MaxVersion = tls.VersionTLS12
			cfg.CipherSuites = tc.suites
		}
		c, err := dialClient(srv.addr, cfg)
		if err != nil {
			t.Errorf("sni %q: %v", tc.sni, err)
			continue
		}
		got := c.ConnectionState().PeerCertificates[0]
		if !got.Equal(tc.want.cert) {
			t.Errorf("sni %q: got %q, want %q", tc.sni, got.Subject.CommonName, tc.want.cert.Subject.CommonName)
		}
		c.Close()
	}
}

func TestVerifyServerChainWithCA(t *testing.T) {
	pki := newTestPKI(t)
	p := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}})
	srv := startEcho(t, p.TLSConfig())
	c, err := dialClient(srv.addr, &tls.Config{RootCAs: pki.root.pool(), MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := c.ConnectionState()
	if st.Version != tls.VersionTLS13 {
		t.Errorf("version %x", st.Version)
	}
	if len(st.PeerCertificates) != 2 {
		t.Errorf("server must send its intermediate: got %d certs", len(st.PeerCertificates))
	}
}

func TestTLS12OnlyAllowedSuites(t *testing.T) {
	pki := newTestPKI(t)
	p := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}, CipherSuites: []string{"ECDHE-ECDSA-CHACHA20-POLY1305"}})
	srv := startEcho(t, p.TLSConfig())
	c, err := dialClient(srv.addr, &tls.Config{RootCAs: pki.root.pool(), MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ConnectionState().CipherSuite; got != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 {
		t.Errorf("suite %s", tls.CipherSuiteName(got))
	}
	c.Close()

	// A client with only suites we do not allow is refused.
	_, err = dialClient(srv.addr, &tls.Config{RootCAs: pki.root.pool(), MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}})
	if err == nil {
		t.Fatal("CBC-only client accepted")
	}
	if r := ClassifyHandshakeError(srv.nextErr(t)); r != ReasonCipherMismatch {
		t.Errorf("reason %q", r)
	}

	// MinVersion 1.3 refuses TLS 1.2 clients.
	p13 := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}, MinVersion: tls.VersionTLS13})
	srv13 := startEcho(t, p13.TLSConfig())
	if _, err := dialClient(srv13.addr, &tls.Config{RootCAs: pki.root.pool(), MaxVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("TLS 1.2 client accepted by a TLS 1.3-only policy")
	}
	if r := ClassifyHandshakeError(srv13.nextErr(t)); r != ReasonProtocolVersion {
		t.Errorf("reason %q", r)
	}
}

func TestMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	caFile := pki.caFile

	required := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}, ClientAuth: "required", ClientCAFiles: []string{caFile}})
	optional := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}, ClientAuth: "optional", ClientCAFiles: []string{caFile}})
	shallow := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}, ClientAuth: "required", ClientCAFiles: []string{caFile}, MaxChainDepth: 2})
	noInter := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}, ClientAuth: "required", ClientCAFiles: []string{caFile}, MaxChainDepth: -1})
	servers := map[string]*echoServer{
		"required": startEcho(t, required.TLSConfig()),
		"optional": startEcho(t, optional.TLSConfig()),
		"shallow":  startEcho(t, shallow.TLSConfig()),
		"noInter":  startEcho(t, noInter.TLSConfig()),
	}

	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, tc := range []struct {
			name   string
			server string
			client *issued // nil: no certificate
			reason string  // "" = accepted
		}{
			{"good", "required", pki.clientGood, ""},
			{"good optional", "optional", pki.clientGood, ""},
			{"none optional", "optional", nil, ""},
			{"none required", "required", nil, ReasonNoCertificate},
			{"untrusted CA", "required", pki.clientUntrusted, ReasonUnknownCA},
			{"untrusted CA optional", "optional", pki.clientUntrusted, ReasonUnknownCA},
			{"expired", "required", pki.clientExpired, ReasonExpired},
			{"no EKU", "required", pki.clientNoEKU, ReasonBadEKU},
			{"no EKU optional", "optional", pki.clientNoEKU, ReasonBadEKU},
			{"serverAuth only", "required", pki.clientServerOnly, ReasonBadEKU},
			{"deep chain default depth", "required", pki.clientDeep, ""},
			{"deep chain limit 2", "shallow", pki.clientDeep, ReasonBadCertificate},
			{"one intermediate limit 2", "shallow", pki.clientGood, ""},
			{"intermediate refused at -1", "noInter", pki.clientGood, ReasonBadCertificate},
		} {
			t.Run(tls.VersionName(version)+"/"+tc.name, func(t *testing.T) {
				srv := servers[tc.server]
				cfg := &tls.Config{RootCAs: pki.root.pool(), MinVersion: version, MaxVersion: version}
				if tc.client != nil {
					// Send the certificate even when its issuer is not
					// among the server's acceptable CAs.
					cert := tc.client.tlsCert()
					cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
				}
				c, err := dialClient(srv.addr, cfg)
				if tc.reason == "" {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					st := <-srv.ok
					if tc.client != nil && (len(st.PeerCertificates) == 0 || !st.PeerCertificates[0].Equal(tc.client.cert)) {
						t.Error("server did not see the client certificate")
					}
					c.Close()
					return
				}
				if err == nil {
					c.Close()
					t.Fatal("accepted")
				}
				serr := srv.nextErr(t)
				if got := ClassifyHandshakeError(serr); got != tc.reason {
					t.Errorf("server reason %q, want %q (err: %v)", got, tc.reason, serr)
				}
				t.Logf("server: %v / client: %v (client-side reason %q)", serr, err, ClassifyHandshakeError(err))
			})
		}
	}
	if s := required.Stats().Snapshot(); len(s) != len(Reasons()) {
		t.Errorf("snapshot %v", s)
	}
}

func TestVerifyConnectionErrors(t *testing.T) {
	pki := newTestPKI(t)
	p := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}, ClientAuth: "required", ClientCAFiles: []string{pki.caFile}})
	m := p.cur.Load()
	// A certificate presented but never verified is refused.
	err := m.verifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{pki.clientGood.cert}})
	if !errors.Is(err, ErrUnverifiedChain) {
		t.Errorf("got %v", err)
	}
	err = m.verifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{pki.clientNoEKU.cert}})
	if !errors.Is(err, ErrBadEKU) || !strings.Contains(err.Error(), "absent") {
		t.Errorf("got %v", err)
	}
	anyEKU := issue(t, pki.inter, certSpec{subject: pkix.Name{CommonName: "any"}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	err = m.verifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{anyEKU.cert}})
	if !errors.Is(err, ErrBadEKU) {
		t.Errorf("anyExtendedKeyUsage alone must be refused, got %v", err)
	}
}

// Session resumption works, survives a reload of the server certificate,
// and is cut off by a reload that changes the client CAs.
func TestResumptionAndCAReload(t *testing.T) {
	pki := newTestPKI(t)
	caFile := writeFile(t, pki.dir, "clientca.pem", certPEM(pki.root.cert))
	p := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}, ClientAuth: "required", ClientCAFiles: []string{caFile}})
	srv := startEcho(t, p.TLSConfig())

	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			cache := tls.NewLRUClientSessionCache(4)
			cfg := func() *tls.Config {
				return &tls.Config{RootCAs: pki.root.pool(), MinVersion: version, MaxVersion: version,
					Certificates: []tls.Certificate{pki.clientGood.tlsCert()}, ClientSessionCache: cache}
			}
			dial := func() bool {
				t.Helper()
				c, err := dialClient(srv.addr, cfg())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				return c.ConnectionState().DidResume
			}
			dial()
			if !dial() {
				t.Fatal("no resumption")
			}
			// Same CA content, reloaded: resumption continues.
			if err := p.Reload(); err != nil {
				t.Fatal(err)
			}
			if !dial() {
				t.Fatal("no resumption after a reload without CA change")
			}
			// Different CA bundle: old tickets are ignored.
			other := newRoot(t, "extra root")
			replaceFile(t, caFile, certPEM(pki.root.cert, other.cert))
			if err := p.Reload(); err != nil {
				t.Fatal(err)
			}
			if dial() {
				t.Fatal("resumed a session issued under the old client CAs")
			}
			if !dial() {
				t.Fatal("no resumption with a ticket issued under the new CAs")
			}
			replaceFile(t, caFile, certPEM(pki.root.cert))
			if err := p.Reload(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
