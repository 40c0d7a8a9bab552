package integration

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// Raw, hand-built packets that break the rules. For each, the broker must
// answer as the MQTT specification says (a CONNACK / DISCONNECT / PUBCOMP
// with the given reason code, or nothing), close the connection when the
// specification says so, and keep serving everybody else.

// malformedMaxPacket is the broker's maximum packet size in this test.
const malformedMaxPacket = 1024

// wantPacket is the one packet the broker must send before closing.
type wantPacket struct {
	typ    byte // 2 CONNACK, 7 PUBCOMP, 14 DISCONNECT
	reason byte
	// v311 marks a 3.1.1-format CONNACK (remaining length 2).
	v311 bool
}

func (w wantPacket) String() string {
	name := map[byte]string{2: "CONNACK", 7: "PUBCOMP", 14: "DISCONNECT"}[w.typ]
	return fmt.Sprintf("%s 0x%02x", name, w.reason)
}

// matches reports whether p is the wanted packet.
func (w wantPacket) matches(p rawPacket) bool {
	if p.typ() != w.typ {
		return false
	}
	switch w.typ {
	case 2: // flags, reason code[, properties]
		if w.v311 != (len(p.body) == 2) || len(p.body) < 2 {
			return false
		}
		return p.body[1] == w.reason
	case 7, 14: // PUBCOMP: packet id, reason; DISCONNECT: reason
		i := 0
		if w.typ == 7 {
			i = 2
		}
		reason := byte(0) // omitted reason code means success
		if len(p.body) > i {
			reason = p.body[i]
		}
		return reason == w.reason
	}
	return false
}

type malformedCase struct {
	name string
	// connect is the protocol level of the valid CONNECT sent first (4 or
	// 5), or 0 to send the bad bytes on a fresh connection.
	connect byte
	// bad returns the bytes to send, given what the CONNACK granted.
	bad func(t *testing.T, ci connackInfo) []byte
	// want is the packet the broker must send before closing; nil means
	// it must close without sending anything.
	want *wantPacket
	// stays means the connection must stay open after want.
	stays bool
	// mosquitto is what mosquitto 2.0 sends where it differs from want.
	mosquitto *wantPacket
	// mosquittoSkip, when set, skips the case in mosquitto mode.
	mosquittoSkip string
}

// accepts reports whether p is what the broker under test may send.
func (tc malformedCase) accepts(p rawPacket) bool {
	if tc.want != nil && tc.want.matches(p) {
		return true
	}
	return mosquittoMode() && tc.mosquitto != nil && tc.mosquitto.matches(p)
}

