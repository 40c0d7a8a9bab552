package broker_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"moat/internal/brokertest"
	"moat/internal/config"
	"moat/internal/packet"
)

const qWait = 10 * time.Second

// qSub is a paho MQTT 5 client whose received PUBLISHes (auto-acknowledged)
// arrive on msgs.
type qSub struct {
	*paho.Client
	msgs chan *paho.Publish
}

// qConnect connects a paho client with the given session expiry.
func qConnect(t *testing.T, addr, id string, clean bool, expiry uint32) (*qSub, *paho.Connack) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	msgs := make(chan *paho.Publish, 1000)
	c := paho.NewClient(paho.ClientConfig{
		Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				msgs <- pr.Packet
				return true, nil
			},
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), qWait)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{
		ClientID: id, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
	})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	return &qSub{Client: c, msgs: msgs}, ca
}

func (c *qSub) subscribe(t *testing.T, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), qWait)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] != qos {
		t.Fatalf("subscribe %s: err=%v suback=%+v", filter, err, sa)
	}
}

// publish sends a QoS 1 message and returns the PUBACK reason code.
func (c *qSub) publish(t *testing.T, topic, payload string, expiry *uint32) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), qWait)
	defer cancel()
	p := &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}
	if expiry != nil {
		p.Properties = &paho.PublishProperties{MessageExpiry: expiry}
	}
	r, err := c.Publish(ctx, p)
	if err != nil {
		t.Fatalf("publish %s %q: %v", topic, payload, err)
	}
	return r.ReasonCode
}

// disconnect ends the connection normally and waits until the broker has
// released the session: until then a message for it would still be
// written to the closing connection (and kept in flight) rather than
// queued.
func (c *qSub) disconnect(t *testing.T, b *brokertest.Broker) {
	t.Helper()
	n := b.Server.ClientCount()
	if err := c.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
	deadline := time.Now().Add(qWait)
	for b.Server.ClientCount() >= n {
		if time.Now().After(deadline) {
			t.Fatal("broker did not release the session after DISCONNECT")
		}
		time.Sleep(time.Millisecond)
	}
}

// until collects payloads until one equal to marker arrives; the marker
// is not included.
func (c *qSub) until(t *testing.T, marker string) []string {
	t.Helper()
	var got []string
	deadline := time.After(qWait)
	for {
		select {
		case p := <-c.msgs:
			if string(p.Payload) == marker {
				return got
			}
			got = append(got, string(p.Payload))
		case <-deadline:
			t.Fatalf("marker %q not received; got %q", marker, got)
		}
	}
}

// drain returns the payloads of the messages a resumed session is sent:
// it waits for the first one, which means the broker has moved the whole
// queue into flight (it does so in one step on resume, up to the window),
// then has pub publish a marker to the topic, which now goes out after
// them without touching the queue limit, and collects up to the marker.
func (c *qSub) drain(t *testing.T, pub *qSub, topic string) []string {
	t.Helper()
	var first string
	select {
	case p := <-c.msgs:
		first = string(p.Payload)
	case <-time.After(qWait):
		t.Fatal("no message delivered after resume")
	}
	pub.publish(t, topic, "end", nil)
	return append([]string{first}, c.until(t, "end")...)
}

