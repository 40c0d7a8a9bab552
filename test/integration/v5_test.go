package integration

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// MQTT 5 behaviour driven by paho.golang.

func TestV5QoSRoundTrip(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	for _, pubQoS := range []byte{0, 1, 2} {
		for _, subQoS := range []byte{0, 1, 2} {
			t.Run(fmt.Sprintf("pub%d_sub%d", pubQoS, subQoS), func(t *testing.T) {
				t.Parallel()
				topic := uniqueTopic("v5qos")
				sub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("sub"), CleanStart: true})
				sub.subscribe(paho.SubscribeOptions{Topic: topic, QoS: subQoS})
				pub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("pub"), CleanStart: true})
				payload := []byte{0x00, 0xff, 'q', '0' + pubQoS, 0x80}
				pub.publish(&paho.Publish{Topic: topic, QoS: pubQoS, Payload: payload})
				m := sub.recv()
				if m.Topic != topic || !bytes.Equal(m.Payload, payload) {
					t.Fatalf("got %q on %q, want %q on %q", m.Payload, m.Topic, payload, topic)
				}
				if want := min(pubQoS, subQoS); m.QoS != want {
					t.Errorf("QoS %d, want %d", m.QoS, want)
				}
				if m.Retain {
					t.Errorf("retain flag set on a live, non-retained message")
				}
			})
		}
	}
}

func TestV5Retained(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	topic := uniqueTopic("v5ret")
	pub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("pub"), CleanStart: true})

	pub.pub(topic, 1, true, "first")
	pub.pub(topic, 1, true, "second") // replaces "first"

	s1 := connectV5(t, b, &paho.Connect{ClientID: uniqueID("s1"), CleanStart: true})
	s1.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
	m := s1.recvPayload(topic, "second")
	if !m.Retain {
		t.Errorf("retained message delivered on subscribe without the retain flag")
	}
	if m.QoS != 1 {
		t.Errorf("QoS %d, want 1", m.QoS)
	}
	// Only the latest retained message is kept: the next one is live.
	pub.pub(topic, 1, false, "live")
	if m := s1.recvPayload(topic, "live"); m.Retain {
		t.Errorf("live message to an existing subscription has the retain flag")
	}

	// An empty retained payload clears it (and is itself delivered live).
	pub.pub(topic, 1, true, "")
	s1.recvPayload(topic, "")

	s2 := connectV5(t, b, &paho.Connect{ClientID: uniqueID("s2"), CleanStart: true})
	s2.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
	pub.pub(topic, 1, false, "sentinel")
	if m := s2.recv(); string(m.Payload) != "sentinel" {
		t.Fatalf("after clearing, new subscriber got %q (retain=%v) before the sentinel", m.Payload, m.Retain)
	}

	// A retained message on a wildcard subscription.
	pub.pub(topic+"/a", 0, true, "child")
	// A QoS 0 publish has no acknowledgement: a QoS 1 publish on the same
	// connection, processed in order, proves the broker has stored it.
	pub.pub(topic+"-barrier", 1, false, "barrier")
	s3 := connectV5(t, b, &paho.Connect{ClientID: uniqueID("s3"), CleanStart: true})
	s3.subscribe(paho.SubscribeOptions{Topic: topic + "/+", QoS: 2})
	if m := s3.recvPayload(topic+"/a", "child"); !m.Retain || m.QoS != 0 {
		t.Errorf("retained QoS 0 via wildcard: retain=%v qos=%d", m.Retain, m.QoS)
	}
}

