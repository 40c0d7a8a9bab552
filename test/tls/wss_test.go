package tlstest

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"

	"moat/internal/config"
	"moat/internal/tlspolicy"
)

// dialWSS opens MQTT over WebSocket over TLS (subprotocol "mqtt") and
// returns the connection with the TLS state the client saw.
func dialWSS(t testing.TB, addr string, cfg *tls.Config) (net.Conn, *tls.ConnectionState, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	wc, resp, err := websocket.Dial(ctx, "wss://"+addr+"/mqtt", &websocket.DialOptions{
		HTTPClient:   &http.Client{Transport: tr},
		Subprotocols: []string{"mqtt"},
	})
	if err != nil {
		return nil, nil, err
	}
	if wc.Subprotocol() != "mqtt" {
		t.Fatalf("negotiated subprotocol %q, want mqtt", wc.Subprotocol())
	}
	nc := websocket.NetConn(context.Background(), wc, websocket.MessageBinary)
	t.Cleanup(func() { nc.Close() })
	return nc, resp.TLS, nil
}

// TestWSS: paho.golang over coder/websocket over TLS against a "wss"
// listener: one-way TLS round trip (TLS 1.3, the broker's certificate);
// then with client_auth = "required" the certificate is the identity, as
// on "tls" listeners (ACL %i, method cert, client-id binding), and a
// client without a certificate does not get in.
func TestWSS(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	b := start(t,
		wssListener(p, nil),
		addListener(config.ListenerWSS, "wss-mtls", p, mtls(p, "required")),
		func(c *config.Config) { c.Listeners[0].AllowAnonymous = new(true) },
		acl(
			config.ACLRule{Permission: "allow", Action: "all", Topic: "wss/#", Method: "anonymous"},
			config.ACLRule{Permission: "allow", Action: "all", Topic: "id/%i/#", Method: "cert"},
		))

	t.Run("one_way", func(t *testing.T) {
		t.Parallel()
		nc, st, err := dialWSS(t, b.addr(t, "wss"), clientTLS(p, nil))
		if err != nil {
			t.Fatalf("wss dial: %v", err)
		}
		if st == nil || st.Version != tls.VersionTLS13 {
			t.Fatalf("TLS state %+v, want TLS 1.3", st)
		}
		if got := st.PeerCertificates[0].SerialNumber.String(); got != serialOf(p.Server.Cert.Cert) {
			t.Fatalf("server certificate %s, want %s", got, serialOf(p.Server.Cert.Cert))
		}
		mustConnect(t, nc, &paho.Connect{ClientID: "wss-anon", CleanStart: true}).roundTrip("wss/rt")
	})
	t.Run("mtls_identity", func(t *testing.T) {
		t.Parallel()
		nc, _, err := dialWSS(t, b.addr(t, "wss-mtls"), clientTLS(p, p.Client))
		if err != nil {
			t.Fatalf("wss dial with client certificate: %v", err)
		}
		mc, ca, err := mqttConnect(t, nc, &paho.Connect{CleanStart: true})
		if err != nil {
			t.Fatalf("connect over wss with device-1's certificate: %v (connack %s): the certificate identity is not applied on wss", err, connackString(ca))
		}
		if got := mc.connack.Properties.AssignedClientID; got != "device-1" {
			t.Errorf("assigned client id %q, want device-1 (client-id binding)", got)
		}
		mc.roundTrip("id/device-1/wss")
		if rc := mc.publish("id/device-2/x", "x"); rc != 0x87 {
			t.Errorf("publish id/device-2/x: 0x%02x, want 0x87", rc)
		}
	})
	t.Run("mtls_binding", func(t *testing.T) {
		t.Parallel()
		nc, _, err := dialWSS(t, b.addr(t, "wss-mtls"), clientTLS(p, p.Client))
		if err != nil {
			t.Fatalf("wss dial: %v", err)
		}
		_, ca, err := mqttConnect(t, nc, &paho.Connect{ClientID: "device-2", CleanStart: true})
		if err == nil || ca == nil || ca.ReasonCode != 0x85 {
			t.Fatalf("device-1 as device-2 over wss: err=%v connack=%s, want 0x85", err, connackString(ca))
		}
	})
	t.Run("mtls_no_cert", func(t *testing.T) {
		t.Parallel()
		mark, before := b.logs.mark(), b.HandshakeFailures()
		nc, _, err := dialWSS(t, b.addr(t, "wss-mtls"), clientTLS(p, nil))
		if err == nil {
			if _, ca, err := mqttConnect(t, nc, &paho.Connect{ClientID: "nobody", CleanStart: true}); err == nil {
				t.Fatalf("connected over wss without a certificate (connack %s)", connackString(ca))
			}
		}
		rec := b.expectHandshakeFailure(t, mark, tlspolicy.ReasonNoCertificate, before)
		if rec.attrs["listener"] != "wss-mtls" {
			t.Errorf("failure logged for listener %q", rec.attrs["listener"])
		}
	})
}
