package tlstest

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"moat/internal/auth"
	"moat/internal/config"
	"moat/internal/testpki"
	"moat/internal/tlspolicy"
)

// acl sets the rules; the default becomes deny.
func acl(rules ...config.ACLRule) option {
	return func(c *config.Config) {
		c.ACL = append(c.ACL, rules...)
		c.Auth.ACLDefault = config.PermissionDeny
	}
}

// TestMutualTLSMosquitto: mosquitto_pub with --cert/--key on a listener
// with client_auth = "required". The principal is the certificate's CN:
// with the rule "allow publish devices/%i/#" (method cert) and a default
// deny, device-1 may publish to devices/device-1/x but not to
// devices/other/x. An observer (device-2, allowed to read devices/#)
// receives exactly the allowed messages, in order.
func TestMutualTLSMosquitto(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	b := start(t, tlsListener(p, mtls(p, "required")), acl(
		config.ACLRule{Permission: "allow", Action: "publish", Topic: "devices/%i/#", Method: "cert"},
		config.ACLRule{Permission: "allow", Action: "subscribe", Topic: "devices/#", Username: "device-2", Method: "cert"},
	))
	port, addr := b.port(t, "tls"), b.addr(t, "tls")
	observer := connectTLS(t, addr, clientTLS(p, p.Client2), "device-2")
	observer.subscribe("devices/#")

	for _, v := range []string{"mqttv311", "mqttv5"} {
		conn := append(mosqArgs(port, p.CAFile, p.Client.CertFile, p.Client.KeyFile), "-V", v, "-i", "device-1", "-q", "1")
		if out, err := mosqPub(t, append(conn, "-t", "devices/device-1/x", "-m", "allowed "+v)...); err != nil {
			t.Fatalf("%s: mosquitto_pub with a client certificate: %v: %s", v, err, out)
		}
		// Refused by the ACL: v5 reports PUBACK 0x87; 3.1.1 has no way to
		// say so, the message is just dropped. Either way it must not
		// arrive.
		_, _ = mosqPub(t, append(conn, "-t", "devices/other/x", "-m", "denied "+v)...)
		if out, err := mosqPub(t, append(conn, "-t", "devices/device-1/y", "-m", "after "+v)...); err != nil {
			t.Fatalf("%s: mosquitto_pub: %v: %s", v, err, out)
		}
		for _, want := range []string{"devices/device-1/x allowed " + v, "devices/device-1/y after " + v} {
			m := observer.recv()
			if got := m.Topic + " " + string(m.Payload); got != want {
				t.Fatalf("observer received %q, want %q (a publish outside devices/device-1/ got through?)", got, want)
			}
		}
	}

	// A client id other than the certificate's is refused (0x85; in 3.1.1
	// "identifier rejected"); mosquitto_pub sends no client id in MQTT 5
	// unless given one, and is then assigned device-1.
	for _, v := range []string{"mqttv311", "mqttv5"} {
		out, err := mosqPub(t, append(mosqArgs(port, p.CAFile, p.Client.CertFile, p.Client.KeyFile), "-V", v, "-i", "device-2", "-t", "devices/device-2/x", "-m", "x")...)
		if err == nil || !containsAny(strings.ToLower(out), "identifier rejected", "client identifier not valid") {
			t.Errorf("%s: device-1 as client id device-2: err=%v output=%q, want identifier rejected", v, err, out)
		}
	}
	if out, err := mosqPub(t, append(mosqArgs(port, p.CAFile, p.Client.CertFile, p.Client.KeyFile), "-V", "mqttv5", "-q", "1", "-t", "devices/device-1/z", "-m", "no id")...); err != nil {
		t.Fatalf("mosquitto_pub without client id: %v: %s", err, out)
	}
	if m := observer.recv(); m.Topic != "devices/device-1/z" {
		t.Fatalf("observer received %s, want devices/device-1/z", m.Topic)
	}
}

// TestMutualTLSRefusals: on a "required" listener, a client certificate
// from an untrusted CA, an expired one, one without an EKU, one with only
// serverAuth, and no certificate at all are each refused during the
// handshake, with mosquitto_pub and with crypto/tls, and the broker logs
// and counts the right reason.
func TestMutualTLSRefusals(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	b := start(t, tlsListener(p, mtls(p, "required")), anonymous)
	port, addr := b.port(t, "tls"), b.addr(t, "tls")
	tests := []struct {
		name   string
		cert   *testpki.Files
		reason string
	}{
		{"untrusted_ca", p.Untrusted, tlspolicy.ReasonUnknownCA},
		{"expired", p.Expired, tlspolicy.ReasonExpired},
		{"no_eku", p.NoEKU, tlspolicy.ReasonBadEKU},
		{"serverauth_eku_only", p.ServerAuthOnly, tlspolicy.ReasonBadEKU},
		{"no_certificate", nil, tlspolicy.ReasonNoCertificate},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/mosquitto", func(t *testing.T) {
			mark, before := b.logs.mark(), b.HandshakeFailures()
			args := mosqArgs(port, p.CAFile, "", "")
			if tt.cert != nil {
				args = mosqArgs(port, p.CAFile, tt.cert.CertFile, tt.cert.KeyFile)
			}
			out, err := mosqPub(t, append(args, "-i", "device-1", "-t", "x", "-m", "x")...)
			if err == nil {
				t.Fatalf("mosquitto_pub was accepted: %s", out)
			}
			b.expectHandshakeFailure(t, mark, tt.reason, before)
		})
		t.Run(tt.name+"/go", func(t *testing.T) {
			for _, maxV := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
				mark, before := b.logs.mark(), b.HandshakeFailures()
				cfg := clientTLS(p, tt.cert)
				cfg.MaxVersion = maxV
				conn, err := dialTLS(t, addr, cfg)
				if err == nil {
					// TLS 1.3: the server checks the client certificate
					// after the client's Finished; the alert arrives on
					// the first read.
					_, ca, cerr := mqttConnect(t, conn, &paho.Connect{ClientID: "device-1", CleanStart: true})
					if cerr == nil {
						t.Fatalf("%s: connected (connack %s)", tls.VersionName(maxV), connackString(ca))
					}
					err = cerr
				}
				if !refusedAtTLS(err) {
					t.Errorf("%s: refused, but not at the TLS layer: %v", tls.VersionName(maxV), err)
				}
				rec := b.expectHandshakeFailure(t, mark, tt.reason, before)
				if rec.attrs["remote"] == "" {
					t.Errorf("handshake failure logged without the remote address: %v", rec)
				}
			}
		})
	}
	// The good certificate works on the same listener, in both versions.
	for _, maxV := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		cfg := clientTLS(p, p.Client)
		cfg.MaxVersion = maxV
		connectTLS(t, addr, cfg, "device-1").roundTrip("mtls")
	}
}

