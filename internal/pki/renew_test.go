package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestNeedsRenewal(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cert := &x509.Certificate{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * time.Second)}
	for _, tt := range []struct {
		threshold time.Duration
		at        time.Time
		want      bool
	}{
		{5 * time.Second, now, false},
		{10 * time.Second, now, true}, // exactly at the threshold
		{11 * time.Second, now, true},
		{0, now.Add(9 * time.Second), false},
		{0, now.Add(10 * time.Second), true}, // expired
		{0, now.Add(time.Hour), true},
	} {
		if got := NeedsRenewal(cert, tt.threshold, tt.at); got != tt.want {
			t.Errorf("threshold %v at %v: %v, want %v", tt.threshold, tt.at.Sub(now), got, tt.want)
		}
	}
	if !NeedsRenewal(nil, 0, now) {
		t.Error("nil cert")
	}
}

func loadPair(t *testing.T, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("key pair does not load: %v", err)
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRenewServer(t *testing.T) {
	t.Parallel()
	ca := newCA(t, InitOptions{TwoTier: true})
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	// Certificate times have one-second precision: 6 s of validity leave at
	// least 5 s, so the "not due" check below (threshold 2 s) holds even
	// if the machine stalls for a few seconds.
	req := ServerRequest{DNS: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Validity: 6 * time.Second}

	// First call: no files yet, so it issues.
	renewed, err := ca.RenewServer(certFile, keyFile, req, 2*time.Second)
	if err != nil || !renewed {
		t.Fatalf("first: %v %v", renewed, err)
	}
	c1 := loadPair(t, certFile, keyFile)
	if fi, _ := os.Stat(keyFile); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode())
	}
	pair, _ := tls.LoadX509KeyPair(certFile, keyFile)
	if len(pair.Certificate) != 2 {
		t.Fatalf("cert file holds %d certificates, want leaf+intermediate", len(pair.Certificate))
	}
	certBytes, keyBytes := must(os.ReadFile(certFile)), must(os.ReadFile(keyFile))

	// Not due yet (more than 2 s left): untouched. Names default to the
	// certificate's.
	renewed, err = ca.RenewServer(certFile, keyFile, ServerRequest{Validity: 6 * time.Second}, 2*time.Second)
	if err != nil || renewed {
		t.Fatalf("early: %v %v", renewed, err)
	}
	if !bytes.Equal(certBytes, must(os.ReadFile(certFile))) || !bytes.Equal(keyBytes, must(os.ReadFile(keyFile))) {
		t.Fatal("files changed while not due")
	}

	// Inside the threshold: replaced, with a new key and serial.
	time.Sleep(time.Until(c1.NotAfter.Add(-2*time.Second)) + 50*time.Millisecond)
	renewed, err = ca.RenewServer(certFile, keyFile, req, 2*time.Second)
	if err != nil || !renewed {
		t.Fatalf("due: %v %v", renewed, err)
	}
	c2 := loadPair(t, certFile, keyFile)
	if c2.SerialNumber.Cmp(c1.SerialNumber) == 0 || !c2.NotAfter.After(c1.NotAfter) || bytes.Equal(keyBytes, must(os.ReadFile(keyFile))) {
		t.Fatal("not a new certificate and key")
	}
	if len(c2.DNSNames) != 1 || c2.DNSNames[0] != "localhost" || !c2.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Fatalf("names %v %v", c2.DNSNames, c2.IPAddresses)
	}

	// Changed names: renewed at once.
	renewed, err = ca.RenewServer(certFile, keyFile, ServerRequest{DNS: []string{"localhost", "broker.lan"}, Validity: time.Hour}, time.Second)
	if err != nil || !renewed {
		t.Fatalf("names changed: %v %v", renewed, err)
	}
	c3 := loadPair(t, certFile, keyFile)
	// Default threshold is a third of the lifetime: a fresh 1 h cert is not due.
	if renewed, err = ca.RenewServer(certFile, keyFile, ServerRequest{}, 0); err != nil || renewed {
		t.Fatalf("default threshold: %v %v", renewed, err)
	}
	// Revoked: renewed.
	if err := ca.Revoke(c3.SerialNumber, ReasonSuperseded); err != nil {
		t.Fatal(err)
	}
	if renewed, err = ca.RenewServer(certFile, keyFile, ServerRequest{}, 0); err != nil || !renewed {
		t.Fatalf("revoked: %v %v", renewed, err)
	}
	// Key missing: renewed.
	os.Remove(keyFile)
	if renewed, err = ca.RenewServer(certFile, keyFile, ServerRequest{}, 0); err != nil || !renewed {
		t.Fatalf("key missing: %v %v", renewed, err)
	}
	loadPair(t, certFile, keyFile)

	// No temporary files left behind.
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("%d files in dir", len(ents))
	}
}

func TestRenewServerCombinedFile(t *testing.T) {
	ca := newCA(t, InitOptions{})
	f := filepath.Join(t.TempDir(), "server.pem")
	if renewed, err := ca.RenewServer(f, "", ServerRequest{DNS: []string{"localhost"}}, 0); err != nil || !renewed {
		t.Fatalf("%v %v", renewed, err)
	}
	loadPair(t, f, f)
	if fi, _ := os.Stat(f); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if renewed, err := ca.RenewServer(f, f, ServerRequest{}, 0); err != nil || renewed {
		t.Fatalf("second: %v %v", renewed, err)
	}
}

func TestRenewServerForeign(t *testing.T) {
	ca := newCA(t, InitOptions{})
	other := newCA(t, InitOptions{})
	dir := t.TempDir()
	iss, _ := other.IssueServer(ServerRequest{DNS: []string{"localhost"}, Validity: time.Second})
	files, _ := WritePEM(dir, "server", iss)
	before := must(os.ReadFile(files.CertFile))
	if _, err := ca.RenewServer(files.CertFile, files.KeyFile, ServerRequest{}, time.Hour); !errors.Is(err, ErrForeignCert) {
		t.Fatalf("foreign: %v", err)
	}
	if !bytes.Equal(before, must(os.ReadFile(files.CertFile))) {
		t.Fatal("foreign cert replaced")
	}
	os.WriteFile(files.CertFile, []byte("junk"), 0o644)
	if _, err := ca.RenewServer(files.CertFile, files.KeyFile, ServerRequest{}, time.Hour); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("junk: %v", err)
	}
}

// TestRenewServedTLS: a TLS server reading the files on each handshake
// keeps accepting clients across renewals of a seconds-long certificate.
func TestRenewServedTLS(t *testing.T) {
	t.Parallel()
	ca := newCA(t, InitOptions{})
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "s.pem"), filepath.Join(dir, "s.key")
	// 4 s certificates renewed when 3 s or less remain: one renewal about
	// every second, and a served certificate always has more than 2 s
	// left (times have one-second precision), so a loaded machine does
	// not make the handshake meet an expired certificate.
	req := ServerRequest{IPs: []net.IP{net.ParseIP("127.0.0.1")}, Validity: 4 * time.Second}
	if _, err := ca.RenewServer(certFile, keyFile, req, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		return &c, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Root())
	seen := map[string]bool{}
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := ca.RenewServer(certFile, keyFile, req, 3*time.Second); err != nil {
			t.Fatal(err)
		}
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("handshake across renewal: %v", err)
		}
		seen[conn.ConnectionState().PeerCertificates[0].SerialNumber.String()] = true
		conn.Close()
		time.Sleep(200 * time.Millisecond)
	}
	if len(seen) < 2 {
		t.Fatalf("saw %d certificates, want renewals", len(seen))
	}
}
