package pki

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func testMasterKey(t *testing.T) *MasterKey {
	t.Helper()
	k := make([]byte, MasterKeySize)
	rand.Read(k)
	m, err := NewMasterKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newCA(t *testing.T, opts InitOptions) *CA {
	t.Helper()
	if opts.Protector == nil {
		opts.Protector = testMasterKey(t)
	}
	if opts.CRLURL == "" {
		opts.CRLURL = "http://127.0.0.1:8080/pki/crl"
	}
	ca, err := Init(filepath.Join(t.TempDir(), "pki"), opts)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func needOpenSSL(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
}

// openssl runs openssl with a timeout and returns its combined output.
func openssl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "openssl", args...).CombinedOutput()
	return string(out), err
}

func mustOpenSSL(t *testing.T, args ...string) string {
	t.Helper()
	out, err := openssl(t, args...)
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

var spaces = regexp.MustCompile(`\s+`)

// squash collapses white space so multi-line openssl output can be matched.
func squash(s string) string { return spaces.ReplaceAllString(s, " ") }

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeCerts(t *testing.T, dir, name string, certs ...*x509.Certificate) string {
	t.Helper()
	return writeFile(t, dir, name, CertsPEM(certs...))
}

func crlPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// verifyArgs returns the openssl verify arguments for ca's chain.
func verifyArgs(t *testing.T, ca *CA, dir string) []string {
	t.Helper()
	args := []string{"verify", "-CAfile", ca.RootFile()}
	if f := ca.IntermediateFile(); f != "" {
		args = append(args, "-untrusted", f)
	}
	return args
}
