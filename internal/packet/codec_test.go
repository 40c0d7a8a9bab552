package packet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

var utf8Valid = utf8.Valid

var versions = []byte{V31, V311, V5}

// samplePackets returns packets of every type valid in version, with
// every property in MQTT 5.
func samplePackets(v byte) []Packet {
	v5 := v == V5
	P := func(p Properties, ids ...byte) Properties {
		if !v5 {
			return Properties{}
		}
		return pr(p, ids...)
	}
	name := "MQTT"
	if v == V31 {
		name = "MQIsdp"
	}
	user := []UserProperty{{"k", "v"}, {"k", "v2"}, {"", ""}, {"ключ", "値"}}
	code := func(c5 ReasonCode, c3 byte) ReasonCode {
		if v5 {
			return c5
		}
		return ReasonCode(c3)
	}
	list := []Packet{
		&Connect{ProtocolName: name, ProtocolVersion: v, CleanStart: true, KeepAlive: 60, ClientID: "client-1"},
		&Connect{
			ProtocolName: name, ProtocolVersion: v, KeepAlive: 65535, ClientID: "dev/ü",
			Properties: P(Properties{SessionExpiry: 0xFFFFFFFF, AuthMethod: "SCRAM-SHA-256",
				AuthData: []byte{0, 1, 2}, RequestProblemInfo: 0, RequestResponseInfo: 1,
				ReceiveMaximum: 1, TopicAliasMaximum: 0, User: user, MaximumPacketSize: 1},
				PropSessionExpiry, PropAuthMethod, PropAuthData, PropRequestProblemInfo,
				PropRequestResponseInfo, PropReceiveMaximum, PropTopicAliasMaximum, PropMaximumPacketSize),
			WillFlag: true, WillQoS: 1, WillRetain: true,
			WillProperties: P(Properties{PayloadFormat: 1, MessageExpiry: 10, ContentType: "text/plain",
				ResponseTopic: "reply/here", CorrelationData: []byte("corr"), WillDelay: 30, User: user[:1]},
				PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic,
				PropCorrelationData, PropWillDelay),
			WillTopic: "last/will", WillPayload: []byte("gone\x00binary"),
			UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("s3cret\x00"),
		},
		&Connect{ProtocolName: name, ProtocolVersion: v, CleanStart: true, UsernameFlag: true,
			PasswordFlag: true, WillFlag: true, WillQoS: 2, WillTopic: "w"},
		&Connack{SessionPresent: true},
		&Connack{ReasonCode: code(NotAuthorized, V3NotAuthorized)},
		&Connack{ReasonCode: code(Success, V3Accepted), Properties: P(Properties{
			SessionExpiry: 7, AssignedClientID: "auto-1", ServerKeepAlive: 30, AuthMethod: "m",
			AuthData: []byte{9}, ResponseInfo: "resp/", ServerReference: "other:1883",
			ReasonString: "", ReceiveMaximum: 65535, TopicAliasMaximum: 10, MaximumQoS: 1,
			RetainAvailable: 0, User: user, MaximumPacketSize: 268435460,
			WildcardSubAvailable: 1, SubIDAvailable: 0, SharedSubAvailable: 1},
			PropSessionExpiry, PropAssignedClientID, PropServerKeepAlive, PropAuthMethod,
			PropAuthData, PropResponseInfo, PropServerReference, PropReasonString,
			PropReceiveMaximum, PropTopicAliasMaximum, PropMaximumQoS, PropRetainAvailable,
			PropMaximumPacketSize, PropWildcardSubAvailable, PropSubIDAvailable, PropSharedSubAvailable)},
		&Publish{Topic: "a/b", Payload: []byte("hello")},
		&Publish{Dup: true, QoS: 1, Retain: true, Topic: "sensors/x", PacketID: 1,
			Properties: P(Properties{PayloadFormat: 0, MessageExpiry: 0, ContentType: "",
				ResponseTopic: "r", CorrelationData: nil, SubscriptionIDs: []uint32{1, 127, 128, MaxVarInt},
				TopicAlias: 65535, User: user},
				PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic,
				PropCorrelationData, PropTopicAlias),
			Payload: bytes.Repeat([]byte{0xFF}, 300)},
		&Publish{QoS: 2, PacketID: 65535, Topic: "$SYS/x"},
		&Ack{PacketType: PUBACK, PacketID: 1},
		&Ack{PacketType: PUBREC, PacketID: 2},
		&Ack{PacketType: PUBREL, PacketID: 3},
		&Ack{PacketType: PUBCOMP, PacketID: 4},
		&Subscribe{PacketID: 7, Subscriptions: []Subscription{{Filter: "a/+/c", QoS: 1},
			{Filter: "#", QoS: 2}, {Filter: "$share/g/x/#"}, {Filter: "not/valid#"}}},
		&Suback{PacketID: 7, ReasonCodes: []ReasonCode{0, 1, 2, 0x80}},
		&Unsubscribe{PacketID: 8, Filters: []string{"a/b", "c/#", ""}},
		&Unsuback{PacketID: 8, ReasonCodes: func() []ReasonCode {
			if v5 {
				return []ReasonCode{Success, NoSubscriptionExisted, TopicFilterInvalid}
			}
			return nil
		}()},
		&Pingreq{},
		&Pingresp{},
		&Disconnect{},
	}
	if !v5 {
		return list
	}
	return append(list,
		&Publish{Topic: "", Properties: pr(Properties{TopicAlias: 3}, PropTopicAlias), Payload: []byte{0}},
		&Ack{PacketType: PUBACK, PacketID: 5, ReasonCode: NoMatchingSubscribers},
		&Ack{PacketType: PUBREC, PacketID: 6, ReasonCode: QuotaExceeded,
			Properties: pr(Properties{ReasonString: "full", User: user}, PropReasonString)},
		&Ack{PacketType: PUBREL, PacketID: 7, ReasonCode: PacketIdentifierNotFound},
		&Ack{PacketType: PUBCOMP, PacketID: 8, Properties: pr(Properties{User: user[:1]})},
		&Ack{PacketType: PUBACK, PacketID: 9, Properties: pr(Properties{ReasonString: "ok"}, PropReasonString)},
		&Subscribe{PacketID: 9, Properties: pr(Properties{SubscriptionIDs: []uint32{42}, User: user}),
			Subscriptions: []Subscription{
				{Filter: "a/#", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
				{Filter: "$share/grp/b", QoS: 2, RetainHandling: 1},
			}},
		&Suback{PacketID: 9, Properties: pr(Properties{ReasonString: "partly", User: user}, PropReasonString),
			ReasonCodes: []ReasonCode{GrantedQoS1, TopicFilterInvalid, SharedSubscriptionsNotSupported,
				SubscriptionIdentifiersNotSupported, WildcardSubscriptionsNotSupported, QuotaExceeded}},
		&Unsubscribe{PacketID: 10, Properties: pr(Properties{User: user}), Filters: []string{"x"}},
		&Unsuback{PacketID: 10, Properties: pr(Properties{ReasonString: "r"}, PropReasonString),
			ReasonCodes: []ReasonCode{NotAuthorized}},
		&Disconnect{ReasonCode: DisconnectWithWill},
		&Disconnect{ReasonCode: ServerMoved, Properties: pr(Properties{SessionExpiry: 0,
			ServerReference: "b:1883", ReasonString: "moved", User: user},
			PropSessionExpiry, PropServerReference, PropReasonString)},
		&Auth{},
		&Auth{ReasonCode: ReAuthenticate},
		&Auth{ReasonCode: ContinueAuthentication, Properties: pr(Properties{AuthMethod: "SCRAM",
			AuthData: []byte("challenge"), ReasonString: "more", User: user},
			PropAuthMethod, PropAuthData, PropReasonString)},
	)
}

func TestRoundTrip(t *testing.T) {
	for _, v := range versions {
		for i, p := range samplePackets(v) {
			t.Run(fmt.Sprintf("v%d/%d/%s", v, i, p.Type()), func(t *testing.T) {
				b, err := Encode(p, v)
				if err != nil {
					t.Fatalf("Encode: %v", err)
				}
				if Type(b[0]>>4) != p.Type() {
					t.Fatalf("type nibble %d, want %s", b[0]>>4, p.Type())
				}
				got, err := decodeAll(t, b, v)
				if err != nil {
					t.Fatalf("Decode(% x): %v", b, err)
				}
				if !deepEqual(got, p) {
					t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, p)
				}
				// Append after a prefix writes the same bytes.
				prefix := []byte("prefix")
				b2, err := p.Append(prefix, v)
				if err != nil || !bytes.Equal(b2[:len(prefix)], prefix) || !bytes.Equal(b2[len(prefix):], b) {
					t.Fatalf("Append after prefix: %v % x", err, b2)
				}
				// ReadFixedHeader agrees with ParseFixedHeader.
				fh1, n, _ := ParseFixedHeader(b)
				r := bytes.NewReader(b)
				fh2, err := ReadFixedHeader(r)
				if err != nil || fh1 != fh2 || r.Len() != len(b)-n {
					t.Fatalf("ReadFixedHeader = %+v, %v; Parse = %+v", fh2, err, fh1)
				}
			})
		}
	}
}