func TestMalformed(t *testing.T) {
	t.Parallel()
	b := startBroker(t, withMaxPacketSize(malformedMaxPacket))

	disconnect := func(reason byte) *wantPacket { return &wantPacket{typ: 14, reason: reason} }
	publish0 := func(topic []byte, propBlock []byte, payload string) []byte {
		return pkt(0x30, u16b(uint16(len(topic))), topic, propBlock, []byte(payload))
	}
	validSubscribeBody := cat(u16b(1), props(), mstr("a/b"), []byte{0x01})

	cases := []malformedCase{
		{
			name:    "remaining_length_5_bytes",
			connect: 5,
			bad:     func(*testing.T, connackInfo) []byte { return []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01} },
			want:    disconnect(0x81),
		},
		{
			name:    "remaining_length_5_bytes_v311",
			connect: 4,
			bad:     func(*testing.T, connackInfo) []byte { return []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01} },
		},
		{
			name:    "subscribe_reserved_flags_0",
			connect: 5,
			bad:     func(*testing.T, connackInfo) []byte { return pkt(0x80, validSubscribeBody) },
			want:    disconnect(0x81),
		},
		{
			name:    "subscribe_reserved_flags_0_v311",
			connect: 4,
			bad: func(*testing.T, connackInfo) []byte {
				return pkt(0x80, u16b(1), mstr("a/b"), []byte{0x01})
			},
		},
		{
			name:    "publish_topic_invalid_utf8",
			connect: 5,
			bad: func(*testing.T, connackInfo) []byte {
				return publish0([]byte{'a', '/', 0xc3, 0x28}, props(), "x")
			},
			want: disconnect(0x81),
		},
		{
			name:    "publish_topic_utf16_surrogate",
			connect: 5,
			bad: func(*testing.T, connackInfo) []byte {
				return publish0([]byte{'a', 0xed, 0xa0, 0x80}, props(), "x") // U+D800
			},
			want: disconnect(0x81),
		},
		{
			name:    "publish_topic_nul",
			connect: 5,
			bad: func(*testing.T, connackInfo) []byte {
				return publish0([]byte("a\x00b"), props(), "x")
			},
			want: disconnect(0x81),
		},
		{
			name:    "publish_topic_wildcard",
			connect: 5,
			bad: func(*testing.T, connackInfo) []byte {
				return publish0([]byte("a/+/c"), props(), "x")
			},
			want:      disconnect(0x90),
			mosquitto: disconnect(0x82),
		},
		{
			name:    "publish_topic_wildcard_v311",
			connect: 4,
			bad: func(*testing.T, connackInfo) []byte {
				return pkt(0x30, mstr("a/#"), []byte("x"))
			},
		},
		{
			name:    "packet_too_large",
			connect: 5,
			bad: func(t *testing.T, ci connackInfo) []byte {
				if ci.maxPacketSize != malformedMaxPacket {
					t.Errorf("CONNACK Maximum Packet Size %d, want the configured %d", ci.maxPacketSize, malformedMaxPacket)
				}
				return publish0([]byte("big"), props(), strings.Repeat("x", 2*malformedMaxPacket))
			},
			want: disconnect(0x95),
		},
		{
			name:    "second_connect",
			connect: 5,
			bad:     func(*testing.T, connackInfo) []byte { return rawConnectV5(uniqueID("again")) },
			want:    disconnect(0x82),
		},
		{
			name:    "second_connect_v311",
			connect: 4,
			bad:     func(*testing.T, connackInfo) []byte { return rawConnectV311(uniqueID("again")) },
		},
		{
			name: "publish_before_connect",
			bad:  func(*testing.T, connackInfo) []byte { return pkt(0x30, mstr("a/b"), []byte("x")) },
		},
		{
			name: "subscribe_before_connect",
			bad:  func(*testing.T, connackInfo) []byte { return pkt(0x82, validSubscribeBody) },
		},
		{
			name:    "publish_qos_3",
			connect: 5,
			bad:     func(*testing.T, connackInfo) []byte { return pkt(0x36, mstr("a/b"), u16b(1), props(), []byte("x")) },
			want:    disconnect(0x81),
		},
		{
			name:    "publish_duplicate_property",
			connect: 5,
			bad: func(*testing.T, connackInfo) []byte {
				return publish0([]byte("a/b"), props([]byte{propPayloadFormat, 1}, []byte{propPayloadFormat, 1}), "x")
			},
			want: disconnect(0x82),
		},
		{
			name:    "topic_alias_0",
			connect: 5,
			bad: func(*testing.T, connackInfo) []byte {
				return publish0([]byte("a/b"), props(cat([]byte{propTopicAlias}, u16b(0))), "x")
			},
			want:      disconnect(0x94),
			mosquitto: disconnect(0x81),
		},
		{
			name:    "topic_alias_above_maximum",
			connect: 5,
			bad: func(_ *testing.T, ci connackInfo) []byte {
				return publish0([]byte("a/b"), props(cat([]byte{propTopicAlias}, u16b(uint16(ci.topicAliasMaximum+1)))), "x")
			},
			want: disconnect(0x94),
		},
		{
			name:    "topic_alias_unknown_without_topic",
			connect: 5,
			bad: func(*testing.T, connackInfo) []byte {
				return publish0(nil, props(cat([]byte{propTopicAlias}, u16b(1))), "x")
			},
			// An empty topic with an alias never set is a Protocol Error.
			want: disconnect(0x82),
		},
		{
			name:    "packet_type_0",
			connect: 5,
			bad:     func(*testing.T, connackInfo) []byte { return []byte{0x00, 0x00} },
			// A reserved packet type cannot be parsed: Malformed Packet.
			want:      disconnect(0x81),
			mosquitto: disconnect(0x82),
		},
		{
			name:    "auth_in_v311",
			connect: 4,
			bad:     func(*testing.T, connackInfo) []byte { return []byte{0xf0, 0x00} },
		},
		{
			name: "connect_protocol_level_6",
			bad: func(*testing.T, connackInfo) []byte {
				return rawConnectLevel("MQTT", 6, uniqueID("lvl6"), props())
			},
			want:      &wantPacket{typ: 2, reason: 0x84},
			mosquitto: &wantPacket{typ: 2, reason: 0x01, v311: true},
		},
		{
			name: "connect_protocol_level_2_v311_style",
			bad: func(*testing.T, connackInfo) []byte {
				return rawConnectLevel("MQTT", 2, uniqueID("lvl2"), nil)
			},
			want: &wantPacket{typ: 2, reason: 0x01, v311: true},
		},
		{
			name:    "pubrel_unknown_packet_id",
			connect: 5,
			bad:     func(*testing.T, connackInfo) []byte { return pkt(0x62, u16b(4711)) },
			want:    &wantPacket{typ: 7, reason: 0x92},
			stays:   true,
			// mosquitto answers PUBCOMP 0x00 (Success).
			mosquitto: &wantPacket{typ: 7, reason: 0x00},
		},
		{
			name:    "receive_maximum_exceeded",
			connect: 5,
			bad: func(t *testing.T, ci connackInfo) []byte {
				if ci.receiveMaximum >= 65535 {
					t.Skipf("broker Receive Maximum %d cannot be exceeded with distinct packet ids", ci.receiveMaximum)
				}
				// QoS 2 PUBLISHes never released stay in flight.
				var out []byte
				for id := 1; id <= ci.receiveMaximum+1; id++ {
					out = append(out, pkt(0x34, mstr("rm/x"), u16b(uint16(id)), props(), []byte("x"))...)
				}
				return out
			},
			want:          disconnect(0x93),
			mosquittoSkip: "mosquitto 2.0.11 advertises Receive Maximum 20 but does not enforce it",
		},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.mosquittoSkip != "" {
				skipOnMosquitto(t, tc.mosquittoSkip)
			}
			runMalformed(t, b, tc)
			assertServing(t, b)
		})
	}
}

