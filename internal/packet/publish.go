package packet

import "encoding/binary"

var (
	errPublishQoS3 = &Error{Code: MalformedPacket, Msg: "PUBLISH with QoS 3"}
	errPublishDup  = &Error{Code: MalformedPacket, Msg: "PUBLISH with DUP set and QoS 0"}
	errNoTopic     = &Error{Code: ProtocolError, Msg: "PUBLISH with an empty topic and no Topic Alias"}
)

// Decode decodes a PUBLISH into p, reusing p's memory: this is the hot
// path, and a stream of publishes decoded into the same value allocates
// nothing once warmed up. flags is the low nibble of the first byte
// (FixedHeader.Flags), body the bytes after the fixed header and version
// the connection's protocol level.
//
// Every field of p is overwritten; properties absent from this packet are
// absent afterwards (Present is rebuilt, values are zeroed). Reuse rules:
//   - Payload and Properties.CorrelationData alias body (nil when empty):
//     copy them before body's buffer is reused.
//   - Topic, ContentType, ResponseTopic and the user properties keep their
//     previous string (no allocation) when the new bytes are equal, so a
//     string read from p stays valid and immutable like any Go string.
//   - Properties.User and SubscriptionIDs reuse their backing arrays: do
//     not keep those slices across calls (copy them).
//
// Checks, each an *Error: flags with QoS 3 or DUP with QoS 0 and bad UTF-8
// are MalformedPacket; packet identifier 0 with QoS > 0 is ProtocolError; a
// topic with '+' or '#' is TopicNameInvalid, an empty topic is
// TopicNameInvalid before MQTT 5 and a ProtocolError in MQTT 5 unless a
// Topic Alias is present; Topic Alias 0 is TopicAliasInvalid; property
// errors as in Decode. The caller resolves Topic Aliases and checks them
// against its maximum. On error p's content is unspecified, but p may be
// reused.
func (p *Publish) Decode(flags byte, body []byte, version byte) error {
	if !validVersion(version) {
		return ErrVersion
	}
	p.QoS = flags >> 1 & 3
	p.Dup = flags&0x08 != 0
	p.Retain = flags&0x01 != 0
	switch {
	case flags > 0x0F:
		return malformed("fixed header flags out of range")
	case p.QoS == 3:
		return errPublishQoS3
	case p.QoS == 0 && p.Dup:
		return errPublishDup
	}
	d := dec{b: body}
	topic, err := d.utf8()
	if err != nil {
		return err
	}
	p.PacketID = 0
	if p.QoS > 0 {
		if p.PacketID, err = d.packetID(); err != nil {
			return err
		}
	}
	if version == V5 {
		if err := p.Properties.decode(&d, &publishProps); err != nil {
			return err
		}
	} else {
		p.Properties.Reset()
	}
	if len(topic) == 0 && version == V5 {
		if !p.Properties.Has(PropTopicAlias) {
			return errNoTopic
		}
	} else if err := checkTopicName(topic); err != nil {
		return err
	}
	p.Topic = intern(topic, p.Topic)
	p.Payload = d.rest()
	return nil
}

// Append encodes the PUBLISH. Properties are written only for V5 and
// must be PUBLISH properties (a will's Will Delay Interval, for instance,
// must be cleared first). QoS 3, DUP with QoS 0 and packet identifier 0
// with QoS > 0 are refused with ErrInvalid. The topic is not checked for
// wildcards. Appending into a buffer with enough capacity allocates
// nothing.
func (p *Publish) Append(dst []byte, version byte) ([]byte, error) {
	if !validVersion(version) {
		return dst, ErrVersion
	}
	switch {
	case p.QoS > 2:
		return dst, invalid("PUBLISH QoS %d", p.QoS)
	case p.QoS == 0 && p.Dup:
		return dst, invalid("PUBLISH DUP with QoS 0")
	case p.QoS > 0 && p.PacketID == 0:
		return dst, invalid("PUBLISH packet identifier 0")
	case len(p.Topic) > maxString:
		return dst, ErrTooLong
	}
	b0 := byte(PUBLISH)<<4 | p.QoS<<1
	if p.Dup {
		b0 |= 0x08
	}
	if p.Retain {
		b0 |= 0x01
	}
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	var pn int
	if version == V5 {
		var err error
		if pn, err = p.Properties.size(&publishProps); err != nil {
			return dst, err
		}
		n += VarIntSize(pn) + pn
	}
	dst, err := appendHeader(dst, b0, n)
	if err != nil {
		return dst, err
	}
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	}
	if version == V5 {
		dst = p.Properties.append(dst, pn)
	}
	return append(dst, p.Payload...), nil
}
