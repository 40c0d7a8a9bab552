package devices

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"moat/internal/registry"
)

// TestNoSecretsAtRest registers devices with every kind of broker-side
// secret, uses them, then reads every file of the data directory
// (registry.db, moat.db, the audit log) byte by byte: no PSK (generated,
// given, rotated, fleet-derived, ECDH-derived), no fleet key, no password,
// no master key and no broker ECDH private key may appear in clear, raw or
// hex or base64.
func TestNoSecretsAtRest(t *testing.T) {
	t.Parallel()
	e := start(t)
	reg := e.reg
	secrets := map[string][]byte{}

	// A generated PSK, then rotated: neither the old nor the new key.
	_, issued := e.add(registry.NewDevice{ID: "rest-gen", ACL: []registry.Rule{ownTopicRule},
		Credentials: []registry.NewCredential{{Kind: registry.KindPSK}}})
	secrets["generated psk"] = issued[0].Secret
	rotated, err := reg.RotateCredential("rest-gen", issued[0].CredentialID)
	if err != nil {
		t.Fatal(err)
	}
	secrets["rotated psk"] = rotated

	// A PSK given by the operator.
	given := registry.NewRandomKey()
	secrets["given psk"] = bytes.Clone(given)
	e.add(registry.NewDevice{ID: "rest-given", ACL: []registry.Rule{ownTopicRule},
		Credentials: []registry.NewCredential{{Kind: registry.KindPSK, Key: given}}})

	// The fleet key and a derived PSK.
	fleet := registry.NewRandomKey()
	secrets["fleet key"] = bytes.Clone(fleet)
	if err := reg.SetFleetKey(fleet); err != nil {
		t.Fatal(err)
	}
	_, issued = e.add(registry.NewDevice{ID: "rest-fleet", ACL: []registry.Rule{ownTopicRule},
		Credentials: []registry.NewCredential{{Kind: registry.KindPSK, Derived: true}}})
	secrets["fleet-derived psk"] = issued[0].Secret

	// An ECDH device.
	devPriv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.add(registry.NewDevice{ID: "rest-ecdh", ACL: []registry.Rule{ownTopicRule},
		Credentials: []registry.NewCredential{{Kind: registry.KindECDH, PublicKey: hex.EncodeToString(devPriv.PublicKey().Bytes())}}})
	brokerPub, err := reg.BrokerECDHPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	ecdhPSK, err := registry.DeviceECDHPSK(devPriv, brokerPub, "rest-ecdh")
	if err != nil {
		t.Fatal(err)
	}
	secrets["ecdh-derived psk"] = ecdhPSK
	secrets["device ecdh private key"] = devPriv.Bytes()

	// A password (the default argon2id path: the registry sees the text).
	const pw = "rest-password-do-not-store"
	e.add(registry.NewDevice{ID: "rest-pw", Credentials: []registry.NewCredential{{Kind: registry.KindPassword, Password: []byte(pw)}}})
	secrets["password"] = []byte(pw)

	// The master key (its file lives outside the data directory).
	mkHex, err := os.ReadFile(e.cfg.MasterKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := hex.DecodeString(strings.TrimSpace(string(mkHex)))
	if err != nil {
		t.Fatal(err)
	}
	secrets["master key"] = mk

	// Use the keys: the broker derives the ECDH PSK on the first
	// handshake; each device leaves a retained message in moat.db.
	for _, d := range []struct {
		id, identity string
		key          []byte
	}{
		{"rest-gen", "rest-gen", rotated},
		{"rest-given", "rest-given", given},
		{"rest-fleet", "rest-fleet", secrets["fleet-derived psk"]},
		{"rest-ecdh", "rest-ecdh", ecdhPSK},
	} {
		conn, err := dialPSK(t, e.tls, d.identity, d.key, 0)
		if err != nil {
			t.Fatalf("%s: TLS-PSK: %v", d.id, err)
		}
		c := mustConnect(t, conn, &paho.Connect{ClientID: d.id + "-c"})
		if rc := c.publishRetained("devices/"+d.id+"/state", "online"); rc >= 0x80 {
			t.Fatalf("%s: publish: 0x%02x", d.id, rc)
		}
		c.close()
	}
	if conn, err := dialPSK(t, e.tls, "rest-gen", secrets["generated psk"], 0); err == nil {
		conn.Close()
		t.Fatal("the PSK from before the rotation still works")
	}

	// Read the files while the broker runs (bbolt has committed every
	// change) and again after it stopped. The search for the broker's
	// ECDH private key tries every window as a key (slow under -race):
	// once, on the final files.
	check := func(when string, scanECDH bool) {
		t.Helper()
		seen := map[string]bool{}
		err := filepath.WalkDir(e.dataDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(e.dataDir, path)
			seen[rel] = len(data) > 0
			for name, s := range secrets {
				if form := findSecret(data, s); form != "" {
					t.Errorf("%s: %s holds the %s in clear (%s)", when, rel, name, form)
				}
			}
			if !scanECDH {
				return nil
			}
			if form := findX25519Private(data, brokerPub); form != "" {
				t.Errorf("%s: %s holds the broker's ECDH private key in clear (%s)", when, rel, form)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"registry.db", "moat.db"} {
			if !seen[f] {
				t.Fatalf("%s: no %s in the data directory (files: %v)", when, f, seen)
			}
		}
	}
	check("running", false)
	e.stop()
	check("stopped", true)
}

// publishRetained publishes a retained message at QoS 1.
func (c *client) publishRetained(topic, payload string) byte {
	c.t.Helper()
	ctx, cancel := ctxTimeout()
	defer cancel()
	pr, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(payload)})
	if pr == nil {
		c.t.Fatalf("client %s: publish %s: %v", c.id, topic, err)
	}
	return pr.ReasonCode
}

