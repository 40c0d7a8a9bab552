package tlstest

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"moat/internal/config"
	"moat/internal/testpki"
	"moat/internal/tlspolicy"
)

// noWatch keeps the file watcher out of tests that drive Reload
// themselves.
func noWatch(l *config.Listener) { l.TLS.ReloadInterval.Duration = time.Hour }

// TestReloadServerCertificate: the certificate and key files are replaced
// while a client stays connected; Reload (what SIGHUP calls) makes new
// handshakes use the new certificate and keeps the connection. A broken
// certificate file or a key that does not match keeps the previous
// material, returns the error and shows it in TLSStatus.
func TestReloadServerCertificate(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	b := start(t, tlsListener(p, noWatch), anonymous)
	addr := b.addr(t, "tls")
	certFile, keyFile := p.Server.CertFile, p.Server.KeyFile

	old := connectTLS(t, addr, clientTLS(p, nil), "stays")
	if got, want := leafSerial(old.conn.(*tls.Conn)), serialOf(p.Server.Cert.Cert); got != want {
		t.Fatalf("initial certificate %s, want %s", got, want)
	}
	newServerCert := func() *testpki.Cert {
		t.Helper()
		c, err := p.Intermediate.Issue(testpki.ServerSpec())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	write := func(path string, data []byte) {
		t.Helper()
		if err := testpki.WriteFile(path, data); err != nil {
			t.Fatal(err)
		}
	}
	// expectServing checks that a new handshake gets the certificate with
	// serial want and that MQTT works over it and over the old connection.
	expectServing := func(want *testpki.Cert) {
		t.Helper()
		c := mustDialTLS(t, addr, clientTLS(p, nil))
		if got := leafSerial(c); got != serialOf(want.Cert) {
			t.Fatalf("new handshake got certificate serial %s, want %s", got, serialOf(want.Cert))
		}
		mustConnect(t, c, &paho.Connect{ClientID: uniqueID("new"), CleanStart: true}).roundTrip("reload/new")
		old.roundTrip("reload/old")
	}

	// 1. A new certificate and key.
	second := newServerCert()
	write(keyFile, second.KeyPEM())
	write(certFile, second.CertPEM())
	if err := b.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	expectServing(second)
	st := b.TLSStatus()["tls"]
	if st.Reloads != 1 || st.Failures != 0 || st.LastError != "" {
		t.Fatalf("status after a good reload: %+v", st)
	}
	goodAt := st.LastSuccess
	if na := st.NotAfter[certFile]; !na.Equal(second.Cert.NotAfter) {
		t.Errorf("status NotAfter[%s] = %v, want %v", certFile, na, second.Cert.NotAfter)
	}

	// 2. Garbage PEM.
	mark := b.logs.mark()
	write(certFile, []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"))
	err := b.Reload()
	if err == nil {
		t.Fatal("Reload accepted a garbage certificate file")
	}
	if !strings.Contains(err.Error(), certFile) {
		t.Errorf("reload error does not name the file: %v", err)
	}
	b.logs.waitFrom(t, mark, "reload failure log", func(r logRec) bool {
		return r.level == slog.LevelError && strings.Contains(r.msg, "reload failed")
	})
	expectServing(second)
	st = b.TLSStatus()["tls"]
	if st.Failures != 1 || st.LastError == "" || st.Reloads != 1 || !st.LastSuccess.Equal(goodAt) {
		t.Fatalf("status after a failed reload: %+v", st)
	}

	// 3. A valid certificate whose key is not the one in the key file.
	third := newServerCert()
	write(certFile, third.CertPEM())
	if err := b.Reload(); !errors.Is(err, tlspolicy.ErrKeyMismatch) {
		t.Fatalf("Reload with a mismatched key: %v, want ErrKeyMismatch", err)
	}
	expectServing(second)
	if st := b.TLSStatus()["tls"]; st.Failures != 2 || st.LastError == "" {
		t.Fatalf("status after a mismatched key: %+v", st)
	}

	// 4. Fixed: the key arrives too.
	write(keyFile, third.KeyPEM())
	if err := b.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	expectServing(third)
	if st := b.TLSStatus()["tls"]; st.Reloads != 2 || st.LastError != "" {
		t.Fatalf("status after recovery: %+v", st)
	}
}

// TestReloadOnFileChange: without SIGHUP, the watcher notices replaced
// files (reload_interval, minimum 1s) and reloads.
func TestReloadOnFileChange(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	b := start(t, tlsListener(p, func(l *config.Listener) { l.TLS.ReloadInterval.Duration = time.Second }), anonymous)
	addr := b.addr(t, "tls")
	old := connectTLS(t, addr, clientTLS(p, nil), "stays")

	next, err := p.Intermediate.Issue(testpki.ServerSpec())
	if err != nil {
		t.Fatal(err)
	}
	mark := b.logs.mark()
	if _, _, err := next.Write(p.Dir, "server"); err != nil {
		t.Fatal(err)
	}
	b.logs.waitFrom(t, mark, "watcher reload", func(r logRec) bool { return r.msg == "tls reload complete" })
	if got := leafSerial(mustDialTLS(t, addr, clientTLS(p, nil))); got != serialOf(next.Cert) {
		t.Fatalf("after the watcher's reload a new handshake got serial %s, want %s", got, serialOf(next.Cert))
	}
	old.roundTrip("watch/old")
}

// TestReloadClientCA: the client CA bundle is replaced. A certificate from
// a second CA is refused before and accepted after the reload; removing
// the first CA refuses its devices on new handshakes, also those that try
// to resume a TLS session from before, while a connected device stays.
func TestReloadClientCA(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	bundle := filepath.Join(p.Dir, "client-ca.pem")
	if err := testpki.WriteFile(bundle, testpki.CertsPEM(p.Root.Cert.Cert)); err != nil {
		t.Fatal(err)
	}
	second, err := testpki.NewRoot("second client CA")
	if err != nil {
		t.Fatal(err)
	}
	dev3, err := testpki.IssueFiles(second, testpki.Device(3), p.Dir, "device3")
	if err != nil {
		t.Fatal(err)
	}
	off := false
	b := start(t, tlsListener(p, func(l *config.Listener) {
		noWatch(l)
		l.TLS.ClientAuth = "required"
		l.TLS.ClientCA = []string{bundle}
		l.TLS.BindClientID = &off // several connections of device-1 at once
	}))
	addr := b.addr(t, "tls")

	cache := tls.NewLRUClientSessionCache(8)
	dev1 := func() *tls.Config {
		c := clientTLS(p, p.Client)
		c.ClientSessionCache = cache
		return c
	}
	keep := connectTLS(t, addr, dev1(), "device-1-keep")
	keep.roundTrip("ca/keep") // the session ticket has arrived by now
	if r := mustDialTLS(t, addr, dev1()); !r.ConnectionState().DidResume {
		t.Fatal("precondition: device-1 did not resume its TLS session")
	}

	refused := func(cfg *tls.Config, reason string) {
		t.Helper()
		mark, before := b.logs.mark(), b.HandshakeFailures()
		if conn, err := dialTLS(t, addr, cfg); err == nil {
			if conn.ConnectionState().DidResume {
				t.Errorf("handshake resumed a session issued under the old client CAs")
			}
			if _, ca, err := mqttConnect(t, conn, &paho.Connect{ClientID: uniqueID("refused"), CleanStart: true}); err == nil {
				t.Fatalf("connected (connack %s), want refusal", connackString(ca))
			}
		}
		b.expectHandshakeFailure(t, mark, reason, before)
	}

	refused(clientTLS(p, dev3), tlspolicy.ReasonUnknownCA)

	if err := testpki.WriteFile(bundle, testpki.CertsPEM(p.Root.Cert.Cert, second.Cert.Cert)); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	connectTLS(t, addr, clientTLS(p, dev3), "device-3").roundTrip("ca/dev3")
	connectTLS(t, addr, clientTLS(p, p.Client), "device-1-new").roundTrip("ca/dev1")
	keep.roundTrip("ca/keep")

	// Drop the first CA: its devices are refused from now on, also when
	// they present a session ticket from before; connections stay.
	if err := testpki.WriteFile(bundle, testpki.CertsPEM(second.Cert.Cert)); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	refused(dev1(), tlspolicy.ReasonUnknownCA)
	keep.roundTrip("ca/keep")
	connectTLS(t, addr, clientTLS(p, dev3), "device-3-again").roundTrip("ca/dev3")
}
