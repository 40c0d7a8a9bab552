package tlspolicy

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

type atvSpec struct {
	oid asn1.ObjectIdentifier
	val any // string (UTF8String unless printable) or asn1.RawValue
}

// certWithSubject makes a client certificate whose subject is exactly the
// given RDN sequence (each inner slice one RDN, in DER order).
func certWithSubject(t testing.TB, parent *issued, rdns [][]atvSpec, mod func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	var seq []rawRDNSET
	for _, rdn := range rdns {
		var set rawRDNSET
		for _, a := range rdn {
			var rv asn1.RawValue
			switch v := a.val.(type) {
			case asn1.RawValue:
				rv = v
			case string:
				b, err := asn1.MarshalWithParams(v, "utf8")
				if err != nil {
					t.Fatal(err)
				}
				rv = asn1.RawValue{FullBytes: b}
			}
			set = append(set, rawATV{Type: a.oid, Value: rv})
		}
		seq = append(seq, set)
	}
	raw, err := asn1.Marshal(rawRDNSequence(seq))
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t, keyECDSA, 0)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		RawSubject:   raw,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if mod != nil {
		mod(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.cert, key.Public(), parent.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var (
	oidO      = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidOU     = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidC      = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidL      = asn1.ObjectIdentifier{2, 5, 4, 7}
	oidST     = asn1.ObjectIdentifier{2, 5, 4, 8}
	oidSerial = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidUID    = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}
	oidDC     = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	oidTitle  = asn1.ObjectIdentifier{2, 5, 4, 12}
	oidPseudo = asn1.ObjectIdentifier{2, 5, 4, 65}
	oidOdd    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1} // no name anywhere
)

func printable(s string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagPrintableString, Bytes: []byte(s)}
}

func ia5(s string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagIA5String, Bytes: []byte(s)}
}

func bmp(s string) asn1.RawValue {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u>>8), byte(u))
	}
	return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagBMPString, Bytes: b}
}

func richSubject() [][]atvSpec {
	return [][]atvSpec{
		{{oidDC, ia5("com")}},
		{{oidDC, ia5("example")}},
		{{oidC, printable("DE")}},
		{{oidST, "Bavaria"}},
		{{oidL, "München"}},
		{{oidO, "Acme, Inc."}},
		{{oidOU, "plant-a"}},
		{{oidOU, "line-2"}, {oidTitle, "sensor"}}, // a multi-valued RDN
		{{oidUID, "u123"}},
		{{oidEmail, ia5("ops@example.com")}},
		{{oidSerial, printable("SN-42")}},
		{{oidCN, "sensor-17"}},
	}
}