func TestV5RetainHandling(t *testing.T) {
	t.Parallel()
	b := startBroker(t)

	setup := func(t *testing.T) (string, *v5Client) {
		topic := uniqueTopic("rh")
		pub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("pub"), CleanStart: true})
		pub.pub(topic, 1, true, "retained")
		return topic, pub
	}

	t.Run("0_send_on_every_subscribe", func(t *testing.T) {
		t.Parallel()
		topic, _ := setup(t)
		s := connectV5(t, b, &paho.Connect{ClientID: uniqueID("rh0"), CleanStart: true})
		s.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1, RetainHandling: 0})
		if m := s.recvPayload(topic, "retained"); !m.Retain {
			t.Error("retain flag not set")
		}
		s.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1, RetainHandling: 0})
		if m := s.recvPayload(topic, "retained"); !m.Retain {
			t.Error("retain flag not set on re-subscribe")
		}
	})

	t.Run("1_send_only_for_new_subscription", func(t *testing.T) {
		t.Parallel()
		topic, pub := setup(t)
		s := connectV5(t, b, &paho.Connect{ClientID: uniqueID("rh1"), CleanStart: true})
		s.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1, RetainHandling: 1})
		if m := s.recvPayload(topic, "retained"); !m.Retain {
			t.Error("retain flag not set")
		}
		s.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1, RetainHandling: 1})
		pub.pub(topic, 1, false, "sentinel")
		if m := s.recv(); string(m.Payload) != "sentinel" {
			t.Fatalf("re-subscribe with retain handling 1 delivered %q (retain=%v)", m.Payload, m.Retain)
		}
	})

	t.Run("2_never_send", func(t *testing.T) {
		t.Parallel()
		topic, pub := setup(t)
		s := connectV5(t, b, &paho.Connect{ClientID: uniqueID("rh2"), CleanStart: true})
		s.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1, RetainHandling: 2})
		pub.pub(topic, 1, false, "sentinel")
		if m := s.recv(); string(m.Payload) != "sentinel" {
			t.Fatalf("subscribe with retain handling 2 delivered %q (retain=%v)", m.Payload, m.Retain)
		}
	})

	t.Run("retain_as_published", func(t *testing.T) {
		t.Parallel()
		topic, pub := setup(t)
		rap := connectV5(t, b, &paho.Connect{ClientID: uniqueID("rap"), CleanStart: true})
		rap.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1, RetainAsPublished: true})
		plain := connectV5(t, b, &paho.Connect{ClientID: uniqueID("norap"), CleanStart: true})
		plain.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
		// Retained messages sent because of a subscribe always carry the flag.
		for _, c := range []*v5Client{rap, plain} {
			if m := c.recvPayload(topic, "retained"); !m.Retain {
				t.Error("retain flag not set on subscribe-time delivery")
			}
		}
		pub.pub(topic, 1, true, "live-retained")
		if m := rap.recvPayload(topic, "live-retained"); !m.Retain {
			t.Error("retain-as-published: live retained message lost its retain flag")
		}
		if m := plain.recvPayload(topic, "live-retained"); m.Retain {
			t.Error("without retain-as-published the live message kept its retain flag")
		}
		pub.pub(topic, 1, false, "live-plain")
		if m := rap.recvPayload(topic, "live-plain"); m.Retain {
			t.Error("retain-as-published: non-retained message got the retain flag")
		}
	})
}