func payloads(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestQueueLimitOffline: an offline persistent session keeps at most
// MaxQueued QoS 1 messages; drop_oldest keeps the newest, drop_new (and
// disconnect, for an offline session) the oldest. What is dropped is gone
// from the store too: a restart of the broker on the same data directory
// redelivers exactly the kept messages.
func TestQueueLimitOffline(t *testing.T) {
	for _, tc := range []struct {
		policy string
		want   []string
	}{
		{config.OverflowDropOldest, payloads(5, 10)},
		{config.OverflowDropNew, payloads(0, 5)},
		{config.OverflowDisconnect, payloads(0, 5)},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			dir := t.TempDir()
			opt := func(c *config.Config) {
				c.DataDir = dir
				c.MQTT.MaxQueued = 5
				c.MQTT.QueueOverflow = tc.policy
			}
			b := brokertest.Start(t, opt)
			sub, _ := qConnect(t, b.Addr, "sub", true, 300)
			sub.subscribe(t, "q/t", 1)
			sub.disconnect(t, b)
			pub, _ := qConnect(t, b.Addr, "pub", true, 0)
			for i := range 10 {
				if rc := pub.publish(t, "q/t", strconv.Itoa(i), nil); rc != 0 {
					t.Fatalf("PUBACK %d: reason %#x", i, rc)
				}
			}
			pub.disconnect(t, b)
			b.Stop()

			b = brokertest.Start(t, opt)
			sub, ca := qConnect(t, b.Addr, "sub", false, 300)
			if !ca.SessionPresent {
				t.Fatal("session not present after restart")
			}
			pub, _ = qConnect(t, b.Addr, "pub", true, 0)
			if got := sub.drain(t, pub, "q/t"); !equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestQueueLimitBytes: MaxQueuedBytes bounds an offline queue by size.
func TestQueueLimitBytes(t *testing.T) {
	// Each message counts len(topic)+len(payload)+64 = 3+100+64 = 167
	// bytes: two fit in 420, a third does not.
	b := brokertest.Start(t, func(c *config.Config) {
		c.MQTT.MaxQueuedBytes = 420
		c.MQTT.QueueOverflow = config.OverflowDropOldest
	})
	sub, _ := qConnect(t, b.Addr, "sub", true, 300)
	sub.subscribe(t, "q/b", 1)
	sub.disconnect(t, b)
	pub, _ := qConnect(t, b.Addr, "pub", true, 0)
	pad := string(make([]byte, 99))
	for i := range 5 {
		pub.publish(t, "q/b", strconv.Itoa(i)+pad, nil)
	}
	sub, _ = qConnect(t, b.Addr, "sub", false, 300)
	got := sub.drain(t, pub, "q/b")
	if len(got) != 2 || got[0][:1] != "3" || got[1][:1] != "4" {
		short := make([]string, len(got))
		for i, g := range got {
			short[i] = g[:1]
		}
		t.Errorf("got messages %q, want the newest two [3 4]", short)
	}
}

// TestQueueOversizedMessage: under drop_oldest, a message larger than
// max_queued_bytes on its own can never be queued; it must be dropped
// without evicting the queue.
func TestQueueOversizedMessage(t *testing.T) {
	b := brokertest.Start(t, func(c *config.Config) { c.MQTT.MaxQueuedBytes = 420 })
	sub, _ := qConnect(t, b.Addr, "sub", true, 300)
	sub.subscribe(t, "q/o", 1)
	sub.disconnect(t, b)
	pub, _ := qConnect(t, b.Addr, "pub", true, 0)
	pub.publish(t, "q/o", "a", nil)
	pub.publish(t, "q/o", "b", nil)
	pub.publish(t, "q/o", string(make([]byte, 1000)), nil) // 1067 > 420 bytes
	sub, _ = qConnect(t, b.Addr, "sub", false, 300)
	if got := sub.drain(t, pub, "q/o"); !equal(got, []string{"a", "b"}) {
		t.Errorf("got %d messages %.10q, want [a b]", len(got), got)
	}
}

// qRaw is a bare MQTT 5 client on internal/packet: it acknowledges
// nothing unless told to.
type qRaw struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func qRawConnect(t testing.TB, addr, id string, clean bool, expiry uint32, recvMax uint16) (*qRaw, *packet.Connack) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	r := &qRaw{t: t, nc: nc, br: bufio.NewReader(nc)}
	cp := &packet.Connect{ProtocolVersion: packet.V5, CleanStart: clean, KeepAlive: 60, ClientID: id}
	cp.Properties.SessionExpiry = expiry
	cp.Properties.Set(packet.PropSessionExpiry)
	cp.Properties.ReceiveMaximum = recvMax
	cp.Properties.Set(packet.PropReceiveMaximum)
	r.write(cp)
	p, err := r.read(qWait)
	if err != nil {
		t.Fatalf("raw connect: %v", err)
	}
	ca, ok := p.(*packet.Connack)
	if !ok || ca.ReasonCode != 0 {
		t.Fatalf("raw connect: got %#v", p)
	}
	return r, ca
}

func (r *qRaw) write(p packet.Packet) {
	r.t.Helper()
	b, err := p.Append(nil, packet.V5)
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// read returns the next packet; io.EOF once the server closed.
func (r *qRaw) read(timeout time.Duration) (packet.Packet, error) {
	r.nc.SetReadDeadline(time.Now().Add(timeout))
	fh, err := packet.ReadFixedHeader(r.br)
	if err != nil {
		return nil, err
	}
	body := make([]byte, fh.Remaining)
	if _, err := io.ReadFull(r.br, body); err != nil {
		return nil, err
	}
	return packet.Decode(fh, body, packet.V5)
}

func (r *qRaw) subscribe(filter string, qos byte) {
	r.t.Helper()
	r.write(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: filter, QoS: qos}}})
	p, err := r.read(qWait)
	if sa, ok := p.(*packet.Suback); err != nil || !ok || len(sa.ReasonCodes) != 1 || sa.ReasonCodes[0] != packet.ReasonCode(qos) {
		r.t.Fatalf("raw subscribe: %#v %v", p, err)
	}
}

