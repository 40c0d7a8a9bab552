package registry

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/hkdf"
)

func TestMasterKeySealOpen(t *testing.T) {
	a, _ := NewMasterKey(GenerateMasterKey())
	b, _ := NewMasterKey(GenerateMasterKey())
	secret := []byte("the secret")
	s1, _ := a.Seal(secret)
	s2, _ := a.Seal(secret)
	if bytes.Equal(s1, s2) {
		t.Fatal("two seals of the same plaintext are equal (nonce reuse?)")
	}
	if bytes.Contains(s1, secret) {
		t.Fatal("sealed blob contains the plaintext")
	}
	if got, err := a.Open(s1); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := b.Open(s1); !errors.Is(err, ErrMasterKey) {
		t.Fatalf("Open under another key: %v, want ErrMasterKey", err)
	}
	for i := range s1 {
		m := bytes.Clone(s1)
		m[i] ^= 1
		if _, err := a.Open(m); err == nil {
			t.Fatalf("Open accepted a blob modified at byte %d", i)
		}
	}
	if _, err := a.Open(s1[:10]); err == nil {
		t.Fatal("Open accepted a truncated blob")
	}
	// A labeled value does not open under another label.
	l, _ := sealLabeled(a, "psk:a:1", secret)
	if _, err := openLabeled(a, "psk:b:1", l); err == nil {
		t.Fatal("openLabeled accepted another label")
	}
	if got, err := openLabeled(a, "psk:a:1", l); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("openLabeled = %q, %v", got, err)
	}
}

func TestParseMasterKey(t *testing.T) {
	good := hex.EncodeToString(GenerateMasterKey())
	if _, err := ParseMasterKey(" " + good + "\n"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", good[:62], good + "00", strings.Repeat("zz", 32)} {
		_, err := ParseMasterKey(bad)
		if !errors.Is(err, ErrMasterKey) {
			t.Errorf("ParseMasterKey(%q) = %v, want ErrMasterKey", bad, err)
		}
		if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("error quotes the key: %v", err)
		}
	}
}

func TestMasterKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")
	mk, err := WriteMasterKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := WriteMasterKeyFile(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteMasterKeyFile over an existing file: %v", err)
	}
	mk2, err := LoadMasterKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := mk.Seal([]byte("x"))
	if _, err := mk2.Open(s); err != nil {
		t.Fatal("the loaded key differs from the written one")
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o660} {
		os.Chmod(path, mode)
		if _, err := LoadMasterKeyFile(path); !errors.Is(err, ErrMasterKey) || !strings.Contains(err.Error(), path) {
			t.Errorf("mode %04o: %v, want a refusal naming the file", mode, err)
		}
	}
	os.Chmod(path, 0o400)
	if _, err := LoadMasterKeyFile(path); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
	if _, err := LoadMasterKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}

	t.Setenv("MOAT_TEST_MK", hex.EncodeToString(GenerateMasterKey()))
	if _, err := LoadMasterKey("", "MOAT_TEST_MK"); err != nil {
		t.Fatal(err)
	}
	if _, err := MasterKeyFromEnv("MOAT_TEST_UNSET_VARIABLE"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("unset variable: %v", err)
	}
	t.Setenv("MOAT_TEST_MK", "short")
	if _, err := MasterKeyFromEnv("MOAT_TEST_MK"); !errors.Is(err, ErrMasterKey) {
		t.Fatalf("bad variable: %v", err)
	}
}

