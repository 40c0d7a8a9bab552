package packet

import "testing"

// conn5 builds an MQTT 5 CONNECT with the given connect flags and the
// remaining parts (properties, payload).
func conn5(flags byte, rest ...any) []byte {
	return pkt(0x10, append([]any{str("MQTT"), 5, flags, 0, 60}, rest...)...)
}

func conn4(flags byte, rest ...any) []byte {
	return pkt(0x10, append([]any{str("MQTT"), 4, flags, 0, 60}, rest...)...)
}

// pub5 builds an MQTT 5 QoS 0 PUBLISH on topic "t" with a property block.
func pub5(propParts ...any) []byte {
	return pkt(0x30, str("t"), props(propParts...), "payload")
}

var malformedTests = []struct {
	name    string
	version byte
	wire    []byte
	code    ReasonCode
}{
	// Fixed header.
	{"packet type 0", V311, cat(0x00, 0), MalformedPacket},
	{"remaining length 5 bytes", V311, cat(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F), MalformedPacket},
	{"remaining length non-minimal", V311, cat(0xC0, 0x80, 0x00), MalformedPacket},
	{"CONNECT flags", V311, cat(conn4(0x02, str("c"))[0]|1, conn4(0x02, str("c"))[1:]), MalformedPacket},
	{"CONNACK flags", V311, cat(0x21, 2, 0, 0), MalformedPacket},
	{"PUBLISH QoS 3", V311, pkt(0x36, str("t"), 0, 1), MalformedPacket},
	{"PUBLISH DUP with QoS 0", V311, pkt(0x38, str("t")), MalformedPacket},
	{"PUBACK flags", V311, cat(0x41, 2, 0, 1), MalformedPacket},
	{"PUBREC flags", V311, cat(0x52, 2, 0, 1), MalformedPacket},
	{"PUBREL flags 0", V311, cat(0x60, 2, 0, 1), MalformedPacket},
	{"PUBREL flags 3", V5, cat(0x63, 2, 0, 1), MalformedPacket},
	{"PUBREL DUP in 3.1.1", V311, cat(0x6A, 2, 0, 1), MalformedPacket},
	{"PUBCOMP flags", V311, cat(0x78, 2, 0, 1), MalformedPacket},
	{"SUBSCRIBE flags 0", V311, pkt(0x80, 0, 1, str("a"), 0), MalformedPacket},
	{"SUBACK flags", V311, pkt(0x92, 0, 1, 0), MalformedPacket},
	{"UNSUBSCRIBE flags 0", V5, pkt(0xA0, 0, 1, 0, str("a")), MalformedPacket},
	{"UNSUBACK flags", V311, cat(0xB4, 2, 0, 1), MalformedPacket},
	{"PINGREQ flags", V311, cat(0xC2, 0), MalformedPacket},
	{"PINGRESP flags", V311, cat(0xD1, 0), MalformedPacket},
	{"DISCONNECT flags", V5, cat(0xE8, 0), MalformedPacket},
	{"AUTH flags", V5, cat(0xF1, 0), MalformedPacket},
	{"AUTH in 3.1.1", V311, cat(0xF0, 0), MalformedPacket},
	{"AUTH in 3.1", V31, cat(0xF0, 0), MalformedPacket},

	// CONNECT.
	{"CONNECT unknown protocol name", V311, pkt(0x10, str("MQTX"), 4, 2, 0, 0, str("c")), UnsupportedProtocolVersion},
	{"CONNECT level 6", V311, pkt(0x10, str("MQTT"), 6, 2, 0, 0, str("c")), UnsupportedProtocolVersion},
	{"CONNECT level 0", V311, pkt(0x10, str("MQTT"), 0, 2, 0, 0, str("c")), UnsupportedProtocolVersion},
	{"CONNECT MQTT level 3", V311, pkt(0x10, str("MQTT"), 3, 2, 0, 0, str("c")), UnsupportedProtocolVersion},
	{"CONNECT MQIsdp level 4", V311, pkt(0x10, str("MQIsdp"), 4, 2, 0, 0, str("c")), UnsupportedProtocolVersion},
	{"CONNECT protocol name bad UTF-8", V311, pkt(0x10, 0, 4, "MQ\xFFT", 4, 2, 0, 0, str("c")), MalformedPacket},
	{"CONNECT empty body", V311, pkt(0x10), MalformedPacket},
	{"CONNECT no level", V311, pkt(0x10, str("MQTT")), MalformedPacket},
	{"CONNECT no keep alive", V311, pkt(0x10, str("MQTT"), 4, 2, 0), MalformedPacket},
	{"CONNECT no client id", V311, conn4(0x02), MalformedPacket},
	{"CONNECT reserved flag", V311, conn4(0x03, str("c")), MalformedPacket},
	{"CONNECT reserved flag 5.0", V5, conn5(0x01, props(), str("c")), MalformedPacket},
	{"CONNECT will QoS 3", V311, conn4(0x1E, str("c"), str("w"), str("m")), MalformedPacket},
	{"CONNECT will QoS without will", V311, conn4(0x0A, str("c")), MalformedPacket},
	{"CONNECT will retain without will", V311, conn4(0x22, str("c")), MalformedPacket},
	{"CONNECT password without username 3.1.1", V311, conn4(0x42, str("c"), str("p")), MalformedPacket},
	{"CONNECT password without username 3.1", V31, pkt(0x10, str("MQIsdp"), 3, 0x42, 0, 0, str("c"), str("p")), MalformedPacket},
	{"CONNECT client id bad UTF-8", V311, conn4(0x02, str("a\xFFb")), MalformedPacket},
	{"CONNECT client id U+0000", V311, conn4(0x02, str("a\x00b")), MalformedPacket},
	{"CONNECT client id surrogate", V311, conn4(0x02, str("\xED\xA0\x80")), MalformedPacket},
	{"CONNECT client id length past end", V311, conn4(0x02, 0, 5, "abc"), MalformedPacket},
	{"CONNECT username bad UTF-8", V311, conn4(0x82, str("c"), str("\xC0\x80")), MalformedPacket},
	{"CONNECT username missing 3.1.1", V311, conn4(0x82, str("c")), MalformedPacket},
	{"CONNECT password missing 5.0", V5, conn5(0x42, props(), str("c")), MalformedPacket},
	{"CONNECT will topic bad UTF-8", V311, conn4(0x06, str("c"), str("\xFF"), str("m")), MalformedPacket},
	{"CONNECT will topic wildcard", V311, conn4(0x06, str("c"), str("a/#"), str("m")), TopicNameInvalid},
	{"CONNECT will topic empty", V311, conn4(0x06, str("c"), str(""), str("m")), TopicNameInvalid},
	{"CONNECT will payload missing", V311, conn4(0x06, str("c"), str("w")), MalformedPacket},
	{"CONNECT trailing bytes", V311, conn4(0x02, str("c"), 0), MalformedPacket},
	{"CONNECT 5.0 no property length", V5, conn5(0x02), MalformedPacket},
	{"CONNECT 5.0 property length past end", V5, conn5(0x02, 10, 0x11, 0, 0, 0, 1), MalformedPacket},
	{"CONNECT 5.0 property length malformed", V5, conn5(0x02, 0x80, 0x80, 0x80, 0x80, 0x01, str("c")), MalformedPacket},
	{"CONNECT 5.0 property value past its block", V5, conn5(0x02, props(0x11, 0, 0), 0, 0, str("c")), MalformedPacket},
	{"CONNECT 5.0 unknown property", V5, conn5(0x02, props(0x04, 0), str("c")), MalformedPacket},
	{"CONNECT 5.0 property id 0", V5, conn5(0x02, props(0x00, 0), str("c")), MalformedPacket},
	{"CONNECT 5.0 property id 0x7F", V5, conn5(0x02, props(0x7F, 0), str("c")), MalformedPacket},
	{"CONNECT 5.0 property id two bytes", V5, conn5(0x02, props(0x91, 0x01, 0), str("c")), MalformedPacket},
	{"CONNECT 5.0 property id non-minimal", V5, conn5(0x02, props(0x81, 0x00, 0), str("c")), MalformedPacket},
	{"CONNECT 5.0 property not allowed", V5, conn5(0x02, props(0x23, 0, 1), str("c")), ProtocolError},
	{"CONNECT 5.0 will delay in connect properties", V5, conn5(0x02, props(0x18, 0, 0, 0, 1), str("c")), ProtocolError},
	{"CONNECT 5.0 session expiry twice", V5, conn5(0x02, props(0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1), str("c")), ProtocolError},
	{"CONNECT 5.0 auth method twice", V5, conn5(0x02, props(0x15, str("a"), 0x15, str("a")), str("c")), ProtocolError},
	{"CONNECT 5.0 receive maximum 0", V5, conn5(0x02, props(0x21, 0, 0), str("c")), ProtocolError},
	{"CONNECT 5.0 maximum packet size 0", V5, conn5(0x02, props(0x27, 0, 0, 0, 0), str("c")), ProtocolError},
	{"CONNECT 5.0 request problem info 2", V5, conn5(0x02, props(0x17, 2), str("c")), ProtocolError},
	{"CONNECT 5.0 request response info 2", V5, conn5(0x02, props(0x19, 2), str("c")), ProtocolError},
	{"CONNECT 5.0 auth data without method", V5, conn5(0x02, props(0x16, str("d")), str("c")), ProtocolError},
	{"CONNECT 5.0 auth method bad UTF-8", V5, conn5(0x02, props(0x15, str("\xFF")), str("c")), MalformedPacket},
	{"CONNECT 5.0 user property bad key", V5, conn5(0x02, props(0x26, str("\x00"), str("v")), str("c")), MalformedPacket},
	{"CONNECT 5.0 user property bad value", V5, conn5(0x02, props(0x26, str("k"), str("\xED\xB0\x80")), str("c")), MalformedPacket},
	{"CONNECT 5.0 user property no value", V5, conn5(0x02, props(0x26, str("k")), str("c")), MalformedPacket},
	{"CONNECT 5.0 will properties missing", V5, conn5(0x06, props(), str("c")), MalformedPacket},
	{"CONNECT 5.0 will property not allowed", V5, conn5(0x06, props(), str("c"), props(0x11, 0, 0, 0, 1), str("w"), str("m")), ProtocolError},
	{"CONNECT 5.0 will topic alias", V5, conn5(0x06, props(), str("c"), props(0x23, 0, 1), str("w"), str("m")), ProtocolError},
	{"CONNECT 5.0 will payload format 2", V5, conn5(0x06, props(), str("c"), props(0x01, 2), str("w"), str("m")), ProtocolError},
	{"CONNECT 5.0 will delay twice", V5, conn5(0x06, props(), str("c"), props(0x18, 0, 0, 0, 1, 0x18, 0, 0, 0, 1), str("w"), str("m")), ProtocolError},
	{"CONNECT 5.0 will response topic wildcard", V5, conn5(0x06, props(), str("c"), props(0x08, str("a/+")), str("w"), str("m")), ProtocolError},
	{"CONNECT 5.0 will content type bad UTF-8", V5, conn5(0x06, props(), str("c"), props(0x03, str("\xFF")), str("w"), str("m")), MalformedPacket},

	// CONNACK.
	{"CONNACK reserved flags", V311, cat(0x20, 2, 2, 0), MalformedPacket},
	{"CONNACK 3.1.1 return code 6", V311, cat(0x20, 2, 0, 6), MalformedPacket},
	{"CONNACK 3.1.1 short", V311, cat(0x20, 1, 0), MalformedPacket},
	{"CONNACK 3.1.1 long", V311, cat(0x20, 3, 0, 0, 0), MalformedPacket},
	{"CONNACK 5.0 no property length", V5, cat(0x20, 2, 0, 0), MalformedPacket},
	{"CONNACK 5.0 bad reason code", V5, cat(0x20, 3, 0, 0x10, 0), ProtocolError},
	{"CONNACK 5.0 maximum QoS 2", V5, pkt(0x20, 0, 0, props(0x24, 2)), ProtocolError},
	{"CONNACK 5.0 retain available 2", V5, pkt(0x20, 0, 0, props(0x25, 2)), ProtocolError},
	{"CONNACK 5.0 wildcard available 2", V5, pkt(0x20, 0, 0, props(0x28, 2)), ProtocolError},
	{"CONNACK 5.0 sub id available 2", V5, pkt(0x20, 0, 0, props(0x29, 2)), ProtocolError},
	{"CONNACK 5.0 shared available 2", V5, pkt(0x20, 0, 0, props(0x2A, 2)), ProtocolError},
	{"CONNACK 5.0 receive maximum 0", V5, pkt(0x20, 0, 0, props(0x21, 0, 0)), ProtocolError},
	{"CONNACK 5.0 will delay", V5, pkt(0x20, 0, 0, props(0x18, 0, 0, 0, 0)), ProtocolError},
	{"CONNACK 5.0 trailing", V5, pkt(0x20, 0, 0, props(), 0), MalformedPacket},

	// PUBLISH.
	{"PUBLISH empty body", V311, pkt(0x30), MalformedPacket},
	{"PUBLISH topic length past end", V311, pkt(0x30, 0, 9, "abc"), MalformedPacket},
	{"PUBLISH topic bad UTF-8", V311, pkt(0x30, str("a/\xFF"), "x"), MalformedPacket},
	{"PUBLISH topic U+0000", V311, pkt(0x30, str("a\x00"), "x"), MalformedPacket},
	{"PUBLISH topic '+'", V311, pkt(0x30, str("a/+"), "x"), TopicNameInvalid},
	{"PUBLISH topic '#'", V5, pkt(0x30, str("#"), props(), "x"), TopicNameInvalid},
	{"PUBLISH topic wildcard inside level", V311, pkt(0x30, str("a+b"), "x"), TopicNameInvalid},
	{"PUBLISH empty topic 3.1.1", V311, pkt(0x30, str(""), "x"), TopicNameInvalid},
	{"PUBLISH empty topic 3.1", V31, pkt(0x30, str(""), "x"), TopicNameInvalid},
	{"PUBLISH empty topic 5.0 without alias", V5, pkt(0x30, str(""), props(), "x"), ProtocolError},
	{"PUBLISH QoS 1 packet id 0", V311, pkt(0x32, str("t"), 0, 0, "x"), ProtocolError},
	{"PUBLISH QoS 2 packet id 0", V5, pkt(0x34, str("t"), 0, 0, props(), "x"), ProtocolError},
	{"PUBLISH QoS 1 no packet id", V311, pkt(0x32, str("t"), 0), MalformedPacket},
	{"PUBLISH 5.0 no property length", V5, pkt(0x30, str("t")), MalformedPacket},
	{"PUBLISH 5.0 property length past end", V5, pkt(0x30, str("t"), 5, 0x01, 0), MalformedPacket},
	{"PUBLISH 5.0 subscription id 0", V5, pub5(0x0B, 0), ProtocolError},
	{"PUBLISH 5.0 subscription id 5 bytes", V5, pub5(0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F), MalformedPacket},
	{"PUBLISH 5.0 topic alias 0", V5, pub5(0x23, 0, 0), TopicAliasInvalid},
	{"PUBLISH 5.0 topic alias twice", V5, pub5(0x23, 0, 1, 0x23, 0, 1), ProtocolError},
	{"PUBLISH 5.0 payload format 2", V5, pub5(0x01, 2), ProtocolError},
	{"PUBLISH 5.0 payload format twice", V5, pub5(0x01, 1, 0x01, 1), ProtocolError},
	{"PUBLISH 5.0 message expiry twice", V5, pub5(0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1), ProtocolError},
	{"PUBLISH 5.0 content type twice", V5, pub5(0x03, str("a"), 0x03, str("a")), ProtocolError},
	{"PUBLISH 5.0 response topic twice", V5, pub5(0x08, str("a"), 0x08, str("a")), ProtocolError},
	{"PUBLISH 5.0 correlation data twice", V5, pub5(0x09, str("a"), 0x09, str("a")), ProtocolError},
	{"PUBLISH 5.0 response topic wildcard", V5, pub5(0x08, str("r/#")), ProtocolError},
	{"PUBLISH 5.0 content type bad UTF-8", V5, pub5(0x03, str("\xFE")), MalformedPacket},
	{"PUBLISH 5.0 correlation data past block", V5, pub5(0x09, 0, 9, "ab"), MalformedPacket},
	{"PUBLISH 5.0 session expiry", V5, pub5(0x11, 0, 0, 0, 1), ProtocolError},
	{"PUBLISH 5.0 reason string", V5, pub5(0x1F, str("r")), ProtocolError},
	{"PUBLISH 5.0 will delay", V5, pub5(0x18, 0, 0, 0, 1), ProtocolError},
	{"PUBLISH 5.0 unknown property", V5, pub5(0x2B, 0), MalformedPacket},

	// PUBACK, PUBREC, PUBREL, PUBCOMP.
	{"PUBACK packet id 0", V311, cat(0x40, 2, 0, 0), ProtocolError},
	{"PUBREL packet id 0 5.0", V5, cat(0x62, 2, 0, 0), ProtocolError},
	{"PUBACK short", V311, cat(0x40, 1, 0), MalformedPacket},
	{"PUBACK empty", V5, cat(0x40, 0), MalformedPacket},
	{"PUBACK 3.1.1 with reason code", V311, cat(0x40, 3, 0, 1, 0), MalformedPacket},
	{"PUBCOMP 3.1 long", V31, cat(0x70, 4, 0, 1, 0, 0), MalformedPacket},
	{"PUBACK 5.0 bad reason code", V5, cat(0x40, 3, 0, 1, 0x05), ProtocolError},
	{"PUBREC 5.0 bad reason code", V5, cat(0x50, 3, 0, 1, 0x92), ProtocolError},
	{"PUBREL 5.0 bad reason code", V5, cat(0x62, 3, 0, 1, 0x10), ProtocolError},
	{"PUBCOMP 5.0 bad reason code", V5, cat(0x70, 3, 0, 1, 0x80), ProtocolError},
	{"PUBACK 5.0 property not allowed", V5, pkt(0x40, 0, 1, 0, props(0x03, str("x"))), ProtocolError},
	{"PUBACK 5.0 reason string twice", V5, pkt(0x40, 0, 1, 0, props(0x1F, str("x"), 0x1F, str("y"))), ProtocolError},
	{"PUBACK 5.0 reason string bad UTF-8", V5, pkt(0x40, 0, 1, 0, props(0x1F, str("\xFF"))), MalformedPacket},
	{"PUBACK 5.0 property length past end", V5, pkt(0x40, 0, 1, 0, 4, 0x1F), MalformedPacket},
	{"PUBACK 5.0 trailing", V5, pkt(0x40, 0, 1, 0, props(), 0), MalformedPacket},

	// SUBSCRIBE.
	{"SUBSCRIBE packet id 0", V311, pkt(0x82, 0, 0, str("a"), 0), ProtocolError},
	{"SUBSCRIBE no packet id", V311, pkt(0x82, 0), MalformedPacket},
	{"SUBSCRIBE no subscriptions", V311, pkt(0x82, 0, 1), ProtocolError},
	{"SUBSCRIBE 5.0 no subscriptions", V5, pkt(0x82, 0, 1, props()), ProtocolError},
	{"SUBSCRIBE 5.0 no property length", V5, pkt(0x82, 0, 1), MalformedPacket},
	{"SUBSCRIBE no options byte", V311, pkt(0x82, 0, 1, str("a")), MalformedPacket},
	{"SUBSCRIBE second filter no options", V311, pkt(0x82, 0, 1, str("a"), 0, str("b")), MalformedPacket},
	{"SUBSCRIBE filter length past end", V311, pkt(0x82, 0, 1, 0, 7, "a", 0), MalformedPacket},
	{"SUBSCRIBE filter bad UTF-8", V311, pkt(0x82, 0, 1, str("a/\xFF"), 0), MalformedPacket},
	{"SUBSCRIBE filter U+0000", V5, pkt(0x82, 0, 1, props(), str("a\x00"), 0), MalformedPacket},
	{"SUBSCRIBE QoS 3", V311, pkt(0x82, 0, 1, str("a"), 3), MalformedPacket},
	{"SUBSCRIBE 5.0 QoS 3", V5, pkt(0x82, 0, 1, props(), str("a"), 3), MalformedPacket},
	{"SUBSCRIBE 3.1.1 option bits", V311, pkt(0x82, 0, 1, str("a"), 0x04), MalformedPacket},
	{"SUBSCRIBE 3.1.1 high option bits", V311, pkt(0x82, 0, 1, str("a"), 0x80), MalformedPacket},
	{"SUBSCRIBE 5.0 reserved bit 6", V5, pkt(0x82, 0, 1, props(), str("a"), 0x40), MalformedPacket},
	{"SUBSCRIBE 5.0 reserved bit 7", V5, pkt(0x82, 0, 1, props(), str("a"), 0x81), MalformedPacket},
	{"SUBSCRIBE 5.0 retain handling 3", V5, pkt(0x82, 0, 1, props(), str("a"), 0x30), ProtocolError},
	{"SUBSCRIBE 5.0 No Local on shared", V5, pkt(0x82, 0, 1, props(), str("$share/g/a"), 0x04), ProtocolError},
	{"SUBSCRIBE 5.0 subscription id 0", V5, pkt(0x82, 0, 1, props(0x0B, 0), str("a"), 0), ProtocolError},
	{"SUBSCRIBE 5.0 subscription id twice", V5, pkt(0x82, 0, 1, props(0x0B, 1, 0x0B, 2), str("a"), 0), ProtocolError},
	{"SUBSCRIBE 5.0 reason string", V5, pkt(0x82, 0, 1, props(0x1F, str("r")), str("a"), 0), ProtocolError},
	{"SUBSCRIBE 5.0 unknown property", V5, pkt(0x82, 0, 1, props(0x30, 0), str("a"), 0), MalformedPacket},

	// SUBACK.
	{"SUBACK packet id 0", V311, pkt(0x90, 0, 0, 0), ProtocolError},
	{"SUBACK no codes", V311, pkt(0x90, 0, 1), ProtocolError},
	{"SUBACK 3.1.1 code 3", V311, pkt(0x90, 0, 1, 3), ProtocolError},
	{"SUBACK 5.0 code 0x10", V5, pkt(0x90, 0, 1, props(), 0x10), ProtocolError},
	{"SUBACK 5.0 no codes", V5, pkt(0x90, 0, 1, props()), ProtocolError},
	{"SUBACK 5.0 no property length", V5, pkt(0x90, 0, 1), MalformedPacket},

	// UNSUBSCRIBE.
	{"UNSUBSCRIBE packet id 0", V311, pkt(0xA2, 0, 0, str("a")), ProtocolError},
	{"UNSUBSCRIBE no filters", V311, pkt(0xA2, 0, 1), ProtocolError},
	{"UNSUBSCRIBE 5.0 no filters", V5, pkt(0xA2, 0, 1, props()), ProtocolError},
	{"UNSUBSCRIBE filter bad UTF-8", V311, pkt(0xA2, 0, 1, str("\xC3")), MalformedPacket},
	{"UNSUBSCRIBE filter truncated", V311, pkt(0xA2, 0, 1, str("a"), 0), MalformedPacket},
	{"UNSUBSCRIBE 5.0 subscription id", V5, pkt(0xA2, 0, 1, props(0x0B, 1), str("a")), ProtocolError},

	// UNSUBACK.
	{"UNSUBACK packet id 0", V311, cat(0xB0, 2, 0, 0), ProtocolError},
	{"UNSUBACK 3.1.1 with codes", V311, cat(0xB0, 3, 0, 1, 0), MalformedPacket},
	{"UNSUBACK 5.0 no codes", V5, pkt(0xB0, 0, 1, props()), ProtocolError},
	{"UNSUBACK 5.0 bad code", V5, pkt(0xB0, 0, 1, props(), 0x01), ProtocolError},

	// PINGREQ, PINGRESP.
	{"PINGREQ with body", V311, cat(0xC0, 1, 0), MalformedPacket},
	{"PINGRESP with body", V5, cat(0xD0, 1, 0), MalformedPacket},

	// DISCONNECT.
	{"DISCONNECT 3.1.1 with body", V311, cat(0xE0, 1, 0), MalformedPacket},
	{"DISCONNECT 5.0 bad reason code", V5, cat(0xE0, 1, 0x05), ProtocolError},
	{"DISCONNECT 5.0 session expiry twice", V5, pkt(0xE0, 0, props(0x11, 0, 0, 0, 0, 0x11, 0, 0, 0, 0)), ProtocolError},
	{"DISCONNECT 5.0 topic alias", V5, pkt(0xE0, 0, props(0x23, 0, 1)), ProtocolError},
	{"DISCONNECT 5.0 property length past end", V5, cat(0xE0, 2, 0, 1), MalformedPacket},
	{"DISCONNECT 5.0 trailing", V5, pkt(0xE0, 0, props(), 0), MalformedPacket},

	// AUTH.
	{"AUTH 5.0 bad reason code", V5, cat(0xF0, 1, 0x01), ProtocolError},
	{"AUTH 5.0 property not allowed", V5, pkt(0xF0, 0x18, props(0x11, 0, 0, 0, 0)), ProtocolError},
	{"AUTH 5.0 auth method twice", V5, pkt(0xF0, 0x18, props(0x15, str("a"), 0x15, str("a"))), ProtocolError},
	{"AUTH 5.0 auth data without method", V5, pkt(0xF0, 0x18, props(0x16, str("a"))), ProtocolError},
	{"AUTH 5.0 trailing", V5, pkt(0xF0, 0x18, props(), 0), MalformedPacket},
}

