package tlstest

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/config"
	"moat/internal/testpki"
	"moat/internal/tlspolicy"
)

// TestEncryptedKey: the server key is an encrypted PKCS#8 file (PBES2,
// PBKDF2-HMAC-SHA256, AES-256-CBC) whose password comes from an environment
// variable or a file. The right password serves TLS end to end; a wrong or
// missing one makes start-up fail with an error that names the source but
// never contains a password, and nothing is logged that does.
//
// Not parallel: t.Setenv.
func TestEncryptedKey(t *testing.T) {
	const (
		env      = "MOAT_TLSTEST_KEY_PASSWORD"
		password = "correct horse battery staple 7f3a"
		wrong    = "Tr0ub4dor&3-wrong-9c1e"
	)
	p := newPKI(t)
	encKey := filepath.Join(p.Dir, "server-enc.key")
	pem, err := p.Server.EncryptedKeyPEM([]byte(password), 10000)
	if err != nil {
		t.Fatal(err)
	}
	if err := testpki.WriteFile(encKey, pem); err != nil {
		t.Fatal(err)
	}
	passFile := filepath.Join(p.Dir, "key-password")
	if err := testpki.WriteFile(passFile, []byte(password+"\n")); err != nil {
		t.Fatal(err)
	}
	wrongFile := filepath.Join(p.Dir, "wrong-password")
	if err := testpki.WriteFile(wrongFile, []byte(wrong+"\n")); err != nil {
		t.Fatal(err)
	}
	withKey := func(mod func(*config.TLS)) option {
		return tlsListener(p, func(l *config.Listener) {
			l.TLS.Key = encKey
			mod(l.TLS)
		})
	}
	noSecrets := func(t *testing.T, logs *logRecorder, texts ...string) {
		t.Helper()
		for _, r := range logs.all() {
			s := r.String()
			for _, secret := range []string{password, wrong} {
				if strings.Contains(s, secret) {
					t.Errorf("a password is in the log: %s", s)
				}
			}
		}
		for _, s := range texts {
			for _, secret := range []string{password, wrong} {
				if strings.Contains(s, secret) {
					t.Errorf("a password is in the error: %s", s)
				}
			}
		}
	}

	t.Run("env", func(t *testing.T) {
		t.Setenv(env, password)
		b := start(t, withKey(func(c *config.TLS) { c.KeyPasswordEnv = env }), anonymous)
		c := mustDialTLS(t, b.addr(t, "tls"), clientTLS(p, nil))
		if got := leafSerial(c); got != serialOf(p.Server.Cert.Cert) {
			t.Fatalf("served certificate %s, want %s", got, serialOf(p.Server.Cert.Cert))
		}
		connectTLS(t, b.addr(t, "tls"), clientTLS(p, nil), "enc-env").roundTrip("enc")
		noSecrets(t, b.logs)
	})
	t.Run("openssl_made_key", func(t *testing.T) {
		// The same, with the key encrypted by openssl pkcs8 -topk8 (scrypt
		// here; the PBKDF2 form is what testpki writes).
		t.Setenv(env, password)
		sslKey := filepath.Join(t.TempDir(), "server-openssl.key")
		if out, err := run(t, "", "openssl", "pkcs8", "-topk8", "-scrypt", "-in", p.Server.KeyFile,
			"-out", sslKey, "-passout", "env:"+env); err != nil {
			t.Fatalf("openssl pkcs8: %v: %s", err, out)
		}
		b := start(t, tlsListener(p, func(l *config.Listener) {
			l.TLS.Key = sslKey
			l.TLS.KeyPasswordEnv = env
		}), anonymous)
		connectTLS(t, b.addr(t, "tls"), clientTLS(p, nil), "enc-openssl").roundTrip("enc")
	})
	t.Run("file", func(t *testing.T) {
		b := start(t, withKey(func(c *config.TLS) { c.KeyPasswordFile = passFile }), anonymous)
		connectTLS(t, b.addr(t, "tls"), clientTLS(p, nil), "enc-file").roundTrip("enc")
		noSecrets(t, b.logs)
	})

	fails := []struct {
		name string
		env  string // value of env; "" leaves it unset
		mod  func(*config.TLS)
		want error
	}{
		{"wrong_env_password", wrong, func(c *config.TLS) { c.KeyPasswordEnv = env }, tlspolicy.ErrKeyPasswordIncorrect},
		{"wrong_file_password", "", func(c *config.TLS) { c.KeyPasswordFile = wrongFile }, tlspolicy.ErrKeyPasswordIncorrect},
		{"env_unset", "", func(c *config.TLS) { c.KeyPasswordEnv = env + "_UNSET" }, tlspolicy.ErrKeyPasswordSource},
		{"no_password_configured", "", func(*config.TLS) {}, tlspolicy.ErrKeyPasswordRequired},
	}
	for _, tt := range fails {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv(env, tt.env)
			}
			srv, _, logs, err := newServer(t, withKey(tt.mod), anonymous)
			if err == nil {
				srv.Shutdown(t.Context())
				t.Fatal("broker started with an undecryptable key")
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %q, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), `"tls"`) {
				t.Errorf("error does not name the listener: %v", err)
			}
			noSecrets(t, logs, err.Error())
		})
	}
}