// TestQueueOverflowDisconnect: with queue_overflow = "disconnect", an
// online subscriber that does not acknowledge (Receive Maximum 1, no
// PUBACK) is sent DISCONNECT 0x97 (quota exceeded) when its queue
// overflows; its session keeps what was in flight and queued.
func TestQueueOverflowDisconnect(t *testing.T) {
	b := brokertest.Start(t, func(c *config.Config) {
		c.MQTT.MaxQueued = 5
		c.MQTT.QueueOverflow = config.OverflowDisconnect
	})
	slow, _ := qRawConnect(t, b.Addr, "slow", true, 300, 1)
	slow.subscribe("q/d", 1)
	pub, _ := qConnect(t, b.Addr, "pub", true, 0)
	// 1 in flight + 5 queued fit; the 7th overflows.
	for i := range 7 {
		pub.publish(t, "q/d", strconv.Itoa(i), nil)
	}
	var got []string
	var disc *packet.Disconnect
	for disc == nil {
		p, err := slow.read(qWait)
		if err != nil {
			t.Fatalf("no DISCONNECT; got publishes %q, then %v", got, err)
		}
		switch p := p.(type) {
		case *packet.Publish:
			got = append(got, string(p.Payload))
		case *packet.Disconnect:
			disc = p
		default:
			t.Fatalf("unexpected %#v", p)
		}
	}
	if disc.ReasonCode != packet.QuotaExceeded {
		t.Errorf("DISCONNECT reason %#x, want 0x97", byte(disc.ReasonCode))
	}
	if !equal(got, []string{"0"}) {
		t.Errorf("before DISCONNECT got %q, want only the first message (Receive Maximum 1)", got)
	}
	if _, err := slow.read(qWait); !errors.Is(err, io.EOF) {
		t.Errorf("connection not closed after DISCONNECT: %v", err)
	}
	// The session kept the in-flight message and the five queued ones.
	sub, ca := qConnect(t, b.Addr, "slow", false, 300)
	if !ca.SessionPresent {
		t.Fatal("session lost after the overflow disconnect")
	}
	if got := sub.drain(t, pub, "q/d"); !equal(got, payloads(0, 6)) {
		t.Errorf("after reconnect got %q, want %q", got, payloads(0, 6))
	}
}

// TestSessionExpiry: an offline session with expiry 1 s ends once it has
// expired: its subscriptions are gone and a resume finds no session.
// Also when the broker was stopped while the session was offline and
// restarts after its expiry.
func TestSessionExpiry(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			dir := t.TempDir()
			opt := func(c *config.Config) { c.DataDir = dir }
			b := brokertest.Start(t, opt)
			c, _ := qConnect(t, b.Addr, "exp", true, 1)
			c.subscribe(t, "e/t", 1)
			c.disconnect(t, b)
			gone := time.Now()
			if restart {
				b.Stop()
				time.Sleep(1100 * time.Millisecond)
				b = brokertest.Start(t, opt)
			}
			pub, _ := qConnect(t, b.Addr, "pub", true, 0)
			// Poll without touching the session: PUBACK says 0x10 (no
			// matching subscribers) once its subscription is gone.
			deadline := time.Now().Add(5 * time.Second)
			for pub.publish(t, "e/t", "x", nil) != byte(packet.NoMatchingSubscribers) {
				if time.Now().After(deadline) {
					t.Fatal("session did not expire within 5s")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if el := time.Since(gone); el < 900*time.Millisecond {
				t.Errorf("session expired after %v, before its 1s expiry", el)
			}
			_, ca := qConnect(t, b.Addr, "exp", false, 1)
			if ca.SessionPresent {
				t.Error("expired session still present")
			}
		})
	}
}

