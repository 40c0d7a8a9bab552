package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// handBuilt is a v2 header written out byte by byte from the specification
// (doc/proxy-protocol.txt 2.2 and 2.2.6), as HAProxy sends it for a client
// that presented a verified certificate.
var handBuilt = "" +
	"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A" + // signature
	"\x21" + // version 2, PROXY
	"\x11" + // AF_INET, STREAM
	"\x00\x5F" + // 95 bytes follow: 12 of addresses, 3+80 of SSL TLV
	"\x7F\x00\x00\x02" + "\x7F\x00\x00\x01" + // 127.0.0.2 -> 127.0.0.1
	"\x9C\x40" + "\x22\xB3" + // 40000 -> 8883
	"\x20\x00\x50" + // PP2_TYPE_SSL, 80 bytes
	"\x07" + // PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
	"\x00\x00\x00\x00" + // verify: 0 (X509_V_OK)
	"\x21\x00\x07" + "TLSv1.3" + // PP2_SUBTYPE_SSL_VERSION
	"\x22\x00\x09" + "sensor-17" + // PP2_SUBTYPE_SSL_CN
	"\x23\x00\x16" + "TLS_AES_128_GCM_SHA256" + // PP2_SUBTYPE_SSL_CIPHER
	"\x24\x00\x11" + "ecdsa-with-SHA256" + // PP2_SUBTYPE_SSL_SIG_ALG
	"\x25\x00\x05" + "EC256" // PP2_SUBTYPE_SSL_KEY_ALG

func TestSSLHandBuilt(t *testing.T) {
	h, err := parseAll(t, []byte(handBuilt))
	if err != nil {
		t.Fatal(err)
	}
	if h.Source != ap("127.0.0.2:40000") || h.Destination != ap("127.0.0.1:8883") {
		t.Fatalf("addresses %v %v", h.Source, h.Destination)
	}
	s := h.SSL
	if s == nil {
		t.Fatal("no SSL info")
	}
	want := SSLInfo{Client: 7, Verify: 0, Version: "TLSv1.3", CN: "sensor-17",
		Cipher: "TLS_AES_128_GCM_SHA256", SigAlg: "ecdsa-with-SHA256", KeyAlg: "EC256"}
	if s.Client != want.Client || s.Verify != want.Verify || s.Version != want.Version || s.CN != want.CN ||
		s.Cipher != want.Cipher || s.SigAlg != want.SigAlg || s.KeyAlg != want.KeyAlg || s.ClientCert != nil {
		t.Fatalf("SSL %+v", s)
	}
	if len(s.TLVs) != 5 || !s.TLS() || !s.HasClientCert() || !s.Verified() {
		t.Fatalf("SSL %+v", s)
	}
	if _, err := s.Certificate(); !errors.Is(err, ErrNoClientCert) {
		t.Fatalf("Certificate: %v", err)
	}
}

func TestSSLVerified(t *testing.T) {
	tests := []struct {
		name     string
		client   byte
		verify   uint32
		cert     bool // HasClientCert
		verified bool
	}{
		{"no TLS", 0x00, 0, false, false},
		{"TLS, no certificate", ClientSSL, 0, false, false},
		{"certificate on this connection", ClientSSL | ClientCertConn | ClientCertSess, 0, true, true},
		{"certificate on the resumed session", ClientSSL | ClientCertSess, 0, true, true},
		{"verification failed", ClientSSL | ClientCertConn | ClientCertSess, 20, true, false},
		{"expired", ClientSSL | ClientCertSess, 10, true, false},
		{"unknown bits ignored", ClientSSL | ClientCertConn | 0x80, 0, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseAll(t, v2(0x21, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2), ssl(tt.client, tt.verify)))
			if err != nil {
				t.Fatal(err)
			}
			if h.SSL.HasClientCert() != tt.cert || h.SSL.Verified() != tt.verified || h.SSL.Verify != tt.verify {
				t.Fatalf("%+v: HasClientCert %v Verified %v", h.SSL, h.SSL.HasClientCert(), h.SSL.Verified())
			}
		})
	}
	var none *SSLInfo
	if none.TLS() || none.HasClientCert() || none.Verified() {
		t.Fatal("nil SSLInfo")
	}
	if _, err := none.Certificate(); !errors.Is(err, ErrNoClientCert) {
		t.Fatal(err)
	}
}