// TestEveryPropertyCovered makes sure the MQTT 5 round trip exercises every
// property identifier.
func TestEveryPropertyCovered(t *testing.T) {
	var seen uint64
	for _, p := range samplePackets(V5) {
		switch p := p.(type) {
		case *Connect:
			seen |= p.Properties.Present | p.WillProperties.Present
		case *Connack:
			seen |= p.Properties.Present
		case *Publish:
			seen |= p.Properties.Present
		case *Ack:
			seen |= p.Properties.Present
		case *Subscribe:
			seen |= p.Properties.Present
		case *Suback:
			seen |= p.Properties.Present
		case *Unsubscribe:
			seen |= p.Properties.Present
		case *Unsuback:
			seen |= p.Properties.Present
		case *Disconnect:
			seen |= p.Properties.Present
		case *Auth:
			seen |= p.Properties.Present
		}
	}
	if seen != knownProps {
		t.Fatalf("properties not covered: %#x", knownProps&^seen)
	}
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name    string
		version byte
		wire    []byte
		p       Packet
		decOnly bool // wire is a valid but non-minimal form: decode only
	}{
		{"CONNECT 3.1.1 (spec 3.1.2.10 flags and keep alive)", V311,
			cat(0x10, 0x1C, 0, 4, "MQTT", 4, 0xCE, 0, 10, 0, 2, "c1", 0, 1, "w", 0, 3, "bye", 0, 1, "u", 0, 1, "p"),
			&Connect{ProtocolName: "MQTT", ProtocolVersion: 4, CleanStart: true, KeepAlive: 10, ClientID: "c1",
				WillFlag: true, WillQoS: 1, WillTopic: "w", WillPayload: []byte("bye"),
				UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("p")}, false},
		{"CONNECT 5.0 (spec 3.1.2.11 example: session expiry 10)", V5,
			cat(0x10, 0x18, 0, 4, "MQTT", 5, 0xC2, 0, 10, 5, 0x11, 0, 0, 0, 10, 0, 0, 0, 1, "u", 0, 1, "p"),
			&Connect{ProtocolName: "MQTT", ProtocolVersion: 5, CleanStart: true, KeepAlive: 10,
				Properties:   pr(Properties{SessionExpiry: 10}, PropSessionExpiry),
				UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("p")}, false},
		{"CONNECT 3.1", V31,
			cat(0x10, 0x12, 0, 6, "MQIsdp", 3, 0x02, 0, 60, 0, 4, "abcd"),
			&Connect{ProtocolName: "MQIsdp", ProtocolVersion: 3, CleanStart: true, KeepAlive: 60, ClientID: "abcd"}, false},
		{"CONNACK 3.1.1 session present", V311, cat(0x20, 2, 1, 0), &Connack{SessionPresent: true}, false},
		{"CONNACK 3.1.1 refused", V311, cat(0x20, 2, 0, 5), &Connack{ReasonCode: 5}, false},
		{"CONNACK 5.0", V5, cat(0x20, 3, 0, 0, 0), &Connack{}, false},
		{"CONNACK 5.0 props", V5, cat(0x20, 7, 0, 0, 4, 0x24, 1, 0x25, 0),
			&Connack{Properties: pr(Properties{MaximumQoS: 1}, PropMaximumQoS, PropRetainAvailable)}, false},
		{"PUBLISH 3.1.1 QoS 1 (spec 3.3.2.3 example)", V311, cat(0x32, 9, 0, 3, "a/b", 0, 10, "hi"),
			&Publish{QoS: 1, Topic: "a/b", PacketID: 10, Payload: []byte("hi")}, false},
		{"PUBLISH 5.0 retain, payload format, alias", V5,
			cat(0x31, 12, 0, 3, "a/b", 5, 0x01, 1, 0x23, 0, 5, "x"),
			&Publish{Retain: true, Topic: "a/b", Properties: pr(Properties{PayloadFormat: 1, TopicAlias: 5},
				PropPayloadFormat, PropTopicAlias), Payload: []byte("x")}, false},
		{"PUBACK 3.1.1", V311, cat(0x40, 2, 0, 10), &Ack{PacketType: PUBACK, PacketID: 10}, false},
		{"PUBACK 5.0 success short", V5, cat(0x40, 2, 0, 10), &Ack{PacketType: PUBACK, PacketID: 10}, false},
		{"PUBACK 5.0 success long form", V5, cat(0x40, 4, 0, 10, 0, 0), &Ack{PacketType: PUBACK, PacketID: 10}, true},
		{"PUBACK 5.0 code", V5, cat(0x40, 3, 0, 10, 0x10), &Ack{PacketType: PUBACK, PacketID: 10, ReasonCode: 0x10}, false},
		{"PUBACK 5.0 reason string", V5, cat(0x40, 9, 0, 10, 0x10, 5, 0x1F, 0, 2, "no"),
			&Ack{PacketType: PUBACK, PacketID: 10, ReasonCode: 0x10,
				Properties: pr(Properties{ReasonString: "no"}, PropReasonString)}, false},
		{"PUBREC 3.1.1", V311, cat(0x50, 2, 0x12, 0x34), &Ack{PacketType: PUBREC, PacketID: 0x1234}, false},
		{"PUBREL 3.1.1", V311, cat(0x62, 2, 0, 10), &Ack{PacketType: PUBREL, PacketID: 10}, false},
		{"PUBCOMP 3.1.1", V311, cat(0x70, 2, 0, 10), &Ack{PacketType: PUBCOMP, PacketID: 10}, false},
		{"SUBSCRIBE 3.1.1 (spec 3.8.3 example)", V311, cat(0x82, 14, 0, 10, 0, 3, "a/b", 1, 0, 3, "c/d", 2),
			&Subscribe{PacketID: 10, Subscriptions: []Subscription{{Filter: "a/b", QoS: 1}, {Filter: "c/d", QoS: 2}}}, false},
		{"SUBSCRIBE 5.0 options and subscription id", V5, cat(0x82, 11, 0, 1, 2, 0x0B, 7, 0, 3, "a/#", 0x2D),
			&Subscribe{PacketID: 1, Properties: pr(Properties{SubscriptionIDs: []uint32{7}}),
				Subscriptions: []Subscription{{Filter: "a/#", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2}}}, false},
		{"SUBSCRIBE 3.1 with DUP", V31, cat(0x8A, 6, 0, 1, 0, 1, "a", 0),
			&Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a"}}}, true},
		{"SUBACK 3.1.1 (spec 3.9.3 example)", V311, cat(0x90, 5, 0, 10, 0, 2, 0x80),
			&Suback{PacketID: 10, ReasonCodes: []ReasonCode{0, 2, 0x80}}, false},
		{"SUBACK 5.0", V5, cat(0x90, 5, 0, 10, 0, 1, 0x8F),
			&Suback{PacketID: 10, ReasonCodes: []ReasonCode{1, 0x8F}}, false},
		{"UNSUBSCRIBE 3.1.1 (spec 3.10.3 example)", V311, cat(0xA2, 12, 0, 10, 0, 3, "a/b", 0, 3, "c/d"),
			&Unsubscribe{PacketID: 10, Filters: []string{"a/b", "c/d"}}, false},
		{"UNSUBACK 3.1.1", V311, cat(0xB0, 2, 0, 10), &Unsuback{PacketID: 10}, false},
		{"UNSUBACK 5.0", V5, cat(0xB0, 4, 0, 10, 0, 0x11),
			&Unsuback{PacketID: 10, ReasonCodes: []ReasonCode{0x11}}, false},
		{"PINGREQ", V311, cat(0xC0, 0), &Pingreq{}, false},
		{"PINGRESP", V5, cat(0xD0, 0), &Pingresp{}, false},
		{"DISCONNECT 3.1.1", V311, cat(0xE0, 0), &Disconnect{}, false},
		{"DISCONNECT 5.0 normal", V5, cat(0xE0, 0), &Disconnect{}, false},
		{"DISCONNECT 5.0 session taken over", V5, cat(0xE0, 1, 0x8E), &Disconnect{ReasonCode: SessionTakenOver}, false},
		{"DISCONNECT 5.0 with props", V5, cat(0xE0, 7, 0x04, 5, 0x11, 0, 0, 0, 0),
			&Disconnect{ReasonCode: DisconnectWithWill, Properties: pr(Properties{}, PropSessionExpiry)}, false},
		{"AUTH 5.0 empty", V5, cat(0xF0, 0), &Auth{}, false},
		{"AUTH 5.0 continue", V5, cat(0xF0, 6, 0x18, 4, 0x15, 0, 1, "m"),
			&Auth{ReasonCode: ContinueAuthentication, Properties: pr(Properties{AuthMethod: "m"}, PropAuthMethod)}, false},
		{"AUTH 5.0 code only", V5, cat(0xF0, 1, 0x19), &Auth{ReasonCode: ReAuthenticate}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeAll(t, tt.wire, tt.version)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !deepEqual(got, tt.p) {
				t.Fatalf("decoded\n %+v\nwant\n %+v", got, tt.p)
			}
			if tt.decOnly {
				return
			}
			b, err := Encode(tt.p, tt.version)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(b, tt.wire) {
				t.Fatalf("encoded\n % x\nwant\n % x", b, tt.wire)
			}
		})
	}
}