func TestV5Will(t *testing.T) {
	t.Parallel()
	b := startBroker(t)

	t.Run("abnormal_disconnect_publishes_will", func(t *testing.T) {
		t.Parallel()
		topic := uniqueTopic("will")
		sub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("wsub"), CleanStart: true})
		sub.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 2})
		w := connectV5(t, b, &paho.Connect{
			ClientID:    uniqueID("will"),
			CleanStart:  true,
			WillMessage: &paho.WillMessage{Topic: topic, QoS: 1, Payload: []byte("gone")},
			// paho.golang encodes only user properties and the will delay
			// among the will properties.
			WillProperties: &paho.WillProperties{User: paho.UserProperties{{Key: "k", Value: "v"}}},
		})
		w.kill()
		m := sub.recvPayload(topic, "gone")
		if m.QoS != 1 || m.Retain {
			t.Errorf("will: qos %d retain %v, want 1 false", m.QoS, m.Retain)
		}
		if m.Properties == nil || m.Properties.User.Get("k") != "v" {
			t.Errorf("will properties not passed on: %+v", m.Properties)
		}
	})

	t.Run("retained_will", func(t *testing.T) {
		t.Parallel()
		topic := uniqueTopic("willr")
		w := connectV5(t, b, &paho.Connect{
			ClientID:    uniqueID("willr"),
			CleanStart:  true,
			WillMessage: &paho.WillMessage{Topic: topic, QoS: 1, Retain: true, Payload: []byte("offline")},
		})
		sub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("wsub"), CleanStart: true})
		sub.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
		w.kill()
		sub.recvPayload(topic, "offline")
		late := connectV5(t, b, &paho.Connect{ClientID: uniqueID("wlate"), CleanStart: true})
		late.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
		if m := late.recvPayload(topic, "offline"); !m.Retain {
			t.Error("retained will not delivered as retained")
		}
	})

	t.Run("normal_disconnect_discards_will", func(t *testing.T) {
		t.Parallel()
		topic := uniqueTopic("nowill")
		sub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("wsub"), CleanStart: true})
		sub.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
		w := connectV5(t, b, &paho.Connect{
			ClientID:    uniqueID("nowill"),
			CleanStart:  true,
			WillMessage: &paho.WillMessage{Topic: topic, QoS: 1, Payload: []byte("must not be sent")},
		})
		w.disconnect()
		w.conn.(*gracefulConn).waitPeerClosed(t) // DISCONNECT processed
		pub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("pub"), CleanStart: true})
		pub.pub(topic, 1, false, "sentinel")
		if m := sub.recv(); string(m.Payload) != "sentinel" {
			t.Fatalf("will published after a normal DISCONNECT: %q", m.Payload)
		}
	})

	t.Run("disconnect_with_will_message_0x04", func(t *testing.T) {
		t.Parallel()
		topic := uniqueTopic("dww")
		sub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("wsub"), CleanStart: true})
		sub.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
		w := connectV5(t, b, &paho.Connect{
			ClientID:    uniqueID("dww"),
			CleanStart:  true,
			WillMessage: &paho.WillMessage{Topic: topic, QoS: 1, Payload: []byte("asked for")},
		})
		w.disconnectWith(&paho.Disconnect{ReasonCode: 0x04})
		sub.recvPayload(topic, "asked for")
	})
}

// willDelay is the Will Delay Interval used by the will-delay tests.
const willDelay = 2 // seconds

func TestV5WillDelay(t *testing.T) {
	t.Parallel()
	b := startBroker(t)

	// connectWillDelay connects a client whose session outlives the
	// connection (so that the will delay, not the session end, decides).
	connectWillDelay := func(t *testing.T, id, topic string, clean bool) *v5Client {
		return connectV5(t, b, &paho.Connect{
			ClientID:       id,
			CleanStart:     clean,
			Properties:     &paho.ConnectProperties{SessionExpiryInterval: u32(60)},
			WillMessage:    &paho.WillMessage{Topic: topic, QoS: 1, Payload: []byte("delayed will")},
			WillProperties: &paho.WillProperties{WillDelayInterval: u32(willDelay)},
		})
	}
	// noWillAfterDelay waits until the will would have fired, then proves
	// with a sentinel on the will topic that it did not.
	noWillAfterDelay := func(t *testing.T, since time.Time, topic string, sub *v5Client) {
		// The passing of time is the behaviour under test here.
		<-time.After(time.Until(since.Add(willDelay*time.Second + 1500*time.Millisecond)))
		pub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("pub"), CleanStart: true})
		pub.pub(topic, 1, false, "sentinel")
		if m := sub.recv(); string(m.Payload) != "sentinel" {
			t.Fatalf("will published although the session was resumed in time: %q", m.Payload)
		}
	}

	t.Run("fires_after_delay", func(t *testing.T) {
		t.Parallel()
		topic := uniqueTopic("wd")
		sub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("wsub"), CleanStart: true})
		sub.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
		w := connectWillDelay(t, uniqueID("wd"), topic, true)
		killed := time.Now()
		w.kill()
		sub.recvPayload(topic, "delayed will")
		// Allow for one-second timer granularity in the broker.
		if got := time.Since(killed); got < willDelay*time.Second-700*time.Millisecond {
			t.Fatalf("will published %v after the connection dropped, want about %ds", got, willDelay)
		}
	})

	t.Run("cancelled_by_reconnect", func(t *testing.T) {
		t.Parallel()
		topic := uniqueTopic("wdr")
		sub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("wsub"), CleanStart: true})
		sub.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
		id := uniqueID("wdr")
		w := connectWillDelay(t, id, topic, true)
		killed := time.Now()
		w.kill()
		again := connectWillDelay(t, id, topic, false)
		if !again.Connack.SessionPresent {
			t.Error("SessionPresent false on resuming a session within its expiry")
		}
		noWillAfterDelay(t, killed, topic, sub)
		again.disconnect() // normal DISCONNECT: no will either
	})

	t.Run("cancelled_by_takeover", func(t *testing.T) {
		t.Parallel()
		topic := uniqueTopic("wdt")
		sub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("wsub"), CleanStart: true})
		sub.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
		id := uniqueID("wdt")
		first := connectWillDelay(t, id, topic, true)
		second := connectWillDelay(t, id, topic, false)
		taken := time.Now()
		first.waitClosed()
		noWillAfterDelay(t, taken, topic, sub)
		second.disconnect()
	})
}