func TestIdentity(t *testing.T) {
	pki := newTestPKI(t)
	uri, _ := url.Parse("spiffe://moat.example/device/17")
	cert := certWithSubject(t, pki.inter, richSubject(), func(c *x509.Certificate) {
		c.DNSNames = []string{"sensor-17.devices.example", "alt.devices.example"}
		c.EmailAddresses = []string{"sensor-17@devices.example"}
		c.URIs = []*url.URL{uri}
		c.IPAddresses = []net.IP{net.ParseIP("10.0.0.7"), net.ParseIP("2001:db8::7")}
	})
	sum := sha256.Sum256(cert.Raw)
	fp := hex.EncodeToString(sum[:])
	// The multi-valued RDN is a DER SET OF, whose order depends on the
	// encoder's sorting; accept either order.
	dn, err := Identity(cert, "dn")
	if err != nil {
		t.Fatal(err)
	}
	wantDN1 := `CN=sensor-17,serialNumber=SN-42,emailAddress=ops@example.com,UID=u123,OU=line-2+title=sensor,OU=plant-a,O=Acme\, Inc.,L=München,ST=Bavaria,C=DE,DC=example,DC=com`
	wantDN2 := `CN=sensor-17,serialNumber=SN-42,emailAddress=ops@example.com,UID=u123,title=sensor+OU=line-2,OU=plant-a,O=Acme\, Inc.,L=München,ST=Bavaria,C=DE,DC=example,DC=com`
	if dn != wantDN1 && dn != wantDN2 {
		t.Errorf("dn = %s", dn)
	}

	for _, tc := range []struct {
		source string
		want   string
		err    error
	}{
		{"cn", "sensor-17", nil},
		{"CN", "sensor-17", nil},
		{"subject:CN", "sensor-17", nil},
		{"subject:2.5.4.3", "sensor-17", nil},
		{"subject:O", "Acme, Inc.", nil},
		{"subject:OU", "plant-a", nil},
		{"subject:ou:1", "line-2", nil},
		{"subject:OU:2", "", ErrIdentityMissing},
		{"subject:C", "DE", nil},
		{"subject:L", "München", nil},
		{"subject:ST", "Bavaria", nil},
		{"subject:UID", "u123", nil},
		{"subject:0.9.2342.19200300.100.1.1", "u123", nil},
		{"subject:DC", "com", nil},
		{"subject:DC:1", "example", nil},
		{"subject:emailAddress", "ops@example.com", nil},
		{"subject:SERIALNUMBER", "SN-42", nil},
		{"subject:2.5.4.12", "sensor", nil},
		{"subject:STREET", "", ErrIdentityMissing},
		{"san:dns", "sensor-17.devices.example", nil},
		{"san:dns:0", "sensor-17.devices.example", nil},
		{"san:dns:1", "alt.devices.example", nil},
		{"san:dns:2", "", ErrIdentityMissing},
		{"san:email", "sensor-17@devices.example", nil},
		{"san:uri", "spiffe://moat.example/device/17", nil},
		{"san:ip", "10.0.0.7", nil},
		{"san:ip:1", "2001:db8::7", nil},
		{"fingerprint", fp, nil},
		{"FINGERPRINT", fp, nil},
		{"", "", ErrIdentitySource},
		{"bogus", "", ErrIdentitySource},
		{"subject:", "", ErrIdentitySource},
		{"subject:XYZ", "", ErrIdentitySource},
		{"subject:1.2.a", "", ErrIdentitySource},
		{"subject:OU:x", "", ErrIdentitySource},
		{"subject:OU:-1", "", ErrIdentitySource},
		{"subject:OU:01", "", ErrIdentitySource},
		{"san:foo", "", ErrIdentitySource},
		{"san:dns:1001", "", ErrIdentitySource},
		{"cn:1", "", ErrIdentitySource},
	} {
		got, err := Identity(cert, tc.source)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%q: got %q, %v; want error %v", tc.source, got, err, tc.err)
			}
			if errors.Is(tc.err, ErrIdentitySource) && !errors.Is(ValidateIdentitySource(tc.source), ErrIdentitySource) {
				t.Errorf("%q: ValidateIdentitySource accepted it", tc.source)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.source, got, err, tc.want)
		}
		if err := ValidateIdentitySource(tc.source); err != nil {
			t.Errorf("%q: ValidateIdentitySource: %v", tc.source, err)
		}
	}
	if len(fp) != 64 || strings.ToLower(fp) != fp {
		t.Errorf("fingerprint %q", fp)
	}
}