func TestVarInt(t *testing.T) {
	// The boundaries of MQTT 5.0 table 1-1 / 3.1.1 table 2.4.
	tests := []struct {
		v    int
		wire []byte
	}{
		{0, []byte{0x00}},
		{127, []byte{0x7F}},
		{128, []byte{0x80, 0x01}},
		{16383, []byte{0xFF, 0x7F}},
		{16384, []byte{0x80, 0x80, 0x01}},
		{2097151, []byte{0xFF, 0xFF, 0x7F}},
		{2097152, []byte{0x80, 0x80, 0x80, 0x01}},
		{268435455, []byte{0xFF, 0xFF, 0xFF, 0x7F}},
		{321, []byte{0xC1, 0x02}},
	}
	for _, tt := range tests {
		if got := AppendVarInt(nil, tt.v); !bytes.Equal(got, tt.wire) {
			t.Errorf("AppendVarInt(%d) = % x, want % x", tt.v, got, tt.wire)
		}
		if n := VarIntSize(tt.v); n != len(tt.wire) {
			t.Errorf("VarIntSize(%d) = %d", tt.v, n)
		}
		v, n, err := ParseVarInt(append(tt.wire, 0xAA))
		if err != nil || v != tt.v || n != len(tt.wire) {
			t.Errorf("ParseVarInt(% x) = %d, %d, %v", tt.wire, v, n, err)
		}
		if _, _, err := ParseVarInt(tt.wire[:len(tt.wire)-1]); err != ErrShort {
			t.Errorf("ParseVarInt(truncated % x) err = %v, want ErrShort", tt.wire, err)
		}
	}
	bad := [][]byte{
		{0xFF, 0xFF, 0xFF, 0xFF, 0x7F}, // 5 bytes
		{0x80, 0x80, 0x80, 0x80},       // 4 continuation bytes
		{0x80, 0x00},                   // non-minimal 0
		{0xFF, 0x80, 0x00},             // non-minimal 127
		{0x80, 0x80, 0x80, 0x00},
	}
	for _, b := range bad {
		if _, _, err := ParseVarInt(b); !isCode(err, MalformedPacket) {
			t.Errorf("ParseVarInt(% x) err = %v, want Malformed Packet", b, err)
		}
	}
	for _, v := range []int{-1, MaxVarInt + 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AppendVarInt(%d) did not panic", v)
				}
			}()
			AppendVarInt(nil, v)
		}()
	}
}