// TestSessionNotExpiredEarly: a session with a longer expiry survives
// the same wait, so the test above measures expiry, not loss.
func TestSessionNotExpiredEarly(t *testing.T) {
	b := brokertest.Start(t)
	c, _ := qConnect(t, b.Addr, "keep", true, 60)
	c.subscribe(t, "k/t", 1)
	c.disconnect(t, b)
	pub, _ := qConnect(t, b.Addr, "pub", true, 0)
	if rc := pub.publish(t, "k/t", "x", nil); rc != 0 {
		t.Fatalf("PUBACK reason %#x for an offline subscriber", rc)
	}
	_, ca := qConnect(t, b.Addr, "keep", false, 60)
	if !ca.SessionPresent {
		t.Error("session with expiry 60s not present")
	}
}

// TestQueuedMessageExpiry: a message queued for an offline session is not
// delivered once its message expiry has passed; one without expiry is,
// and one with time left is delivered with the remaining interval.
func TestQueuedMessageExpiry(t *testing.T) {
	b := brokertest.Start(t)
	sub, _ := qConnect(t, b.Addr, "sub", true, 300)
	sub.subscribe(t, "m/t", 1)
	sub.disconnect(t, b)
	pub, _ := qConnect(t, b.Addr, "pub", true, 0)
	one, hour := uint32(1), uint32(3600)
	pub.publish(t, "m/t", "short", &one)
	acked := time.Now() // the broker stamped the message before this
	pub.publish(t, "m/t", "forever", nil)
	pub.publish(t, "m/t", "hour", &hour)
	time.Sleep(time.Until(acked.Add(1050 * time.Millisecond)))
	sub, _ = qConnect(t, b.Addr, "sub", false, 300)
	deadline := time.After(qWait)
	var got []string
	for len(got) < 2 {
		select {
		case p := <-sub.msgs:
			got = append(got, string(p.Payload))
			if string(p.Payload) == "hour" {
				if p.Properties == nil || p.Properties.MessageExpiry == nil {
					t.Error("message expiry not forwarded")
				} else if e := *p.Properties.MessageExpiry; e > 3600 || e < 3590 {
					t.Errorf("remaining message expiry %d, want about 3599", e)
				}
			}
		case <-deadline:
			t.Fatalf("got %q", got)
		}
	}
	if !equal(got, []string{"forever", "hour"}) {
		t.Errorf("got %q, want [forever hour] (the expired message is skipped)", got)
	}
}

// TestSysDropped: $SYS/broker/messages/dropped counts the messages dropped
// by a full queue.
func TestSysDropped(t *testing.T) {
	b := brokertest.Start(t, func(c *config.Config) {
		c.Sys.Interval = config.Duration{Duration: time.Second}
		c.MQTT.MaxQueued = 2
		c.MQTT.QueueOverflow = config.OverflowDropOldest
	})
	sub, _ := qConnect(t, b.Addr, "sub", true, 300)
	sub.subscribe(t, "s/t", 1)
	sub.disconnect(t, b)
	mon, _ := qConnect(t, b.Addr, "mon", true, 0)
	mon.subscribe(t, "$SYS/broker/messages/dropped", 0)
	pub, _ := qConnect(t, b.Addr, "pub", true, 0)
	for i := range 5 {
		pub.publish(t, "s/t", strconv.Itoa(i), nil)
	}
	// 5 into a queue of 2: 3 dropped.
	deadline := time.After(5 * time.Second)
	var seen []string
	for {
		select {
		case p := <-mon.msgs:
			v := string(p.Payload)
			seen = append(seen, v)
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("dropped = %q", v)
			}
			if n > 3 {
				t.Fatalf("dropped counter went to %d, want 3; values %q", n, seen)
			}
			if n == 3 {
				return
			}
		case <-deadline:
			t.Fatalf("dropped counter never reached 3; values %q", seen)
		}
	}
}
