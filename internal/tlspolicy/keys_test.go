package tlspolicy

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func needOpenSSL(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	return path
}

func runOpenSSL(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command(needOpenSSL(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// serverFor issues a server certificate for key material already generated.
func serverIssued(t testing.TB, pki *testPKI, kt testKeyType) *issued {
	return issue(t, pki.inter, certSpec{subject: pkix.Name{CommonName: "localhost"}, dns: []string{"localhost"},
		eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, keyType: kt})
}

// checkServes starts an echo server from opts and completes a handshake
// that verifies the chain.
func checkServes(t *testing.T, pki *testPKI, opts Options) {
	t.Helper()
	p := mustNew(t, opts)
	srv := startEcho(t, p.TLSConfig())
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c, err := dialClient(srv.addr, &tls.Config{RootCAs: pki.root.pool(), MinVersion: v, MaxVersion: v})
		if err != nil {
			t.Fatalf("%s: %v", tls.VersionName(v), err)
		}
		c.Close()
	}
}

func TestKeyFormats(t *testing.T) {
	pki := newTestPKI(t)
	dir := pki.dir
	ec := serverIssued(t, pki, keyECDSA)
	rs := serverIssued(t, pki, keyRSA)
	ed := serverIssued(t, pki, keyEd25519)
	chain := func(i *issued) []byte { return certPEM(i.cert, pki.inter.cert) }

	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rs.key.(*rsa.PrivateKey))})
	sec1DER, err := x509.MarshalECPrivateKey(ec.key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1DER})
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})

	for _, tc := range []struct {
		name      string
		cert, key []byte // key nil: combined into the cert file
	}{
		{"RSA PKCS#1", chain(rs), pkcs1},
		{"RSA PKCS#8", chain(rs), pkcs8PEM(t, rs.key)},
		{"EC SEC1", chain(ec), sec1},
		{"EC SEC1 after EC PARAMETERS", chain(ec), append(ecParams, sec1...)},
		{"EC PKCS#8", chain(ec), pkcs8PEM(t, ec.key)},
		{"Ed25519 PKCS#8", chain(ed), pkcs8PEM(t, ed.key)},
		{"combined cert+key file", append(chain(ec), pkcs8PEM(t, ec.key)...), nil},
		{"key before cert in combined file", append(pkcs8PEM(t, ec.key), chain(ec)...), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.NewReplacer(" ", "_", "#", "", "+", "_").Replace(tc.name)
			src := CertSource{CertFile: writeFile(t, dir, name+".crt", tc.cert)}
			if tc.key != nil {
				src.KeyFile = writeFile(t, dir, name+".key", tc.key)
			}
			checkServes(t, pki, Options{Certs: []CertSource{src}})
		})
	}
}

