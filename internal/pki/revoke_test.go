package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRevokeCRLOpenSSL(t *testing.T) {
	needOpenSSL(t)
	for _, two := range []bool{false, true} {
		t.Run(map[bool]string{false: "one-tier", true: "two-tier"}[two], func(t *testing.T) {
			ca := newCA(t, InitOptions{TwoTier: two})
			dir := t.TempDir()
			bad, _ := ca.IssueClient(ClientRequest{CommonName: "cam-3"})
			good, _ := ca.IssueClient(ClientRequest{CommonName: "cam-4"})
			badF, _ := WritePEM(dir, "cam-3", bad)
			goodF, _ := WritePEM(dir, "cam-4", good)

			der0, err := ca.CRL()
			if err != nil {
				t.Fatal(err)
			}
			rl0, _ := x509.ParseRevocationList(der0)
			if len(rl0.RevokedCertificateEntries) != 0 {
				t.Fatal("fresh CRL lists certificates")
			}
			if err := rl0.CheckSignatureFrom(ca.Issuer()); err != nil {
				t.Fatal(err)
			}
			if ca.IsRevoked(bad.Cert.SerialNumber) {
				t.Fatal("revoked before Revoke")
			}
			if err := ca.Revoke(bad.Cert.SerialNumber, ReasonKeyCompromise); err != nil {
				t.Fatal(err)
			}
			if !ca.IsRevoked(bad.Cert.SerialNumber) || ca.IsRevoked(good.Cert.SerialNumber) {
				t.Fatal("IsRevoked wrong")
			}
			revoked := ca.Revoked()
			if len(revoked) != 1 || revoked[0].Serial.Cmp(bad.Cert.SerialNumber) != 0 || revoked[0].Reason != ReasonKeyCompromise || revoked[0].Subject != "CN=cam-3" {
				t.Fatalf("Revoked() = %+v", revoked)
			}
			der, err := ca.CRL()
			if err != nil {
				t.Fatal(err)
			}
			rl, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			if rl.Number.Cmp(rl0.Number) <= 0 {
				t.Fatalf("CRL number %v after %v", rl.Number, rl0.Number)
			}
			if got := rl.NextUpdate.Sub(rl.ThisUpdate); got != DefaultCRLValidity {
				t.Fatalf("CRL validity %v", got)
			}
			if !bytes.Equal(rl.AuthorityKeyId, ca.Issuer().SubjectKeyId) {
				t.Fatal("CRL AKI")
			}
			// CRL() is stable while nothing changes.
			if again, _ := ca.CRL(); !bytes.Equal(again, der) {
				t.Fatal("CRL re-signed without a change")
			}
			// IssueCRL re-signs on demand with the next number.
			forced, err := ca.IssueCRL()
			if err != nil {
				t.Fatal(err)
			}
			rlf, _ := x509.ParseRevocationList(forced)
			if rlf.Number.Cmp(new(big.Int).Add(rl.Number, big.NewInt(1))) != 0 || len(rlf.RevokedCertificateEntries) != 1 {
				t.Fatalf("forced CRL number %v", rlf.Number)
			}
			if stored := must(os.ReadFile(ca.CRLFile())); !bytes.Equal(stored, forced) {
				t.Fatal("crl.der is not the latest CRL")
			}

			crlFile := writeFile(t, dir, "crl.der", forced)
			text := squash(mustOpenSSL(t, "crl", "-inform", "DER", "-in", crlFile, "-noout", "-text"))
			for _, want := range []string{
				"Serial Number: " + FormatSerial(bad.Cert.SerialNumber),
				"X509v3 CRL Reason Code: Key Compromise",
				"X509v3 CRL Number: " + rlf.Number.String(),
				"Issuer: O = moat, CN = " + ca.Issuer().Subject.CommonName,
			} {
				if !strings.Contains(text, want) {
					t.Errorf("CRL lacks %q:\n%s", want, text)
				}
			}
			if strings.Contains(text, FormatSerial(good.Cert.SerialNumber)) {
				t.Error("good cert listed")
			}
			chainFile := writeCerts(t, dir, "cachain.pem", ca.Chain()...)
			if out := mustOpenSSL(t, "crl", "-inform", "DER", "-in", crlFile, "-noout", "-CAfile", chainFile, "-verify"); !strings.Contains(out, "verify OK") {
				t.Errorf("crl -verify: %s", out)
			}

			pemCRL := writeFile(t, dir, "crl.pem", crlPEM(forced))
			args := append(verifyArgs(t, ca, dir), "-crl_check", "-CRLfile", pemCRL)
			out, err := openssl(t, append(args, badF.CertFile)...)
			if err == nil || !strings.Contains(out, "certificate revoked") {
				t.Fatalf("revoked leaf accepted:\n%s", out)
			}
			mustOpenSSL(t, append(args, goodF.CertFile)...)
			if two {
				// With -crl_check_all the root's CRL (signed at Init) is needed too.
				rootCRL := writeFile(t, dir, "root.crl.pem", crlPEM(must(ca.StoredRootCRL())))
				all := append(verifyArgs(t, ca, dir), "-crl_check_all", "-CRLfile", pemCRL, "-CRLfile", rootCRL)
				mustOpenSSL(t, append(all, goodF.CertFile)...)
			}

			// Errors: twice, unknown serial, bad reasons.
			if err := ca.Revoke(bad.Cert.SerialNumber, ReasonKeyCompromise); !errors.Is(err, ErrAlreadyRevoked) {
				t.Errorf("twice: %v", err)
			}
			if err := ca.Revoke(big.NewInt(12345), ReasonUnspecified); !errors.Is(err, ErrUnknownSerial) {
				t.Errorf("unknown: %v", err)
			}
			for _, r := range []int{ReasonCACompromise, ReasonCertificateHold, 8, 11, -1} {
				if err := ca.Revoke(good.Cert.SerialNumber, r); !errors.Is(err, ErrInvalidRequest) {
					t.Errorf("reason %d: %v", r, err)
				}
			}
			// Unspecified is recorded without a reason extension.
			if err := ca.Revoke(good.Cert.SerialNumber, ReasonUnspecified); err != nil {
				t.Fatal(err)
			}
			rl2, _ := x509.ParseRevocationList(must(ca.CRL()))
			if len(rl2.RevokedCertificateEntries) != 2 {
				t.Fatal("second revocation missing")
			}

			// Reopened, the state is still there.
			ca2, err := Open(ca.Dir(), ca.prot)
			if err != nil {
				t.Fatal(err)
			}
			if !ca2.IsRevoked(bad.Cert.SerialNumber) || len(ca2.Revoked()) != 2 {
				t.Fatal("revocations not persisted")
			}
		})
	}
}