func TestV5PersistentSession(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	topic := uniqueTopic("sess")
	id := uniqueID("sess")
	cp := func(clean bool) *paho.Connect {
		return &paho.Connect{ClientID: id, CleanStart: clean,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(300)}}
	}
	s := connectV5(t, b, cp(true))
	if s.Connack.SessionPresent {
		t.Error("SessionPresent true on a clean start")
	}
	s.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
	s.disconnect()

	pub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("pub"), CleanStart: true})
	for i := range 3 {
		pub.pub(topic, 1, false, fmt.Sprintf("queued-%d", i))
	}

	s2 := connectV5(t, b, cp(false))
	if !s2.Connack.SessionPresent {
		t.Fatal("SessionPresent false on resuming a session within its expiry")
	}
	for i := range 3 {
		m := s2.recvPayload(topic, fmt.Sprintf("queued-%d", i))
		if m.QoS != 1 {
			t.Errorf("queued message QoS %d, want 1", m.QoS)
		}
	}
	// The subscription is part of the session: live messages flow too.
	pub.pub(topic, 1, false, "live")
	s2.recvPayload(topic, "live")
	s2.disconnect()

	// Clean start discards the session.
	s3 := connectV5(t, b, cp(true))
	if s3.Connack.SessionPresent {
		t.Error("SessionPresent true after clean start")
	}
	pub.pub(topic, 1, false, "after-clean")
	probe := uniqueTopic("probe")
	s3.subscribe(paho.SubscribeOptions{Topic: probe, QoS: 1})
	pub.pub(probe, 1, false, "probe")
	if m := s3.recv(); m.Topic != probe {
		t.Fatalf("clean start kept the old subscription: got %q on %q", m.Payload, m.Topic)
	}
}

func TestV5SessionExpiryZeroEndsSession(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	id := uniqueID("noexp")
	topic := uniqueTopic("noexp")
	s := connectV5(t, b, &paho.Connect{ClientID: id, CleanStart: true})
	s.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
	s.disconnect()
	s2 := connectV5(t, b, &paho.Connect{ClientID: id, CleanStart: false})
	if s2.Connack.SessionPresent {
		t.Fatal("SessionPresent true although the session expiry interval was 0")
	}
}