// TestFindX25519Private checks the scanner TestNoSecretsAtRest relies on:
// it finds a private key stored raw, hex or base64 inside other bytes.
func TestFindX25519Private(t *testing.T) {
	t.Parallel()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, raw := k.PublicKey().Bytes(), k.Bytes()
	pad := make([]byte, 4096)
	rand.Read(pad[100:300])
	for _, tc := range []struct {
		form string
		enc  []byte
	}{
		{"raw", raw},
		{"hex", []byte(`{"k":"` + hex.EncodeToString(raw) + `"}`)},
		{"hex", []byte(strings.ToUpper(hex.EncodeToString(raw)))},
		{"base64", []byte(`{"k":"` + base64.StdEncoding.EncodeToString(raw) + `"}`)},
		{"base64", []byte(base64.RawURLEncoding.EncodeToString(raw))},
	} {
		data := append(append(bytes.Clone(pad[:777]), tc.enc...), pad...)
		if got := findX25519Private(data, pub); got != tc.form {
			t.Errorf("key stored as %s (%.20q...): found %q", tc.form, tc.enc, got)
		}
	}
	if got := findX25519Private(pad, pub); got != "" {
		t.Errorf("found %q in bytes without the key", got)
	}
}

// findX25519Private reports in which form (raw, hex, base64) data holds
// an X25519 private key whose public key is pub, or "". The broker's
// private key is never exported, so every 32-byte window is tried as a
// private key. Windows with a run of 8 zero bytes are skipped (bbolt
// pages are mostly zero padding; a random key has such a run with
// probability about 2^-59).
func findX25519Private(data, pub []byte) string {
	x := ecdh.X25519()
	is := func(k []byte) bool {
		p, err := x.NewPrivateKey(k)
		return err == nil && bytes.Equal(p.PublicKey().Bytes(), pub)
	}
	var zeros [8]byte
	for i := 0; i+32 <= len(data); i++ {
		w := data[i : i+32]
		if bytes.Contains(w, zeros[:]) {
			continue
		}
		if is(w) {
			return "raw"
		}
	}
	for _, run := range runs(data, isHexDigit) {
		for i := 0; i+64 <= len(run); i++ {
			if k, err := hex.DecodeString(string(run[i : i+64])); err == nil && is(k) {
				return "hex"
			}
		}
	}
	for _, run := range runs(data, isBase64Char) {
		for i := 0; i+43 <= len(run); i++ {
			w := strings.NewReplacer("-", "+", "_", "/").Replace(string(run[i : i+43]))
			if k, err := base64.RawStdEncoding.DecodeString(w); err == nil && len(k) == 32 && is(k) {
				return "base64"
			}
		}
	}
	return ""
}

// runs returns the maximal runs of bytes for which in is true.
func runs(data []byte, in func(byte) bool) [][]byte {
	var out [][]byte
	start := -1
	for i := 0; i <= len(data); i++ {
		if i < len(data) && in(data[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			out = append(out, data[start:i])
			start = -1
		}
	}
	return out
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isBase64Char(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '+' || c == '/' || c == '-' || c == '_'
}
