// Package pinned tests certificateless devices: a self-signed certificate
// whose public key is registered for a device, over TLS 1.3, no CA.
package pinned

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"moat/internal/brokertest"
	"moat/internal/config"
	"moat/internal/registry"
	"moat/internal/testpki"
)

// selfSigned makes a device key pair and a self-signed client certificate.
func selfSigned(t *testing.T, cn string) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k, Leaf: c}, c
}

func TestPinnedKeyDevices(t *testing.T) {
	dir := t.TempDir()
	set, err := testpki.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	mkFile := filepath.Join(dir, "master.key")
	if _, err := registry.WriteMasterKeyFile(mkFile); err != nil {
		t.Fatal(err)
	}
	b := brokertest.Start(t, func(c *config.Config) {
		c.MasterKeyFile = mkFile
		c.Auth.AllowAnonymous = false
		c.Listeners = append(c.Listeners, config.Listener{Name: "tls", Type: "tls", Address: "127.0.0.1:0",
			TLS: &config.TLS{Cert: set.Server.CertFile, Key: set.Server.KeyFile, ClientAuth: "optional", ClientCA: []string{set.CAFile}}})
	})
	reg := b.Server.Registry()
	if reg == nil {
		t.Fatal("registry not open")
	}
	registered, leaf := selfSigned(t, "cam-3")
	pin := registry.SPKISHA256(leaf)
	if _, _, err := reg.Add(registry.NewDevice{ID: "cam-3", Credentials: []registry.NewCredential{{Kind: registry.KindPinnedKey, SPKISHA256: hex.EncodeToString(pin[:])}}}); err != nil {
		t.Fatal(err)
	}
	unregistered, _ := selfSigned(t, "cam-3")
	addr := b.Server.Addr("tls").String()
	dial := func(cert tls.Certificate, maxV uint16) (*paho.Client, *paho.Connack, error) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{
			RootCAs: testpki.Pool(set.Root), ServerName: "localhost", MaxVersion: maxV,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		})
		if err != nil {
			return nil, nil, err
		}
		t.Cleanup(func() { conn.Close() })
		c := paho.NewClient(paho.ClientConfig{Conn: conn})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ca, err := c.Connect(ctx, &paho.Connect{ClientID: "cam-3", CleanStart: true, KeepAlive: 30})
		return c, ca, err
	}
	if _, _, err := dial(registered, 0); err != nil {
		t.Fatalf("registered key refused: %v", err)
	}
	var found bool
	for _, ci := range b.Server.Clients() {
		if ci.ClientID == "cam-3" {
			found = ci.PrincipalID == "cam-3" && ci.Method == "pinned-key"
		}
	}
	if !found {
		t.Fatalf("client list: %+v", b.Server.Clients())
	}
	if _, _, err := dial(unregistered, 0); err == nil {
		t.Fatal("an unregistered key was accepted")
	}
	// TLS 1.2 does not protect the client certificate: pins need TLS 1.3.
	if _, _, err := dial(registered, tls.VersionTLS12); err == nil {
		t.Fatal("a pinned key was accepted over TLS 1.2")
	}
	// CA-issued client certificates still work on the same listener.
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: testpki.Pool(set.Root), ServerName: "localhost", Certificates: []tls.Certificate{set.Client.TLSCertificate()}})
	if err != nil {
		t.Fatalf("CA-issued certificate refused: %v", err)
	}
	defer conn.Close()
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "device-1", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatalf("CA-issued certificate: %v", err)
	}
	// Disabling the device ends the pinned session and refuses the key.
	if _, err := reg.SetStatus("cam-3", registry.StatusDisabled); err != nil {
		t.Fatal(err)
	}
	if _, _, err := dial(registered, 0); err == nil {
		t.Fatal("a disabled device's key was accepted")
	}
}
