package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestIssuedChainsOpenSSL(t *testing.T) {
	needOpenSSL(t)
	for _, tc := range []struct {
		name    string
		opts    InitOptions
		leafAlg KeyAlg
	}{
		{"one-tier p256", InitOptions{}, ECDSAP256},
		{"two-tier p256", InitOptions{TwoTier: true, RootCRLURL: "http://127.0.0.1:8080/pki/root.crl"}, ECDSAP256},
		{"two-tier ed25519 CA, rsa leaf", InitOptions{TwoTier: true, KeyAlg: Ed25519}, RSA3072},
		{"one-tier p384, ed25519 leaf", InitOptions{KeyAlg: ECDSAP384, OCSPURL: "http://127.0.0.1:8080/ocsp"}, Ed25519},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ca := newCA(t, tc.opts)
			dir := t.TempDir()
			srv, err := ca.IssueServer(ServerRequest{DNS: []string{"Broker.Example", "localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}, KeyAlg: tc.leafAlg})
			if err != nil {
				t.Fatal(err)
			}
			cli, err := ca.IssueClient(ClientRequest{CommonName: "sensor-17", OU: []string{"fleet-a"}, Emails: []string{"ops@example.com"},
				URIs: []string{"spiffe://moat.test/device/sensor-17"}, KeyAlg: tc.leafAlg})
			if err != nil {
				t.Fatal(err)
			}
			sf, err := WritePEM(dir, "server", srv)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := WritePEM(dir, "sensor-17", cli)
			if err != nil {
				t.Fatal(err)
			}
			if fi, _ := os.Stat(cf.KeyFile); fi.Mode().Perm() != 0o600 {
				t.Fatalf("key mode %v", fi.Mode())
			}
			if _, err := tls.LoadX509KeyPair(sf.ChainFile, sf.KeyFile); err != nil {
				t.Fatal(err)
			}
			mustOpenSSL(t, append(verifyArgs(t, ca, dir), "-purpose", "sslserver", sf.CertFile)...)
			mustOpenSSL(t, append(verifyArgs(t, ca, dir), "-purpose", "sslclient", cf.CertFile)...)
			// The EKUs are enforced: a client cert is no server cert.
			if out, err := openssl(t, append(verifyArgs(t, ca, dir), "-purpose", "sslserver", cf.CertFile)...); err == nil {
				t.Fatalf("client cert verified as server:\n%s", out)
			}
			// The chain file alone, with the root, verifies too.
			mustOpenSSL(t, "verify", "-CAfile", ca.RootFile(), "-untrusted", sf.ChainFile, sf.ChainFile)

			st := squash(mustOpenSSL(t, "x509", "-noout", "-text", "-in", sf.CertFile))
			wantKU := "X509v3 Key Usage: critical Digital Signature"
			if tc.leafAlg == RSA3072 {
				wantKU += ", Key Encipherment"
			}
			for _, want := range []string{
				wantKU + " ",
				"X509v3 Extended Key Usage: TLS Web Server Authentication ",
				"X509v3 Subject Alternative Name: DNS:broker.example, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1",
				"X509v3 CRL Distribution Points: Full Name: URI:http://127.0.0.1:8080/pki/crl",
				"X509v3 Basic Constraints: critical CA:FALSE",
				"X509v3 Subject Key Identifier:",
				"X509v3 Authority Key Identifier:",
				"Subject: CN = broker.example",
			} {
				if !strings.Contains(st, want) {
					t.Errorf("server cert lacks %q:\n%s", want, st)
				}
			}
			ct := squash(mustOpenSSL(t, "x509", "-noout", "-text", "-in", cf.CertFile))
			for _, want := range []string{
				"X509v3 Key Usage: critical Digital Signature ",
				"X509v3 Extended Key Usage: TLS Web Client Authentication ",
				"X509v3 Subject Alternative Name: email:ops@example.com, URI:spiffe://moat.test/device/sensor-17",
				"URI:http://127.0.0.1:8080/pki/crl",
				"Subject: OU = fleet-a, CN = sensor-17",
			} {
				if !strings.Contains(ct, want) {
					t.Errorf("client cert lacks %q:\n%s", want, ct)
				}
			}
			if tc.opts.OCSPURL != "" && !strings.Contains(ct, "OCSP - URI:"+tc.opts.OCSPURL) {
				t.Errorf("no OCSP URL:\n%s", ct)
			}
			if tc.opts.RootCRLURL != "" {
				it := squash(mustOpenSSL(t, "x509", "-noout", "-text", "-in", ca.IntermediateFile()))
				if !strings.Contains(it, "URI:"+tc.opts.RootCRLURL) || !strings.Contains(it, "CA:TRUE, pathlen:0") {
					t.Errorf("intermediate:\n%s", it)
				}
			}
			// Serials: random, about 128 bits; validity defaults; backdated.
			for _, c := range []struct {
				cert *x509.Certificate
				want time.Duration
			}{{srv.Cert, DefaultServerValidity}, {cli.Cert, DefaultClientValidity}} {
				if n := c.cert.SerialNumber.BitLen(); n <= 64 || n > 128 {
					t.Errorf("serial of %d bits", n)
				}
				if !c.cert.NotBefore.Before(time.Now().Add(-time.Minute)) {
					t.Errorf("NotBefore %v not backdated", c.cert.NotBefore)
				}
				if d := time.Until(c.cert.NotAfter); d < c.want-time.Minute || d > c.want {
					t.Errorf("validity %v, want %v", d, c.want)
				}
			}
			if srv.Cert.SerialNumber.Cmp(cli.Cert.SerialNumber) == 0 {
				t.Error("equal serials")
			}
		})
	}
}

func TestValidityClampedToIssuer(t *testing.T) {
	ca := newCA(t, InitOptions{TwoTier: true, RootValidity: 48 * time.Hour, IntermediateValidity: 72 * time.Hour})
	if !ca.Issuer().NotAfter.Equal(ca.Root().NotAfter) {
		t.Fatalf("intermediate %v outlives root %v", ca.Issuer().NotAfter, ca.Root().NotAfter)
	}
	iss, err := ca.IssueClient(ClientRequest{CommonName: "d", Validity: 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if iss.Cert.NotAfter.After(ca.Issuer().NotAfter) {
		t.Fatal("leaf outlives issuer")
	}
	iss, err = ca.IssueServer(ServerRequest{IPs: []net.IP{net.ParseIP("10.0.0.1")}, Validity: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(iss.Cert.NotAfter); d > 5*time.Second || d < 3*time.Second {
		t.Fatalf("5s validity gave %v", d)
	}
	if iss.Cert.Subject.CommonName != "10.0.0.1" {
		t.Fatalf("CN %q", iss.Cert.Subject.CommonName)
	}
}

func TestBadRequests(t *testing.T) {
	ca := newCA(t, InitOptions{})
	for name, req := range map[string]ServerRequest{
		"no names":      {},
		"space":         {DNS: []string{"a b"}},
		"bad wildcard":  {DNS: []string{"a.*.example"}},
		"bare wildcard": {DNS: []string{"*.com"}},
		"negative":      {DNS: []string{"a"}, Validity: -time.Second},
		"bad IP":        {IPs: []net.IP{{1, 2, 3}}},
	} {
		if _, err := ca.IssueServer(req); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if iss, err := ca.IssueServer(ServerRequest{DNS: []string{"*.Example.com.", "*.example.com"}}); err != nil || len(iss.Cert.DNSNames) != 1 || iss.Cert.DNSNames[0] != "*.example.com" {
		t.Errorf("wildcard: %v", err)
	}
	for name, req := range map[string]ClientRequest{
		"no CN":     {},
		"long CN":   {CommonName: strings.Repeat("x", 65)},
		"ctrl":      {CommonName: "a\nb"},
		"email":     {CommonName: "a", Emails: []string{"nope"}},
		"uri":       {CommonName: "a", URIs: []string{"relative/path"}},
		"bad alg":   {CommonName: "a", KeyAlg: 99},
		"empty OU":  {CommonName: "a", OU: []string{""}},
		"neg valid": {CommonName: "a", Validity: -1},
	} {
		if _, err := ca.IssueClient(req); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := ca.SetCRLURL("ftp://x/crl"); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("ftp CRL URL: %v", err)
	}
}

func TestSetCRLURL(t *testing.T) {
	ca := newCA(t, InitOptions{})
	if err := ca.SetCRLURL("https://moat.example:8443/pki/crl"); err != nil {
		t.Fatal(err)
	}
	iss, err := ca.IssueClient(ClientRequest{CommonName: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if got := iss.Cert.CRLDistributionPoints; len(got) != 1 || got[0] != "https://moat.example:8443/pki/crl" {
		t.Fatalf("CDP %v", got)
	}
	// Another handle on the same directory (another process) sees it.
	ca2, err := Open(ca.Dir(), ca.prot)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca2.SetCRLURL(""); err != nil {
		t.Fatal(err)
	}
	if iss, err = ca.IssueClient(ClientRequest{CommonName: "d"}); err != nil || len(iss.Cert.CRLDistributionPoints) != 0 {
		t.Fatalf("CDP after removal %v %v", iss.Cert.CRLDistributionPoints, err)
	}
}

func TestSignCSROpenSSL(t *testing.T) {
	needOpenSSL(t)
	ca := newCA(t, InitOptions{TwoTier: true})
	dir := t.TempDir()
	key := filepath.Join(dir, "dev.key")
	csr := filepath.Join(dir, "dev.csr")
	mustOpenSSL(t, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-subj", "/CN=dev-9", "-keyout", key, "-out", csr)
	csrPEM, _ := os.ReadFile(csr)
	cert, err := ca.SignCSR(csrPEM, ClientRequest{Emails: []string{"dev-9@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "dev-9" || cert.IsCA || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Fatalf("cert %v", cert.Subject)
	}
	certFile := writeCerts(t, dir, "dev.pem", cert)
	mustOpenSSL(t, append(verifyArgs(t, ca, dir), "-purpose", "sslclient", certFile)...)
	// The certificate is for the device's own key.
	pub := mustOpenSSL(t, "pkey", "-in", key, "-pubout")
	certPub := mustOpenSSL(t, "x509", "-in", certFile, "-noout", "-pubkey")
	if pub != certPub {
		t.Fatal("certificate key differs from the CSR's")
	}
	// And the pair works for TLS.
	if _, err := tls.X509KeyPair(append(CertsPEM(cert), CertsPEM(ca.Issuer())...), must(os.ReadFile(key))); err != nil {
		t.Fatal(err)
	}

	// A CSR asking to be a CA, with SANs and key usages, gets none of it.
	evil := filepath.Join(dir, "evil.csr")
	mustOpenSSL(t, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-subj", "/CN=dev-10/O=Evil Corp", "-keyout", filepath.Join(dir, "evil.key"), "-out", evil,
		"-addext", "basicConstraints=critical,CA:TRUE",
		"-addext", "keyUsage=critical,keyCertSign,cRLSign",
		"-addext", "subjectAltName=DNS:victim.example",
		"-addext", "extendedKeyUsage=serverAuth")
	cert, err = ca.SignCSR(must(os.ReadFile(evil)), ClientRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign != 0 || len(cert.DNSNames) != 0 ||
		len(cert.Subject.Organization) != 0 || len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Fatalf("CSR extensions leaked: CA=%v KU=%v DNS=%v O=%v EKU=%v", cert.IsCA, cert.KeyUsage, cert.DNSNames, cert.Subject.Organization, cert.ExtKeyUsage)
	}
	text := squash(mustOpenSSL(t, "x509", "-noout", "-text", "-in", writeCerts(t, dir, "evil.pem", cert)))
	if !strings.Contains(text, "CA:FALSE") || strings.Contains(text, "CA:TRUE") || strings.Contains(text, "victim") {
		t.Fatalf("evil cert:\n%s", text)
	}

	// CN mismatch, tampered signature, garbage, weak RSA.
	if _, err := ca.SignCSR(csrPEM, ClientRequest{CommonName: "someone-else"}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("CN mismatch: %v", err)
	}
	der := pemBody(t, csrPEM)
	der[len(der)-3] ^= 0xff
	if _, err := ca.SignCSR(der, ClientRequest{}); !errors.Is(err, ErrBadCSR) {
		t.Errorf("tampered: %v", err)
	}
	if _, err := ca.SignCSR([]byte("hello"), ClientRequest{}); !errors.Is(err, ErrBadCSR) {
		t.Errorf("garbage: %v", err)
	}
	weak := filepath.Join(dir, "weak.csr")
	mustOpenSSL(t, "req", "-new", "-newkey", "rsa:1024", "-nodes", "-subj", "/CN=weak", "-keyout", filepath.Join(dir, "weak.key"), "-out", weak)
	if _, err := ca.SignCSR(must(os.ReadFile(weak)), ClientRequest{}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("RSA-1024: %v", err)
	}
	// A server CSR takes its names from the request only.
	srv, err := ca.SignServerCSR(csrPEM, ServerRequest{DNS: []string{"dev-9.local"}})
	if err != nil || srv.DNSNames[0] != "dev-9.local" || srv.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Fatalf("server CSR: %v", err)
	}
}

func TestPKCS12OpenSSL(t *testing.T) {
	needOpenSSL(t)
	for _, alg := range []KeyAlg{ECDSAP256, Ed25519} {
		ca := newCA(t, InitOptions{TwoTier: true})
		iss, err := ca.IssueClient(ClientRequest{CommonName: "cam-3", KeyAlg: alg})
		if err != nil {
			t.Fatal(err)
		}
		p12, err := PKCS12(iss, "s3cret")
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		f := writeFile(t, dir, "cam-3.p12", p12)
		// No -legacy: the Modern encoder uses algorithms OpenSSL 3 has by default.
		info := squash(mustOpenSSL(t, "pkcs12", "-info", "-in", f, "-passin", "pass:s3cret", "-passout", "pass:x"))
		for _, want := range []string{"MAC: sha256", "PBES2", "AES-256-CBC", "subject=CN = cam-3", "BEGIN ENCRYPTED PRIVATE KEY"} {
			if !strings.Contains(info, want) {
				t.Errorf("%v: pkcs12 -info lacks %q:\n%s", alg, want, info)
			}
		}
		certs := mustOpenSSL(t, "pkcs12", "-in", f, "-passin", "pass:s3cret", "-nokeys")
		if n := strings.Count(certs, "BEGIN CERTIFICATE"); n != 3 {
			t.Errorf("%d certificates in bundle, want leaf+intermediate+root", n)
		}
		if out, err := openssl(t, "pkcs12", "-info", "-in", f, "-passin", "pass:wrong", "-nokeys"); err == nil {
			t.Errorf("wrong password accepted:\n%s", out)
		}
	}
	if _, err := PKCS12(&Issued{}, "x"); !errors.Is(err, ErrInvalidRequest) {
		t.Error("empty Issued accepted")
	}
}

func TestWritePEMRefusesOverwrite(t *testing.T) {
	ca := newCA(t, InitOptions{})
	iss, _ := ca.IssueClient(ClientRequest{CommonName: "a"})
	dir := t.TempDir()
	if _, err := WritePEM(dir, "a", iss); err != nil {
		t.Fatal(err)
	}
	before := must(os.ReadFile(filepath.Join(dir, "a.key")))
	iss2, _ := ca.IssueClient(ClientRequest{CommonName: "a"})
	if _, err := WritePEM(dir, "a", iss2); !errors.Is(err, ErrExists) {
		t.Fatalf("overwrite: %v", err)
	}
	if !bytes.Equal(before, must(os.ReadFile(filepath.Join(dir, "a.key")))) {
		t.Fatal("key overwritten")
	}
	if _, err := WritePEM(dir, "../x", iss); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("path name: %v", err)
	}
	// Only a.key, a.pem, a.chain.pem remain: no temp files left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 3 {
		t.Fatalf("%d files", len(ents))
	}
}

func TestIssuedCertsRecorded(t *testing.T) {
	ca := newCA(t, InitOptions{})
	a, _ := ca.IssueClient(ClientRequest{CommonName: "a"})
	b, _ := ca.IssueServer(ServerRequest{DNS: []string{"b.example"}, IPs: []net.IP{net.ParseIP("::1")}})
	recs, err := ca.IssuedCerts()
	if err != nil || len(recs) != 2 {
		t.Fatalf("%v %v", recs, err)
	}
	if recs[0].Serial != FormatSerial(a.Cert.SerialNumber) || recs[0].Kind != "client" || recs[0].Subject != "CN=a" {
		t.Errorf("%+v", recs[0])
	}
	if recs[1].Serial != FormatSerial(b.Cert.SerialNumber) || recs[1].Kind != "server" || recs[1].IPs[0] != "::1" || !recs[1].NotAfter.Equal(b.Cert.NotAfter) {
		t.Errorf("%+v", recs[1])
	}
}

func TestConcurrentUse(t *testing.T) {
	ca := newCA(t, InitOptions{})
	other, err := Open(ca.Dir(), ca.prot) // a second handle: as another process would
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	serials := make(chan *big.Int, 40)
	for i := range 20 {
		wg.Go(func() {
			h := ca
			if i%2 == 1 {
				h = other
			}
			iss, err := h.IssueClient(ClientRequest{CommonName: "d"})
			if err != nil {
				t.Error(err)
				return
			}
			serials <- iss.Cert.SerialNumber
			if i%3 == 0 {
				if err := h.Revoke(iss.Cert.SerialNumber, ReasonSuperseded); err != nil {
					t.Error(err)
				}
			}
			if _, err := h.CRL(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	close(serials)
	recs, _ := ca.IssuedCerts()
	if len(recs) != 20 {
		t.Fatalf("%d records", len(recs))
	}
	der, err := other.CRL()
	if err != nil {
		t.Fatal(err)
	}
	rl, _ := x509.ParseRevocationList(der)
	if len(rl.RevokedCertificateEntries) != 7 || len(ca.Revoked()) != 7 {
		t.Fatalf("%d in CRL, %d recorded, want 7", len(rl.RevokedCertificateEntries), len(ca.Revoked()))
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func pemBody(t *testing.T, b []byte) []byte {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM")
	}
	return blk.Bytes
}