func TestSSLSubTLVs(t *testing.T) {
	h, err := parseAll(t, v2(0x21, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2), ssl(0x07, 0,
		str(SubtypeSSLGroup, "X25519"), str(SubtypeSSLSigScheme, "ecdsa_secp256r1_sha256"),
		str(0x2F, "future sub-TLV"), str(SubtypeSSLCN, "Gerät-7 ✓"))))
	if err != nil {
		t.Fatal(err)
	}
	s := h.SSL
	if s.Group != "X25519" || s.SigScheme != "ecdsa_secp256r1_sha256" || s.CN != "Gerät-7 ✓" || len(s.TLVs) != 4 {
		t.Fatalf("%+v", s)
	}
}

func TestSSLInvalid(t *testing.T) {
	a4 := inet4("1.2.3.4", "5.6.7.8", 1, 2)
	tests := []struct {
		name string
		tlvs [][]byte
	}{
		{"4 bytes", [][]byte{tlv(TypeSSL, []byte{1, 0, 0, 0})}},
		{"empty", [][]byte{tlv(TypeSSL, nil)}},
		{"truncated sub-TLV", [][]byte{tlv(TypeSSL, []byte{1, 0, 0, 0, 0, 0x21, 0x00})}},
		{"sub-TLV too long", [][]byte{tlv(TypeSSL, []byte{1, 0, 0, 0, 0, 0x21, 0x00, 0x09, 'T', 'L', 'S'})}},
		{"duplicate CN", [][]byte{ssl(7, 0, str(SubtypeSSLCN, "a"), str(SubtypeSSLCN, "a"))}},
		{"duplicate version", [][]byte{ssl(7, 0, str(SubtypeSSLVersion, "TLSv1.3"), str(SubtypeSSLVersion, "TLSv1.2"))}},
		{"empty CN", [][]byte{ssl(7, 0, str(SubtypeSSLCN, ""))}},
		{"CN with NUL", [][]byte{ssl(7, 0, str(SubtypeSSLCN, "admin\x00.evil"))}},
		{"CN with newline", [][]byte{ssl(7, 0, str(SubtypeSSLCN, "a\nlevel=ERROR"))}},
		{"CN with DEL", [][]byte{ssl(7, 0, str(SubtypeSSLCN, "a\x7f"))}},
		{"CN not UTF-8", [][]byte{ssl(7, 0, str(SubtypeSSLCN, "\xc3\x28"))}},
		{"version not ASCII", [][]byte{ssl(7, 0, str(SubtypeSSLVersion, "TLSv1.3\xff"))}},
		{"cipher with control", [][]byte{ssl(7, 0, str(SubtypeSSLCipher, "AES\x01"))}},
		{"cert flag without SSL flag", [][]byte{ssl(ClientCertConn, 0)}},
		{"CN without cert flag", [][]byte{ssl(ClientSSL, 0, str(SubtypeSSLCN, "sensor-17"))}},
		{"client cert sub-TLV without cert flag", [][]byte{ssl(ClientSSL, 0, tlv(SubtypeSSLClientCert, []byte{0x30, 0}))}},
		{"client cert sub-TLV not DER", [][]byte{ssl(7, 0, str(SubtypeSSLClientCert, "MIIB"))}},
		{"client cert sub-TLV empty", [][]byte{ssl(7, 0, tlv(SubtypeSSLClientCert, nil))}},
		{"custom cert TLV garbage", [][]byte{ssl(7, 0), str(DefaultCertTLV, "not a certificate!")}},
		{"custom cert TLV bad hex", [][]byte{ssl(7, 0), str(DefaultCertTLV, "30zz")}},
		{"custom cert TLV base64 of non-DER", [][]byte{ssl(7, 0), str(DefaultCertTLV, base64.StdEncoding.EncodeToString([]byte("hello")))}},
		{"custom cert TLV without cert flag", [][]byte{ssl(ClientSSL, 0), tlv(DefaultCertTLV, []byte{0x30, 0})}},
		{"custom cert TLV twice", [][]byte{ssl(7, 0), tlv(DefaultCertTLV, []byte{0x30, 0}), tlv(DefaultCertTLV, []byte{0x30, 0})}},
		{"custom cert TLV differs from sub-TLV", [][]byte{ssl(7, 0, tlv(SubtypeSSLClientCert, []byte{0x30, 0})), tlv(DefaultCertTLV, []byte{0x30, 1})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseAll(t, v2(0x21, 0x11, append([][]byte{a4}, tt.tlvs...)...))
			if !errors.Is(err, ErrInvalidHeader) || !errors.Is(err, ErrInvalidTLV) {
				t.Fatalf("got %+v, %v; want ErrInvalidTLV", h, err)
			}
		})
	}
}