func runMalformed(t *testing.T, b *testBroker, tc malformedCase) {
	t.Helper()
	var (
		rc *rawClient
		ci connackInfo
	)
	switch tc.connect {
	case 5:
		rc, ci = connectRawV5(t, b, uniqueID("bad"))
	case 4:
		rc = connectRawV311(t, b, uniqueID("bad"))
	default:
		rc = dialRaw(t, b)
	}
	data := tc.bad(t, ci)
	// Write concurrently with reading: the broker may answer (or close)
	// before it has read everything, and may block on a full socket.
	writeErr := make(chan error, 1)
	go func() { writeErr <- rc.write(data) }()

	var got []rawPacket
	var readErr error
	for {
		p, err := rc.read(waitTimeout)
		if err != nil {
			readErr = err
			break
		}
		if t := p.typ(); t == 4 || t == 5 {
			continue // PUBACK / PUBREC for our own publishes
		}
		got = append(got, p)
		if tc.stays && tc.accepts(p) {
			break
		}
	}

	if tc.stays {
		if readErr != nil {
			t.Fatalf("want %v and the connection kept; got %v then %v", tc.want, got, readErr)
		}
		if len(got) != 1 {
			t.Fatalf("want only %v, got %v", tc.want, got)
		}
		rc.mustWrite([]byte{0xc0, 0x00}) // PINGREQ
		rc.mustRead(13)                  // PINGRESP
		return
	}

	if !errors.Is(readErr, errClosed) {
		t.Fatalf("connection not closed by the broker: got %v, then %v", got, readErr)
	}
	if err := <-writeErr; err != nil && len(data) < 64<<10 {
		// A small write fails only if the broker closed before reading.
		t.Logf("write: %v", err)
	}

	switch {
	case len(got) == 0 && tc.want == nil:
	case len(got) == 0 && mosquittoMode():
		// mosquitto often closes without a DISCONNECT.
		t.Logf("mosquitto closed without sending %v", tc.want)
	case len(got) == 0:
		t.Fatalf("broker closed without sending %v", tc.want)
	case len(got) > 1:
		t.Fatalf("broker sent %v, want at most one packet (%v)", got, tc.want)
	case tc.want == nil:
		t.Fatalf("broker sent %v, want a close without any packet", got[0])
	case tc.want.matches(got[0]):
	case mosquittoMode() && tc.mosquitto != nil && tc.mosquitto.matches(got[0]):
		t.Logf("mosquitto sent %v where moat must send %v", tc.mosquitto, tc.want)
	default:
		t.Fatalf("broker sent %v, want %v", got[0], tc.want)
	}
}

// The broker must not trip over a packet split into single bytes.
func TestFragmentedPackets(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	topic := uniqueTopic("frag")
	sub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("sub"), CleanStart: true})
	sub.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})

	rc := dialRaw(t, b)
	stream := cat(
		rawConnectV5(uniqueID("frag")),
		pkt(0x32, mstr(topic), u16b(9), props(), []byte("in pieces")),
	)
	for i := range stream {
		rc.mustWrite(stream[i : i+1])
	}
	if ci := parseConnackV5(t, rc.mustRead(2)); ci.reason != 0 {
		t.Fatalf("CONNACK 0x%02x", ci.reason)
	}
	ack := rc.mustRead(4)
	if !bytes.HasPrefix(ack.body, u16b(9)) {
		t.Fatalf("PUBACK for %x, want packet id 9", ack.body)
	}
	sub.recvPayload(topic, "in pieces")
}