func isCode(err error, c ReasonCode) bool {
	got, ok := ReasonCodeOf(err)
	return ok && got == c
}

func TestFixedHeader(t *testing.T) {
	tests := []struct {
		in      []byte
		fh      FixedHeader
		n       int
		wantErr error // ErrShort, or nil; *Error compared by code below
		code    ReasonCode
	}{
		{[]byte{0x30, 0x00}, FixedHeader{PUBLISH, 0, 0}, 2, nil, 0},
		{[]byte{0x3D, 0xFF, 0xFF, 0xFF, 0x7F}, FixedHeader{PUBLISH, 0xD, MaxVarInt}, 5, nil, 0},
		{[]byte{0x62, 0x80, 0x01}, FixedHeader{PUBREL, 2, 128}, 3, nil, 0},
		{nil, FixedHeader{}, 0, ErrShort, 0},
		{[]byte{0x30}, FixedHeader{}, 0, ErrShort, 0},
		{[]byte{0x30, 0x80}, FixedHeader{}, 0, ErrShort, 0},
		{[]byte{0x00, 0x00}, FixedHeader{}, 0, nil, MalformedPacket},
		{[]byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, FixedHeader{}, 0, nil, MalformedPacket},
		{[]byte{0x30, 0x80, 0x00}, FixedHeader{}, 0, nil, MalformedPacket},
	}
	for _, tt := range tests {
		fh, n, err := ParseFixedHeader(tt.in)
		switch {
		case tt.code != 0:
			if !isCode(err, tt.code) {
				t.Errorf("ParseFixedHeader(% x) err = %v, want %v", tt.in, err, tt.code)
			}
		case err != tt.wantErr:
			t.Errorf("ParseFixedHeader(% x) err = %v, want %v", tt.in, err, tt.wantErr)
		case err == nil && (fh != tt.fh || n != tt.n):
			t.Errorf("ParseFixedHeader(% x) = %+v, %d", tt.in, fh, n)
		}
		fh2, err2 := ReadFixedHeader(bytes.NewReader(tt.in))
		switch {
		case tt.code != 0:
			if !isCode(err2, tt.code) {
				t.Errorf("ReadFixedHeader(% x) err = %v, want %v", tt.in, err2, tt.code)
			}
		case tt.wantErr == ErrShort:
			want := io.ErrUnexpectedEOF
			if len(tt.in) == 0 {
				want = io.EOF
			}
			if err2 != want {
				t.Errorf("ReadFixedHeader(% x) err = %v, want %v", tt.in, err2, want)
			}
		case err2 != nil || fh2 != tt.fh:
			t.Errorf("ReadFixedHeader(% x) = %+v, %v", tt.in, fh2, err2)
		}
	}
	// ReadFixedHeader must not read past the header.
	r := bytes.NewReader([]byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01})
	if _, err := ReadFixedHeader(r); err == nil || r.Len() != 1 {
		t.Errorf("ReadFixedHeader read %d bytes of a 5-byte length", 6-r.Len())
	}
}

