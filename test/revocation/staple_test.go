package revocation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"moat/internal/brokertest"
	"moat/internal/config"
	"moat/internal/testpki"
)

// TestOCSPStapling: the broker fetches an OCSP response for its server
// certificate from the responder the certificate names and staples it.
func TestOCSPStapling(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl not found (scripts/test.sh installs it)")
	}
	dir := t.TempDir()
	set, err := testpki.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	issuer := set.Intermediate.Cert.Cert
	issuerKey := set.Intermediate.Key
	responses := make(chan struct{}, 100)
	responder := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, err := ocsp.ParseRequest(body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		resp, err := ocsp.CreateResponse(issuer, issuer, ocsp.Response{
			Status: ocsp.Good, SerialNumber: req.SerialNumber,
			ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
		}, issuerKey)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(resp)
		select {
		case responses <- struct{}{}:
		default:
		}
	}))
	defer responder.Close()

	// A server certificate that names the responder.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(4242),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		OCSPServer:   []string{responder.URL},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "stapled.pem"), filepath.Join(dir, "stapled.key")
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issuer.Raw})...)
	os.WriteFile(certFile, chain, 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)

	b := brokertest.Start(t, func(c *config.Config) {
		c.Listeners = append(c.Listeners, config.Listener{Name: "tls", Type: "tls", Address: "127.0.0.1:0",
			TLS: &config.TLS{Cert: certFile, Key: keyFile}})
	})
	addr := b.Server.Addr("tls").String()
	select {
	case <-responses:
	case <-time.After(15 * time.Second):
		t.Fatal("the broker did not ask the OCSP responder")
	}
	// The staple is in place once the response has been stored; poll the
	// handshake briefly for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: testpki.Pool(set.Root), ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		staple := c.ConnectionState().OCSPResponse
		c.Close()
		if len(staple) > 0 {
			if r, err := ocsp.ParseResponseForCert(staple, c.ConnectionState().PeerCertificates[0], issuer); err != nil || r.Status != ocsp.Good {
				t.Fatalf("stapled response: %v %+v", err, r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no OCSP staple in the handshake")
		}
		time.Sleep(50 * time.Millisecond) // waiting for the broker's background fetch
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", addr, "-servername", "localhost", "-status", "-CAfile", set.CAFile)
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "OCSP Response Status: successful") || !strings.Contains(string(out), "Cert Status: good") {
		t.Fatalf("openssl s_client -status does not show the staple:\n%s", out)
	}
}