func TestV5SessionTakeover(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	id := uniqueID("take")
	topic := uniqueTopic("take")
	first := connectV5(t, b, &paho.Connect{ClientID: id, CleanStart: true})
	second := connectV5(t, b, &paho.Connect{ClientID: id, CleanStart: true})
	select {
	case d := <-first.disconnects:
		if d.ReasonCode != 0x8E {
			t.Errorf("first connection got DISCONNECT 0x%02x, want 0x8E (session taken over)", d.ReasonCode)
		}
	case err := <-first.errs:
		// mosquitto 2.0.11 closes the old connection without DISCONNECT.
		if !mosquittoMode() {
			t.Errorf("first connection closed without DISCONNECT 0x8E (%v)", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("first connection neither got DISCONNECT nor was closed on takeover")
	}
	first.waitClosed()
	second.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
	second.pub(topic, 1, false, "mine now")
	second.recvPayload(topic, "mine now")
}

func TestV5SharedSubscription(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	topic := uniqueTopic("shared")
	group := fmt.Sprintf("g%d", idCounter.Add(1))
	const members, total = 3, 30

	subs := make([]*v5Client, members)
	for i := range subs {
		subs[i] = connectV5(t, b, &paho.Connect{ClientID: uniqueID(fmt.Sprintf("m%d", i)), CleanStart: true})
		subs[i].subscribe(paho.SubscribeOptions{Topic: "$share/" + group + "/" + topic, QoS: 1})
	}
	// A normal subscriber on the same topic gets every message.
	all := connectV5(t, b, &paho.Connect{ClientID: uniqueID("all"), CleanStart: true})
	all.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})

	pub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("pub"), CleanStart: true})
	for i := range total {
		pub.pub(topic, 1, false, fmt.Sprintf("m%02d", i))
	}
	for i := range total {
		all.recvPayload(topic, fmt.Sprintf("m%02d", i))
	}

	seen := map[string]int{} // payload -> member
	counts := make([]int, members)
	deadline := time.After(waitTimeout)
	for len(seen) < total {
		select {
		case m := <-subs[0].msgs:
			record(t, seen, counts, 0, m, topic)
		case m := <-subs[1].msgs:
			record(t, seen, counts, 1, m, topic)
		case m := <-subs[2].msgs:
			record(t, seen, counts, 2, m, topic)
		case <-deadline:
			t.Fatalf("shared subscription delivered %d of %d messages (per member %v)", len(seen), total, counts)
		}
	}
	for i, n := range counts {
		if n == 0 {
			t.Errorf("member %d got no message; distribution %v", i, counts)
		}
	}
	if sum := counts[0] + counts[1] + counts[2]; sum != total {
		t.Errorf("members received %d messages in all, want %d", sum, total)
	}
}

func record(t *testing.T, seen map[string]int, counts []int, member int, m *paho.Publish, topic string) {
	t.Helper()
	if m.Topic != topic {
		t.Fatalf("member %d: topic %q, want %q", member, m.Topic, topic)
	}
	if prev, dup := seen[string(m.Payload)]; dup {
		t.Fatalf("message %q delivered twice (members %d and %d)", m.Payload, prev, member)
	}
	seen[string(m.Payload)] = member
	counts[member]++
}

func TestV5TopicAlias(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	base := uniqueTopic("alias")
	sub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("sub"), CleanStart: true})
	sub.subscribe(paho.SubscribeOptions{Topic: base + "/#", QoS: 1})

	pub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("pub"), CleanStart: true})
	if p := pub.Connack.Properties; p == nil || p.TopicAliasMaximum == nil || *p.TopicAliasMaximum < 1 {
		t.Fatalf("broker grants no topic aliases (CONNACK Topic Alias Maximum missing or 0)")
	}
	alias := func(a uint16) *paho.PublishProperties { return &paho.PublishProperties{TopicAlias: u16(a)} }

	// Establish alias 1, use it alone, remap it, use it again.
	pub.publish(&paho.Publish{Topic: base + "/one", QoS: 1, Payload: []byte("set"), Properties: alias(1)})
	pub.publish(&paho.Publish{QoS: 1, Payload: []byte("alias only"), Properties: alias(1)})
	pub.publish(&paho.Publish{QoS: 0, Payload: []byte("alias only qos0"), Properties: alias(1)})
	pub.publish(&paho.Publish{Topic: base + "/two", QoS: 1, Payload: []byte("remap"), Properties: alias(1)})
	pub.publish(&paho.Publish{QoS: 2, Payload: []byte("alias only again"), Properties: alias(1)})

	for _, w := range []struct{ topic, payload string }{
		{base + "/one", "set"},
		{base + "/one", "alias only"},
		{base + "/one", "alias only qos0"},
		{base + "/two", "remap"},
		{base + "/two", "alias only again"},
	} {
		m := sub.recvPayload(w.topic, w.payload)
		if m.Properties != nil && m.Properties.TopicAlias != nil {
			t.Errorf("broker sent topic alias %d to a client that allows none", *m.Properties.TopicAlias)
		}
	}
}