type errReader struct{ err error }

func (r errReader) ReadByte() (byte, error) { return 0, r.err }

func TestReadFixedHeaderPassesErrors(t *testing.T) {
	want := errors.New("boom")
	if _, err := ReadFixedHeader(errReader{want}); err != want {
		t.Fatalf("err = %v", err)
	}
}

func TestDecodeRemainingMismatch(t *testing.T) {
	_, err := Decode(FixedHeader{Type: PINGREQ, Remaining: 1}, nil, V311)
	if !isCode(err, MalformedPacket) {
		t.Fatalf("err = %v", err)
	}
	if _, err := Decode(FixedHeader{Type: PINGREQ}, nil, 9); err != ErrVersion {
		t.Fatalf("bad version: err = %v", err)
	}
}

func TestStrings(t *testing.T) {
	for tp, want := range map[Type]string{CONNECT: "CONNECT", PUBLISH: "PUBLISH", AUTH: "AUTH",
		UNSUBACK: "UNSUBACK", 0: "Type(0)", 16: "Type(16)"} {
		if got := tp.String(); got != want {
			t.Errorf("Type(%d).String() = %q, want %q", tp, got, want)
		}
	}
	for c, want := range map[ReasonCode]string{Success: "Success", MalformedPacket: "Malformed Packet",
		TopicAliasInvalid: "Topic Alias invalid", 0xA2: "Wildcard Subscriptions not supported",
		0x03: "ReasonCode(0x03)", 0xFF: "ReasonCode(0xFF)"} {
		if got := c.String(); got != want {
			t.Errorf("ReasonCode(%#x).String() = %q, want %q", byte(c), got, want)
		}
	}
}

func TestValidUTF8(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"", true},
		{"a/b", true},
		{"ü€𝄞", true},
		{"\u0001\u007f\u0085", true},  // control characters: SHOULD NOT, allowed
		{"\uFFFF", true},              // non-character: allowed
		{"a\x00b", false},             // U+0000
		{"\xC0\x80", false},           // overlong U+0000
		{"\xED\xA0\x80", false},       // U+D800 surrogate
		{"\xED\xBF\xBF", false},       // U+DFFF surrogate
		{"\xF4\x90\x80\x80", false},   // above U+10FFFF
		{"\xFF", false},               // invalid byte
		{"abc\xE2\x82", false},        // truncated sequence
		{"\xE0\x80\xAF", false},       // overlong '/'
		{"\xF0\x9F\x98\x80 ok", true}, // U+1F600
		{"\xEF\xBB\xBFbom", true},     // BOM is a valid character
	}
	for _, tt := range tests {
		if got := ValidUTF8([]byte(tt.s)); got != tt.want {
			t.Errorf("ValidUTF8(%q) = %v", tt.s, got)
		}
		if got := ValidUTF8String(tt.s); got != tt.want {
			t.Errorf("ValidUTF8String(%q) = %v", tt.s, got)
		}
	}
}

