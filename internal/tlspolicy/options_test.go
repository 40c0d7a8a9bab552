package tlspolicy

import (
	"crypto/tls"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestNewRefusals(t *testing.T) {
	pki := newTestPKI(t)
	cert := []CertSource{pki.serverSource()}
	for _, tc := range []struct {
		name     string
		opts     Options
		want     error
		mentions string
	}{
		{"no certs", Options{}, ErrInvalidOptions, "certificate"},
		{"min TLS 1.1", Options{Certs: cert, MinVersion: tls.VersionTLS11}, ErrMinVersion, "TLS 1.1"},
		{"min TLS 1.0", Options{Certs: cert, MinVersion: tls.VersionTLS10}, ErrMinVersion, "TLS 1.0"},
		{"min SSL 3", Options{Certs: cert, MinVersion: 0x0300}, ErrMinVersion, ""},
		{"min unknown", Options{Certs: cert, MinVersion: 0x0305}, ErrMinVersion, ""},
		{"CBC suite", Options{Certs: cert, CipherSuites: []string{"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"}}, ErrCipherSuite, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"},
		{"CBC suite openssl name", Options{Certs: cert, CipherSuites: []string{"ECDHE-RSA-AES128-SHA256"}}, ErrCipherSuite, "ECDHE-RSA-AES128-SHA256"},
		{"non-ECDHE GCM suite", Options{Certs: cert, CipherSuites: []string{"TLS_RSA_WITH_AES_128_GCM_SHA256"}}, ErrCipherSuite, "TLS_RSA_WITH_AES_128_GCM_SHA256"},
		{"RC4", Options{Certs: cert, CipherSuites: []string{"TLS_ECDHE_RSA_WITH_RC4_128_SHA"}}, ErrCipherSuite, "RC4"},
		{"3DES", Options{Certs: cert, CipherSuites: []string{"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"}}, ErrCipherSuite, "3DES"},
		{"one bad among good", Options{Certs: cert, CipherSuites: []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_256_CBC_SHA"}}, ErrCipherSuite, "TLS_RSA_WITH_AES_256_CBC_SHA"},
		{"TLS 1.3 suite", Options{Certs: cert, CipherSuites: []string{"TLS_AES_128_GCM_SHA256"}}, ErrCipherSuite, "TLS 1.3"},
		{"unknown suite", Options{Certs: cert, CipherSuites: []string{"NOPE"}}, ErrCipherSuite, "NOPE"},
		{"bad client auth", Options{Certs: cert, ClientAuth: "maybe"}, ErrInvalidOptions, "maybe"},
		{"required without CAs", Options{Certs: cert, ClientAuth: "required"}, ErrInvalidOptions, "CA"},
		{"optional without CAs", Options{Certs: cert, ClientAuth: "optional"}, ErrInvalidOptions, "CA"},
		{"CAs with auth none", Options{Certs: cert, ClientCAFiles: []string{pki.caFile}}, ErrInvalidOptions, "none"},
		{"chain depth too big", Options{Certs: cert, MaxChainDepth: 17}, ErrInvalidOptions, "depth"},
		{"empty ALPN entry", Options{Certs: cert, ALPN: []string{""}}, ErrInvalidOptions, "ALPN"},
		{"bad SNI name", Options{Certs: []CertSource{{CertFile: pki.serverCert, KeyFile: pki.serverKey, Names: []string{"a.*.b"}}}}, ErrInvalidOptions, "a.*.b"},
		{"empty cert file", Options{Certs: []CertSource{{KeyFile: pki.serverKey}}}, ErrInvalidOptions, "cert file"},
		{"CA file without certs", Options{Certs: cert, ClientAuth: "required", ClientCAFiles: []string{pki.serverKey}}, ErrNoClientCAs, pki.serverKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.opts, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v (policy %v), want %v", err, p, tc.want)
			}
			if !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("error %q does not mention %q", err, tc.mentions)
			}
		})
	}
}

func TestCipherSuiteNames(t *testing.T) {
	ids, err := cipherSuiteIDs([]string{
		"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
		"ecdhe-rsa-aes256-gcm-sha384",
		"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",    // Go's old alias
		"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", // duplicate
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}
	if !slices.Equal(ids, want) {
		t.Errorf("got %v", ids)
	}
	if len(AllowedCipherSuites()) != 6 {
		t.Error(AllowedCipherSuites())
	}
	// Every Go-supported suite outside the allowed six is refused.
	all := append(tls.CipherSuites(), tls.InsecureCipherSuites()...)
	for _, cs := range all {
		_, err := cipherSuiteIDs([]string{cs.Name})
		allowed := slices.Contains(allowedSuites, cs.ID)
		if allowed != (err == nil) {
			t.Errorf("%s: allowed=%v err=%v", cs.Name, allowed, err)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]uint16{
		"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13, "TLS1.2": tls.VersionTLS12, "tlsv1.3": tls.VersionTLS13,
		"TLSv1.1": tls.VersionTLS11, "1.0": tls.VersionTLS10,
	} {
		got, err := ParseVersion(in)
		if err != nil || got != want {
			t.Errorf("%q: %x %v", in, got, err)
		}
	}
	for _, in := range []string{"", "1.4", "ssl3", "2"} {
		if _, err := ParseVersion(in); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%q: %v", in, err)
		}
	}
}

func TestALPNOptions(t *testing.T) {
	pki := newTestPKI(t)
	off := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}, ALPN: []string{}})
	cfg, _ := off.TLSConfig().GetConfigForClient(&tls.ClientHelloInfo{SupportedProtos: []string{"mqtt"}})
	if cfg.NextProtos != nil {
		t.Errorf("ALPN disabled but NextProtos %v", cfg.NextProtos)
	}
	custom := mustNew(t, Options{Certs: []CertSource{pki.serverSource()}, ALPN: []string{"mqtt", "x-moat"}})
	cfg, _ = custom.TLSConfig().GetConfigForClient(&tls.ClientHelloInfo{SupportedProtos: []string{"x-moat"}})
	if !slices.Equal(cfg.NextProtos, []string{"mqtt", "x-moat"}) {
		t.Errorf("NextProtos %v", cfg.NextProtos)
	}
}