// fileDigest is the SHA-256 of a file, to prove it was not modified.
func fileDigest(t *testing.T, path string) [32]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestOpenPersistsEverything(t *testing.T) {
	r, mk, path := openTest(t)
	ca := newCA(t, "Test CA")
	leaf := clientCert(t, ca, "cam-3")
	pinned := selfSigned(t, "pinned")
	devPriv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	fleet := NewRandomKey()
	if err := r.SetFleetKey(fleet); err != nil {
		t.Fatal(err)
	}
	_, issued := mustAdd(t, r, NewDevice{
		ID:       "sensor-17",
		Metadata: map[string]string{"site": "plant-a"},
		ACL:      []Rule{{Permission: PermissionAllow, Action: ActionPublish, Topic: "sensors/%i/#"}},
		Credentials: []NewCredential{
			{Kind: KindPSK},
			{Kind: KindPSK, Identity: "sensor-17-fleet", Derived: true},
			{Kind: KindX509, Certificate: leaf.cert},
			{Kind: KindPinnedKey, Certificate: pinned.cert},
			{Kind: KindECDH, Identity: "sensor-17-ecdh", PublicKey: hex.EncodeToString(devPriv.PublicKey().Bytes())},
			{Kind: KindPassword, Password: []byte("correct horse")},
		},
	})
	if len(issued) != 2 || len(issued[0].Secret) != 32 {
		t.Fatalf("issued = %+v, want the generated and the derived psk", issued)
	}
	pskKey := issued[0].Secret
	mustAdd(t, r, NewDevice{ID: "off", Disabled: true, Credentials: []NewCredential{{Kind: KindPSK, Key: bytes.Repeat([]byte{7}, 16)}}})
	brokerPub, _ := r.BrokerECDHPublicKey()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	r2, err := Open(path, mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if r2.Len() != 2 {
		t.Fatalf("%d devices after reopen", r2.Len())
	}
	d, ok := r2.Device("sensor-17")
	if !ok || d.Metadata["site"] != "plant-a" || len(d.ACL) != 1 || len(d.Credentials) != 6 || !d.Enabled() {
		t.Fatalf("device after reopen: %+v", d)
	}
	if k, ok := r2.LookupPSK("sensor-17"); !ok || !bytes.Equal(k, pskKey) {
		t.Fatal("stored psk lost")
	}
	if k, ok := r2.LookupPSK("sensor-17-fleet"); !ok || !bytes.Equal(k, fleetPSK(fleet, "sensor-17-fleet")) {
		t.Fatal("derived psk lost")
	}
	want, _ := DeviceECDHPSK(devPriv, brokerPub, "sensor-17-ecdh")
	if k, ok := r2.LookupPSK("sensor-17-ecdh"); !ok || !bytes.Equal(k, want) {
		t.Fatal("ecdh psk differs after reopen")
	}
	if pub2, _ := r2.BrokerECDHPublicKey(); !bytes.Equal(pub2, brokerPub) {
		t.Fatal("broker ECDH key changed across reopen")
	}
	if _, _, ok := r2.ByCertificate(leaf.cert); !ok {
		t.Fatal("certificate binding lost")
	}
	pin := SPKISHA256(pinned.cert)
	if _, ok := r2.ByPinnedKey(pin[:]); !ok {
		t.Fatal("pin lost")
	}
	if _, ok := r2.VerifyPassword("sensor-17", []byte("correct horse")); !ok {
		t.Fatal("password lost")
	}
	if _, ok := r2.LookupPSK("off"); ok {
		t.Fatal("disabled device's psk found after reopen")
	}
}

func TestOpenRefusesBadFiles(t *testing.T) {
	_, mk, good := openTest(t)
	// good is still open by openTest's registry; copy it after closing.
	dir := t.TempDir()
	foreign := filepath.Join(dir, "foreign.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("sessions")); return err })
	db.Close()

	other, _ := NewMasterKey(GenerateMasterKey())
	cases := []struct {
		name  string
		setup func(path string)
		keys  KeyProtector
		want  error
	}{
		{"garbage", func(p string) { os.WriteFile(p, bytes.Repeat([]byte("not a database "), 500), 0o600) }, mk, ErrCorrupt},
		{"short", func(p string) { os.WriteFile(p, []byte("x"), 0o600) }, mk, ErrCorrupt},
		{"foreign bbolt file", func(p string) { copyFile(t, foreign, p) }, mk, ErrCorrupt},
		{"truncated registry", func(p string) {
			b := readClosed(t, good)
			os.WriteFile(p, b[:len(b)/3], 0o600)
		}, mk, ErrCorrupt},
		{"wrong master key", func(p string) { os.WriteFile(p, readClosed(t, good), 0o600) }, other, ErrMasterKey},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "registry.db")
			c.setup(path)
			before := fileDigest(t, path)
			r, err := Open(path, c.keys, nil)
			if err == nil {
				r.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want %v naming %s", err, c.want, path)
			}
			if fileDigest(t, path) != before {
				t.Fatal("the refused file was modified")
			}
		})
	}
}

// readClosed reads a registry file that an open registry may hold (bbolt
// writes through, so the bytes are complete).
func readClosed(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesFileInUse(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the lock timeout")
	}
	_, mk, path := openTest(t)
	_, err := Open(path, mk, nil)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second Open: %v, want ErrInUse naming the file", err)
	}
}