func TestValidTopicName(t *testing.T) {
	tests := []struct {
		s    string
		code ReasonCode // 0: valid
	}{
		{"a", 0},
		{"/", 0},
		{"a/b/c", 0},
		{"$SYS/broker", 0},
		{"a//b/", 0},
		{" ", 0},
		{"$share/g/x", 0}, // a name, not a filter
		{"", TopicNameInvalid},
		{"a/+", TopicNameInvalid},
		{"a/#", TopicNameInvalid},
		{"a+b", TopicNameInvalid},
		{"#", TopicNameInvalid},
		{strings.Repeat("x", 65535), 0},
		{strings.Repeat("x", 65536), TopicNameInvalid},
		{"a\x00b", MalformedPacket},
		{"\xED\xA0\x80", MalformedPacket},
	}
	for _, tt := range tests {
		err := ValidTopicName(tt.s)
		if tt.code == 0 && err != nil || tt.code != 0 && !isCode(err, tt.code) {
			t.Errorf("ValidTopicName(%.20q) = %v, want %v", tt.s, err, tt.code)
		}
	}
}

func TestValidTopicFilter(t *testing.T) {
	tests := []struct {
		s    string
		code ReasonCode // 0: valid
	}{
		{"a", 0},
		{"#", 0},
		{"+", 0},
		{"/", 0},
		{"+/+", 0},
		{"/+", 0},
		{"+/", 0},
		{"a/#", 0},
		{"a/+/c", 0},
		{"+/tennis/#", 0},
		{"sport/+/player1", 0},
		{"$SYS/#", 0},
		{"$share", 0},
		{"$share/g/#", 0},
		{"$share/g/a/+/b", 0},
		{"$share/g//", 0},
		{"$sharex/a", 0},
		{"", TopicFilterInvalid},
		{"a#", TopicFilterInvalid},
		{"a/#/b", TopicFilterInvalid},
		{"#/", TopicFilterInvalid},
		{"##", TopicFilterInvalid},
		{"a+", TopicFilterInvalid},
		{"+a", TopicFilterInvalid},
		{"a/b+/c", TopicFilterInvalid},
		{"sport+", TopicFilterInvalid},
		{"$share/", TopicFilterInvalid},
		{"$share/g", TopicFilterInvalid},
		{"$share/g/", TopicFilterInvalid},
		{"$share//a", TopicFilterInvalid},
		{"$share/+/a", TopicFilterInvalid},
		{"$share/g#/a", TopicFilterInvalid},
		{"$share/g/a#", TopicFilterInvalid},
		{strings.Repeat("x", 65536), TopicFilterInvalid},
		{"a/\x00", MalformedPacket},
		{"\xff", MalformedPacket},
	}
	for _, tt := range tests {
		err := ValidTopicFilter(tt.s)
		if tt.code == 0 && err != nil || tt.code != 0 && !isCode(err, tt.code) {
			t.Errorf("ValidTopicFilter(%.20q) = %v, want %v", tt.s, err, tt.code)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	long := strings.Repeat("x", 65536)
	tests := []struct {
		name    string
		p       Packet
		version byte
		want    error
	}{
		{"bad version", &Pingreq{}, 6, ErrVersion},
		{"AUTH in 3.1.1", &Auth{}, V311, ErrVersion},
		{"long topic", &Publish{Topic: long}, V311, ErrTooLong},
		{"long client id", &Connect{ClientID: long}, V311, ErrTooLong},
		{"long password", &Connect{UsernameFlag: true, PasswordFlag: true, Password: []byte(long)}, V5, ErrTooLong},
		{"long filter", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: long}}}, V311, ErrTooLong},
		{"long unsubscribe filter", &Unsubscribe{PacketID: 1, Filters: []string{long}}, V311, ErrTooLong},
		{"long reason string", &Ack{PacketType: PUBACK, PacketID: 1,
			Properties: pr(Properties{ReasonString: long}, PropReasonString)}, V5, ErrTooLong},
		{"long user property", &Disconnect{Properties: pr(Properties{User: []UserProperty{{long, ""}}})}, V5, ErrTooLong},
		{"long correlation data", &Publish{Topic: "t", Properties: pr(Properties{CorrelationData: []byte(long)},
			PropCorrelationData)}, V5, ErrTooLong},
		{"too large", &Publish{Topic: "t", Payload: make([]byte, MaxVarInt)}, V311, ErrTooLarge},
		{"QoS 3", &Publish{Topic: "t", QoS: 3, PacketID: 1}, V311, ErrInvalid},
		{"DUP QoS 0", &Publish{Topic: "t", Dup: true}, V311, ErrInvalid},
		{"publish id 0", &Publish{Topic: "t", QoS: 1}, V311, ErrInvalid},
		{"ack id 0", &Ack{PacketType: PUBACK}, V311, ErrInvalid},
		{"ack type", &Ack{PacketType: PUBLISH, PacketID: 1}, V311, ErrInvalid},
		{"subscribe empty", &Subscribe{PacketID: 1}, V311, ErrInvalid},
		{"subscribe QoS 3", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a", QoS: 3}}}, V311, ErrInvalid},
		{"subscribe RH 3", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a", RetainHandling: 3}}}, V5, ErrInvalid},
		{"suback empty", &Suback{PacketID: 1}, V311, ErrInvalid},
		{"unsuback empty v5", &Unsuback{PacketID: 1}, V5, ErrInvalid},
		{"unsubscribe empty", &Unsubscribe{PacketID: 1}, V5, ErrInvalid},
		{"will QoS 3", &Connect{WillFlag: true, WillQoS: 3}, V311, ErrInvalid},
		{"will QoS no flag", &Connect{WillQoS: 1}, V311, ErrInvalid},
		{"password no username", &Connect{PasswordFlag: true}, V311, ErrInvalid},
		{"property not allowed", &Publish{Topic: "t", Properties: pr(Properties{WillDelay: 1}, PropWillDelay)}, V5, ErrInvalid},
		{"unknown property bit", &Publish{Topic: "t", Properties: Properties{Present: 1 << 4}}, V5, ErrInvalid},
		{"two subscription ids in SUBSCRIBE", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a"}},
			Properties: pr(Properties{SubscriptionIDs: []uint32{1, 2}})}, V5, ErrInvalid},
		{"subscription id 0", &Publish{Topic: "t", Properties: pr(Properties{SubscriptionIDs: []uint32{0}})}, V5, ErrInvalid},
		{"subscription id too big", &Publish{Topic: "t", Properties: pr(Properties{SubscriptionIDs: []uint32{MaxVarInt + 1}})}, V5, ErrInvalid},
		{"topic alias 0", &Publish{Topic: "t", Properties: pr(Properties{}, PropTopicAlias)}, V5, ErrInvalid},
		{"payload format 2", &Publish{Topic: "t", Properties: pr(Properties{PayloadFormat: 2}, PropPayloadFormat)}, V5, ErrInvalid},
		{"receive maximum 0", &Connect{Properties: pr(Properties{}, PropReceiveMaximum)}, V5, ErrInvalid},
		{"nil packet", nil, V5, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Encode(tt.p, tt.version)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if b != nil {
				t.Fatalf("Encode returned % x with an error", b)
			}
		})
	}
	// v3 leaves properties out, even ones invalid for the packet.
	if _, err := Encode(&Publish{Topic: "t", Properties: pr(Properties{WillDelay: 1}, PropWillDelay)}, V311); err != nil {
		t.Fatalf("3.1.1 publish with will properties: %v", err)
	}
}