// TestOptionalClientAuth: with client_auth = "optional", a client without a
// certificate authenticates with a password, a client with one is its
// certificate identity (a password it also sends changes nothing). The
// ACL tells the two apart by method and identity (PUBACK 0x00 or 0x87).
func TestOptionalClientAuth(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	hash, err := auth.HashPassword([]byte("alice-secret"))
	if err != nil {
		t.Fatal(err)
	}
	b := start(t, tlsListener(p, mtls(p, "optional")),
		func(c *config.Config) { c.Auth.Users = []config.User{{Username: "alice", PasswordHash: hash}} },
		acl(
			config.ACLRule{Permission: "allow", Action: "publish", Topic: "who/cert/%i", Method: "cert"},
			config.ACLRule{Permission: "allow", Action: "publish", Topic: "who/password/%i", Method: "password"},
		))
	addr := b.addr(t, "tls")
	expect := func(mc *mqttClient, allowed, denied []string) {
		t.Helper()
		for _, tp := range allowed {
			if rc := mc.publish(tp, "x"); rc >= 0x80 {
				t.Errorf("publish %s: 0x%02x, want success", tp, rc)
			}
		}
		for _, tp := range denied {
			if rc := mc.publish(tp, "x"); rc != 0x87 {
				t.Errorf("publish %s: 0x%02x, want 0x87 (not authorized)", tp, rc)
			}
		}
	}

	t.Run("password_without_cert", func(t *testing.T) {
		conn := mustDialTLS(t, addr, clientTLS(p, nil))
		mc := mustConnect(t, conn, &paho.Connect{ClientID: "alice-1", CleanStart: true,
			UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("alice-secret")})
		expect(mc, []string{"who/password/alice"}, []string{"who/cert/alice", "who/password/bob"})
	})
	t.Run("wrong_password_without_cert", func(t *testing.T) {
		conn := mustDialTLS(t, addr, clientTLS(p, nil))
		_, ca, err := mqttConnect(t, conn, &paho.Connect{ClientID: "alice-2", CleanStart: true,
			UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("wrong")})
		if err == nil || ca == nil || ca.ReasonCode != 0x86 {
			t.Fatalf("wrong password: err=%v connack=%s, want 0x86", err, connackString(ca))
		}
	})
	t.Run("nothing", func(t *testing.T) {
		conn := mustDialTLS(t, addr, clientTLS(p, nil))
		_, ca, err := mqttConnect(t, conn, &paho.Connect{ClientID: "anon", CleanStart: true})
		if err == nil || ca == nil || ca.ReasonCode != 0x87 {
			t.Fatalf("no certificate, no password: err=%v connack=%s, want 0x87", err, connackString(ca))
		}
	})
	t.Run("cert", func(t *testing.T) {
		conn := mustDialTLS(t, addr, clientTLS(p, p.Client))
		mc := mustConnect(t, conn, &paho.Connect{ClientID: "device-1", CleanStart: true})
		expect(mc, []string{"who/cert/device-1"}, []string{"who/password/device-1", "who/cert/alice"})
	})
	t.Run("cert_and_password", func(t *testing.T) {
		// The certificate is the whole proof: alice's password does not
		// make device-1 alice.
		conn := mustDialTLS(t, addr, clientTLS(p, p.Client))
		mc := mustConnect(t, conn, &paho.Connect{ClientID: "device-1", CleanStart: true,
			UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("alice-secret")})
		expect(mc, []string{"who/cert/device-1"}, []string{"who/password/alice", "who/cert/alice"})
	})
	t.Run("bad_cert_is_not_a_fallback", func(t *testing.T) {
		// "optional" verifies a certificate that is sent: an untrusted one
		// is refused, not downgraded to password authentication.
		mark, before := b.logs.mark(), b.HandshakeFailures()
		conn, err := dialTLS(t, addr, clientTLS(p, p.Untrusted))
		if err == nil {
			_, ca, cerr := mqttConnect(t, conn, &paho.Connect{ClientID: "alice-3", CleanStart: true,
				UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("alice-secret")})
			if cerr == nil {
				t.Fatalf("untrusted certificate + password connected (connack %s)", connackString(ca))
			}
		}
		b.expectHandshakeFailure(t, mark, tlspolicy.ReasonUnknownCA, before)
	})
}

// containsAny reports whether s contains any of subs.
func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}
