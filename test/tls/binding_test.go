package tlstest

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"moat/internal/config"
)

// TestClientIDBinding: on an mTLS listener (bind_client_id on by default)
// device-1's certificate only connects as client id device-1.
func TestClientIDBinding(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	b := start(t, tlsListener(p, mtls(p, "required")), tlsListener(p, func(l *config.Listener) {
		mtls(p, "required")(l)
		l.Name = "tls-template"
		l.TLS.ClientIDTemplate = "{subject:OU}-{cn}"
	}))
	addr := b.addr(t, "tls")

	t.Run("mismatch_v5", func(t *testing.T) {
		_, ca, err := mqttConnect(t, mustDialTLS(t, addr, clientTLS(p, p.Client)), &paho.Connect{ClientID: "device-2", CleanStart: true})
		if err == nil || ca == nil || ca.ReasonCode != 0x85 {
			t.Fatalf("device-1 as device-2: err=%v connack=%s, want 0x85", err, connackString(ca))
		}
	})
	t.Run("mismatch_v311", func(t *testing.T) {
		opts := mqtt3.NewClientOptions().AddBroker("tls://" + addr).SetClientID("device-2").
			SetTLSConfig(clientTLS(p, p.Client)).SetAutoReconnect(false).SetConnectRetry(false).
			SetConnectTimeout(waitTimeout)
		c := mqtt3.NewClient(opts)
		tok := c.Connect()
		if !tok.WaitTimeout(waitTimeout) {
			t.Fatal("v3.1.1 connect did not finish")
		}
		ct := tok.(*mqtt3.ConnectToken)
		if tok.Error() == nil || ct.ReturnCode() != 2 {
			c.Disconnect(0)
			t.Fatalf("device-1 as device-2 (3.1.1): err=%v return code %d, want 2 (identifier rejected)", tok.Error(), ct.ReturnCode())
		}
	})
	t.Run("match", func(t *testing.T) {
		connectTLS(t, addr, clientTLS(p, p.Client), "device-1").roundTrip("bind")
	})
	t.Run("empty_assigned", func(t *testing.T) {
		mc := mustConnect(t, mustDialTLS(t, addr, clientTLS(p, p.Client)), &paho.Connect{CleanStart: true})
		if got := mc.connack.Properties.AssignedClientID; got != "device-1" {
			t.Fatalf("assigned client id %q, want device-1", got)
		}
		mc.roundTrip("bind-empty")
	})
	t.Run("template", func(t *testing.T) {
		ta := b.addr(t, "tls-template")
		mc := mustConnect(t, mustDialTLS(t, ta, clientTLS(p, p.Client)), &paho.Connect{CleanStart: true})
		if got := mc.connack.Properties.AssignedClientID; got != "fleet-a-device-1" {
			t.Fatalf("assigned client id %q, want fleet-a-device-1", got)
		}
		mc.disconnect()
		_, ca, err := mqttConnect(t, mustDialTLS(t, ta, clientTLS(p, p.Client)), &paho.Connect{ClientID: "device-1", CleanStart: true})
		if err == nil || ca == nil || ca.ReasonCode != 0x85 {
			t.Fatalf("client id device-1 with template {subject:OU}-{cn}: err=%v connack=%s, want 0x85", err, connackString(ca))
		}
		connectTLS(t, ta, clientTLS(p, p.Client), "fleet-a-device-1").roundTrip("bind-template")
	})
}

// TestSessionTakeoverRefused: even with bind_client_id = false, device-2's
// certificate can neither take over device-1's live session nor resume or
// replace it offline (CONNACK 0x87); device-1 keeps its connection and
// later resumes its session.
func TestSessionTakeoverRefused(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	off := false
	b := start(t, tlsListener(p, func(l *config.Listener) {
		mtls(p, "required")(l)
		l.TLS.BindClientID = &off
	}))
	addr := b.addr(t, "tls")
	expiry := uint32(600)
	connect := func(dev string, clean bool) (*mqttClient, *paho.Connack, error) {
		cert := p.Client
		if dev == "device-2" {
			cert = p.Client2
		}
		return mqttConnect(t, mustDialTLS(t, addr, clientTLS(p, cert)), &paho.Connect{
			ClientID: "shared-id", CleanStart: clean, KeepAlive: 30,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
		})
	}

	// Without binding, any client id is accepted.
	owner, _, err := connect("device-1", true)
	if err != nil {
		t.Fatalf("device-1 as shared-id: %v", err)
	}
	owner.subscribe("takeover/#")

	for _, clean := range []bool{false, true} {
		if _, ca, err := connect("device-2", clean); err == nil || ca == nil || ca.ReasonCode != 0x87 {
			t.Fatalf("device-2 took over device-1's live session (clean=%v): err=%v connack=%s, want 0x87", clean, err, connackString(ca))
		}
	}
	// device-1 was not disconnected.
	if rc := owner.publish("takeover/still-here", "x"); rc >= 0x80 {
		t.Fatalf("publish: 0x%02x", rc)
	}
	if m := owner.recv(); m.Topic != "takeover/still-here" {
		t.Fatalf("received %s", m.Topic)
	}
	// Offline: whether or not the broker has processed the DISCONNECT yet,
	// device-2 must be refused, and device-1 must get its session back.
	owner.disconnect()

	for _, clean := range []bool{false, true} {
		if _, ca, err := connect("device-2", clean); err == nil || ca == nil || ca.ReasonCode != 0x87 {
			t.Fatalf("device-2 got device-1's offline session (clean=%v): err=%v connack=%s, want 0x87", clean, err, connackString(ca))
		}
	}
	back, ca, err := connect("device-1", false)
	if err != nil || !ca.SessionPresent {
		t.Fatalf("device-1 could not resume its session: err=%v connack=%+v", err, ca)
	}
	// The subscription survived: the session is device-1's own.
	if rc := back.publish("takeover/resumed", "x"); rc >= 0x80 {
		t.Fatalf("publish: 0x%02x", rc)
	}
	for {
		// "still-here" may come again: if device-1 left before its PUBACK
		// for it was sent, the resumed session redelivers it.
		m := back.recv()
		if m.Topic == "takeover/resumed" {
			break
		}
		if m.Topic != "takeover/still-here" {
			t.Fatalf("received %s, want takeover/resumed", m.Topic)
		}
	}
}