func TestV5MessageExpiry(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	topic := uniqueTopic("exp")
	id := uniqueID("exp")
	cp := func(clean bool) *paho.Connect {
		return &paho.Connect{ClientID: id, CleanStart: clean,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(300)}}
	}
	s := connectV5(t, b, cp(true))
	s.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
	s.disconnect()

	pub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("pub"), CleanStart: true})
	pub.publish(&paho.Publish{Topic: topic, QoS: 1, Payload: []byte("short"),
		Properties: &paho.PublishProperties{MessageExpiry: u32(1)}})
	pub.publish(&paho.Publish{Topic: topic, QoS: 1, Payload: []byte("long"),
		Properties: &paho.PublishProperties{MessageExpiry: u32(60)}})
	queued := time.Now()

	// The passing of time is the behaviour under test: "short" expires.
	<-time.After(2500 * time.Millisecond)

	s2 := connectV5(t, b, cp(false))
	m := s2.recv() // same topic, so "short" would have come first
	if string(m.Payload) != "long" {
		t.Fatalf("got %q first, want \"long\" (\"short\" expired while queued)", m.Payload)
	}
	if m.Properties == nil || m.Properties.MessageExpiry == nil {
		t.Fatal("queued message delivered without its message expiry interval")
	}
	// The broker must send 60 minus the seconds the message waited (at
	// least 2.5s here): 58 at most, allowing whole-second rounding.
	waited := time.Since(queued)
	got := int(*m.Properties.MessageExpiry)
	if lo := 60 - int(math.Ceil(waited.Seconds())) - 1; got > 58 || got < lo {
		t.Errorf("message expiry %d after waiting %v, want %d..58", got, waited, lo)
	}
}

func TestV5NoLocal(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	topic := uniqueTopic("nolocal")
	self := connectV5(t, b, &paho.Connect{ClientID: uniqueID("self"), CleanStart: true})
	self.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1, NoLocal: true})
	other := connectV5(t, b, &paho.Connect{ClientID: uniqueID("other"), CleanStart: true})
	other.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})

	self.pub(topic, 1, false, "own")
	other.recvPayload(topic, "own") // others still get it
	other.pub(topic, 1, false, "theirs")
	if m := self.recv(); string(m.Payload) != "theirs" {
		t.Fatalf("no-local subscriber received %q first, want \"theirs\"", m.Payload)
	}

	// Without no-local, a client gets its own messages.
	own := uniqueTopic("local")
	self.subscribe(paho.SubscribeOptions{Topic: own, QoS: 1})
	self.pub(own, 1, false, "echo")
	self.recvPayload(own, "echo")
}

func TestV5SubscriptionIdentifier(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	base := uniqueTopic("subid")
	c := connectV5(t, b, &paho.Connect{ClientID: uniqueID("subid"), CleanStart: true})
	if p := c.Connack.Properties; p != nil && !p.SubIDAvailable {
		t.Fatal("broker says subscription identifiers are not available")
	}
	id := 4242
	c.subscribeWith(&paho.SubscribeProperties{SubscriptionIdentifier: &id},
		paho.SubscribeOptions{Topic: base + "/with/+", QoS: 1})
	c.subscribe(paho.SubscribeOptions{Topic: base + "/without", QoS: 1})
	id2 := 268435455 // largest variable byte integer
	c.subscribeWith(&paho.SubscribeProperties{SubscriptionIdentifier: &id2},
		paho.SubscribeOptions{Topic: base + "/max", QoS: 0})

	c.pub(base+"/with/x", 1, false, "a")
	m := c.recvPayload(base+"/with/x", "a")
	if m.Properties == nil || m.Properties.SubscriptionIdentifier == nil || *m.Properties.SubscriptionIdentifier != id {
		t.Errorf("subscription identifier: got %+v, want %d", m.Properties, id)
	}
	c.pub(base+"/without", 1, false, "b")
	if m := c.recvPayload(base+"/without", "b"); m.Properties != nil && m.Properties.SubscriptionIdentifier != nil {
		t.Errorf("subscription without identifier delivered identifier %d", *m.Properties.SubscriptionIdentifier)
	}
	c.pub(base+"/max", 1, false, "c")
	if m := c.recvPayload(base+"/max", "c"); m.Properties == nil || m.Properties.SubscriptionIdentifier == nil || *m.Properties.SubscriptionIdentifier != id2 {
		t.Errorf("subscription identifier: got %+v, want %d", m.Properties, id2)
	}
}

