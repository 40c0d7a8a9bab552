package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ccCert writes a self-signed (CA) or CA-signed certificate valid for
// validity from now, and returns it with its key.
func ccCert(t *testing.T, path, cn string, validity time.Duration, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validity),
		BasicConstraintsValid: true, IsCA: parent == nil,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent, parentKey
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, key.Public(), signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	if path != "" {
		kder, _ := x509.MarshalPKCS8PrivateKey(key)
		data := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})...)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c, key
}

func ccCRL(t *testing.T, path string, ca *x509.Certificate, key *ecdsa.PrivateKey, this time.Time, validity time.Duration) {
	t.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: this, NextUpdate: this.Add(validity)}, ca, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, der, 0o600); err != nil {
		t.Fatal(err)
	}
}

func ccRun(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := certCmd(args, &out, &errb)
	return code, out.String(), errb.String()
}

// ccSetup writes a config naming a listener certificate expiring in
// serverDays, a client CA, an SNI certificate, an admin certificate and a
// built-in CA with a 7-day CRL in data_dir/pki.
func ccSetup(t *testing.T, serverDays int) (cfgPath, serverPem string) {
	t.Helper()
	dir := t.TempDir()
	day := 24 * time.Hour
	ca, caKey := ccCert(t, filepath.Join(dir, "ca.pem"), "Client CA", 3650*day, nil, nil)
	serverPem = filepath.Join(dir, "server.pem")
	ccCert(t, serverPem, "server", time.Duration(serverDays)*day, ca, caKey)
	ccCert(t, filepath.Join(dir, "sni.pem"), "sni", 400*day, ca, caKey)
	ccCert(t, filepath.Join(dir, "admin.pem"), "admin", 400*day, ca, caKey)
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Join(data, "pki"), 0o700); err != nil {
		t.Fatal(err)
	}
	root, rootKey := ccCert(t, filepath.Join(data, "pki", "root.pem"), "moat CA", 3650*day, nil, nil)
	// A 7-day CRL re-signed yesterday is healthy even with a 30-day window.
	ccCRL(t, filepath.Join(data, "pki", "crl.der"), root, rootKey, time.Now().Add(-day), 7*day)

	cfg := `data_dir = "` + data + `"
[[listener]]
type = "tls"
address = "127.0.0.1:0"
[listener.tls]
cert = "` + serverPem + `"
client_auth = "required"
client_ca = ["` + filepath.Join(dir, "ca.pem") + `"]
[[listener.tls.sni]]
cert = "` + filepath.Join(dir, "sni.pem") + `"
names = ["sni.example"]
[admin]
cert = "` + filepath.Join(dir, "admin.pem") + `"
`
	cfgPath = filepath.Join(dir, "moat.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, serverPem
}

func TestCertCheckExitCodes(t *testing.T) {
	okCfg, _ := ccSetup(t, 90)
	soonCfg, soonPem := ccSetup(t, 10)
	dir := t.TempDir()
	staleCRL := filepath.Join(dir, "stale.crl")
	ca, caKey := ccCert(t, filepath.Join(dir, "ca.pem"), "CA", 1000*24*time.Hour, nil, nil)
	ccCRL(t, staleCRL, ca, caKey, time.Now().Add(-10*24*time.Hour), 7*24*time.Hour)
	dueCRL := filepath.Join(dir, "due.crl") // 180-day CRL with 20 days left
	ccCRL(t, dueCRL, ca, caKey, time.Now().Add(-160*24*time.Hour), 180*24*time.Hour)
	expiredPem := filepath.Join(dir, "expired.pem")
	ccCert(t, expiredPem, "expired", -30*time.Minute, ca, caKey)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		args []string
		code int
		out  []string
	}{
		{"all valid beyond 30d", []string{"check", "--config", okCfg}, 0, []string{"server", "Client CA", "sni", "admin", "moat CA", "CRL of CN=moat CA", "ok"}},
		{"server expires in 10 days", []string{"check", "--config", soonCfg}, 1, []string{"expiring"}},
		{"window shorter than 10 days", []string{"check", "--within", "7d", "--config", soonCfg}, 0, nil},
		{"window in hours", []string{"check", "--within", "240h", "--config", okCfg}, 0, nil},
		{"file argument inside window", []string{"check", "--within", "11d", soonPem}, 1, []string{"expiring"}},
		{"flags after files", []string{"check", soonPem, "--within", "5d"}, 0, nil},
		{"expired certificate", []string{"check", "--within", "0d", expiredPem}, 1, []string{"expired", "-1"}},
		{"stale CRL", []string{"check", staleCRL}, 1, []string{"stale"}},
		{"CRL due inside window", []string{"check", dueCRL}, 1, []string{"due"}},
		{"CRL due outside a short window", []string{"check", "--within", "7d", dueCRL}, 0, nil},
		{"unparseable file", []string{"check", garbage}, 2, []string{"error"}},
		{"missing file", []string{"check", filepath.Join(dir, "missing.pem")}, 2, []string{"error"}},
		{"missing config", []string{"check", "--config", filepath.Join(dir, "missing.toml")}, 2, nil},
		{"nothing to check", []string{"check"}, 2, nil},
		{"bad window", []string{"check", "--within", "soon", soonPem}, 2, nil},
		{"bad flag", []string{"check", "--nope"}, 2, nil},
		{"no subcommand", nil, 2, nil},
		{"unknown subcommand", []string{"renew"}, 2, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := ccRun(tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
			t.Logf("stdout:\n%s", out)
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestCertCheckJSON(t *testing.T) {
	cfg, soonPem := ccSetup(t, 10)
	code, out, errOut := ccRun("check", "--json", "--config", cfg)
	if code != 1 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep certReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// ca.pem (listener client_ca), server.pem, sni.pem, admin.pem, root.pem, crl.der.
	if len(rep.Items) != 6 || rep.Problems != 1 || rep.Errors != 0 || rep.WithinDays != 30 {
		t.Fatalf("report: %+v", rep)
	}
	kinds := map[string]int{}
	for _, it := range rep.Items {
		kinds[it.Kind]++
		if it.File == soonPem {
			if it.Status != "expiring" || it.DaysLeft == nil || *it.DaysLeft != 9 || it.Origin != `listener "tls-0": tls.cert` || it.Subject != "CN=server" {
				t.Errorf("server item: %+v", it)
			}
		} else if it.Status != "ok" {
			t.Errorf("%s: status %s", it.File, it.Status)
		}
	}
	if kinds["certificate"] != 5 || kinds["crl"] != 1 {
		t.Errorf("kinds: %v", kinds)
	}
}
