package integration

import (
	"fmt"
	"testing"
)

// MQTT 3.1.1 behaviour driven by paho.mqtt.golang.

func TestV311QoSRoundTrip(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	for _, pubQoS := range []byte{0, 1, 2} {
		for _, subQoS := range []byte{0, 1, 2} {
			t.Run(fmt.Sprintf("pub%d_sub%d", pubQoS, subQoS), func(t *testing.T) {
				t.Parallel()
				topic := uniqueTopic("v3qos")
				sub := connectV3(t, b, uniqueID("sub"), v3Opts{clean: true})
				sub.subscribe(topic, subQoS)
				pub := connectV3(t, b, uniqueID("pub"), v3Opts{clean: true})
				payload := fmt.Sprintf("v311 qos %d\x00\xff", pubQoS)
				pub.pub(topic, pubQoS, false, payload)
				m := sub.recv()
				if m.topic != topic || m.payload != payload {
					t.Fatalf("got %q on %q, want %q on %q", m.payload, m.topic, payload, topic)
				}
				if want := min(pubQoS, subQoS); m.qos != want {
					t.Errorf("QoS %d, want %d", m.qos, want)
				}
				if m.retained {
					t.Error("retain flag set on a live, non-retained message")
				}
			})
		}
	}
}

func TestV311Retained(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	topic := uniqueTopic("v3ret")
	pub := connectV3(t, b, uniqueID("pub"), v3Opts{clean: true})
	pub.pub(topic, 1, true, "kept")

	s1 := connectV3(t, b, uniqueID("s1"), v3Opts{clean: true})
	s1.subscribe(topic, 2)
	if m := s1.recv(); m.payload != "kept" || !m.retained || m.qos != 1 {
		t.Fatalf("retained on subscribe: %+v, want \"kept\" retained qos 1", m)
	}
	// In 3.1.1 a message forwarded to an established subscription has
	// the retain flag cleared.
	pub.pub(topic, 1, true, "live")
	if m := s1.recv(); m.payload != "live" || m.retained {
		t.Fatalf("live retained publish: %+v, want \"live\" without retain flag", m)
	}

	pub.pub(topic, 1, true, "") // clears
	if m := s1.recv(); m.payload != "" {
		t.Fatalf("clearing publish not forwarded: %+v", m)
	}
	s2 := connectV3(t, b, uniqueID("s2"), v3Opts{clean: true})
	s2.subscribe(topic, 1)
	pub.pub(topic, 1, false, "sentinel")
	if m := s2.recv(); m.payload != "sentinel" {
		t.Fatalf("after clearing, a new subscriber got %+v before the sentinel", m)
	}
}

func TestV311Will(t *testing.T) {
	t.Parallel()
	b := startBroker(t)

	t.Run("abnormal_disconnect_publishes_will", func(t *testing.T) {
		t.Parallel()
		topic := uniqueTopic("v3will")
		sub := connectV3(t, b, uniqueID("wsub"), v3Opts{clean: true})
		sub.subscribe(topic, 2)
		w := connectV3(t, b, uniqueID("will"), v3Opts{clean: true,
			will: &v3Msg{topic: topic, payload: "v3 gone", qos: 2}})
		w.kill()
		if m := sub.recv(); m.topic != topic || m.payload != "v3 gone" || m.qos != 2 || m.retained {
			t.Fatalf("will: %+v", m)
		}
	})

	t.Run("normal_disconnect_discards_will", func(t *testing.T) {
		t.Parallel()
		topic := uniqueTopic("v3nowill")
		sub := connectV3(t, b, uniqueID("wsub"), v3Opts{clean: true})
		sub.subscribe(topic, 1)
		w := connectV3(t, b, uniqueID("nowill"), v3Opts{clean: true,
			will: &v3Msg{topic: topic, payload: "must not be sent", qos: 1}})
		w.disconnect()
		w.conn.waitPeerClosed(t) // DISCONNECT processed
		pub := connectV3(t, b, uniqueID("pub"), v3Opts{clean: true})
		pub.pub(topic, 1, false, "sentinel")
		if m := sub.recv(); m.payload != "sentinel" {
			t.Fatalf("will published after a normal DISCONNECT: %+v", m)
		}
	})
}

func TestV311PersistentSession(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	topic := uniqueTopic("v3sess")
	id := uniqueID("v3sess")

	// Start from a clean slate, then keep the session.
	clean := connectV3(t, b, id, v3Opts{clean: true})
	clean.disconnect()
	s := connectV3(t, b, id, v3Opts{clean: false})
	if s.sessionPresent {
		t.Error("session present after a clean session ended")
	}
	s.subscribe(topic, 1)
	s.disconnect()

	pub := connectV3(t, b, uniqueID("pub"), v3Opts{clean: true})
	for i := range 3 {
		pub.pub(topic, 1, false, fmt.Sprintf("queued-%d", i))
	}
	s2 := connectV3(t, b, id, v3Opts{clean: false})
	if !s2.sessionPresent {
		t.Fatal("session present flag false on resuming a persistent session")
	}
	// paho.mqtt.golang routes messages for subscriptions it did not make
	// in this connection to the default handler, which feeds msgs too.
	for i := range 3 {
		want := fmt.Sprintf("queued-%d", i)
		if m := s2.recv(); m.topic != topic || m.payload != want || m.qos != 1 {
			t.Fatalf("queued message %d: %+v, want %q qos 1", i, m, want)
		}
	}
}

func TestV311SessionTakeover(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	id := uniqueID("v3take")
	topic := uniqueTopic("v3take")
	first := connectV3(t, b, id, v3Opts{clean: true})
	second := connectV3(t, b, id, v3Opts{clean: true})
	first.waitLost() // 3.1.1 has no DISCONNECT from the server: just closed
	second.subscribe(topic, 1)
	second.pub(topic, 1, false, "mine now")
	if m := second.recv(); m.payload != "mine now" {
		t.Fatalf("after takeover: %+v", m)
	}
}
