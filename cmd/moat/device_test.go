package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/admin"
	"moat/internal/pki"
	"moat/internal/registry"
	"moat/internal/testpki"
	"moat/internal/tlspsk"
)

// devClearEnv makes the tests independent of the caller's environment.
func devClearEnv(t *testing.T) {
	t.Helper()
	for _, v := range []string{envAdminURL, envAdminToken, envMasterKey} {
		t.Setenv(v, "")
	}
}

// newDevDataDir makes a data directory with a master key and, when
// withCA, a built-in CA.
func newDevDataDir(t *testing.T, withCA bool) string {
	t.Helper()
	devClearEnv(t)
	dir := t.TempDir()
	mk, err := pki.GenerateMasterKeyFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	if withCA {
		if _, err := pki.Init(filepath.Join(dir, "pki"), pki.InitOptions{Protector: mk}); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type devResult struct {
	code        int
	out, errOut string
}

// devRun runs a device command offline on dir.
func devRun(t *testing.T, dir, stdin string, args ...string) devResult {
	t.Helper()
	return devRunFlags(t, stdin, append(args, "--data-dir", dir, "--offline")...)
}

func devRunFlags(t *testing.T, stdin string, args ...string) devResult {
	t.Helper()
	var out, errOut bytes.Buffer
	code := deviceCmd(args, strings.NewReader(stdin), &out, &errOut)
	return devResult{code, out.String(), errOut.String()}
}

func (r devResult) ok(t *testing.T) devResult {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.errOut)
	}
	return r
}

func (r devResult) fails(t *testing.T, want string) devResult {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("succeeded, want failure %q\nstdout:\n%s", want, r.out)
	}
	if !strings.Contains(r.errOut, want) {
		t.Fatalf("stderr %q does not contain %q", r.errOut, want)
	}
	return r
}

// withReg opens dir's registry with its master key file for f, then closes
// it (the CLI needs the file lock back).
func withReg(t *testing.T, dir string, f func(*registry.Registry)) {
	t.Helper()
	reg := openDevReg(t, dir)
	defer reg.Close()
	f(reg)
}

