package devices

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/registry"
	"moat/internal/testpki"
	"moat/internal/tlspolicy"
)

// TestCredentialKinds connects one device per credential kind with
// mosquitto_pub and proves the connection's Principal is the device: the
// device's own ACL rule (publish devices/%i/# only) lets it publish to its
// topic and refuses another device's topic, which the configuration ACL
// alone would allow.
func TestCredentialKinds(t *testing.T) {
	t.Parallel()
	need(t, "mosquitto_pub")
	// The fleet key is chosen here, so the derived key can be computed
	// independently of the registry (HMAC-SHA256(fleet key, identity), as
	// the issue specifies) and written to the listener's psk_file too: a
	// registered identity must be answered by the registry alone.
	fleet := registry.NewRandomKey()
	fleetKey := hmacSHA256(fleet, "fleet-id-7")
	legacyKey := registry.NewRandomKey()
	pskFile := filepath.Join(t.TempDir(), "psk.txt")
	if err := os.WriteFile(pskFile, []byte("fleet-id-7:"+hex.EncodeToString(fleetKey)+"\nlegacy-id:"+hex.EncodeToString(legacyKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := start(t, withPSKFile(pskFile))
	reg := e.reg

	// Per-device PSK: 32 random bytes made by the registry, shown once.
	_, issued := e.add(registry.NewDevice{ID: "psk-dev", ACL: []registry.Rule{ownTopicRule},
		Credentials: []registry.NewCredential{{Kind: registry.KindPSK}}})
	if len(issued) != 1 || len(issued[0].Secret) != 32 || issued[0].Identity != "psk-dev" {
		t.Fatalf("psk credential: issued %+v", issued)
	}
	pskKey := issued[0].Secret

	// Fleet-derived PSK: nothing stored per device.
	if err := reg.SetFleetKey(fleet); err != nil {
		t.Fatal(err)
	}
	_, issued = e.add(registry.NewDevice{ID: "fleet-dev", ACL: []registry.Rule{ownTopicRule},
		Credentials: []registry.NewCredential{{Kind: registry.KindPSK, Identity: "fleet-id-7", Derived: true}}})
	if k := mustDerive(t, reg, "fleet-id-7"); !bytes.Equal(k, fleetKey) {
		t.Fatalf("DerivePSK gives %x, want HMAC-SHA256(fleet key, identity) = %x", k, fleetKey)
	}
	if len(issued) != 1 || !bytes.Equal(issued[0].Secret, fleetKey) {
		t.Fatalf("derived psk: Add issued %x, want %x", issued, fleetKey)
	}

	// ECDH-derived PSK: the device's X25519 key pair never leaves the
	// test; the broker learns only the public key.
	devPriv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, issued = e.add(registry.NewDevice{ID: "ecdh-dev", ACL: []registry.Rule{ownTopicRule},
		Credentials: []registry.NewCredential{{Kind: registry.KindECDH, PublicKey: hex.EncodeToString(devPriv.PublicKey().Bytes())}}})
	if len(issued) != 0 {
		t.Fatalf("an ecdh credential issued a secret: %+v", issued)
	}
	brokerPub, err := reg.BrokerECDHPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	ecdhKey, err := registry.DeviceECDHPSK(devPriv, brokerPub, "ecdh-dev")
	if err != nil {
		t.Fatal(err)
	}

	// Client certificates, bound three ways. The listener's identity is
	// the CN (device-1, device-2, device-3); the device ids differ, so the
	// Principal can only be the device through the registry.
	c1 := e.pki.Client
	fp := registry.CertFingerprint(c1.Cert.Cert)
	e.add(registry.NewDevice{ID: "cert-fp-dev", ACL: []registry.Rule{ownTopicRule},
		Credentials: []registry.NewCredential{{Kind: registry.KindX509, Fingerprint: hex.EncodeToString(fp[:])}}})
	c2 := e.pki.Client2
	e.add(registry.NewDevice{ID: "cert-is-dev", ACL: []registry.Rule{ownTopicRule},
		Credentials: []registry.NewCredential{{Kind: registry.KindX509, Issuer: issuerDN(t, c2.Cert.Cert), Serial: c2.Cert.Cert.SerialNumber.Text(16)}}})
	c3, err := testpki.IssueFiles(e.pki.Intermediate, testpki.Device(3), e.pki.Dir, "client3")
	if err != nil {
		t.Fatal(err)
	}
	e.add(registry.NewDevice{ID: "cert-subj-dev", ACL: []registry.Rule{ownTopicRule},
		Credentials: []registry.NewCredential{{Kind: registry.KindX509, Subject: "UID=uid-0003"}}})

	// Password: the MQTT username is the device id (default argon2id).
	const pw = "correct horse battery staple"
	e.add(registry.NewDevice{ID: "pw-dev", ACL: []registry.Rule{ownTopicRule},
		Credentials: []registry.NewCredential{{Kind: registry.KindPassword, Password: []byte(pw)}}})

	certArgs := func(f *testpki.Files, clientID string) []string {
		return []string{"--cafile", e.pki.CAFile, "--cert", f.CertFile, "--key", f.KeyFile, "-i", clientID}
	}
	for _, tc := range []struct {
		name, device, addr string
		args               []string
	}{
		{"psk", "psk-dev", e.tls, []string{"--psk", hex.EncodeToString(pskKey), "--psk-identity", "psk-dev"}},
		{"psk-tls1.2", "psk-dev", e.tls, []string{"--psk", hex.EncodeToString(pskKey), "--psk-identity", "psk-dev", "--tls-version", "tlsv1.2"}},
		{"fleet-psk", "fleet-dev", e.tls, []string{"--psk", hex.EncodeToString(fleetKey), "--psk-identity", "fleet-id-7"}},
		{"ecdh-psk", "ecdh-dev", e.tls, []string{"--psk", hex.EncodeToString(ecdhKey), "--psk-identity", "ecdh-dev"}},
		{"ecdh-psk-tls1.2", "ecdh-dev", e.tls, []string{"--psk", hex.EncodeToString(ecdhKey), "--psk-identity", "ecdh-dev", "--tls-version", "tlsv1.2", "--ciphers", "ECDHE-PSK-CHACHA20-POLY1305"}},
		{"x509-fingerprint", "cert-fp-dev", e.tls, certArgs(c1, "device-1")},
		{"x509-issuer-serial", "cert-is-dev", e.tls, certArgs(c2, "device-2")},
		{"x509-subject", "cert-subj-dev", e.tls, certArgs(c3, "device-3")},
		{"password", "pw-dev", e.tcp, []string{"-u", "pw-dev", "-P", pw, "-i", "pw-client"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.in(t)
			sub := e.subscriber("watch-"+tc.name, "devices/#")
			// Forbidden first: another device's topic. The configuration
			// ACL allows it; only the device's own rule refuses it.
			out, _ := mosqPub(t, tc.addr, "devices/someone-else/x", "forbidden", tc.args...)
			if !strings.Contains(out, "RC:135") {
				t.Fatalf("publish to another device's topic: want PUBACK 0x87 from the device's own ACL; without it the connection's Principal is not device %s:\n%s", tc.device, out)
			}
			own := "devices/" + tc.device + "/" + tc.name
			if out, err := mosqPub(t, tc.addr, own, "sentinel", tc.args...); err != nil || !strings.Contains(out, "RC:0") {
				t.Fatalf("publish to the device's own topic: %v\n%s", err, out)
			}
			sub.recv(own, "sentinel")
		})
	}

	// An identity the registry does not know still comes from psk_file,
	// as a plain TLS-PSK client (no device ACL: any devices/ topic).
	t.Run("psk_file-fallback", func(t *testing.T) {
		e := e.in(t)
		sub := e.subscriber("watch-legacy", "devices/#")
		args := []string{"--psk", hex.EncodeToString(legacyKey), "--psk-identity", "legacy-id"}
		if out, err := mosqPub(t, e.tls, "devices/someone-else/x", "legacy", args...); err != nil || !strings.Contains(out, "RC:0") {
			t.Fatalf("psk_file identity: %v\n%s", err, out)
		}
		sub.recv("devices/someone-else/x", "legacy")
	})

	// Wrong secrets are refused at the handshake or at CONNECT.
	refusals := []struct {
		name, addr string
		args       []string
	}{
		{"psk-wrong-key", e.tls, []string{"--psk", hex.EncodeToString(fleetKey), "--psk-identity", "psk-dev"}},
		{"psk-unknown-identity", e.tls, []string{"--psk", hex.EncodeToString(pskKey), "--psk-identity", "nobody"}},
		{"fleet-unregistered-identity", e.tls, []string{"--psk", hex.EncodeToString(mustDerive(t, reg, "fleet-id-8")), "--psk-identity", "fleet-id-8"}},
		{"ecdh-wrong-identity", e.tls, []string{"--psk", hex.EncodeToString(ecdhKey), "--psk-identity", "psk-dev"}},
		{"password-wrong", e.tcp, []string{"-u", "pw-dev", "-P", "not the password", "-i", "pw-client"}},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			if out, err := mosqPub(t, tc.addr, "devices/x/y", "x", tc.args...); err == nil {
				t.Fatalf("accepted:\n%s", out)
			}
		})
	}

	// Disabled devices are refused although their keys are still known
	// or derivable, and the fleet key's psk_file copy does not revive
	// one.
	for _, id := range []string{"psk-dev", "fleet-dev", "ecdh-dev", "cert-fp-dev", "pw-dev"} {
		if _, err := reg.SetStatus(id, registry.StatusDisabled); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, addr string
		args       []string
	}{
		{"disabled-psk", e.tls, []string{"--psk", hex.EncodeToString(pskKey), "--psk-identity", "psk-dev"}},
		{"disabled-fleet-psk", e.tls, []string{"--psk", hex.EncodeToString(fleetKey), "--psk-identity", "fleet-id-7"}},
		{"disabled-ecdh-psk", e.tls, []string{"--psk", hex.EncodeToString(ecdhKey), "--psk-identity", "ecdh-dev"}},
		{"disabled-x509", e.tls, certArgs(c1, "device-1")},
		{"disabled-password", e.tcp, []string{"-u", "pw-dev", "-P", pw, "-i", "pw-client"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if out, err := mosqPub(t, tc.addr, "devices/x/y", "x", tc.args...); err == nil {
				t.Fatalf("a disabled device was accepted:\n%s", out)
			}
		})
	}
}

func mustDerive(t *testing.T, reg *registry.Registry, identity string) []byte {
	t.Helper()
	k, err := reg.DerivePSK(identity)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// issuerDN is a certificate's issuer as RFC 4514 prints it, the form the
// registry's issuer+serial binding takes ("CN=...,O=...").
func issuerDN(t *testing.T, cert *x509.Certificate) string {
	t.Helper()
	dn, err := tlspolicy.Identity(&x509.Certificate{RawSubject: cert.RawIssuer}, "dn")
	if err != nil {
		t.Fatal(err)
	}
	return dn
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
