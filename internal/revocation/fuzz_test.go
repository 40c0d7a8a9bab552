package revocation

import (
	"encoding/pem"
	"testing"
	"time"
)

// FuzzParseCRLs: fetched CRLs are untrusted input; parsing must not panic
// and a parsed CRL must be usable.
func FuzzParseCRLs(f *testing.F) {
	root := newRoot(f, "Root")
	der := root.crl(f, time.Now(), time.Hour, nextSerial())
	f.Add(der)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
	f.Add([]byte("-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		crls, err := parseCRLs(data)
		if err != nil {
			return
		}
		for _, d := range crls {
			_ = issuedBy(d.crl, root.cert)
			_ = d.crl.CheckSignatureFrom(root.cert)
		}
	})
}