// The file holds no PSK, fleet key or ECDH private key in clear, in raw or
// hex form.
func TestNoSecretsInClear(t *testing.T) {
	r, _, path := openTest(t)
	known := []byte("0123456789abcdef-KNOWN-PSK-VALUE")
	fleet := []byte("fleet-key-fleet-key-fleet-key-32")
	if err := r.SetFleetKey(fleet); err != nil {
		t.Fatal(err)
	}
	devPriv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	_, issued := mustAdd(t, r, NewDevice{ID: "d1", Credentials: []NewCredential{
		{Kind: KindPSK, Identity: "known", Key: known},
		{Kind: KindPSK, Identity: "generated"},
		{Kind: KindPSK, Identity: "derived", Derived: true},
		{Kind: KindECDH, Identity: "ecdh", PublicKey: hex.EncodeToString(devPriv.PublicKey().Bytes())},
		{Kind: KindPassword, Password: []byte("a password in clear")},
	}})
	if _, err := r.RotateCredential("d1", mustCred(t, r, "d1", "generated").ID); err != nil {
		t.Fatal(err)
	}
	r.mu.RLock()
	ecdhPriv := r.ecdhPriv.Bytes()
	r.mu.RUnlock()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	raw := readClosed(t, path)
	secrets := map[string][]byte{"known psk": known, "fleet key": fleet, "ecdh private key": ecdhPriv,
		"password": []byte("a password in clear")}
	for _, is := range issued {
		secrets["issued "+is.Identity] = is.Secret
	}
	for name, s := range secrets {
		forms := [][]byte{s, []byte(hex.EncodeToString(s)), []byte(strings.ToUpper(hex.EncodeToString(s))),
			[]byte(base64.StdEncoding.EncodeToString(s)), []byte(base64.RawURLEncoding.EncodeToString(s))}
		for _, form := range forms {
			if bytes.Contains(raw, form) {
				t.Errorf("%s found in clear in %s", name, path)
			}
		}
	}
	if !bytes.Contains(raw, []byte(`"identity":"known"`)) {
		t.Fatal("sanity: the record is not in the file")
	}
}

func mustCred(t testing.TB, r *Registry, deviceID, identity string) Credential {
	t.Helper()
	d, ok := r.Device(deviceID)
	if !ok {
		t.Fatalf("no device %s", deviceID)
	}
	for _, c := range d.Credentials {
		if c.Identity == identity {
			return c
		}
	}
	t.Fatalf("device %s has no credential with identity %q", deviceID, identity)
	return Credential{}
}

func TestLookupPSK(t *testing.T) {
	r, _, _ := openTest(t)
	key := bytes.Repeat([]byte{0x42}, 32)
	mustAdd(t, r, NewDevice{ID: "a", Credentials: []NewCredential{{Kind: KindPSK, Identity: "id-a", Key: key}}})
	mustAdd(t, r, NewDevice{ID: "b", Disabled: true, Credentials: []NewCredential{{Kind: KindPSK, Identity: "id-b", Key: key}}})
	got, ok := r.LookupPSK("id-a")
	if !ok || !bytes.Equal(got, key) {
		t.Fatal("enabled device not found")
	}
	clear(got) // the caller may wipe its copy
	if again, _ := r.LookupPSK("id-a"); !bytes.Equal(again, key) {
		t.Fatal("wiping the returned key changed the stored one")
	}
	if _, ok := r.LookupPSK("id-b"); ok {
		t.Fatal("disabled device found")
	}
	if _, ok := r.LookupPSK("nobody"); ok {
		t.Fatal("unknown identity found")
	}
	if _, ok := r.LookupPSK("a"); ok {
		t.Fatal("device id taken for an identity")
	}
	if _, err := r.SetStatus("b", StatusEnabled); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.LookupPSK("id-b"); !ok {
		t.Fatal("re-enabled device not found")
	}
}