func TestV5PropertiesPassThrough(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	pf := byte(1)
	props := func() *paho.PublishProperties {
		return &paho.PublishProperties{
			PayloadFormat:   &pf,
			MessageExpiry:   u32(600),
			ContentType:     "application/json; charset=utf-8",
			ResponseTopic:   "reply/to/me",
			CorrelationData: []byte{0x00, 0x01, 0xfe, 0xff},
			User: paho.UserProperties{
				{Key: "dup", Value: "1"},
				{Key: "dup", Value: "2"},
				{Key: "ünïcode", Value: "välue"},
				{Key: "empty", Value: ""},
			},
		}
	}
	check := func(t *testing.T, m *paho.Publish) {
		t.Helper()
		want := props()
		got := m.Properties
		if got == nil {
			t.Fatal("no properties delivered")
		}
		if got.PayloadFormat == nil || *got.PayloadFormat != 1 {
			t.Errorf("payload format indicator: %v", got.PayloadFormat)
		}
		if got.ContentType != want.ContentType || got.ResponseTopic != want.ResponseTopic ||
			!bytes.Equal(got.CorrelationData, want.CorrelationData) {
			t.Errorf("content type / response topic / correlation data: %q %q %x", got.ContentType, got.ResponseTopic, got.CorrelationData)
		}
		if !slices.Equal(got.User, want.User) {
			t.Errorf("user properties %v, want %v (order and duplicates kept)", got.User, want.User)
		}
		if got.MessageExpiry == nil || *got.MessageExpiry == 0 || *got.MessageExpiry > 600 {
			t.Errorf("message expiry %v, want 1..600", got.MessageExpiry)
		}
	}
	for _, qos := range []byte{0, 1, 2} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			t.Parallel()
			topic := uniqueTopic("props")
			sub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("sub"), CleanStart: true})
			sub.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 2})
			pub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("pub"), CleanStart: true})
			pub.publish(&paho.Publish{Topic: topic, QoS: qos, Payload: []byte(`{"ok":true}`), Properties: props()})
			check(t, sub.recvPayload(topic, `{"ok":true}`))
		})
	}
	t.Run("retained", func(t *testing.T) {
		t.Parallel()
		topic := uniqueTopic("propsret")
		pub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("pub"), CleanStart: true})
		pub.publish(&paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(`{"ok":true}`), Properties: props()})
		sub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("sub"), CleanStart: true})
		sub.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
		check(t, sub.recvPayload(topic, `{"ok":true}`))
	})
}

func TestV5Wildcards(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	// Filters and topics are suffixes of a per-case base topic.
	cases := []struct {
		filter  string
		match   []string // must be delivered, in this order
		nomatch []string // must not be delivered
	}{
		{"/+", []string{"/a", "/"}, []string{"", "/a/b"}},
		{"/a/+", []string{"/a/b", "/a/"}, []string{"/a", "/a/b/c", "/b/b"}},
		{"/a/+/c", []string{"/a/b/c", "/a//c"}, []string{"/a/b/d", "/a/b/c/d", "/a/c"}},
		{"/a/#", []string{"/a", "/a/b", "/a/b/c", "/a/"}, []string{"/b", "/ab"}},
		{"/#", []string{"", "/a", "/a/b/c"}, []string{"x", "x/a"}},
		{"/+/+", []string{"/a/b", "//b", "/a/"}, []string{"/a", "/a/b/c"}},
		{"/+/b/#", []string{"/a/b", "/x/b/c/d"}, []string{"/a/c", "/b"}},
	}
	for _, tc := range cases {
		t.Run(tc.filter, func(t *testing.T) {
			t.Parallel()
			base := uniqueTopic("wild")
			sub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("sub"), CleanStart: true})
			sub.subscribe(paho.SubscribeOptions{Topic: base + tc.filter, QoS: 1})
			pub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("pub"), CleanStart: true})
			// Non-matching first: each PUBLISH is acknowledged before the
			// next, and the subscriber's queue is FIFO, so a wrong match
			// shows up before the expected messages.
			for _, s := range tc.nomatch {
				pub.pub(base+s, 1, false, "no:"+s)
			}
			for _, s := range tc.match {
				pub.pub(base+s, 1, false, "yes:"+s)
			}
			for _, s := range tc.match {
				m := sub.recv()
				if m.Topic != base+s {
					t.Fatalf("filter %q: got %q on %q, want a message on %q", base+tc.filter, m.Payload, m.Topic, base+s)
				}
			}
		})
	}
}