// TestPublishAlias checks that Payload and CorrelationData alias the body
// and that appending to them cannot overwrite it.
func TestPublishAlias(t *testing.T) {
	b, err := Encode(&Publish{Topic: "t", Properties: pr(Properties{CorrelationData: []byte("cd"), ContentType: "x"},
		PropCorrelationData, PropContentType), Payload: []byte("payload")}, V5)
	if err != nil {
		t.Fatal(err)
	}
	fh, n, _ := ParseFixedHeader(b)
	var p Publish
	if err := p.Decode(fh.Flags, b[n:], V5); err != nil {
		t.Fatal(err)
	}
	if &p.Payload[0] != &b[len(b)-len("payload")] {
		t.Error("Payload does not alias the body")
	}
	if cap(p.Properties.CorrelationData) != 2 {
		t.Errorf("CorrelationData cap %d, want 2", cap(p.Properties.CorrelationData))
	}
	_ = append(p.Properties.CorrelationData, 'X')
	if string(b[len(b)-len("payload"):]) != "payload" || p.Properties.ContentType != "x" {
		t.Error("append to CorrelationData overwrote the body")
	}
}

// TestPublishReuse checks that a reused Publish holds no stale fields.
func TestPublishReuse(t *testing.T) {
	full := &Publish{Dup: true, QoS: 2, Retain: true, Topic: "a/b", PacketID: 9,
		Properties: pr(Properties{PayloadFormat: 1, MessageExpiry: 5, ContentType: "ct", ResponseTopic: "rt",
			CorrelationData: []byte("cd"), SubscriptionIDs: []uint32{3, 4}, TopicAlias: 2,
			User: []UserProperty{{"a", "b"}, {"c", "d"}}},
			PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic, PropCorrelationData, PropTopicAlias),
		Payload: []byte("x")}
	bare := &Publish{Topic: "a/b"}
	some := &Publish{QoS: 1, PacketID: 1, Topic: "a/c", Properties: pr(Properties{ContentType: "ct",
		User: []UserProperty{{"a", "z"}}}, PropContentType)}
	var p Publish
	for _, v := range []byte{V5, V311} {
		for _, want := range []*Publish{full, bare, full, some, full, full, bare} {
			b, err := Encode(want, v)
			if err != nil {
				t.Fatal(err)
			}
			fh, n, _ := ParseFixedHeader(b)
			if err := p.Decode(fh.Flags, b[n:], v); err != nil {
				t.Fatal(err)
			}
			w := *want
			if v != V5 {
				w.Properties = Properties{}
			}
			if !deepEqual(&p, &w) {
				t.Fatalf("v%d: reused decode\n %+v\nwant\n %+v", v, p, w)
			}
		}
	}
}

func TestErrorsHideSecrets(t *testing.T) {
	const secret = "SECRET-marker"
	bodies := [][]byte{
		// password followed by trailing garbage
		pkt(0x10, str("MQTT"), 4, 0xC2, 0, 0, str("c"), str("u"), str(secret), 0xFF),
		// password with bad length
		pkt(0x10, str("MQTT"), 4, 0xC2, 0, 0, str("c"), str("u"), 0, 99, secret),
		// will payload then bad username UTF-8
		pkt(0x10, str("MQTT"), 4, 0x86, 0, 0, str("c"), str("w"), str(secret), 0, 1, 0xFF),
		// invalid UTF-8 topic followed by payload
		pkt(0x30, 0, 2, 0xC0, 0x80, secret),
	}
	for _, b := range bodies {
		_, err := decodeAll(t, b, V311)
		if err == nil {
			t.Fatalf("% x decoded", b)
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Fatalf("error leaks a secret: %v", err)
		}
	}
}