func TestKeyErrors(t *testing.T) {
	pki := newTestPKI(t)
	dir := pki.dir
	other := serverIssued(t, pki, keyECDSA)
	otherKey := writeFile(t, dir, "other.key", pkcs8PEM(t, other.key))
	weak := issue(t, pki.inter, certSpec{subject: pkix.Name{CommonName: "weak"}, keyType: keyRSA, rsaBits: 1024})
	weakCert, weakKey := writeChain(t, dir, "weak", weak)
	sec1DER, _ := x509.MarshalECPrivateKey(pki.server.key.(*ecdsa.PrivateKey))
	legacy := writeFile(t, dir, "legacy.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"}, Bytes: sec1DER}))
	garbage := writeFile(t, dir, "garbage.pem", []byte("not pem at all\n"))
	badCert := writeFile(t, dir, "badcert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x01}}))
	opensshKey := writeFile(t, dir, "ssh.key", pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte("x")}))
	big := writeFile(t, dir, "big.pem", make([]byte, maxFileSize+1))

	for _, tc := range []struct {
		name     string
		src      CertSource
		want     error
		mentions []string
	}{
		{"key of another cert", CertSource{CertFile: pki.serverCert, KeyFile: otherKey}, ErrKeyMismatch, []string{otherKey, pki.serverCert}},
		{"RSA 1024", CertSource{CertFile: weakCert, KeyFile: weakKey}, ErrWeakKey, []string{weakKey}},
		{"legacy PEM encryption", CertSource{CertFile: pki.serverCert, KeyFile: legacy}, ErrUnsupportedKey, []string{legacy, "pkcs8 -topk8"}},
		{"no key in file", CertSource{CertFile: pki.serverCert, KeyFile: garbage}, ErrNoPrivateKey, []string{garbage}},
		{"no cert in file", CertSource{CertFile: garbage, KeyFile: pki.serverKey}, ErrNoCertificate, []string{garbage}},
		{"unparsable cert", CertSource{CertFile: badCert, KeyFile: pki.serverKey}, ErrBadCertificate, []string{badCert}},
		{"OpenSSH key", CertSource{CertFile: pki.serverCert, KeyFile: opensshKey}, ErrUnsupportedKey, []string{opensshKey}},
		{"missing cert file", CertSource{CertFile: filepath.Join(dir, "nope.crt"), KeyFile: pki.serverKey}, ErrReadFile, []string{"nope.crt"}},
		{"directory as key", CertSource{CertFile: pki.serverCert, KeyFile: dir}, ErrReadFile, []string{dir}},
		{"oversized file", CertSource{CertFile: big, KeyFile: pki.serverKey}, ErrReadFile, []string{big}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Options{Certs: []CertSource{tc.src}}, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

// encryptedKeyCase is an openssl command line that writes an encrypted
// PKCS#8 key (in.pem -> out.pem) with password pw.
type encryptedKeyCase struct {
	name string
	args func(in, out, pw string) []string
	kt   testKeyType
	want error // nil: loads
}

var opensslEncryptCases = []encryptedKeyCase{
	{"pkcs8 aes256 hmacWithSHA256", func(in, out, pw string) []string {
		return []string{"pkcs8", "-topk8", "-in", in, "-out", out, "-v2", "aes256", "-v2prf", "hmacWithSHA256", "-passout", "pass:" + pw}
	}, keyECDSA, nil},
	{"pkcs8 aes128 hmacWithSHA1", func(in, out, pw string) []string {
		return []string{"pkcs8", "-topk8", "-in", in, "-out", out, "-v2", "aes128", "-v2prf", "hmacWithSHA1", "-passout", "pass:" + pw}
	}, keyECDSA, nil},
	{"pkcs8 aes192 hmacWithSHA384", func(in, out, pw string) []string {
		return []string{"pkcs8", "-topk8", "-in", in, "-out", out, "-v2", "aes192", "-v2prf", "hmacWithSHA384", "-passout", "pass:" + pw}
	}, keyECDSA, nil},
	{"pkcs8 aes256 hmacWithSHA512 iter 100000", func(in, out, pw string) []string {
		return []string{"pkcs8", "-topk8", "-in", in, "-out", out, "-v2", "aes256", "-v2prf", "hmacWithSHA512", "-iter", "100000", "-passout", "pass:" + pw}
	}, keyECDSA, nil},
	{"pkcs8 aes256 hmacWithSHA224", func(in, out, pw string) []string {
		return []string{"pkcs8", "-topk8", "-in", in, "-out", out, "-v2", "aes256", "-v2prf", "hmacWithSHA224", "-passout", "pass:" + pw}
	}, keyECDSA, nil},
	{"pkcs8 scrypt", func(in, out, pw string) []string {
		return []string{"pkcs8", "-topk8", "-in", in, "-out", out, "-scrypt", "-passout", "pass:" + pw}
	}, keyECDSA, nil},
	{"pkey aes256 RSA", func(in, out, pw string) []string {
		return []string{"pkey", "-in", in, "-out", out, "-aes256", "-passout", "pass:" + pw}
	}, keyRSA, nil},
	{"pkey aes-128-cbc Ed25519", func(in, out, pw string) []string {
		return []string{"pkey", "-in", in, "-out", out, "-aes-128-cbc", "-passout", "pass:" + pw}
	}, keyEd25519, nil},
	{"pkcs8 des3 refused", func(in, out, pw string) []string {
		return []string{"pkcs8", "-topk8", "-in", in, "-out", out, "-v2", "des3", "-passout", "pass:" + pw}
	}, keyECDSA, ErrEncryptedKeyFormat},
	{"pkcs8 PBES1 refused", func(in, out, pw string) []string {
		return []string{"pkcs8", "-topk8", "-in", in, "-out", out, "-v1", "PBE-SHA1-3DES", "-passout", "pass:" + pw}
	}, keyECDSA, ErrEncryptedKeyFormat},
}

func TestEncryptedKeysFromOpenSSL(t *testing.T) {
	needOpenSSL(t)
	pki := newTestPKI(t)
	const pw = `c0rrect horse "battery" $taple ümlaut`
	for i, tc := range opensslEncryptCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			srv := serverIssued(t, pki, tc.kt)
			certFile := writeFile(t, dir, "server.crt", certPEM(srv.cert, pki.inter.cert))
			plain := writeFile(t, dir, "plain.key", pkcs8PEM(t, srv.key))
			keyFile := filepath.Join(dir, "enc.key")
			runOpenSSL(t, tc.args(plain, keyFile, pw)...)
			os.Remove(plain)
			data, _ := os.ReadFile(keyFile)
			if !strings.Contains(string(data), "BEGIN ENCRYPTED PRIVATE KEY") {
				t.Fatalf("openssl did not write an encrypted PKCS#8 key:\n%s", data)
			}

			pwFile := writeFile(t, dir, "pw", []byte(pw+"\n"))
			env := "MOAT_TEST_KEY_PW_" + string(rune('A'+i))
			t.Setenv(env, pw)

			for _, src := range []CertSource{
				{CertFile: certFile, KeyFile: keyFile, KeyPasswordFile: pwFile},
				{CertFile: certFile, KeyFile: keyFile, KeyPasswordEnv: env},
			} {
				log, logBuf := testLogger(t)
				p, err := New(Options{Certs: []CertSource{src}}, log)
				if tc.want != nil {
					if !errors.Is(err, tc.want) {
						t.Fatalf("got %v, want %v", err, tc.want)
					}
					if !strings.Contains(err.Error(), keyFile) {
						t.Errorf("error does not name the key file: %v", err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(logBuf.String(), pw) {
					t.Error("password logged")
				}
				s := startEcho(t, p.TLSConfig())
				c, err := dialClient(s.addr, &tls.Config{RootCAs: pki.root.pool()})
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
			}
			if tc.want != nil {
				return
			}

			// Wrong password, from a file and from the environment.
			wrongFile := writeFile(t, dir, "wrong", []byte("not the password\n"))
			t.Setenv(env, "not the password either")
			for _, src := range []CertSource{
				{CertFile: certFile, KeyFile: keyFile, KeyPasswordFile: wrongFile},
				{CertFile: certFile, KeyFile: keyFile, KeyPasswordEnv: env},
			} {
				log, logBuf := testLogger(t)
				_, err := New(Options{Certs: []CertSource{src}}, log)
				if !errors.Is(err, ErrKeyPasswordIncorrect) {
					t.Fatalf("wrong password: got %v", err)
				}
				if !strings.Contains(err.Error(), keyFile) {
					t.Errorf("error does not name the key file: %v", err)
				}
				if strings.Contains(err.Error(), "not the password") || strings.Contains(logBuf.String(), "not the password") {
					t.Error("password echoed")
				}
			}

			// No password configured.
			_, err := New(Options{Certs: []CertSource{{CertFile: certFile, KeyFile: keyFile}}}, nil)
			if !errors.Is(err, ErrKeyPasswordRequired) {
				t.Fatalf("no password: got %v", err)
			}
		})
	}
}

func TestKeyPasswordSources(t *testing.T) {
	pki := newTestPKI(t)
	dir := pki.dir
	const pw = "s3cret-Pa55"
	der, err := x509.MarshalPKCS8PrivateKey(pki.server.key)
	if err != nil {
		t.Fatal(err)
	}
	enc := encryptPKCS8ForTest(t, der, []byte(pw), encParams{kdf: "pbkdf2", prf: oidHMACSHA256, iter: 1000, cipher: oidAES256CBC})
	keyFile := writeFile(t, dir, "enc.key", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: enc}))
	src := func(mod func(*CertSource)) CertSource {
		s := CertSource{CertFile: pki.serverCert, KeyFile: keyFile}
		mod(&s)
		return s
	}

	t.Run("CRLF trimmed", func(t *testing.T) {
		f := writeFile(t, dir, "crlf", []byte(pw+"\r\n"))
		mustNew(t, Options{Certs: []CertSource{src(func(s *CertSource) { s.KeyPasswordFile = f })}})
	})
	t.Run("no newline", func(t *testing.T) {
		f := writeFile(t, dir, "nonl", []byte(pw))
		mustNew(t, Options{Certs: []CertSource{src(func(s *CertSource) { s.KeyPasswordFile = f })}})
	})
	t.Run("only one newline trimmed", func(t *testing.T) {
		f := writeFile(t, dir, "twonl", []byte(pw+"\n\n"))
		_, err := New(Options{Certs: []CertSource{src(func(s *CertSource) { s.KeyPasswordFile = f })}}, nil)
		if !errors.Is(err, ErrKeyPasswordIncorrect) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("empty file", func(t *testing.T) {
		f := writeFile(t, dir, "empty", []byte("\n"))
		_, err := New(Options{Certs: []CertSource{src(func(s *CertSource) { s.KeyPasswordFile = f })}}, nil)
		if !errors.Is(err, ErrKeyPasswordSource) || !strings.Contains(err.Error(), f) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		f := filepath.Join(dir, "absent")
		_, err := New(Options{Certs: []CertSource{src(func(s *CertSource) { s.KeyPasswordFile = f })}}, nil)
		if !errors.Is(err, ErrKeyPasswordSource) || !errors.Is(err, ErrReadFile) || !strings.Contains(err.Error(), f) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("group-readable file warns", func(t *testing.T) {
		f := writeFile(t, dir, "loose", []byte(pw+"\n"))
		if err := os.Chmod(f, 0o640); err != nil {
			t.Fatal(err)
		}
		log, buf := testLogger(t)
		if _, err := New(Options{Certs: []CertSource{src(func(s *CertSource) { s.KeyPasswordFile = f })}}, log); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "readable by group or others") {
			t.Error("no warning about the password file mode")
		}
		if strings.Contains(buf.String(), pw) {
			t.Error("password logged")
		}
	})
	t.Run("env unset", func(t *testing.T) {
		_, err := New(Options{Certs: []CertSource{src(func(s *CertSource) { s.KeyPasswordEnv = "MOAT_TEST_UNSET_VARIABLE" })}}, nil)
		if !errors.Is(err, ErrKeyPasswordSource) || !strings.Contains(err.Error(), "MOAT_TEST_UNSET_VARIABLE") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("both sources", func(t *testing.T) {
		_, err := New(Options{Certs: []CertSource{src(func(s *CertSource) { s.KeyPasswordEnv = "X"; s.KeyPasswordFile = "y" })}}, nil)
		if !errors.Is(err, ErrInvalidOptions) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("password for a plain key warns", func(t *testing.T) {
		f := writeFile(t, dir, "pw2", []byte(pw))
		log, buf := testLogger(t)
		if _, err := New(Options{Certs: []CertSource{{CertFile: pki.serverCert, KeyFile: pki.serverKey, KeyPasswordFile: f}}}, log); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "not encrypted") {
			t.Error("no warning")
		}
	})
}
