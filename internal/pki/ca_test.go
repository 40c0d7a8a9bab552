package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInitOpenEachAlg(t *testing.T) {
	for _, alg := range []KeyAlg{ECDSAP256, ECDSAP384, Ed25519, RSA3072} {
		for _, two := range []bool{false, true} {
			if alg == RSA3072 && two && testing.Short() {
				continue
			}
			name := alg.String() + map[bool]string{false: "/one-tier", true: "/two-tier"}[two]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				mk := testMasterKey(t)
				dir := filepath.Join(t.TempDir(), "pki")
				ca, err := Init(dir, InitOptions{Protector: mk, KeyAlg: alg, TwoTier: two, CommonName: "Test Root", Organization: "Acme"})
				if err != nil {
					t.Fatal(err)
				}
				root := ca.Root()
				if !root.IsCA || root.Subject.CommonName != "Test Root" || root.Subject.Organization[0] != "Acme" {
					t.Fatalf("root subject %v", root.Subject)
				}
				if got := root.NotAfter.Sub(root.NotBefore); got < DefaultRootValidity || got > DefaultRootValidity+time.Hour {
					t.Fatalf("root validity %v", got)
				}
				switch alg {
				case ECDSAP256, ECDSAP384:
					k := root.PublicKey.(*ecdsa.PublicKey)
					want := map[KeyAlg]elliptic.Curve{ECDSAP256: elliptic.P256(), ECDSAP384: elliptic.P384()}[alg]
					if k.Curve != want {
						t.Fatalf("curve %v", k.Curve.Params().Name)
					}
				case Ed25519:
					if _, ok := root.PublicKey.(ed25519.PublicKey); !ok {
						t.Fatalf("key %T", root.PublicKey)
					}
				case RSA3072:
					if n := root.PublicKey.(*rsa.PublicKey).N.BitLen(); n != 3072 {
						t.Fatalf("RSA %d", n)
					}
				}
				if two {
					in := ca.Issuer()
					if in == root || !in.IsCA || !in.MaxPathLenZero || in.CheckSignatureFrom(root) != nil {
						t.Fatal("intermediate not a CA signed by the root")
					}
					if got := in.NotAfter.Sub(in.NotBefore); got < DefaultIntermediateValidity || got > DefaultIntermediateValidity+time.Hour {
						t.Fatalf("intermediate validity %v", got)
					}
					if !bytes.Equal(in.AuthorityKeyId, root.SubjectKeyId) {
						t.Fatal("intermediate AKI")
					}
				} else if ca.Issuer() != root || ca.IntermediateFile() != "" {
					t.Fatal("one-tier issuer is not the root")
				}
				iss, err := ca.IssueServer(ServerRequest{DNS: []string{"localhost"}})
				if err != nil {
					t.Fatal(err)
				}
				ca2, err := Open(dir, mk)
				if err != nil {
					t.Fatal(err)
				}
				if !ca2.Root().Equal(root) || !ca2.Issuer().Equal(ca.Issuer()) || ca2.KeyAlg() != alg || ca2.TwoTier() != two {
					t.Fatal("reopened CA differs")
				}
				iss2, err := ca2.IssueClient(ClientRequest{CommonName: "dev"})
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range []*x509.Certificate{iss.Cert, iss2.Cert} {
					pool := x509.NewCertPool()
					pool.AddCert(root)
					inter := x509.NewCertPool()
					inter.AddCert(ca.Issuer())
					if _, err := c.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
}

func TestInitRefusesOverwrite(t *testing.T) {
	mk := testMasterKey(t)
	dir := filepath.Join(t.TempDir(), "pki")
	if _, err := Init(dir, InitOptions{Protector: mk}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, fileRootCert))
	if _, err := Init(dir, InitOptions{Protector: mk}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Init: %v", err)
	}
	if _, err := Init(dir, InitOptions{Protector: mk, TwoTier: true}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Init two-tier: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, fileRootCert))
	if !bytes.Equal(before, after) {
		t.Fatal("root.pem changed")
	}
	// A stray file of a half-made CA is refused too.
	dir2 := t.TempDir()
	os.WriteFile(filepath.Join(dir2, fileRootKey), []byte("x"), 0o600)
	if _, err := Init(dir2, InitOptions{Protector: mk}); !errors.Is(err, ErrExists) {
		t.Fatalf("Init over stray key: %v", err)
	}
	if _, err := Init(t.TempDir(), InitOptions{}); !errors.Is(err, ErrNoProtector) {
		t.Fatalf("Init without protector: %v", err)
	}
	if _, err := Open(t.TempDir(), mk); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("Open empty: %v", err)
	}
}

