// Package revocation tests revocation from CRL files end to end: a CRL
// file update takes effect without a restart, and a connected client whose
// certificate it revokes is disconnected.
package revocation

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"moat/internal/brokertest"
	"moat/internal/config"
	"moat/internal/testpki"
)

// writeCRL writes a CRL of the intermediate CA revoking serials.
func writeCRL(t *testing.T, path string, ca *testpki.CA, number int64, serials ...*big.Int) {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                time.Now().Add(-time.Minute),
		NextUpdate:                time.Now().Add(24 * time.Hour),
		RevokedCertificateEntries: entries,
	}, ca.Cert.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestCRLFileRevokesLiveClient(t *testing.T) {
	dir := t.TempDir()
	set, err := testpki.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	crl := filepath.Join(dir, "devices.crl")
	writeCRL(t, crl, set.Intermediate, 1)
	no := false
	b := brokertest.Start(t, func(c *config.Config) {
		c.Listeners = append(c.Listeners, config.Listener{Name: "tls", Type: "tls", Address: "127.0.0.1:0", TLS: &config.TLS{
			Cert: set.Server.CertFile, Key: set.Server.KeyFile, ClientAuth: "required", ClientCA: []string{set.CAFile},
			CRLFiles: []string{crl}, FetchCRLDP: &no, ReloadInterval: config.Duration{Duration: time.Second},
		}})
	})
	addr := b.Server.Addr("tls").String()
	dial := func(f *testpki.Files) (*paho.Client, chan byte, error) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: testpki.Pool(set.Root), ServerName: "localhost", Certificates: []tls.Certificate{f.TLSCertificate()}})
		if err != nil {
			return nil, nil, err
		}
		t.Cleanup(func() { conn.Close() })
		gone := make(chan byte, 1)
		c := paho.NewClient(paho.ClientConfig{Conn: conn, OnServerDisconnect: func(d *paho.Disconnect) { gone <- d.ReasonCode }})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = c.Connect(ctx, &paho.Connect{ClientID: f.Cert.Cert.Subject.CommonName, CleanStart: true, KeepAlive: 30})
		return c, gone, err
	}
	_, gone, err := dial(set.Client)
	if err != nil {
		t.Fatalf("device-1 before revocation: %v", err)
	}
	if _, _, err := dial(set.Client2); err != nil {
		t.Fatalf("device-2: %v", err)
	}
	// The CRL file is replaced: device-1 is revoked, without a restart.
	writeCRL(t, crl, set.Intermediate, 2, set.Client.Cert.Cert.SerialNumber)
	select {
	case code := <-gone:
		if code != 0x98 {
			t.Fatalf("DISCONNECT 0x%02x, want 0x98", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("revoked client still connected")
	}
	if _, _, err := dial(set.Client); err == nil {
		t.Fatal("revoked certificate accepted after the CRL update")
	}
	if _, _, err := dial(set.Client2); err != nil {
		t.Fatalf("device-2 refused after device-1's revocation: %v", err)
	}
	if n := b.Server.HandshakeFailures()["revoked"]; n == 0 {
		t.Fatalf("handshake failures: %v", b.Server.HandshakeFailures())
	}
}