func TestSSLClientCertificate(t *testing.T) {
	ca := newTestCA(t, "moat test CA")
	der, _ := ca.issue(t, "sensor-17", false)
	a4 := inet4("1.2.3.4", "5.6.7.8", 1, 2)
	tests := []struct {
		name    string
		certTLV byte // for ParseWithCertTLV; 0: Parse
		tlvs    [][]byte
	}{
		{"sub-TLV 0x28", 0, [][]byte{ssl(7, 0, tlv(SubtypeSSLClientCert, der))}},
		{"custom TLV DER", 0, [][]byte{ssl(7, 0, str(SubtypeSSLCN, "sensor-17")), tlv(DefaultCertTLV, der)}},
		{"custom TLV base64 (HAProxy %[ssl_c_der,base64])", 0, [][]byte{ssl(7, 0), str(DefaultCertTLV, base64.StdEncoding.EncodeToString(der))}},
		{"custom TLV hex", 0, [][]byte{ssl(7, 0), str(DefaultCertTLV, hex.EncodeToString(der))}},
		{"custom TLV upper-case hex", 0, [][]byte{ssl(7, 0), str(DefaultCertTLV, strings.ToUpper(hex.EncodeToString(der)))}},
		{"custom TLV before SSL TLV", 0, [][]byte{tlv(DefaultCertTLV, der), ssl(7, 0)}},
		{"sub-TLV and custom TLV agree", 0, [][]byte{ssl(7, 0, tlv(SubtypeSSLClientCert, der)), tlv(DefaultCertTLV, der)}},
		{"configured type 0xE5", 0xE5, [][]byte{ssl(7, 0), str(DefaultCertTLV, "GCP PSC id"), tlv(0xE5, der)}},
		{"experimental type 0xF3", 0xF3, [][]byte{ssl(7, 0), tlv(0xF3, der)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := v2(0x21, 0x11, append([][]byte{a4}, tt.tlvs...)...)
			var h *Header
			var err error
			if tt.certTLV != 0 {
				h, err = ParseWithCertTLV(bufioOf(in), tt.certTLV)
			} else {
				h, err = parseAll(t, in)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(h.SSL.ClientCert, der) {
				t.Fatalf("ClientCert %x", h.SSL.ClientCert)
			}
			c, err := h.SSL.Certificate()
			if err != nil || c.Subject.CommonName != "sensor-17" {
				t.Fatalf("Certificate: %v, %v", c, err)
			}
			if err := c.CheckSignatureFrom(ca.cert); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("unparsable DER", func(t *testing.T) {
		h, err := parseAll(t, v2(0x21, 0x11, a4, ssl(7, 0, tlv(SubtypeSSLClientCert, []byte{0x30, 0x03, 1, 2, 3}))))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.SSL.Certificate(); err == nil || errors.Is(err, ErrNoClientCert) {
			t.Fatalf("Certificate: %v", err)
		}
	})
}

// Without an SSL TLV a TLV of the certificate type is someone else's
// (Google Cloud's Private Service Connect sends its connection id as 0xE0).
func TestCertTLVWithoutSSLIsNotACertificate(t *testing.T) {
	psc := []byte{0, 0, 0, 0, 0, 0, 0x12, 0x34}
	h, err := parseAll(t, v2(0x21, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2), tlv(DefaultCertTLV, psc)))
	if err != nil {
		t.Fatal(err)
	}
	if h.SSL != nil {
		t.Fatal("SSL info from a custom TLV")
	}
	if v, ok := h.TLV(DefaultCertTLV); !ok || !bytes.Equal(v, psc) {
		t.Fatalf("TLV %x", v)
	}
}

// A certificate type outside the custom and experimental ranges is off.
func TestCertTLVOutsideCustomRangeIsOff(t *testing.T) {
	in := v2(0x21, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2), ssl(7, 0), str(TypeAuthority, "not a cert"))
	h, err := ParseWithCertTLV(bufioOf(in), TypeAuthority)
	if err != nil {
		t.Fatal(err)
	}
	if h.SSL.ClientCert != nil {
		t.Fatal("certificate from a registered TLV type")
	}
}

func bufioOf(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