func TestFleetDerivedPSK(t *testing.T) {
	r, _, _ := openTest(t)
	if _, err := r.DerivePSK("x"); !errors.Is(err, ErrNoFleetKey) {
		t.Fatalf("DerivePSK without fleet key: %v", err)
	}
	if _, _, err := r.Add(NewDevice{ID: "f1", Credentials: []NewCredential{{Kind: KindPSK, Derived: true}}}); !errors.Is(err, ErrNoFleetKey) {
		t.Fatalf("derived credential without fleet key: %v", err)
	}
	if err := r.SetFleetKey([]byte("short")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short fleet key: %v", err)
	}
	fleet := NewRandomKey()
	if err := r.SetFleetKey(fleet); err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, fleet)
	m.Write([]byte("f1"))
	want := m.Sum(nil)
	if k, _ := r.DerivePSK("f1"); !bytes.Equal(k, want) {
		t.Fatal("DerivePSK is not HMAC-SHA256(fleet, identity)")
	}
	// Derivable, but not registered: refused.
	if _, ok := r.LookupPSK("f1"); ok {
		t.Fatal("unregistered identity accepted because its key is derivable")
	}
	_, issued := mustAdd(t, r, NewDevice{ID: "f1", Credentials: []NewCredential{{Kind: KindPSK, Derived: true}}})
	if len(issued) != 1 || !bytes.Equal(issued[0].Secret, want) {
		t.Fatal("Add did not return the derived key")
	}
	if k, ok := r.LookupPSK("f1"); !ok || !bytes.Equal(k, want) {
		t.Fatal("derived psk not found")
	}
	r.SetStatus("f1", StatusDisabled)
	if _, ok := r.LookupPSK("f1"); ok {
		t.Fatal("disabled device accepted although its key is derivable")
	}
	r.SetStatus("f1", StatusEnabled)
	// A derived credential cannot be rotated; it takes no key.
	if _, err := r.RotateCredential("f1", mustCred(t, r, "f1", "f1").ID); !errors.Is(err, ErrNotRotatable) {
		t.Fatalf("rotate derived: %v", err)
	}
	if _, _, err := r.AddCredential("f1", NewCredential{Kind: KindPSK, Identity: "f1b", Derived: true, Key: want}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("derived with key: %v", err)
	}
	// Replacing the fleet key changes the key and notifies the device.
	var changed []string
	r.OnChange(func(id string) { changed = append(changed, id) })
	if err := r.SetFleetKey(NewRandomKey()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(changed, []string{"f1"}) {
		t.Fatalf("OnChange after fleet key replacement: %v", changed)
	}
	if k, _ := r.LookupPSK("f1"); bytes.Equal(k, want) {
		t.Fatal("old derived key still accepted")
	}
}

func TestECDH(t *testing.T) {
	r, _, _ := openTest(t)
	brokerPub, err := r.BrokerECDHPublicKey()
	if err != nil || len(brokerPub) != 32 {
		t.Fatalf("BrokerECDHPublicKey = %x, %v", brokerPub, err)
	}
	devPriv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	mustAdd(t, r, NewDevice{ID: "e1", Credentials: []NewCredential{{Kind: KindECDH, PublicKey: hex.EncodeToString(devPriv.PublicKey().Bytes())}}})
	deviceSide, err := DeviceECDHPSK(devPriv, brokerPub, "e1")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // derived on first use, then cached
		k, ok := r.LookupPSK("e1")
		if !ok || !bytes.Equal(k, deviceSide) {
			t.Fatal("broker and device derive different PSKs")
		}
	}
	// The construction, checked with an independent HKDF implementation.
	bp, _ := ecdh.X25519().NewPublicKey(brokerPub)
	shared, _ := devPriv.ECDH(bp)
	want := make([]byte, 32)
	if _, err := hkdf.New(sha256.New, shared, []byte("moat ecdh psk v1"), []byte("e1")).Read(want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(deviceSide, want) {
		t.Fatal("DeriveECDHPSK differs from HKDF-SHA256(shared, salt, identity)")
	}
	if bytes.Equal(DeriveECDHPSK(shared, "e2"), want) {
		t.Fatal("the identity does not change the key")
	}
	// Low-order and malformed public keys are refused.
	for _, pub := range []string{strings.Repeat("00", 32), "01" + strings.Repeat("00", 31), "abcd", "not hex"} {
		if _, _, err := r.AddCredential("e1", NewCredential{Kind: KindECDH, Identity: "bad", PublicKey: pub}); !errors.Is(err, ErrInvalid) {
			t.Errorf("public key %s: %v, want ErrInvalid", pub, err)
		}
	}
	if _, err := r.RotateCredential("e1", mustCred(t, r, "e1", "e1").ID); !errors.Is(err, ErrNotRotatable) {
		t.Fatalf("rotate ecdh: %v", err)
	}
	r.SetStatus("e1", StatusDisabled)
	if _, ok := r.LookupPSK("e1"); ok {
		t.Fatal("disabled ecdh device found")
	}
}