func TestRevokeSeenByOtherHandle(t *testing.T) {
	// The broker holds one CA handle; `moat pki revoke` opens another.
	broker := newCA(t, InitOptions{})
	iss, _ := broker.IssueClient(ClientRequest{CommonName: "d"})
	crl1 := must(broker.CRL())
	cli, err := Open(broker.Dir(), broker.prot)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Revoke(iss.Cert.SerialNumber, ReasonPrivilegeWithdrawn); err != nil {
		t.Fatal(err)
	}
	if !broker.IsRevoked(iss.Cert.SerialNumber) {
		t.Fatal("broker handle did not see the revocation")
	}
	crl2 := must(broker.CRL())
	rl, _ := x509.ParseRevocationList(crl2)
	if bytes.Equal(crl1, crl2) || len(rl.RevokedCertificateEntries) != 1 || rl.RevokedCertificateEntries[0].ReasonCode != ReasonPrivilegeWithdrawn {
		t.Fatal("broker CRL does not list the revocation")
	}
}

func TestCRLRefreshedAtHalfLife(t *testing.T) {
	t.Parallel()
	// thisUpdate has one-second precision: with 8 s the half-life point is
	// at least 3 s away.
	ca := newCA(t, InitOptions{CRLValidity: 8 * time.Second})
	first := must(ca.IssueCRL())
	if again := must(ca.CRL()); !bytes.Equal(first, again) {
		t.Fatal("re-signed too early")
	}
	rl1, _ := x509.ParseRevocationList(first)
	time.Sleep(time.Until(rl1.ThisUpdate.Add(4*time.Second)) + 100*time.Millisecond)
	later := must(ca.CRL())
	if bytes.Equal(first, later) {
		t.Fatal("not re-signed after half its validity")
	}
	rl2, _ := x509.ParseRevocationList(later)
	if rl2.Number.Cmp(rl1.Number) <= 0 {
		t.Fatal("number did not grow")
	}
	if err := ca.SetCRLValidity(time.Hour); err != nil {
		t.Fatal(err)
	}
	rl3, _ := x509.ParseRevocationList(must(ca.IssueCRL()))
	if rl3.NextUpdate.Sub(rl3.ThisUpdate) != time.Hour {
		t.Fatal("SetCRLValidity ignored")
	}
}

