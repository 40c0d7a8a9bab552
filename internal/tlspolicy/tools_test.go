package tlspolicy

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests with tools we did not write: openssl s_client and sslscan against a
// TLS echo server on 127.0.0.1 built from a Policy.

func sClient(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	bin := needOpenSSL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	full := append([]string{"s_client", "-connect", addr, "-servername", "localhost"}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// nextServerResult waits for the outcome of the next handshake on srv.
func nextServerResult(t *testing.T, srv *echoServer) (*tls.ConnectionState, error) {
	t.Helper()
	select {
	case st := <-srv.ok:
		return &st, nil
	case err := <-srv.errs:
		return nil, err
	case <-time.After(10 * time.Second):
		t.Fatal("server saw no handshake")
		return nil, nil
	}
}

func TestOpenSSLClient(t *testing.T) {
	needOpenSSL(t)
	pki := newTestPKI(t)
	p := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}})
	srv := startEcho(t, p.TLSConfig())

	// Clients that must be refused: force OpenSSL to really offer the old
	// protocol or weak suite (its default security level would otherwise
	// refuse locally and the server would never be tested).
	for _, tc := range []struct {
		name   string
		args   []string
		reason string
	}{
		{"TLS 1.1", []string{"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"}, ReasonProtocolVersion},
		{"TLS 1.0", []string{"-tls1", "-cipher", "DEFAULT@SECLEVEL=0"}, ReasonProtocolVersion},
		{"TLS 1.2 AES128-SHA256 (no ECDHE, no AEAD)", []string{"-tls1_2", "-cipher", "AES128-SHA256@SECLEVEL=0"}, ReasonCipherMismatch},
		{"TLS 1.2 ECDHE-ECDSA-AES128-SHA256 (no AEAD)", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256@SECLEVEL=0"}, ReasonCipherMismatch},
		{"TLS 1.2 ECDHE-ECDSA-AES256-SHA (CBC)", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA@SECLEVEL=0"}, ReasonCipherMismatch},
		{"TLS 1.2 AES128-GCM-SHA256 (no ECDHE)", []string{"-tls1_2", "-cipher", "AES128-GCM-SHA256@SECLEVEL=0"}, ReasonCipherMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := sClient(t, srv.addr, tc.args...)
			if err == nil {
				t.Errorf("openssl s_client succeeded:\n%s", out)
			}
			st, serr := nextServerResult(t, srv)
			if st != nil {
				t.Fatalf("server completed a handshake: version %x suite %s", st.Version, tls.CipherSuiteName(st.CipherSuite))
			}
			if r := ClassifyHandshakeError(serr); r != tc.reason {
				t.Errorf("server reason %q (%v), want %q\n%s", r, serr, tc.reason, out)
			}
		})
	}

	// Clients that must succeed, verifying our chain against the root.
	for _, tc := range []struct {
		name    string
		args    []string
		version uint16
		expect  []string
	}{
		{"TLS 1.3", []string{"-tls1_3", "-alpn", "mqtt"}, tls.VersionTLS13, []string{"TLSv1.3", "ALPN protocol: mqtt"}},
		{"TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"}, tls.VersionTLS12, []string{"ECDHE-ECDSA-AES128-GCM-SHA256"}},
		{"TLS 1.2 ECDHE-ECDSA-CHACHA20-POLY1305", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"}, tls.VersionTLS12, []string{"ECDHE-ECDSA-CHACHA20-POLY1305"}},
		{"default", nil, tls.VersionTLS13, []string{"TLSv1.3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-CAfile", pki.caFile, "-verify_return_error"}, tc.args...)
			out, err := sClient(t, srv.addr, args...)
			if err != nil {
				t.Fatalf("openssl s_client failed: %v\n%s", err, out)
			}
			for _, e := range tc.expect {
				if !strings.Contains(out, e) {
					t.Errorf("output lacks %q:\n%s", e, out)
				}
			}
			if !strings.Contains(out, "Verify return code: 0 (ok)") {
				t.Errorf("chain not verified:\n%s", out)
			}
			st, serr := nextServerResult(t, srv)
			if serr != nil || st.Version != tc.version {
				t.Fatalf("server: %v %+v", serr, st)
			}
		})
	}
}

