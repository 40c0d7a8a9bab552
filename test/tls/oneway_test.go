package tlstest

import (
	"crypto/tls"

	"regexp"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"moat/internal/config"
	"moat/internal/testpki"
	"moat/internal/tlspolicy"
)

// anonymous lets clients without credentials in (one-way TLS tests).
func anonymous(c *config.Config) { c.Auth.AllowAnonymous = true }

// TestOneWayMosquitto: mosquitto_sub and mosquitto_pub with --cafile only
// (the broker's chain is leaf + intermediate, the CA file the root), in
// MQTT 3.1.1 and 5. The subscriber first receives a retained message, which
// proves it is subscribed, then a live one.
func TestOneWayMosquitto(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	b := start(t, tlsListener(p, nil), anonymous)
	port := b.port(t, "tls")
	for _, v := range []string{"mqttv311", "mqttv5"} {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			topic := "oneway/" + v
			conn := mosqArgs(port, p.CAFile, "", "")
			if out, err := mosqPub(t, append(conn, "-V", v, "-q", "1", "-r", "-t", topic, "-m", "ready")...); err != nil {
				t.Fatalf("mosquitto_pub (retained): %v: %s", err, out)
			}
			sub := startSub(t, append(conn, "-V", v, "-q", "1", "-t", topic, "-v", "-C", "2", "-W", "10")...)
			if got, want := sub.next(), topic+" ready"; got != want {
				t.Fatalf("mosquitto_sub printed %q, want %q", got, want)
			}
			if out, err := mosqPub(t, append(conn, "-V", v, "-q", "1", "-t", topic, "-m", "over tls")...); err != nil {
				t.Fatalf("mosquitto_pub: %v: %s", err, out)
			}
			if got, want := sub.next(), topic+" over tls"; got != want {
				t.Fatalf("mosquitto_sub printed %q, want %q", got, want)
			}
			if err := sub.wait(); err != nil {
				t.Fatalf("mosquitto_sub: %v: %s", err, sub.stderrText())
			}
		})
	}
	// Without the CA file the client must not trust the broker.
	t.Run("untrusted_server", func(t *testing.T) {
		t.Parallel()
		other := t.TempDir() + "/other-ca.pem"
		if err := testpki.WriteFile(other, testpki.CertsPEM(p.OtherRoot.Cert.Cert)); err != nil {
			t.Fatal(err)
		}
		out, err := mosqPub(t, append(mosqArgs(port, other, "", ""), "-t", "x", "-m", "x")...)
		if err == nil {
			t.Fatalf("mosquitto_pub trusted a server certificate from another CA: %s", out)
		}
	})
}

// TestOneWayPaho: paho.golang over crypto/tls. TLS 1.3 is negotiated by
// default with a hybrid post-quantum key exchange, ALPN "mqtt" when
// offered; a TLS 1.2-only client gets an ECDHE+AEAD suite.
func TestOneWayPaho(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	b := start(t, tlsListener(p, nil), anonymous)
	addr := b.addr(t, "tls")

	t.Run("default", func(t *testing.T) {
		cfg := clientTLS(p, nil)
		cfg.NextProtos = []string{"mqtt"}
		conn := mustDialTLS(t, addr, cfg)
		st := conn.ConnectionState()
		if st.Version != tls.VersionTLS13 {
			t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(st.Version))
		}
		if st.NegotiatedProtocol != "mqtt" {
			t.Errorf("ALPN %q, want \"mqtt\"", st.NegotiatedProtocol)
		}
		if st.CurveID != tls.X25519MLKEM768 {
			t.Errorf("key exchange %v, want X25519MLKEM768", st.CurveID)
		}
		if got, want := leafSerial(conn), serialOf(p.Server.Cert.Cert); got != want {
			t.Errorf("server certificate serial %s, want %s", got, want)
		}
		if n := len(st.PeerCertificates); n != 2 {
			t.Errorf("server sent %d certificates, want leaf + intermediate", n)
		}
		mc := mustConnect(t, conn, &paho.Connect{ClientID: "paho-tls13", CleanStart: true})
		mc.roundTrip("oneway/paho")
	})
	t.Run("no_alpn", func(t *testing.T) {
		// A client that offers no ALPN (most MQTT libraries) is accepted.
		conn := mustDialTLS(t, addr, clientTLS(p, nil))
		if st := conn.ConnectionState(); st.NegotiatedProtocol != "" {
			t.Errorf("ALPN %q negotiated although the client offered none", st.NegotiatedProtocol)
		}
		mustConnect(t, conn, &paho.Connect{ClientID: "paho-noalpn", CleanStart: true}).roundTrip("oneway/noalpn")
	})
	t.Run("tls12", func(t *testing.T) {
		cfg := clientTLS(p, nil)
		cfg.MaxVersion = tls.VersionTLS12
		conn := mustDialTLS(t, addr, cfg)
		st := conn.ConnectionState()
		if st.Version != tls.VersionTLS12 {
			t.Fatalf("negotiated %s, want TLS 1.2", tls.VersionName(st.Version))
		}
		name := tls.CipherSuiteName(st.CipherSuite)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20")) {
			t.Errorf("TLS 1.2 suite %s is not ECDHE with an AEAD", name)
		}
		mustConnect(t, conn, &paho.Connect{ClientID: "paho-tls12", CleanStart: true}).roundTrip("oneway/tls12")
	})
	t.Run("tls12_cbc_only", func(t *testing.T) {
		cfg := clientTLS(p, nil)
		cfg.MaxVersion = tls.VersionTLS12
		cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}
		mark, before := b.logs.mark(), b.HandshakeFailures()
		if conn, err := dialTLS(t, addr, cfg); err == nil {
			t.Fatalf("handshake with only CBC suites succeeded (%s)", tls.CipherSuiteName(conn.ConnectionState().CipherSuite))
		}
		b.expectHandshakeFailure(t, mark, tlspolicy.ReasonCipherMismatch, before)
	})
}