func TestByCertificate(t *testing.T) {
	r, _, _ := openTest(t)
	ca := newCA(t, "Test CA")
	byFP := clientCert(t, ca, "fp-device")
	bySerial := clientCert(t, ca, "serial-device")
	byCN := clientCert(t, ca, "cn-device")
	byOU := makeCert(t, &ca, pkixName("whatever", "ou-device"), false, nil)
	bySAN := makeCert(t, &ca, pkixName("x", ""), false, nil, "dev.example")
	stranger := clientCert(t, ca, "stranger")

	mustAdd(t, r, NewDevice{ID: "fp", Credentials: []NewCredential{{Kind: KindX509, Fingerprint: fpHexColons(byFP.cert)}}})
	mustAdd(t, r, NewDevice{ID: "serial", Credentials: []NewCredential{{Kind: KindX509, Issuer: "O=moat test,CN=Test CA", Serial: "0x" + strings.ToUpper(bySerial.cert.SerialNumber.Text(16))}}})
	// That issuer is in the wrong order (not RFC 4514), so it matches
	// nothing; the serial is stored canonically.
	d, _ := r.Device("serial")
	if d.Credentials[0].Serial != bySerial.cert.SerialNumber.Text(16) {
		t.Fatalf("serial not canonical: %q", d.Credentials[0].Serial)
	}
	mustAdd(t, r, NewDevice{ID: "cn", Credentials: []NewCredential{{Kind: KindX509, Subject: "CN=cn-device"}}})
	mustAdd(t, r, NewDevice{ID: "ou", Credentials: []NewCredential{{Kind: KindX509, Subject: "OU=ou-device"}}})
	mustAdd(t, r, NewDevice{ID: "san", Credentials: []NewCredential{{Kind: KindX509, Subject: "san:dns=dev.example"}}})

	cases := []struct {
		cert testCert
		want string
	}{{byFP, "fp"}, {bySerial, ""}, {byCN, "cn"}, {byOU, "ou"}, {bySAN, "san"}, {stranger, ""}}
	for _, c := range cases {
		d, cred, ok := r.ByCertificate(c.cert.cert)
		got := ""
		if ok {
			got = d.ID
			if cred == nil || cred.Kind != KindX509 {
				t.Errorf("%s: credential %+v", c.want, cred)
			}
		}
		if got != c.want {
			t.Errorf("cert %s: matched %q, want %q", c.cert.cert.Subject, got, c.want)
		}
	}
	// The issuer DN as OpenSSL prints it (RFC 2253 order).
	if err := r.Remove("serial"); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, r, NewDevice{ID: "serial", Credentials: []NewCredential{{Kind: KindX509, Issuer: "CN=Test CA,O=moat test", Serial: bySerial.cert.SerialNumber.Text(16)}}})
	if d, _, ok := r.ByCertificate(bySerial.cert); !ok || d.ID != "serial" {
		t.Fatalf("issuer+serial: %v %v", d, ok)
	}
	// Disabled: the device is returned, ok is false.
	r.SetStatus("cn", StatusDisabled)
	if d, _, ok := r.ByCertificate(byCN.cert); ok || d == nil || d.ID != "cn" {
		t.Fatalf("disabled: %v %v", d, ok)
	}
	// Removing the binding removes the match (and its subject source).
	r.Remove("san")
	if _, _, ok := r.ByCertificate(bySAN.cert); ok {
		t.Fatal("removed device still matches")
	}
	r.mu.RLock()
	srcs := slices.Clone(r.sources)
	r.mu.RUnlock()
	if slices.Contains(srcs, "san:dns") {
		t.Fatalf("stale subject source: %v", srcs)
	}
}

// fpHexColons writes a fingerprint as OpenSSL does: upper case, colons.
func fpHexColons(c *x509.Certificate) string {
	fp := CertFingerprint(c)
	parts := make([]string, len(fp))
	for i, b := range fp {
		parts[i] = strings.ToUpper(hex.EncodeToString([]byte{b}))
	}
	return strings.Join(parts, ":")
}

func pkixName(cn, ou string) pkix.Name {
	n := pkix.Name{CommonName: cn}
	if ou != "" {
		n.OrganizationalUnit = []string{ou}
	}
	return n
}