func TestIdentityEdgeCases(t *testing.T) {
	pki := newTestPKI(t)
	// No CN, no SANs.
	bare := certWithSubject(t, pki.inter, [][]atvSpec{{{oidO, "Acme"}}}, nil)
	for _, src := range []string{"cn", "san:dns", "san:email", "san:uri", "san:ip"} {
		if _, err := Identity(bare, src); !errors.Is(err, ErrIdentityMissing) {
			t.Errorf("%s: %v", src, err)
		}
	}
	if _, err := Identity(nil, "cn"); !errors.Is(err, ErrIdentityMissing) {
		t.Errorf("nil cert: %v", err)
	}
	// Control characters are refused as identities but escaped in the DN.
	ctl := certWithSubject(t, pki.inter, [][]atvSpec{{{oidCN, "evil\nname"}}}, nil)
	if _, err := Identity(ctl, "cn"); !errors.Is(err, ErrIdentityInvalid) {
		t.Errorf("control char: %v", err)
	}
	if dn, err := Identity(ctl, "dn"); err != nil || dn != `CN=evil\0Aname` {
		t.Errorf("dn %q %v", dn, err)
	}
	// BMPString and RFC 4514 escaping.
	odd := certWithSubject(t, pki.inter, [][]atvSpec{
		{{oidO, bmp("Grüße €")}},
		{{oidCN, ` #lead, "q" +p;s<a>\ trail `}},
	}, nil)
	if v, err := Identity(odd, "subject:O"); err != nil || v != "Grüße €" {
		t.Errorf("BMPString: %q %v", v, err)
	}
	if dn, _ := Identity(odd, "dn"); dn != `CN=\ #lead\, \"q\" \+p\;s\<a\>\\ trail\ ,O=Grüße €` {
		t.Errorf("escaped dn %q", dn)
	}
	// A non-string attribute value (crypto/x509 refuses such certificates;
	// the DN formatter still renders it as RFC 4514 #hex).
	raw, err := asn1.Marshal(rawRDNSequence{
		{{Type: oidCN, Value: asn1.RawValue{FullBytes: []byte{0x0c, 0x01, 'x'}}}},
		{{Type: oidUID, Value: asn1.RawValue{FullBytes: []byte{0x02, 0x01, 0x05}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if dn, err := formatDN(raw); err != nil || dn != "0.9.2342.19200300.100.1.1=#020105,CN=x" {
		t.Errorf("dn %q %v", dn, err)
	}
}

// The DN string matches what OpenSSL prints with -nameopt RFC2253 for the
// attributes both name the same way.
func TestDNMatchesOpenSSL(t *testing.T) {
	needOpenSSL(t)
	pki := newTestPKI(t)
	cert := certWithSubject(t, pki.inter, [][]atvSpec{
		{{oidDC, ia5("com")}},
		{{oidDC, ia5("example")}},
		{{oidC, printable("DE")}},
		{{oidO, "Acme, Inc."}},
		{{oidOU, "plant+a"}},
		{{oidUID, "u123"}},
		{{oidEmail, ia5("ops@example.com")}},
		{{oidSerial, printable("SN-42")}},
		{{oidTitle, "boss"}, {oidPseudo, "p"}},
		{{oidOdd, "opaque"}},
		{{oidCN, `#sensor "17"; <x>`}},
	}, nil)
	f := writeFile(t, t.TempDir(), "c.pem", certPEM(cert))
	out, err := exec.Command("openssl", "x509", "-in", f, "-noout", "-subject", "-nameopt", "RFC2253").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := strings.TrimPrefix(strings.TrimSpace(string(out)), "subject=")
	got, err := Identity(cert, "dn")
	if err != nil || got != want {
		t.Errorf("dn:\n got  %s\n want %s (openssl)", got, want)
	}
}

func TestExpandClientIDTemplate(t *testing.T) {
	pki := newTestPKI(t)
	cert := pki.clientGood.cert // CN=sensor-17, OU=plant-a
	fields := CertIdentityFields(cert)
	sum := sha256.Sum256(cert.Raw)
	fp := hex.EncodeToString(sum[:])
	for _, tc := range []struct {
		tmpl string
		want string
		err  error
	}{
		{DefaultClientIDTemplate("cn"), "sensor-17", nil},
		{"{subject:OU}-{cn}", "plant-a-sensor-17", nil},
		{"dev-{fingerprint}", "dev-" + fp, nil},
		{"{{literal}}/{cn}", "{literal}/sensor-17", nil},
		{"static", "static", nil},
		{"", "", ErrTemplate},
		{"{cn", "", ErrTemplate},
		{"cn}", "", ErrTemplate},
		{"{}", "", ErrTemplate},
		{"{bogus}", "", ErrTemplate},
		{"{san:dns}", "", ErrIdentityMissing},
	} {
		got, err := ExpandClientIDTemplate(tc.tmpl, fields)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%q: got %q %v, want %v", tc.tmpl, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q %v, want %q", tc.tmpl, got, err, tc.want)
		}
	}
	if err := ValidateClientIDTemplate("{subject:OU}/{san:uri}"); err != nil {
		t.Error(err)
	}
	if err := ValidateClientIDTemplate("{subject:nope}"); !errors.Is(err, ErrTemplate) || !errors.Is(err, ErrIdentitySource) {
		t.Error(err)
	}
}

func FuzzExpandClientIDTemplate(f *testing.F) {
	for _, s := range []string{"{cn}", "{{x}}-{subject:OU:1}", "{", "}", "{san:dns:3}{fingerprint}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tmpl string) {
		out, err := ExpandClientIDTemplate(tmpl, func(string) (string, error) { return "v", nil })
		if err == nil && out == "" {
			t.Fatal("empty result without error")
		}
	})
}