// TestOpenSSLClient: openssl s_client against the broker's listeners, one
// with an ECDSA P-256 and one with an RSA certificate (so that RSA key
// exchange and ECDHE-RSA suites are possible at all). Refusals must be the
// broker's: each is checked in its log and failure counters.
func TestOpenSSLClient(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	rsaSpec := testpki.ServerSpec()
	rsaSpec.KeyType = testpki.RSA2048
	rsaCert, err := testpki.IssueFiles(p.Intermediate, rsaSpec, p.Dir, "server-rsa")
	if err != nil {
		t.Fatal(err)
	}
	b := start(t, tlsListener(p, nil), addListener(config.ListenerTLS, "tls-rsa", p, func(l *config.Listener) {
		l.TLS.Cert, l.TLS.Key = rsaCert.CertFile, rsaCert.KeyFile
	}), addListener(config.ListenerTLS, "tls13", p, func(l *config.Listener) {
		l.TLS.MinVersion = "1.3"
	}), anonymous)

	// -cipher @SECLEVEL=0 lets OpenSSL 3 itself offer TLS 1.0/1.1 and weak
	// suites, so that the refusal comes from the broker, not the client.
	tests := []struct {
		name     string
		listener string
		args     []string
		ok       bool
		reason   string // broker's failure reason when refused
		protocol string // expected protocol when accepted
	}{
		{"tls1_3", "tls", []string{"-tls1_3"}, true, "", "TLSv1.3"},
		{"tls1_3_rsa", "tls-rsa", []string{"-tls1_3"}, true, "", "TLSv1.3"},
		{"default", "tls", nil, true, "", "TLSv1.3"},
		{"tls1_2_ecdhe_ecdsa_gcm", "tls", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"}, true, "", "TLSv1.2"},
		{"tls1_2_ecdhe_ecdsa_chacha", "tls", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"}, true, "", "TLSv1.2"},
		{"tls1_2_ecdhe_rsa_gcm", "tls-rsa", []string{"-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"}, true, "", "TLSv1.2"},
		{"tls1_1", "tls", []string{"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"}, false, tlspolicy.ReasonProtocolVersion, ""},
		{"tls1", "tls", []string{"-tls1", "-cipher", "DEFAULT@SECLEVEL=0"}, false, tlspolicy.ReasonProtocolVersion, ""},
		{"tls1_1_rsa", "tls-rsa", []string{"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"}, false, tlspolicy.ReasonProtocolVersion, ""},
		{"non_aead_AES128-SHA256", "tls-rsa", []string{"-tls1_2", "-cipher", "AES128-SHA256@SECLEVEL=0"}, false, tlspolicy.ReasonCipherMismatch, ""},
		{"non_aead_AES128-SHA256_ecdsa", "tls", []string{"-tls1_2", "-cipher", "AES128-SHA256@SECLEVEL=0"}, false, tlspolicy.ReasonCipherMismatch, ""},
		{"non_ecdhe_AES128-GCM-SHA256", "tls-rsa", []string{"-tls1_2", "-cipher", "AES128-GCM-SHA256@SECLEVEL=0"}, false, tlspolicy.ReasonCipherMismatch, ""},
		{"non_ecdhe_AES128-GCM-SHA256_ecdsa", "tls", []string{"-tls1_2", "-cipher", "AES128-GCM-SHA256@SECLEVEL=0"}, false, tlspolicy.ReasonCipherMismatch, ""},
		{"ecdhe_cbc", "tls-rsa", []string{"-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA256@SECLEVEL=0"}, false, tlspolicy.ReasonCipherMismatch, ""},
		{"ecdhe_ecdsa_cbc", "tls", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA@SECLEVEL=0"}, false, tlspolicy.ReasonCipherMismatch, ""},
		{"min_1_3_refuses_1_2", "tls13", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"}, false, tlspolicy.ReasonProtocolVersion, ""},
		{"min_1_3_accepts_1_3", "tls13", []string{"-tls1_3"}, true, "", "TLSv1.3"},
		{"dhe_gcm", "tls-rsa", []string{"-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256@SECLEVEL=0"}, false, tlspolicy.ReasonCipherMismatch, ""},
	}
	protoRE := regexp.MustCompile(`(?m)^Protocol version: (\S+)`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Sequential: each refusal is matched to its own log record.
			mark, before := b.logs.mark(), b.HandshakeFailures()
			args := append([]string{"s_client", "-connect", b.addr(t, tt.listener), "-CAfile", p.CAFile,
				"-verify_return_error", "-brief", "-servername", "localhost"}, tt.args...)
			out, err := run(t, "", "openssl", args...)
			if !tt.ok {
				if err == nil {
					t.Fatalf("openssl %s: handshake succeeded, want refusal:\n%s", strings.Join(tt.args, " "), out)
				}
				rec := b.expectHandshakeFailure(t, mark, tt.reason, before)
				if rec.attrs["listener"] != tt.listener {
					t.Errorf("failure logged for listener %q, want %q", rec.attrs["listener"], tt.listener)
				}
				return
			}
			if err != nil {
				t.Fatalf("openssl %s: %v:\n%s", strings.Join(tt.args, " "), err, out)
			}
			m := protoRE.FindStringSubmatch(out)
			if m == nil || m[1] != tt.protocol {
				t.Fatalf("openssl %s: protocol %v, want %s:\n%s", strings.Join(tt.args, " "), m, tt.protocol, out)
			}
			if !strings.Contains(out, "Verification: OK") {
				t.Errorf("openssl did not verify the broker's chain:\n%s", out)
			}
		})
	}
}

// TestSSLScan runs sslscan against both listeners and checks, from its
// report, that only TLS 1.2 and 1.3 are enabled and that every accepted
// suite is a TLS 1.3 suite or ECDHE with an AEAD.
func TestSSLScan(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	rsaSpec := testpki.ServerSpec()
	rsaSpec.KeyType = testpki.RSA2048
	rsaCert, err := testpki.IssueFiles(p.Intermediate, rsaSpec, p.Dir, "server-rsa")
	if err != nil {
		t.Fatal(err)
	}
	// sslscan opens hundreds of connections in a few seconds: lift the
	// per-IP rate limit, or refused connections would look like refused
	// suites.
	unlimited := func(l *config.Listener) { l.ConnRatePerIP, l.ConnBurstPerIP = 1e6, 1e6 }
	b := start(t, tlsListener(p, unlimited), addListener(config.ListenerTLS, "tls-rsa", p, func(l *config.Listener) {
		unlimited(l)
		l.TLS.Cert, l.TLS.Key = rsaCert.CertFile, rsaCert.KeyFile
	}), anonymous)

	protoLine := regexp.MustCompile(`^(SSLv2|SSLv3|TLSv1\.[0-3])\s+(enabled|disabled)`)
	suiteLine := regexp.MustCompile(`^(Preferred|Accepted)\s+(\S+)\s+\d+\s+bits\s+(\S+)`)
	groupLine := regexp.MustCompile(`(?m)^(TLSv1\.[23])\s+\d+\s+bits\s+(\S+)`)
	for _, ln := range []string{"tls", "tls-rsa"} {
		t.Run(ln, func(t *testing.T) {
			t.Parallel()
			out, err := run(t, "", "sslscan", "--no-colour", "--no-heartbleed", "--no-compression", b.addr(t, ln))
			if err != nil {
				t.Fatalf("sslscan: %v:\n%s", err, out)
			}
			protos := map[string]string{}
			var suites []string
			for _, line := range strings.Split(out, "\n") {
				line = strings.TrimSpace(line)
				if m := protoLine.FindStringSubmatch(line); m != nil {
					protos[m[1]] = m[2]
				}
				if m := suiteLine.FindStringSubmatch(line); m != nil {
					suites = append(suites, m[2]+" "+m[3])
					if !allowedSuite(m[2], m[3]) {
						t.Errorf("sslscan: suite accepted that is not ECDHE+AEAD: %s %s", m[2], m[3])
					}
				}
			}
			want := map[string]string{"SSLv2": "disabled", "SSLv3": "disabled", "TLSv1.0": "disabled",
				"TLSv1.1": "disabled", "TLSv1.2": "enabled", "TLSv1.3": "enabled"}
			for proto, state := range want {
				if got := protos[proto]; got != state {
					t.Errorf("sslscan: %s %q, want %s", proto, got, state)
				}
			}
			for _, m := range groupLine.FindAllStringSubmatch(out, -1) {
				if g := m[2]; g != "x25519" && g != "secp256r1" && g != "secp384r1" {
					t.Errorf("sslscan: key exchange group %s accepted for %s", g, m[1])
				}
			}
			if !strings.Contains(out, "Session renegotiation not supported") {
				t.Errorf("sslscan: renegotiation not reported as unsupported")
			}
			var has12, has13 bool
			for _, s := range suites {
				has12 = has12 || strings.HasPrefix(s, "TLSv1.2 ")
				has13 = has13 || strings.HasPrefix(s, "TLSv1.3 ")
			}
			if !has12 || !has13 {
				t.Errorf("sslscan found no accepted TLS 1.2 (%v) or TLS 1.3 (%v) suite:\n%s", has12, has13, out)
			}
			if t.Failed() {
				t.Logf("sslscan output:\n%s", out)
			} else {
				t.Logf("accepted suites: %s", strings.Join(suites, ", "))
			}
		})
	}
}

// allowedSuite is moat's policy in OpenSSL names: any TLS 1.3 suite (all
// are AEAD), and for TLS 1.2 ECDHE key exchange with AES-GCM or
// ChaCha20-Poly1305.
func allowedSuite(proto, name string) bool {
	switch proto {
	case "TLSv1.3":
		return strings.HasPrefix(name, "TLS_")
	case "TLSv1.2":
		return strings.HasPrefix(name, "ECDHE-") && (strings.Contains(name, "-GCM-") || strings.Contains(name, "CHACHA20-POLY1305"))
	}
	return false
}

// TestSNI: more certificates chosen by the client's server name, exact and
// wildcard; no or an unknown name gets the default certificate.
func TestSNI(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	spec := testpki.ServerSpec()
	spec.DNS = []string{"mqtt.example.test"}
	exact, err := testpki.IssueFiles(p.Intermediate, spec, p.Dir, "sni-exact")
	if err != nil {
		t.Fatal(err)
	}
	spec.DNS = []string{"*.devices.test"}
	wild, err := testpki.IssueFiles(p.Intermediate, spec, p.Dir, "sni-wild")
	if err != nil {
		t.Fatal(err)
	}
	b := start(t, tlsListener(p, func(l *config.Listener) {
		l.TLS.SNI = []config.SNICert{
			{Cert: exact.CertFile, Key: exact.KeyFile},
			{Cert: wild.CertFile, Key: wild.KeyFile},
		}
	}), anonymous)
	for _, tt := range []struct {
		name string
		want *testpki.Files
	}{
		{"mqtt.example.test", exact},
		{"MQTT.Example.Test", exact},
		{"a.devices.test", wild},
		{"localhost", p.Server},
		{"other.example.test", p.Server},
	} {
		cfg := clientTLS(p, nil)
		cfg.ServerName = tt.name
		if tt.want == p.Server && tt.name != "localhost" {
			cfg.InsecureSkipVerify = true // the default certificate does not carry this name
		}
		c := mustDialTLS(t, b.addr(t, "tls"), cfg)
		if got := leafSerial(c); got != serialOf(tt.want.Cert.Cert) {
			t.Errorf("SNI %q: got certificate %s (serial %s), want serial %s", tt.name,
				c.ConnectionState().PeerCertificates[0].DNSNames, got, serialOf(tt.want.Cert.Cert))
		}
	}
	connectTLS(t, b.addr(t, "tls"), func() *tls.Config { c := clientTLS(p, nil); c.ServerName = "mqtt.example.test"; return c }(), "sni").roundTrip("sni")
}
