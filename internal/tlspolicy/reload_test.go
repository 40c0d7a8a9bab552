package tlspolicy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func newServerCert(t testing.TB, pki *testPKI, cn string) *issued {
	return issue(t, pki.inter, certSpec{subject: pkix.Name{CommonName: cn}, dns: []string{"localhost"},
		eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
}

func installServerCert(t testing.TB, pki *testPKI, i *issued) {
	replaceFile(t, pki.serverCert, certPEM(i.cert, pki.inter.cert))
	replaceFile(t, pki.serverKey, pkcs8PEM(t, i.key))
}

func peerCN(t testing.TB, addr string, pki *testPKI) string {
	t.Helper()
	c, err := dialClient(addr, &tls.Config{RootCAs: pki.root.pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

func TestReloadSwapsCertsWithoutDroppingConnections(t *testing.T) {
	pki := newTestPKI(t)
	first := newServerCert(t, pki, "first")
	installServerCert(t, pki, first)
	log, logBuf := testLogger(t)
	p, err := New(Options{Certs: []CertSource{pki.serverSource()}}, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := startEcho(t, p.TLSConfig())

	held, err := dialClient(srv.addr, &tls.Config{RootCAs: pki.root.pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if cn := held.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "first" {
		t.Fatalf("cn %q", cn)
	}

	second := newServerCert(t, pki, "second")
	installServerCert(t, pki, second)
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(held, "still here\n"); err != nil {
		t.Fatalf("open connection broken by reload: %v", err)
	}
	if cn := peerCN(t, srv.addr, pki); cn != "second" {
		t.Fatalf("new handshake got %q, want second", cn)
	}
	st := p.Status()
	if st.Reloads != 1 || st.Failures != 0 || st.LastError != "" || !st.NotAfter[pki.serverCert].Equal(second.cert.NotAfter) {
		t.Fatalf("status %+v", st)
	}
	if !slices.Contains(st.Files, pki.serverCert) || !slices.Contains(st.Files, pki.serverKey) {
		t.Errorf("files %v", st.Files)
	}

	// Broken files: each failure keeps "second" in service.
	third := newServerCert(t, pki, "third")
	for i, breakIt := range []func(){
		func() {
			replaceFile(t, pki.serverCert, []byte("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"))
		},
		func() { // key of another certificate
			replaceFile(t, pki.serverCert, certPEM(third.cert, pki.inter.cert))
			replaceFile(t, pki.serverKey, pkcs8PEM(t, first.key))
		},
		func() { os.Remove(pki.serverKey) },
	} {
		breakIt()
		err := p.Reload()
		if err == nil {
			t.Fatalf("case %d: broken reload succeeded", i)
		}
		st := p.Status()
		if st.Failures != uint64(i+1) || st.Reloads != 1 || st.LastError == "" || st.LastAttempt.Before(st.LastSuccess) {
			t.Fatalf("case %d: status %+v", i, st)
		}
		if !strings.Contains(st.LastError, pki.serverCert) && !strings.Contains(st.LastError, pki.serverKey) {
			t.Errorf("case %d: last error does not name the file: %s", i, st.LastError)
		}
		if cn := peerCN(t, srv.addr, pki); cn != "second" {
			t.Fatalf("case %d: after a failed reload got %q", i, cn)
		}
		if err := roundTrip(held, "ok\n"); err != nil {
			t.Fatal(err)
		}
	}
	if !errors.Is(func() error { _, err := New(Options{Certs: []CertSource{pki.serverSource()}}, nil); return err }(), ErrReadFile) {
		t.Error("expected ErrReadFile for the removed key")
	}
	if !strings.Contains(logBuf.String(), "tls reload failed") {
		t.Error("failure not logged")
	}

	installServerCert(t, pki, third)
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	if cn := peerCN(t, srv.addr, pki); cn != "third" {
		t.Fatalf("got %q", cn)
	}
	if st := p.Status(); st.Reloads != 2 || st.LastError != "" {
		t.Fatalf("status %+v", st)
	}
}

func TestReloadClientCAs(t *testing.T) {
	pki := newTestPKI(t)
	caFile := writeFile(t, pki.dir, "clients.pem", certPEM(pki.root.cert))
	p := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}, ClientAuth: "required", ClientCAFiles: []string{caFile}})
	srv := startEcho(t, p.TLSConfig())

	newCA := newRoot(t, "new client CA")
	newClient := issue(t, newCA, certSpec{subject: pkix.Name{CommonName: "newcomer"}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	dial := func(who *issued) error {
		cert := who.tlsCert()
		c, err := dialClient(srv.addr, &tls.Config{RootCAs: pki.root.pool(),
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }})
		if err == nil {
			c.Close()
		}
		return err
	}
	held, err := dialClient(srv.addr, &tls.Config{RootCAs: pki.root.pool(), Certificates: []tls.Certificate{pki.clientGood.tlsCert()}})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if dial(newClient) == nil {
		t.Fatal("client of an unknown CA accepted")
	}
	if r := ClassifyHandshakeError(srv.nextErr(t)); r != ReasonUnknownCA {
		t.Fatalf("reason %q", r)
	}

	replaceFile(t, caFile, certPEM(newCA.cert)) // the old CA is dropped
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := dial(newClient); err != nil {
		t.Fatalf("client of the new CA refused: %v", err)
	}
	if err := dial(pki.clientGood); err == nil {
		t.Fatal("client of the removed CA accepted")
	}
	if err := roundTrip(held, "established connections stay\n"); err != nil {
		t.Fatal(err)
	}

	// A CA bundle without certificates keeps the previous bundle.
	replaceFile(t, caFile, []byte("# emptied by mistake\n"))
	if err := p.Reload(); !errors.Is(err, ErrNoClientCAs) {
		t.Fatalf("got %v", err)
	}
	if err := dial(newClient); err != nil {
		t.Fatalf("previous CA bundle not kept: %v", err)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func TestWatchReloadsOnChange(t *testing.T) {
	pki := newTestPKI(t)
	installServerCert(t, pki, newServerCert(t, pki, "first"))
	p := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}})
	srv := startEcho(t, p.TLSConfig())

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.Watch(ctx, 10*time.Millisecond) }()
	defer func() { cancel(); wg.Wait() }()

	installServerCert(t, pki, newServerCert(t, pki, "second"))
	waitFor(t, "watch reload", func() bool { return p.Status().Reloads == 1 })
	if cn := peerCN(t, srv.addr, pki); cn != "second" {
		t.Fatalf("got %q", cn)
	}

	// A broken file is tried once, not in a loop.
	replaceFile(t, pki.serverKey, []byte("garbage"))
	waitFor(t, "failed reload", func() bool { return p.Status().Failures == 1 })
	time.Sleep(100 * time.Millisecond) // ten more polls: no retry without a change
	if st := p.Status(); st.Failures != 1 || st.Reloads != 1 {
		t.Fatalf("status %+v", st)
	}
	if cn := peerCN(t, srv.addr, pki); cn != "second" {
		t.Fatalf("got %q", cn)
	}

	installServerCert(t, pki, newServerCert(t, pki, "third"))
	waitFor(t, "recovery", func() bool { return p.Status().Reloads == 2 })
	if cn := peerCN(t, srv.addr, pki); cn != "third" {
		t.Fatalf("got %q", cn)
	}
	if st := p.Status(); st.LastError != "" {
		t.Fatalf("status %+v", st)
	}
}

func TestConcurrentReloadAndHandshakes(t *testing.T) {
	pki := newTestPKI(t)
	p := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}})
	srv := startEcho(t, p.TLSConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if err := p.Reload(); err != nil {
				t.Error(err)
				return
			}
			_ = p.Status()
		}
	}()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c, err := dialClient(srv.addr, &tls.Config{RootCAs: pki.root.pool()})
				if err != nil {
					t.Error(err)
					return
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
}