func openDevReg(t *testing.T, dir string) *registry.Registry {
	t.Helper()
	mk, err := registry.LoadMasterKeyFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(filepath.Join(dir, "registry.db"), mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

var (
	pskRE      = regexp.MustCompile(`--psk ([0-9a-f]+) --psk-identity (\S+)`)
	passwordRE = regexp.MustCompile(`(?m)^\s+password  (\S+)$`)
	pinRE      = regexp.MustCompile(`(?m)^pin\s+([0-9a-f]{64})$`)
	pubRE      = regexp.MustCompile(`(?m)^public key\s+([0-9a-f]{64})$`)
	brokerRE   = regexp.MustCompile(`broker's X25519 public key is\n\s+([0-9a-f]{64})`)
	tokenRE    = regexp.MustCompile(`moat_[A-Za-z0-9_-]{43}`)
)

// printedPSK returns the key and identity of the first mosquitto_pub line.
func printedPSK(t *testing.T, out string) ([]byte, string) {
	t.Helper()
	m := pskRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no PSK printed in:\n%s", out)
	}
	k, err := hex.DecodeString(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return k, m[2]
}

func submatch(t *testing.T, re *regexp.Regexp, out string) string {
	t.Helper()
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%v not found in:\n%s", re, out)
	}
	return m[1]
}

// showDevice runs `device show --json` (args select the transport).
func showDevice(t *testing.T, args ...string) registry.Device {
	t.Helper()
	r := devRunFlags(t, "", append([]string{"show", "--json"}, args...)...).ok(t)
	var d registry.Device
	if err := json.Unmarshal([]byte(r.out), &d); err != nil {
		t.Fatalf("show --json: %v\n%s", err, r.out)
	}
	return d
}

func offline(dir string) []string { return []string{"--data-dir", dir, "--offline"} }

// credID returns the id of the device's only credential of kind k.
func credID(t *testing.T, d registry.Device, k registry.Kind) string {
	t.Helper()
	for _, c := range d.Credentials {
		if c.Kind == k {
			return c.ID
		}
	}
	t.Fatalf("device %s has no %s credential: %+v", d.ID, k, d.Credentials)
	return ""
}

// pskHandshake runs a TLS-PSK handshake of a client holding identity/key
// against a server answering from ks.
func pskHandshake(ks tlspsk.KeyStore, identity string, key []byte) error {
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := tlspsk.Server(s, &tlspsk.Config{Keys: ks})
	errc := make(chan error, 1)
	go func() {
		err := srv.Handshake(ctx)
		if err != nil {
			s.Close()
		}
		errc <- err
	}()
	cerr := tlspsk.Client(c, &tlspsk.Config{Identity: identity, Key: key}).Handshake(ctx)
	if cerr != nil {
		c.Close()
	}
	serr := <-errc
	return errors.Join(cerr, serr)
}

func TestDevicePSKLifecycle(t *testing.T) {
	dir := newDevDataDir(t, false)
	r := devRun(t, dir, "", "add", "sensor-1", "--psk", "--meta", "site=plant-a", "--allow-pub", "sensors/%i/#").ok(t)
	key, identity := printedPSK(t, r.out)
	if identity != "sensor-1" || len(key) != 32 {
		t.Fatalf("identity %q, key length %d", identity, len(key))
	}
	withReg(t, dir, func(reg *registry.Registry) {
		got, ok := reg.LookupPSK(identity)
		if !ok || !bytes.Equal(got, key) {
			t.Fatal("LookupPSK does not return the printed key")
		}
		if err := pskHandshake(reg, identity, key); err != nil {
			t.Fatalf("TLS-PSK handshake with the printed key: %v", err)
		}
	})
	// The store holds no PSK in clear.
	raw, err := os.ReadFile(filepath.Join(dir, "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, key) || bytes.Contains(raw, []byte(hex.EncodeToString(key))) {
		t.Fatal("registry.db holds the PSK in clear")
	}

	// A custom identity and key.
	r = devRun(t, dir, "", "add", "sensor-2", "--psk", "--psk-identity", "s2@plant", "--psk-key", strings.Repeat("ab", 16)).ok(t)
	if strings.Contains(r.out, strings.Repeat("ab", 16)) {
		t.Fatal("a key given on the command line is printed back")
	}

	r = devRun(t, dir, "", "list").ok(t)
	for _, want := range []string{"sensor-1", "sensor-2", "enabled", "psk"} {
		if !strings.Contains(r.out, want) {
			t.Fatalf("list lacks %q:\n%s", want, r.out)
		}
	}
	r = devRun(t, dir, "", "list", "--json").ok(t)
	var list struct{ Devices []registry.Device }
	if err := json.Unmarshal([]byte(r.out), &list); err != nil || len(list.Devices) != 2 {
		t.Fatalf("list --json: %v\n%s", err, r.out)
	}
	r = devRun(t, dir, "", "show", "sensor-1").ok(t)
	for _, want := range []string{"site = plant-a", "allow", "sensors/%i/#", "identity sensor-1"} {
		if !strings.Contains(r.out, want) {
			t.Fatalf("show lacks %q:\n%s", want, r.out)
		}
	}
	d := showDevice(t, append([]string{"sensor-1"}, offline(dir)...)...)
	if d.Metadata["site"] != "plant-a" || len(d.ACL) != 1 || d.Status != registry.StatusEnabled {
		t.Fatalf("device %+v", d)
	}
	cid := credID(t, d, registry.KindPSK)

	devRun(t, dir, "", "disable", "sensor-1").ok(t)
	withReg(t, dir, func(reg *registry.Registry) {
		if _, ok := reg.LookupPSK(identity); ok {
			t.Fatal("disabled device's PSK still found")
		}
	})
	devRun(t, dir, "", "enable", "sensor-1").ok(t)

	r = devRun(t, dir, "", "rotate", "sensor-1", cid).ok(t)
	newKey, _ := printedPSK(t, r.out)
	if bytes.Equal(newKey, key) {
		t.Fatal("rotate printed the old key")
	}
	withReg(t, dir, func(reg *registry.Registry) {
		got, ok := reg.LookupPSK(identity)
		if !ok || !bytes.Equal(got, newKey) {
			t.Fatal("rotated key not in the registry")
		}
		if pskHandshake(reg, identity, key) == nil {
			t.Fatal("the old key still completes a handshake")
		}
	})

	devRun(t, dir, "", "acl", "sensor-1", "--deny-sub", "#", "--allow-pub", "a/b").ok(t)
	d = showDevice(t, append([]string{"sensor-1"}, offline(dir)...)...)
	want := []registry.Rule{{Permission: "deny", Action: "subscribe", Topic: "#"}, {Permission: "allow", Action: "publish", Topic: "a/b"}}
	if !slices.Equal(d.ACL, want) {
		t.Fatalf("ACL %+v, want %+v", d.ACL, want)
	}
	devRun(t, dir, "", "acl", "sensor-1").fails(t, "--clear")
	devRun(t, dir, "", "acl", "sensor-1", "--clear").ok(t)
	if d = showDevice(t, append([]string{"sensor-1"}, offline(dir)...)...); len(d.ACL) != 0 {
		t.Fatalf("ACL not cleared: %+v", d.ACL)
	}

	devRun(t, dir, "", "rotate", "sensor-1", "nope").fails(t, "not found")
	devRun(t, dir, "", "add", "sensor-1", "--psk").fails(t, "already exists")
	devRun(t, dir, "", "add", "bad/id", "--psk").fails(t, "device id")
	devRun(t, dir, "", "add", "x1").fails(t, "at least one credential")

	devRun(t, dir, "", "remove", "sensor-1").ok(t)
	devRun(t, dir, "", "remove", "sensor-2").ok(t)
	devRun(t, dir, "", "show", "sensor-1").fails(t, "not found")
	if r = devRun(t, dir, "", "list").ok(t); !strings.Contains(r.out, "no devices") {
		t.Fatalf("list after remove:\n%s", r.out)
	}
}

func TestDevicePassword(t *testing.T) {
	dir := newDevDataDir(t, false)
	devRun(t, dir, "correct horse battery\n", "add", "pw-1", "--password").ok(t)
	r := devRun(t, dir, "", "add", "pw-2", "--generate-password").ok(t)
	pw := submatch(t, passwordRE, r.out)
	withReg(t, dir, func(reg *registry.Registry) {
		if _, ok := reg.VerifyPassword("pw-1", []byte("correct horse battery")); !ok {
			t.Fatal("password read from stdin not accepted")
		}
		if _, ok := reg.VerifyPassword("pw-2", []byte(pw)); !ok {
			t.Fatal("generated password not accepted")
		}
	})
	if r := devRun(t, dir, "", "show", "pw-1").ok(t); strings.Contains(r.out, "correct horse") || strings.Contains(r.out, "argon2") {
		t.Fatalf("show reveals the password or its hash:\n%s", r.out)
	}
	cid := credID(t, showDevice(t, append([]string{"pw-2"}, offline(dir)...)...), registry.KindPassword)
	r = devRun(t, dir, "", "rotate", "pw-2", cid).ok(t)
	pw2 := submatch(t, passwordRE, r.out)
	devRun(t, dir, "", "disable", "pw-2").ok(t)
	devRun(t, dir, "", "enable", "pw-2").ok(t)
	withReg(t, dir, func(reg *registry.Registry) {
		if _, ok := reg.VerifyPassword("pw-2", []byte(pw2)); !ok {
			t.Fatal("rotated password not accepted")
		}
		if _, ok := reg.VerifyPassword("pw-2", []byte(pw)); ok {
			t.Fatal("old password still accepted")
		}
	})
	devRun(t, dir, "", "add", "pw-3", "--password").fails(t, "empty password")
	devRun(t, dir, "", "remove", "pw-1").ok(t)
}

func TestDeviceCert(t *testing.T) {
	dir := newDevDataDir(t, true)
	out := t.TempDir()
	r := devRun(t, dir, "", "add", "cam-1", "--cert", "--out", out).ok(t)
	certPath, keyPath := filepath.Join(out, "cam-1.pem"), filepath.Join(out, "cam-1.key")
	if _, err := tls.LoadX509KeyPair(filepath.Join(out, "cam-1.chain.pem"), keyPath); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	cert, err := readCertPEM(certPath)
	if err != nil {
		t.Fatal(err)
	}
	fp := registry.CertFingerprint(cert)
	if !strings.Contains(r.out, hex.EncodeToString(fp[:])) || cert.Subject.CommonName != "cam-1" {
		t.Fatalf("output lacks the fingerprint, or CN %q:\n%s", cert.Subject.CommonName, r.out)
	}
	withReg(t, dir, func(reg *registry.Registry) {
		d, c, ok := reg.ByCertificate(cert)
		if !ok || d.ID != "cam-1" || c.Kind != registry.KindX509 {
			t.Fatalf("ByCertificate: %v %v %v", d, c, ok)
		}
	})
	openCA := func() *pki.CA {
		mk, err := pki.LoadMasterKey(filepath.Join(dir, "master.key"), "")
		if err != nil {
			t.Fatal(err)
		}
		ca, err := pki.Open(filepath.Join(dir, "pki"), mk)
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	issued, _ := openCA().IssuedCerts()

	// No certificate is issued for a device that cannot be added.
	devRun(t, dir, "", "add", "cam-1", "--cert", "--out", t.TempDir()).fails(t, "already exists")
	if again, _ := openCA().IssuedCerts(); len(again) != len(issued) {
		t.Fatalf("a certificate was issued for an existing device: %d -> %d", len(issued), len(again))
	}

	// Binding an existing certificate by fingerprint.
	var kg bytes.Buffer
	if code := keygenCmd([]string{"--out", out, "--name", "ext"}, &kg, &kg); code != 0 {
		t.Fatal(kg.String())
	}
	devRun(t, dir, "", "add", "ext-1", "--cert-file", filepath.Join(out, "ext.pem")).ok(t)
	ext, _ := readCertPEM(filepath.Join(out, "ext.pem"))
	withReg(t, dir, func(reg *registry.Registry) {
		if d, _, ok := reg.ByCertificate(ext); !ok || d.ID != "ext-1" {
			t.Fatal("certificate bound by --cert-file not found")
		}
	})

	devRun(t, dir, "", "disable", "cam-1").ok(t)
	devRun(t, dir, "", "enable", "cam-1").ok(t)
	r = devRun(t, dir, "", "revoke", "cam-1", "--reason", "keyCompromise").ok(t)
	if !strings.Contains(r.out, "1 certificate(s) of CN=cam-1 revoked") {
		t.Fatalf("revoke:\n%s", r.out)
	}
	if !openCA().IsRevoked(cert.SerialNumber) {
		t.Fatal("certificate not revoked")
	}
	withReg(t, dir, func(reg *registry.Registry) {
		if d, _, ok := reg.ByCertificate(cert); ok || d == nil || d.Enabled() {
			t.Fatal("revoked device not disabled")
		}
	})
	if r = devRun(t, dir, "", "revoke", "cam-1").ok(t); !strings.Contains(r.out, "0 certificate(s) of CN=cam-1 revoked, 1 already revoked") {
		t.Fatalf("second revoke:\n%s", r.out)
	}
	devRun(t, dir, "", "remove", "cam-1").ok(t)
	devRun(t, dir, "", "remove", "ext-1").ok(t)
}

func TestKeygenPin(t *testing.T) {
	dir := newDevDataDir(t, false)
	out := t.TempDir()
	var o, e bytes.Buffer
	if code := keygenCmd([]string{"--out", out, "--name", "pin-1"}, &o, &e); code != 0 {
		t.Fatalf("keygen: %s", e.String())
	}
	pin := submatch(t, pinRE, o.String())
	cert, err := readCertPEM(filepath.Join(out, "pin-1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if sum := registry.SPKISHA256(cert); pin != hex.EncodeToString(sum[:]) {
		t.Fatalf("printed pin %s is not the certificate's SPKI SHA-256 %x", pin, sum)
	}
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature) != nil || cert.Subject.CommonName != "pin-1" {
		t.Fatal("not a self-signed clientAuth certificate for pin-1")
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(out, "pin-1.pem"), filepath.Join(out, "pin-1.key")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(out, "pin-1.key")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode())
	}
	if code := keygenCmd([]string{"--out", out, "--name", "pin-1"}, &o, &e); code == 0 {
		t.Fatal("keygen overwrote existing files")
	}

	devRun(t, dir, "", "add", "pin-1", "--pin", pin).ok(t)
	o.Reset()
	if code := keygenCmd([]string{"--out", out, "--name", "pin-2"}, &o, &e); code != 0 {
		t.Fatal(e.String())
	}
	devRun(t, dir, "", "add", "pin-2", "--pin-cert", filepath.Join(out, "pin-2.pem")).ok(t)
	devRun(t, dir, "", "add", "pin-3", "--pin", pin).fails(t, "already exists")
	cert2, _ := readCertPEM(filepath.Join(out, "pin-2.pem"))
	withReg(t, dir, func(reg *registry.Registry) {
		p1, p2 := registry.SPKISHA256(cert), registry.SPKISHA256(cert2)
		if d, ok := reg.ByPinnedKey(p1[:]); !ok || d.ID != "pin-1" {
			t.Fatal("pin-1 not found by its pin")
		}
		if d, ok := reg.ByPinnedKey(p2[:]); !ok || d.ID != "pin-2" {
			t.Fatal("pin-2 not found by its pin")
		}
	})
	devRun(t, dir, "", "disable", "pin-1").ok(t)
	withReg(t, dir, func(reg *registry.Registry) {
		p1 := registry.SPKISHA256(cert)
		if _, ok := reg.ByPinnedKey(p1[:]); ok {
			t.Fatal("disabled pin accepted")
		}
	})
	if r := devRun(t, dir, "", "show", "pin-1").ok(t); !strings.Contains(r.out, "spki-sha256 "+pin) {
		t.Fatalf("show:\n%s", r.out)
	}
	devRun(t, dir, "", "remove", "pin-1").ok(t)
}

func TestDeviceECDH(t *testing.T) {
	dir := newDevDataDir(t, false)
	out := t.TempDir()
	var o, e bytes.Buffer
	if code := keygenCmd([]string{"--ecdh", "--out", out, "--name", "e1"}, &o, &e); code != 0 {
		t.Fatal(e.String())
	}
	pub := submatch(t, pubRE, o.String())
	keyFile := filepath.Join(out, "e1.x25519.key")
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("X25519 key file: %v %v", fi, err)
	}
	r := devRun(t, dir, "", "add", "e1", "--ecdh-pub", pub).ok(t)
	brokerPub := submatch(t, brokerRE, r.out)
	if got := strings.TrimSpace(devRun(t, dir, "", "ecdh-key").ok(t).out); got != brokerPub {
		t.Fatalf("ecdh-key %q, add printed %q", got, brokerPub)
	}
	o.Reset()
	if code := keygenCmd([]string{"--ecdh", "--key", keyFile, "--broker-pub", brokerPub, "--identity", "e1"}, &o, &e); code != 0 {
		t.Fatal(e.String())
	}
	if submatch(t, pubRE, o.String()) != pub {
		t.Fatal("--key did not reuse the key")
	}
	psk, ident := printedPSK(t, o.String())
	withReg(t, dir, func(reg *registry.Registry) {
		got, ok := reg.LookupPSK(ident)
		if !ok || !bytes.Equal(got, psk) {
			t.Fatal("the device's ECDH-derived PSK is not the broker's")
		}
		if err := pskHandshake(reg, ident, psk); err != nil {
			t.Fatal(err)
		}
	})
	cid := credID(t, showDevice(t, append([]string{"e1"}, offline(dir)...)...), registry.KindECDH)
	devRun(t, dir, "", "rotate", "e1", cid).fails(t, "cannot be rotated")
	devRun(t, dir, "", "disable", "e1").ok(t)
	withReg(t, dir, func(reg *registry.Registry) {
		if _, ok := reg.LookupPSK("e1"); ok {
			t.Fatal("disabled ECDH device still has a PSK")
		}
	})
	devRun(t, dir, "", "enable", "e1").ok(t)
	devRun(t, dir, "", "remove", "e1").ok(t)
	if code := keygenCmd([]string{"--ecdh", "--key", keyFile, "--broker-pub", brokerPub}, &o, &e); code != 2 {
		t.Fatalf("--broker-pub without --identity: exit %d", code)
	}
}

func TestDeviceFleetPSK(t *testing.T) {
	dir := newDevDataDir(t, false)
	devRun(t, dir, "", "add", "f1", "--fleet-psk").fails(t, "moat device fleet-key")
	r := devRun(t, dir, "", "fleet-key").ok(t)
	devRun(t, dir, "", "fleet-key").fails(t, "already set")
	r = devRun(t, dir, "", "fleet-key", "--replace").ok(t)
	fleet, err := hex.DecodeString(regexp.MustCompile(`(?m)^\s+([0-9a-f]{64})$`).FindStringSubmatch(r.out)[1])
	if err != nil {
		t.Fatal(err)
	}
	r = devRun(t, dir, "", "add", "f1", "--fleet-psk").ok(t)
	key, ident := printedPSK(t, r.out)
	m := hmac.New(sha256.New, fleet)
	m.Write([]byte("f1"))
	if ident != "f1" || !bytes.Equal(key, m.Sum(nil)) {
		t.Fatal("the fleet-derived PSK is not HMAC-SHA256(fleet key, identity)")
	}
	r = devRun(t, dir, "", "psk", "derive", "f1").ok(t)
	if k, _ := printedPSK(t, r.out); !bytes.Equal(k, key) {
		t.Fatal("psk derive differs from the key printed by add")
	}
	withReg(t, dir, func(reg *registry.Registry) {
		got, ok := reg.LookupPSK("f1")
		if !ok || !bytes.Equal(got, key) {
			t.Fatal("LookupPSK does not return the derived key")
		}
	})
	// Provisioning before registration works, with a note.
	r = devRun(t, dir, "", "psk", "derive", "f2").ok(t)
	if !strings.Contains(r.errOut, "not registered") {
		t.Fatalf("no note for an unregistered device: %q", r.errOut)
	}
	cid := credID(t, showDevice(t, append([]string{"f1"}, offline(dir)...)...), registry.KindPSK)
	devRun(t, dir, "", "rotate", "f1", cid).fails(t, "cannot be rotated")
	devRun(t, dir, "", "disable", "f1").ok(t)
	withReg(t, dir, func(reg *registry.Registry) {
		if _, ok := reg.LookupPSK("f1"); ok {
			t.Fatal("disabled device's derived PSK accepted")
		}
	})
}

func TestDeviceCredAddRemove(t *testing.T) {
	dir := newDevDataDir(t, false)
	devRun(t, dir, "", "add", "c1", "--psk").ok(t)
	r := devRun(t, dir, "", "cred", "add", "c1", "--psk", "--psk-identity", "c1-b").ok(t)
	key, ident := printedPSK(t, r.out)
	d := showDevice(t, append([]string{"c1"}, offline(dir)...)...)
	if len(d.Credentials) != 2 || ident != "c1-b" {
		t.Fatalf("credentials %+v", d.Credentials)
	}
	withReg(t, dir, func(reg *registry.Registry) {
		if got, ok := reg.LookupPSK("c1-b"); !ok || !bytes.Equal(got, key) {
			t.Fatal("added credential not found")
		}
	})
	devRun(t, dir, "", "cred", "remove", "c1", d.Credentials[1].ID).ok(t)
	withReg(t, dir, func(reg *registry.Registry) {
		if _, ok := reg.LookupPSK("c1-b"); ok {
			t.Fatal("removed credential still found")
		}
	})
	devRun(t, dir, "", "cred", "add", "nobody", "--psk").fails(t, "not found")
}

func TestDeviceFallbackToDataDir(t *testing.T) {
	dir := newDevDataDir(t, false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "https://" + ln.Addr().String()
	ln.Close()
	r := devRunFlags(t, "", "add", "fb-1", "--psk", "--data-dir", dir, "--admin", closed).ok(t)
	if !strings.Contains(r.errOut, "no admin API") {
		t.Fatalf("no notice of the fallback: %q", r.errOut)
	}
	printedPSK(t, r.out)

	// A broker holds the registry but its API is not reachable.
	reg := openDevReg(t, dir)
	defer reg.Close()
	r = devRunFlags(t, "", "list", "--data-dir", dir, "--admin", closed)
	r.fails(t, "the broker is running")
	if !strings.Contains(r.errOut, "could not be reached") {
		t.Fatalf("stderr: %q", r.errOut)
	}
	devRunFlags(t, "", "list", "--data-dir", dir, "--admin", "http://127.0.0.1:1").fails(t, "HTTPS only")
}

// devSyncBuf is an io.Writer safe for the admin server's goroutines.
type devSyncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *devSyncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *devSyncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDeviceAdminAPI(t *testing.T) {
	dir := newDevDataDir(t, true)
	reg := openDevReg(t, dir) // the "broker": it holds the registry file
	defer reg.Close()
	set, err := testpki.Generate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tok, rec := admin.GenerateToken("cli")
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	audit := &devSyncBuf{}
	srv, err := admin.New(admin.Options{
		Registry:  reg,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{set.Server.TLSCertificate()}},
		Tokens:    []admin.Token{rec},
		Audit:     audit,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := admin.Listen("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	api := []string{"--data-dir", dir, "--admin", "https://" + ln.Addr().String(), "--admin-ca", set.CAFile, "--token-file", tokFile}
	run := func(stdin string, args ...string) devResult {
		t.Helper()
		return devRunFlags(t, stdin, append(args, api...)...)
	}

	r := run("", "add", "api-1", "--psk", "--meta", "k=v", "--allow-pub", "t/%i").ok(t)
	if !strings.Contains(r.out, "via admin API https://") {
		t.Fatalf("not through the API:\n%s", r.out)
	}
	key, ident := printedPSK(t, r.out)
	if got, ok := reg.LookupPSK(ident); !ok || !bytes.Equal(got, key) {
		t.Fatal("PSK added through the API not in the registry")
	}
	if err := pskHandshake(reg, ident, key); err != nil {
		t.Fatal(err)
	}
	r = run("", "list", "--json").ok(t)
	var list struct{ Devices []registry.Device }
	if err := json.Unmarshal([]byte(r.out), &list); err != nil || len(list.Devices) != 1 || list.Devices[0].ID != "api-1" {
		t.Fatalf("list --json: %v\n%s", err, r.out)
	}
	run("", "list").ok(t)
	d := showDevice(t, append([]string{"api-1"}, api...)...)
	if d.Metadata["k"] != "v" || len(d.ACL) != 1 {
		t.Fatalf("show: %+v", d)
	}
	cid := credID(t, d, registry.KindPSK)

	run("", "disable", "api-1").ok(t)
	if d, _ := reg.Device("api-1"); d.Enabled() {
		t.Fatal("not disabled")
	}
	run("", "enable", "api-1").ok(t)
	r = run("", "rotate", "api-1", cid).ok(t)
	newKey, _ := printedPSK(t, r.out)
	if got, _ := reg.LookupPSK(ident); !bytes.Equal(got, newKey) || bytes.Equal(newKey, key) {
		t.Fatal("rotation through the API not applied")
	}
	run("", "acl", "api-1", "--deny", "secret/#").ok(t)
	if d, _ := reg.Device("api-1"); len(d.ACL) != 1 || d.ACL[0].Topic != "secret/#" || d.ACL[0].Permission != "deny" {
		t.Fatalf("ACL %+v", d.ACL)
	}

	// Fleet and ECDH.
	run("", "fleet-key").ok(t)
	r = run("", "add", "api-2", "--fleet-psk").ok(t)
	fk, _ := printedPSK(t, r.out)
	r = run("", "psk", "derive", "api-2").ok(t)
	if k, _ := printedPSK(t, r.out); !bytes.Equal(k, fk) {
		t.Fatal("psk derive through the API differs")
	}
	bp, err := reg.BrokerECDHPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(run("", "ecdh-key").ok(t).out); got != hex.EncodeToString(bp) {
		t.Fatalf("ecdh-key %q", got)
	}

	// A certificate issued by the CA of the data directory, registered
	// through the API; then revoked.
	out := t.TempDir()
	run("", "add", "api-3", "--cert", "--out", out).ok(t)
	cert, err := readCertPEM(filepath.Join(out, "api-3.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if d, _, ok := reg.ByCertificate(cert); !ok || d.ID != "api-3" {
		t.Fatal("certificate added through the API not found")
	}
	r = run("", "revoke", "api-3").ok(t)
	if d, _ := reg.Device("api-3"); d.Enabled() || !strings.Contains(r.out, "1 certificate(s)") {
		t.Fatalf("revoke through the API:\n%s", r.out)
	}

	// A password, and a pinned key added to an existing device.
	r = run("", "add", "api-4", "--generate-password").ok(t)
	if _, ok := reg.VerifyPassword("api-4", []byte(submatch(t, passwordRE, r.out))); !ok {
		t.Fatal("generated password not accepted")
	}
	var kg bytes.Buffer
	if code := keygenCmd([]string{"--out", out, "--name", "api-pin"}, &kg, &kg); code != 0 {
		t.Fatal(kg.String())
	}
	run("", "cred", "add", "api-1", "--pin", submatch(t, pinRE, kg.String())).ok(t)
	d = showDevice(t, append([]string{"api-1"}, api...)...)
	run("", "cred", "remove", "api-1", credID(t, d, registry.KindPinnedKey)).ok(t)

	run("", "remove", "api-1").ok(t)
	if _, ok := reg.Device("api-1"); ok {
		t.Fatal("not removed")
	}
	run("", "show", "api-1").fails(t, "not found")

	// A wrong token is refused, and never echoed.
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("moat_wrong"), 0o600)
	r = devRunFlags(t, "", "list", "--data-dir", dir, "--admin", "https://"+ln.Addr().String(), "--admin-ca", set.CAFile, "--token-file", bad)
	r.fails(t, "401")
	if strings.Contains(r.errOut, "moat_wrong") {
		t.Fatal("the token is echoed")
	}
	// A token file others can read is refused.
	os.Chmod(bad, 0o644)
	devRunFlags(t, "", "list", "--data-dir", dir, "--admin", "https://"+ln.Addr().String(), "--admin-ca", set.CAFile, "--token-file", bad).fails(t, "chmod 600")
	// The token from the environment.
	t.Setenv(envAdminToken, tok)
	devRunFlags(t, "", "list", "--data-dir", dir, "--admin", "https://"+ln.Addr().String(), "--admin-ca", set.CAFile).ok(t)

	// The audit log has every action and no secret.
	log := audit.String()
	for _, want := range []string{"device.create", "credential.rotate", "device.disable", "fleet.derive", "device.delete"} {
		if !strings.Contains(log, want) {
			t.Fatalf("audit log lacks %s", want)
		}
	}
	for _, secret := range [][]byte{key, newKey, fk} {
		if strings.Contains(log, hex.EncodeToString(secret)) {
			t.Fatal("the audit log holds a secret")
		}
	}
}

func TestKeysRotate(t *testing.T) {
	dir := newDevDataDir(t, true)
	r := devRun(t, dir, "", "add", "k1", "--psk").ok(t)
	key, ident := printedPSK(t, r.out)
	mkPath := filepath.Join(dir, "master.key")
	oldBytes, _ := os.ReadFile(mkPath)

	// Refused while a broker holds the registry.
	reg := openDevReg(t, dir)
	var o, e bytes.Buffer
	if code := keysCmd([]string{"rotate", "--data-dir", dir}, &o, &e); code == 0 || !strings.Contains(e.String(), "stop the broker") {
		t.Fatalf("rotate under a running broker: exit %d, %s", code, e.String())
	}
	reg.Close()
	if _, err := os.Stat(mkPath + ".new"); err == nil {
		t.Fatal("a refused rotation left master.key.new behind")
	}

	o.Reset()
	e.Reset()
	if code := keysCmd([]string{"rotate", "--data-dir", dir}, &o, &e); code != 0 {
		t.Fatalf("rotate: %s", e.String())
	}
	newBytes, _ := os.ReadFile(mkPath)
	if bytes.Equal(oldBytes, newBytes) {
		t.Fatal("master.key unchanged")
	}
	if b, _ := os.ReadFile(mkPath + ".old"); !bytes.Equal(b, oldBytes) {
		t.Fatal("master.key.old is not the old key")
	}
	for _, p := range []string{mkPath, mkPath + ".old"} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", p, fi, err)
		}
	}
	// The registry opens with the new key only.
	withReg(t, dir, func(reg *registry.Registry) {
		if got, ok := reg.LookupPSK(ident); !ok || !bytes.Equal(got, key) {
			t.Fatal("PSK lost in the rotation")
		}
	})
	oldReg, err := registry.LoadMasterKeyFile(mkPath + ".old")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Open(filepath.Join(dir, "registry.db"), oldReg, nil); !errors.Is(err, registry.ErrMasterKey) {
		t.Fatalf("registry opens with the old key: %v", err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "registry.db"))
	if bytes.Contains(raw, key) {
		t.Fatal("registry.db holds the PSK in clear")
	}
	// So do the CA keys.
	oldPKI, _ := pki.LoadMasterKey(mkPath+".old", "")
	if _, err := pki.Open(filepath.Join(dir, "pki"), oldPKI); !errors.Is(err, pki.ErrWrongKey) {
		t.Fatalf("CA opens with the old key: %v", err)
	}
	newPKI, _ := pki.LoadMasterKey(mkPath, "")
	if _, err := pki.Open(filepath.Join(dir, "pki"), newPKI); err != nil {
		t.Fatal(err)
	}
	devRun(t, dir, "", "add", "k2", "--cert", "--out", t.TempDir()).ok(t)

	// A second rotation will not overwrite master.key.old.
	e.Reset()
	if code := keysCmd([]string{"rotate", "--data-dir", dir}, &o, &e); code == 0 || !strings.Contains(e.String(), "master.key.old exists") {
		t.Fatalf("second rotation: exit %d, %s", code, e.String())
	}
	// With a given key file.
	os.Rename(mkPath+".old", filepath.Join(t.TempDir(), "archived.key"))
	given := filepath.Join(t.TempDir(), "given.key")
	if _, err := registry.WriteMasterKeyFile(given); err != nil {
		t.Fatal(err)
	}
	e.Reset()
	if code := keysCmd([]string{"rotate", "--data-dir", dir, "--new-key-file", given}, &o, &e); code != 0 {
		t.Fatalf("rotate --new-key-file: %s", e.String())
	}
	if a, b := mustRead(t, given), mustRead(t, mkPath); !bytes.Equal(a, b) {
		t.Fatal("master.key is not the given key")
	}
	withReg(t, dir, func(reg *registry.Registry) {
		if got, ok := reg.LookupPSK(ident); !ok || !bytes.Equal(got, key) {
			t.Fatal("PSK lost in the second rotation")
		}
	})
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAdminTokenCreate(t *testing.T) {
	dir := newDevDataDir(t, false)
	var o, e bytes.Buffer
	if code := adminCmd([]string{"token", "create", "ops", "--data-dir", dir}, &o, &e); code != 0 {
		t.Fatal(e.String())
	}
	tok := tokenRE.FindString(o.String())
	if tok == "" {
		t.Fatalf("no token printed:\n%s", o.String())
	}
	path := filepath.Join(dir, "admin", "tokens")
	b := mustRead(t, path)
	if string(b) != "ops:"+admin.HashToken(tok)+"\n" {
		t.Fatalf("tokens file %q", b)
	}
	if bytes.Contains(b, []byte(tok)) || bytes.Contains(b, []byte(strings.TrimPrefix(tok, admin.TokenPrefix))) {
		t.Fatal("the tokens file holds the token")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("tokens file mode %v", fi.Mode())
	}
	if fi, _ := os.Stat(filepath.Dir(path)); fi.Mode().Perm() != 0o700 {
		t.Fatalf("admin dir mode %v", fi.Mode())
	}
	e.Reset()
	if code := adminCmd([]string{"token", "create", "ops", "--data-dir", dir}, &o, &e); code == 0 || !strings.Contains(e.String(), "already has a token") {
		t.Fatalf("duplicate name: exit %d %s", code, e.String())
	}
	if code := adminCmd([]string{"token", "create", "bad:name", "--data-dir", dir}, &o, &e); code != 2 {
		t.Fatalf("bad name: exit %d", code)
	}
	o.Reset()
	if code := adminCmd([]string{"token", "create", "ci", "--data-dir", dir}, &o, &e); code != 0 {
		t.Fatal(e.String())
	}
	tok2 := tokenRE.FindString(o.String())
	lines := strings.Split(strings.TrimSpace(string(mustRead(t, path))), "\n")
	if len(lines) != 2 || lines[1] != "ci:"+admin.HashToken(tok2) {
		t.Fatalf("tokens file lines %q", lines)
	}
}

func TestDeviceUsage(t *testing.T) {
	devClearEnv(t)
	var o, e bytes.Buffer
	for _, c := range []struct {
		code int
		run  func() int
	}{
		{2, func() int { return deviceCmd(nil, nil, &o, &e) }},
		{2, func() int { return deviceCmd([]string{"frobnicate"}, nil, &o, &e) }},
		{0, func() int { return deviceCmd([]string{"help"}, nil, &o, &e) }},
		{2, func() int { return deviceCmd([]string{"show"}, nil, &o, &e) }},
		{2, func() int { return deviceCmd([]string{"add", "x", "--no-such-flag"}, nil, &o, &e) }},
		{2, func() int { return deviceCmd([]string{"add", "x", "--psk", "--fleet-psk"}, nil, &o, &e) }},
		{2, func() int { return keysCmd(nil, &o, &e) }},
		{2, func() int { return adminCmd([]string{"token"}, &o, &e) }},
		{0, func() int { return keygenCmd([]string{"--help"}, &o, &e) }},
	} {
		if got := c.run(); got != c.code {
			t.Errorf("exit %d, want %d (stderr %s)", got, c.code, e.String())
		}
	}
}