func TestMalformed(t *testing.T) {
	for _, tt := range malformedTests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			fh, n, err := ParseFixedHeader(tt.wire)
			if err == nil {
				if n+fh.Remaining != len(tt.wire) {
					t.Fatalf("test bytes: header says %d+%d, have %d", n, fh.Remaining, len(tt.wire))
				}
				var p Packet
				p, err = Decode(fh, tt.wire[n:], tt.version)
				if err == nil {
					t.Fatalf("decoded % x into %+v", tt.wire, p)
				}
				if p != nil {
					t.Fatalf("Decode returned a packet with an error")
				}
			}
			if testing.Verbose() {
				t.Logf("%v", err)
			}
			got, ok := ReasonCodeOf(err)
			if !ok || got != tt.code {
				t.Fatalf("err = %v (code %v), want %v", err, got, tt.code)
			}
			// A reused Publish gives the same answer.
			if err == nil || fh.Type != PUBLISH {
				return
			}
			var p Publish
			perr := p.Decode(fh.Flags, tt.wire[n:], tt.version)
			if c, _ := ReasonCodeOf(perr); c != tt.code {
				t.Fatalf("Publish.Decode err = %v, want %v", perr, tt.code)
			}
		})
	}
}

// TestAccepted lists edge cases that must decode.
func TestAccepted(t *testing.T) {
	tests := []struct {
		name    string
		version byte
		wire    []byte
	}{
		{"CONNECT 5.0 password without username", V5, conn5(0x42, props(), str("c"), str("p"))},
		{"CONNECT empty client id", V311, conn4(0x02, str(""))},
		{"CONNECT 5.0 user property repeated", V5, conn5(0x02, props(0x26, str("k"), str("v"), 0x26, str("k"), str("v")), str("c"))},
		{"SUBSCRIBE bad filter syntax is left to the broker", V5, pkt(0x82, 0, 1, props(), str("a/#/b"), 0, str(""), 1, str("$share/g"), 2)},
		{"SUBSCRIBE 3.1.1 No Local bit absent on shared", V311, pkt(0x82, 0, 1, str("$share/g/a"), 1)},
		{"SUBSCRIBE 3.1 DUP flag", V31, pkt(0x8A, 0, 1, str("a"), 1)},
		{"PUBREL 3.1 DUP flag", V31, cat(0x6A, 2, 0, 1)},
		{"UNSUBSCRIBE 3.1 DUP flag", V31, pkt(0xAA, 0, 1, str("a"))},
		{"PUBLISH 5.0 empty topic with alias", V5, pkt(0x30, str(""), props(0x23, 0, 1), "x")},
		{"PUBLISH 5.0 several subscription ids", V5, pub5(0x0B, 1, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F)},
		{"PUBLISH 5.0 empty payload", V5, pkt(0x30, str("t"), props())},
		{"PUBLISH control characters in topic", V311, pkt(0x30, str("a\x01\x7f"))},
		{"PUBACK 5.0 reason code without property length", V5, cat(0x40, 3, 0, 1, 0x10)},
		{"DISCONNECT 5.0 properties", V5, pkt(0xE0, 0x8E, props(0x1F, str("bye")))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := decodeAll(t, tt.wire, tt.version)
			if err != nil {
				t.Fatalf("Decode(% x): %v", tt.wire, err)
			}
			if _, err := Encode(p, tt.version); err != nil {
				t.Fatalf("re-encode: %v", err)
			}
		})
	}
}