// TestDecodeConnectPartial checks the *Connect returned with an error.
func TestDecodeConnectPartial(t *testing.T) {
	c, err := DecodeConnect(cat(str("MQTT"), 6, 0x02, 0, 0, str("c")))
	if !isCode(err, UnsupportedProtocolVersion) || c == nil || c.ProtocolVersion != 6 || c.ProtocolName != "MQTT" {
		t.Fatalf("level 6: %+v, %v", c, err)
	}
	c, err = DecodeConnect(cat(str("MQTT"), 5, 0x01, 0, 0, 0, str("c")))
	if !isCode(err, MalformedPacket) || c == nil || c.ProtocolVersion != 5 {
		t.Fatalf("reserved flag: %+v, %v", c, err)
	}
	c, err = DecodeConnect(cat(0, 4, "MQ"))
	if !isCode(err, MalformedPacket) || c != nil {
		t.Fatalf("truncated name: %+v, %v", c, err)
	}
	// Decode never returns a packet with an error.
	p, err := Decode(FixedHeader{Type: CONNECT, Remaining: 10}, cat(str("MQTT"), 6, 0x02, 0, 0, str("")), 0)
	if err == nil || p != nil {
		t.Fatalf("Decode: %v, %v", p, err)
	}
}

// TestV31Lenient covers the 3.1 tolerances: missing username/password
// fields behind their flags.
func TestV31Lenient(t *testing.T) {
	p, err := decodeAll(t, pkt(0x10, str("MQIsdp"), 3, 0xC2, 0, 10, str("c")), V31)
	if err != nil {
		t.Fatal(err)
	}
	c := p.(*Connect)
	if c.UsernameFlag || c.PasswordFlag {
		t.Fatalf("flags not cleared: %+v", c)
	}
	p, err = decodeAll(t, pkt(0x10, str("MQIsdp"), 3, 0xC2, 0, 10, str("c"), str("u")), V31)
	if err != nil || !p.(*Connect).UsernameFlag || p.(*Connect).PasswordFlag || p.(*Connect).Username != "u" {
		t.Fatalf("%+v, %v", p, err)
	}
	// Not in 3.1.1.
	if _, err := decodeAll(t, pkt(0x10, str("MQTT"), 4, 0xC2, 0, 10, str("c")), V311); !isCode(err, MalformedPacket) {
		t.Fatalf("3.1.1: %v", err)
	}
}

func TestAckReuse(t *testing.T) {
	acks := []*Ack{
		{PacketType: PUBREC, PacketID: 6, ReasonCode: QuotaExceeded,
			Properties: pr(Properties{ReasonString: "full", User: []UserProperty{{"a", "b"}}}, PropReasonString)},
		{PacketType: PUBACK, PacketID: 1},
		{PacketType: PUBREL, PacketID: 7, ReasonCode: PacketIdentifierNotFound},
		{PacketType: PUBREC, PacketID: 6, ReasonCode: QuotaExceeded,
			Properties: pr(Properties{ReasonString: "full", User: []UserProperty{{"a", "b"}}}, PropReasonString)},
		{PacketType: PUBCOMP, PacketID: 8, Properties: pr(Properties{User: []UserProperty{{"a", "c"}}})},
		{PacketType: PUBACK, PacketID: 2},
	}
	var a Ack
	for _, v := range []byte{V5, V311} {
		for _, want := range acks {
			b, err := Encode(want, v)
			if err != nil {
				t.Fatal(err)
			}
			fh, n, _ := ParseFixedHeader(b)
			if err := a.Decode(fh, b[n:], v); err != nil {
				t.Fatal(err)
			}
			w := *want
			if v != V5 {
				w.ReasonCode, w.Properties = 0, Properties{}
			}
			if !deepEqual(&a, &w) {
				t.Fatalf("v%d: reused decode\n %+v\nwant\n %+v", v, a, w)
			}
		}
	}
	if err := a.Decode(FixedHeader{Type: PUBLISH}, nil, V5); !isCode(err, MalformedPacket) {
		t.Fatalf("Ack.Decode(PUBLISH) err = %v", err)
	}
}

// TestValidUTF8FastPath compares the word-at-a-time ASCII path with the
// obvious definition at every alignment.
func TestValidUTF8FastPath(t *testing.T) {
	ref := func(b []byte) bool { return bytes.IndexByte(b, 0) < 0 && utf8Valid(b) }
	for n := 0; n < 40; n++ {
		for pos := 0; pos < n; pos++ {
			for _, bad := range []string{"\x00", "\xFF", "\xC3\xA9", "\xED\xA0\x80", "\x7F", "+", "#"} {
				b := []byte(strings.Repeat("a", n))
				copy(b[pos:], bad)
				b = b[:n]
				if got, want := ValidUTF8(b), ref(b); got != want {
					t.Fatalf("ValidUTF8(%q) = %v, want %v", b, got, want)
				}
				if got, want := checkTopicName(b) == nil, !bytes.ContainsAny(b, "+#"); got != want {
					t.Fatalf("checkTopicName(%q) ok = %v, want %v", b, got, want)
				}
				if (checkTopicName(b) == nil) != (checkTopicName(string(b)) == nil) {
					t.Fatalf("checkTopicName string/bytes differ on %q", b)
				}
			}
		}
	}
}