func TestKeysSealedAtRest(t *testing.T) {
	mk := testMasterKey(t)
	dir := filepath.Join(t.TempDir(), "pki")
	if _, err := Init(dir, InitOptions{Protector: mk, TwoTier: true}); err != nil {
		t.Fatal(err)
	}
	ca, err := Open(dir, mk)
	if err != nil {
		t.Fatal(err)
	}
	root, err := OpenRoot(dir, "", mk)
	if err != nil {
		t.Fatal(err)
	}
	for file, key := range map[string]any{fileIntermediateKey: ca.key, fileRootKey: root.key} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(filepath.Join(dir, file))
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", file, fi.Mode())
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		body := strings.Split(string(pemKey), "\n")[1] // first base64 line of the key
		var rawScalar []byte
		if ek, ok := key.(*ecdsa.PrivateKey); ok {
			rawScalar, _ = ek.Bytes()
		}
		for what, needle := range map[string][]byte{"DER": der, "PEM": pemKey, "PEM body": []byte(body), "scalar": rawScalar,
			"hex": []byte(hex.EncodeToString(der)), "base64": []byte(base64.StdEncoding.EncodeToString(der))} {
			if len(needle) > 0 && bytes.Contains(b, needle) {
				t.Errorf("%s contains the key's %s", file, what)
			}
		}
		if bytes.Contains(b, []byte("BEGIN PRIVATE KEY")) || bytes.Contains(b, []byte("EC PRIVATE KEY")) {
			t.Errorf("%s looks like a plain key", file)
		}
		if !bytes.Contains(b, []byte(sealedKeyPEMType)) {
			t.Errorf("%s is not armored as sealed", file)
		}
	}
}

func TestOpenWrongKey(t *testing.T) {
	mk := testMasterKey(t)
	dir := filepath.Join(t.TempDir(), "pki")
	if _, err := Init(dir, InitOptions{Protector: mk}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, testMasterKey(t)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("other master key: %v", err)
	}
	if _, err := Open(dir, PlainProtector{}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("plain protector on sealed key: %v", err)
	}
	// Tampering is detected.
	p := filepath.Join(dir, fileRootKey)
	b, _ := os.ReadFile(p)
	block, _ := pem.Decode(b)
	block.Bytes[len(block.Bytes)-1] ^= 1
	os.WriteFile(p, pem.EncodeToMemory(block), 0o600)
	if _, err := Open(dir, mk); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("tampered: %v", err)
	}
	// A key file others can read is refused before use.
	os.Chmod(p, 0o644)
	if _, err := Open(dir, mk); !errors.Is(err, ErrInsecureFile) {
		t.Fatalf("0644 key: %v", err)
	}
}