func TestOpenSSLClientMutualTLS(t *testing.T) {
	needOpenSSL(t)
	pki := newTestPKI(t)
	p := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}, ClientAuth: "required", ClientCAFiles: []string{pki.caFile}})
	srv := startEcho(t, p.TLSConfig())
	for _, tc := range []struct {
		name   string
		client *issued
		reason string
	}{
		{"good", pki.clientGood, ""},
		{"no certificate", nil, ReasonNoCertificate},
		{"untrusted CA", pki.clientUntrusted, ReasonUnknownCA},
		{"expired", pki.clientExpired, ReasonExpired},
		{"no EKU", pki.clientNoEKU, ReasonBadEKU},
		{"serverAuth only", pki.clientServerOnly, ReasonBadEKU},
	} {
		for _, ver := range []string{"-tls1_2", "-tls1_3"} {
			t.Run(tc.name+ver, func(t *testing.T) {
				args := []string{ver, "-CAfile", pki.caFile}
				if tc.client != nil {
					dir := t.TempDir()
					cf, kf := writeChain(t, dir, "client", tc.client)
					args = append(args, "-cert", cf, "-key", kf)
					if len(tc.client.above) > 0 {
						// s_client sends only the first certificate of -cert.
						args = append(args, "-cert_chain", writeFile(t, dir, "chain.pem", certPEM(tc.client.above...)))
					}
				}
				out, _ := sClient(t, srv.addr, args...)
				st, serr := nextServerResult(t, srv)
				if tc.reason == "" {
					if serr != nil {
						t.Fatalf("refused: %v\n%s", serr, out)
					}
					if len(st.PeerCertificates) == 0 || st.PeerCertificates[0].Subject.CommonName != tc.client.cert.Subject.CommonName {
						t.Fatal("client certificate not seen")
					}
					id, err := Identity(st.PeerCertificates[0], "cn")
					if err != nil || id != "sensor-17" {
						t.Errorf("identity %q %v", id, err)
					}
					return
				}
				if serr == nil {
					t.Fatalf("accepted\n%s", out)
				}
				if r := ClassifyHandshakeError(serr); r != tc.reason {
					t.Errorf("server reason %q (%v), want %q", r, serr, tc.reason)
				}
			})
		}
	}
}

// sslscan's XML report.
type sslscanReport struct {
	Tests []struct {
		Protocols []struct {
			Type    string `xml:"type,attr"`
			Version string `xml:"version,attr"`
			Enabled string `xml:"enabled,attr"`
		} `xml:"protocol"`
		Ciphers []struct {
			SSLVersion string `xml:"sslversion,attr"`
			Cipher     string `xml:"cipher,attr"`
		} `xml:"cipher"`
		Errors []string `xml:"error"`
	} `xml:"ssltest"`
}

func TestSSLScan(t *testing.T) {
	bin, err := exec.LookPath("sslscan")
	if err != nil {
		t.Skip("sslscan not installed (apt-get install sslscan)")
	}
	pki := newTestPKI(t)
	// An ECDSA and an RSA certificate for the same name, so that the scan
	// sees the ECDHE-RSA suites too.
	rsaCert := serverIssued(t, pki, keyRSA)
	rcf, rkf := writeChain(t, pki.dir, "server-rsa", rsaCert)
	p := mustNew(t, Options{Certs: []CertSource{pki.serverSource(), {CertFile: rcf, KeyFile: rkf}}})
	srv := startEcho(t, p.TLSConfig())
	// Drain server-side results so the echo server never blocks.
	go func() {
		for {
			select {
			case <-srv.ok:
			case <-srv.errs:
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--no-colour", "--xml=-", "--sni-name=localhost",
		"--no-heartbleed", "--no-compression", "--timeout=3", srv.addr).Output()
	if err != nil {
		t.Fatalf("sslscan: %v\n%s", err, out)
	}
	start := strings.Index(string(out), "<?xml")
	if start < 0 {
		t.Fatalf("no XML in sslscan output:\n%s", out)
	}
	var rep sslscanReport
	if err := xml.Unmarshal(out[start:], &rep); err != nil {
		t.Fatalf("parse: %v\n%s", err, out[start:])
	}
	if len(rep.Tests) != 1 {
		t.Fatalf("report: %+v", rep)
	}
	test := rep.Tests[0]
	enabled := map[string]bool{}
	for _, pr := range test.Protocols {
		enabled[pr.Type+pr.Version] = pr.Enabled == "1"
	}
	t.Logf("protocols: %v", enabled)
	for _, v := range []string{"ssl2", "ssl3", "tls1.0", "tls1.1"} {
		if enabled[v] {
			t.Errorf("%s offered", v)
		}
	}
	if !enabled["tls1.2"] || !enabled["tls1.3"] {
		t.Errorf("TLS 1.2 and 1.3 must be enabled: %v", enabled)
	}

	allowed := map[string]bool{
		"ECDHE-ECDSA-AES128-GCM-SHA256": true, "ECDHE-ECDSA-AES256-GCM-SHA384": true, "ECDHE-ECDSA-CHACHA20-POLY1305": true,
		"ECDHE-RSA-AES128-GCM-SHA256": true, "ECDHE-RSA-AES256-GCM-SHA384": true, "ECDHE-RSA-CHACHA20-POLY1305": true,
		"TLS_AES_128_GCM_SHA256": true, "TLS_AES_256_GCM_SHA384": true, "TLS_CHACHA20_POLY1305_SHA256": true,
	}
	var seen []string
	for _, c := range test.Ciphers {
		seen = append(seen, c.SSLVersion+" "+c.Cipher)
		if c.SSLVersion != "TLSv1.2" && c.SSLVersion != "TLSv1.3" {
			t.Errorf("cipher %s offered with %s", c.Cipher, c.SSLVersion)
		}
		if !allowed[c.Cipher] {
			t.Errorf("cipher %s (%s) is not allowed", c.Cipher, c.SSLVersion)
		}
	}
	t.Logf("ciphers: %v", seen)
	for _, must := range []string{"TLSv1.3 TLS_AES_128_GCM_SHA256", "TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256", "TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384"} {
		if !slices.Contains(seen, must) {
			t.Errorf("scan did not find %s", must)
		}
	}
}