func TestCRLHandler(t *testing.T) {
	ca := newCA(t, InitOptions{TwoTier: true})
	iss, _ := ca.IssueClient(ClientRequest{CommonName: "d"})
	ca.Revoke(iss.Cert.SerialNumber, ReasonSuperseded)
	mux := http.NewServeMux()
	mux.Handle("/pki/crl", ca.CRLHandler())
	mux.Handle("/pki/root.crl", ca.RootCRLHandler())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/pki/crl")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	rl, err := x509.ParseRevocationList(body)
	if err != nil || len(rl.RevokedCertificateEntries) != 1 {
		t.Fatalf("served CRL: %v", err)
	}
	resp, err = http.Get(srv.URL + "/pki/root.crl")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if rl, err := x509.ParseRevocationList(body); err != nil || rl.CheckSignatureFrom(ca.Root()) != nil {
		t.Fatalf("root CRL: %v", err)
	}
	resp, err = http.Post(srv.URL+"/pki/crl", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
}

func TestOfflineRoot(t *testing.T) {
	needOpenSSL(t)
	mk := testMasterKey(t)
	base := t.TempDir()
	dir := filepath.Join(base, "pki")
	offline := filepath.Join(base, "usb-stick")
	os.Mkdir(offline, 0o700)
	rootKey := filepath.Join(offline, "root.key")
	ca, err := Init(dir, InitOptions{Protector: mk, TwoTier: true, RootKeyFile: rootKey, CRLURL: "http://127.0.0.1/pki/crl"})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := exists(filepath.Join(dir, fileRootKey)); ok {
		t.Fatal("root key written into the CA directory")
	}
	// The operator takes the stick away: the online CA still works.
	hidden := filepath.Join(base, "elsewhere.key")
	if err := os.Rename(rootKey, hidden); err != nil {
		t.Fatal(err)
	}
	online, err := Open(dir, mk)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := online.IssueServer(ServerRequest{DNS: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenRoot(dir, rootKey, mk); err == nil {
		t.Fatal("OpenRoot without the key")
	}
	if _, err := OpenRoot(dir, hidden, testMasterKey(t)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("OpenRoot wrong master key: %v", err)
	}
	// Off-line operation: revoke the intermediate, sign the root CRL.
	der, err := RootCRL(dir, hidden, mk, ReasonCACompromise)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil || rl.CheckSignatureFrom(ca.Root()) != nil {
		t.Fatalf("root CRL: %v", err)
	}
	if len(rl.RevokedCertificateEntries) != 1 || rl.RevokedCertificateEntries[0].SerialNumber.Cmp(ca.Issuer().SerialNumber) != 0 ||
		rl.RevokedCertificateEntries[0].ReasonCode != ReasonCACompromise {
		t.Fatalf("root CRL entries %+v", rl.RevokedCertificateEntries)
	}
	if got := rl.NextUpdate.Sub(rl.ThisUpdate); got != DefaultRootCRLValidity {
		t.Fatalf("root CRL validity %v", got)
	}
	if !bytes.Equal(must(online.StoredRootCRL()), der) {
		t.Fatal("root.crl not stored")
	}
	// Again: already revoked is fine, a fresh CRL with a higher number.
	der2, err := RootCRL(dir, hidden, mk, ReasonCACompromise)
	if err != nil {
		t.Fatal(err)
	}
	rl2, _ := x509.ParseRevocationList(der2)
	if rl2.Number.Cmp(rl.Number) <= 0 || len(rl2.RevokedCertificateEntries) != 1 {
		t.Fatal("root CRL not re-signed")
	}
	r, _ := OpenRoot(dir, hidden, mk)
	if err := r.Revoke(big.NewInt(7), ReasonKeyCompromise); !errors.Is(err, ErrUnknownSerial) {
		t.Fatalf("root revoke of a leaf serial: %v", err)
	}

	// openssl with -crl_check_all now rejects leaves of the intermediate.
	tmp := t.TempDir()
	leafFile := writeCerts(t, tmp, "leaf.pem", leaf.Cert)
	crl := writeFile(t, tmp, "crl.pem", crlPEM(must(online.CRL())))
	rootCRL := writeFile(t, tmp, "root.crl.pem", crlPEM(der2))
	out, err := openssl(t, "verify", "-CAfile", online.RootFile(), "-untrusted", online.IntermediateFile(),
		"-crl_check_all", "-CRLfile", crl, "-CRLfile", rootCRL, leafFile)
	if err == nil || !strings.Contains(out, "revoked") {
		t.Fatalf("leaf of a revoked intermediate accepted:\n%s", out)
	}

	one := newCA(t, InitOptions{})
	if _, err := OpenRoot(one.Dir(), "", one.prot); !errors.Is(err, ErrNotTwoTier) {
		t.Fatalf("OpenRoot on one-tier: %v", err)
	}
}