func TestPlainProtector(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if _, err := Init(dir, InitOptions{Protector: PlainProtector{}}); err != nil {
		t.Fatal(err)
	}
	ca, err := Open(dir, PlainProtector{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.IssueClient(ClientRequest{CommonName: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, testMasterKey(t)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("master key on plain: %v", err)
	}
}

func TestMasterKeyLoading(t *testing.T) {
	dir := t.TempDir()
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(0x80 + 7*i)
	}
	sealedBy := func(m *MasterKey) []byte {
		s, err := m.Seal([]byte("secret"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ref, _ := NewMasterKey(raw)
	sealed := sealedBy(ref)
	check := func(t *testing.T, m *MasterKey) {
		t.Helper()
		pt, err := m.Open(sealed)
		if err != nil || string(pt) != "secret" {
			t.Fatalf("open: %q %v", pt, err)
		}
	}

	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		wantErr error
	}{
		{"hex", []byte(hex.EncodeToString(raw) + "\n"), 0o600, nil},
		{"base64", []byte(base64.StdEncoding.EncodeToString(raw)), 0o400, nil},
		{"raw", raw, 0o600, nil},
		{"group readable", []byte(hex.EncodeToString(raw)), 0o640, ErrInsecureFile},
		{"world readable", []byte(hex.EncodeToString(raw)), 0o644, ErrInsecureFile},
		{"short", []byte(hex.EncodeToString(raw[:16])), 0o600, ErrMasterKey},
		{"long", []byte(hex.EncodeToString(append(raw, 1))), 0o600, ErrMasterKey},
		{"garbage", []byte("not a key at all"), 0o600, ErrMasterKey},
		{"32 printable", bytes.Repeat([]byte{'B'}, 32), 0o600, ErrMasterKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			os.WriteFile(p, tt.content, 0o600)
			os.Chmod(p, tt.mode)
			m, err := LoadMasterKey(p, "")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err %v, want %v", err, tt.wantErr)
				}
				if err != nil && strings.Contains(err.Error(), hex.EncodeToString(raw[:8])) {
					t.Fatal("error leaks the key")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			check(t, m)
		})
	}

	t.Run("env", func(t *testing.T) {
		t.Setenv("MOAT_TEST_MASTER_KEY", hex.EncodeToString(raw))
		m, err := LoadMasterKey(filepath.Join(dir, "absent"), "MOAT_TEST_MASTER_KEY")
		if err != nil {
			t.Fatal(err)
		}
		check(t, m)
		t.Setenv("MOAT_TEST_MASTER_KEY", base64.RawURLEncoding.EncodeToString(raw))
		if m, err = LoadMasterKey("", "MOAT_TEST_MASTER_KEY"); err != nil {
			t.Fatal(err)
		}
		check(t, m)
		// Both sources present is ambiguous.
		if _, err := LoadMasterKey(filepath.Join(dir, "hex"), "MOAT_TEST_MASTER_KEY"); !errors.Is(err, ErrMasterKey) {
			t.Fatalf("both: %v", err)
		}
		t.Setenv("MOAT_TEST_MASTER_KEY", "abcd")
		if _, err := LoadMasterKey("", "MOAT_TEST_MASTER_KEY"); !errors.Is(err, ErrMasterKey) {
			t.Fatalf("short env: %v", err)
		}
	})
	t.Run("none", func(t *testing.T) {
		if _, err := LoadMasterKey(filepath.Join(dir, "absent"), "MOAT_TEST_UNSET_VAR"); !errors.Is(err, ErrNoMasterKey) {
			t.Fatalf("none: %v", err)
		}
	})
	t.Run("generate", func(t *testing.T) {
		p := filepath.Join(dir, "gen.key")
		m, err := GenerateMasterKeyFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(p)
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", fi.Mode())
		}
		m2, err := LoadMasterKey(p, "")
		if err != nil {
			t.Fatal(err)
		}
		pt, err := m2.Open(sealedBy(m))
		if err != nil || string(pt) != "secret" {
			t.Fatal("generated key does not round-trip")
		}
		if _, err := GenerateMasterKeyFile(p); !errors.Is(err, ErrExists) {
			t.Fatalf("overwrite: %v", err)
		}
		if _, err := m2.Open(sealed); !errors.Is(err, ErrWrongKey) {
			t.Fatalf("wrong key: %v", err)
		}
	})
}

func TestParseHelpers(t *testing.T) {
	for in, want := range map[string]KeyAlg{"": ECDSAP256, "P-256": ECDSAP256, "ecdsa-p384": ECDSAP384, "Ed25519": Ed25519, "rsa": RSA3072} {
		if got, err := ParseKeyAlg(in); err != nil || got != want {
			t.Errorf("ParseKeyAlg(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseKeyAlg("rsa-1024"); err == nil {
		t.Error("rsa-1024 accepted")
	}
	for in, want := range map[string]int{"": 0, "1": 1, "keyCompromise": 1, "key-compromise": 1, "superseded": 4, "cessation_of_operation": 5} {
		if got, err := ParseReason(in); err != nil || got != want {
			t.Errorf("ParseReason(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"7", "nope", "-1"} {
		if _, err := ParseReason(bad); err == nil {
			t.Errorf("ParseReason(%q) accepted", bad)
		}
	}
	n, err := ParseSerial("0a:1B:ff")
	if err != nil || FormatSerial(n) != "0A1BFF" {
		t.Errorf("ParseSerial: %v %v", n, err)
	}
	if n, err := ParseSerial("0xABC"); err != nil || FormatSerial(n) != "0ABC" {
		t.Errorf("ParseSerial 0x: %v %v", n, err)
	}
	for _, bad := range []string{"", "xyz", "00", strings.Repeat("f", 50)} {
		if _, err := ParseSerial(bad); err == nil {
			t.Errorf("ParseSerial(%q) accepted", bad)
		}
	}
}
