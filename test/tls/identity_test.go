package tlstest

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"moat/internal/config"
)

// TestIdentityMapping: one mTLS listener per identity source, all serving
// device-1's certificate. What the broker derived is shown three ways:
//   - the rule "allow publish whoami/<slug>" selected by username = the
//     expected identity (works for any value, also one with '/');
//   - the rule "allow publish id/%i" (for values that fit in a topic level);
//   - the client id the broker assigns to an empty one (MQTT 5), which by
//     default must equal the identity.
func TestIdentityMapping(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fp := sha256.Sum256(p.Client.Cert.Cert.Raw)
	// The dn form is documented to equal OpenSSL's RFC 2253 rendering.
	out, err := run(t, "", "openssl", "x509", "-in", p.Client.CertFile, "-noout", "-subject", "-nameopt", "RFC2253")
	if err != nil {
		t.Fatalf("openssl x509: %v: %s", err, out)
	}
	dn := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "subject="))

	tests := []struct {
		slug, source, want string
	}{
		{"cn", "cn", "device-1"},
		{"dn", "dn", dn},
		{"ou", "subject:OU", "fleet-a"},
		{"uid-oid", "subject:0.9.2342.19200300.100.1.1", "uid-0001"},
		{"uid", "subject:UID", "uid-0001"},
		{"dns", "san:dns", "device-1.moat.test"},
		{"email", "san:email", "device-1@moat.test"},
		{"uri", "san:uri", "spiffe://moat.test/device/device-1"},
		{"fingerprint", "fingerprint", hex.EncodeToString(fp[:])},
	}
	if dn != "UID=uid-0001,CN=device-1,OU=fleet-a,O=moat test" {
		t.Logf("note: openssl renders the subject as %q", dn)
	}
	opts := []option{acl(config.ACLRule{Permission: "allow", Action: "publish", Topic: "id/%i", Method: "cert"})}
	for _, tt := range tests {
		opts = append(opts,
			addListener(config.ListenerTLS, "id-"+tt.slug, p, func(l *config.Listener) {
				mtls(p, "required")(l)
				l.TLS.Identity = tt.source
			}),
			acl(config.ACLRule{Permission: "allow", Action: "publish", Topic: "whoami/" + tt.slug, Username: tt.want, Method: "cert"}))
	}
	opts = append(opts, addListener(config.ListenerTLS, "id-ip", p, func(l *config.Listener) {
		mtls(p, "required")(l)
		l.TLS.Identity = "san:ip" // device-1's certificate has no IP SAN
	}))
	b := start(t, opts...)

	t.Run("missing_field", func(t *testing.T) {
		// A verified certificate without the configured field is refused
		// at CONNECT, not given an empty or fallback identity.
		mark := b.logs.mark()
		conn := mustDialTLS(t, b.addr(t, "id-ip"), clientTLS(p, p.Client))
		_, ca, err := mqttConnect(t, conn, &paho.Connect{ClientID: "device-1", CleanStart: true})
		if err == nil || ca == nil || ca.ReasonCode != 0x87 {
			t.Fatalf("certificate without an IP SAN on identity = san:ip: err=%v connack=%s, want 0x87", err, connackString(ca))
		}
		b.logs.waitFrom(t, mark, "no usable identity", func(r logRec) bool {
			return strings.Contains(r.msg, "no usable identity") && r.attrs["identity"] == "san:ip"
		})
	})

	for _, tt := range tests {
		t.Run(tt.slug, func(t *testing.T) {
			t.Parallel()
			conn := mustDialTLS(t, b.addr(t, "id-"+tt.slug), clientTLS(p, p.Client))
			mc := mustConnect(t, conn, &paho.Connect{CleanStart: true})
			if got := mc.connack.Properties.AssignedClientID; got != tt.want {
				t.Errorf("assigned client id %q, want the identity %q", got, tt.want)
			}
			if rc := mc.publish("whoami/"+tt.slug, "x"); rc >= 0x80 {
				t.Errorf("identity is not %q: publish whoami/%s refused (0x%02x)", tt.want, tt.slug, rc)
			}
			if !strings.ContainsAny(tt.want, "/+#") {
				if rc := mc.publish("id/"+tt.want, "x"); rc >= 0x80 {
					t.Errorf("publish id/%s refused (0x%02x): %%i is not %q", tt.want, rc, tt.want)
				}
			}
			if tt.want != "device-1" {
				if rc := mc.publish("id/device-1", "x"); rc != 0x87 {
					t.Errorf("publish id/device-1: 0x%02x, want 0x87: the identity is the CN, not %s", rc, tt.source)
				}
			}
			// Another listener's identity is not ours.
			other := "cn"
			if tt.slug == "cn" {
				other = "ou"
			}
			if rc := mc.publish("whoami/"+other, "x"); rc != 0x87 {
				t.Errorf("publish whoami/%s: 0x%02x, want 0x87", other, rc)
			}
		})
	}
}
