package packet

import (
	"encoding/binary"
	"strings"
)

// dec reads fields from a packet body. Every read checks bounds against
// len(b) and fails with MalformedPacket instead of panicking.
type dec struct {
	b []byte
	i int
}

func (d *dec) left() int { return len(d.b) - d.i }

func (d *dec) u8() (byte, error) {
	if d.i >= len(d.b) {
		return 0, errTruncated
	}
	c := d.b[d.i]
	d.i++
	return c, nil
}

func (d *dec) u16() (uint16, error) {
	if d.left() < 2 {
		return 0, errTruncated
	}
	v := binary.BigEndian.Uint16(d.b[d.i:])
	d.i += 2
	return v, nil
}

func (d *dec) u32() (uint32, error) {
	if d.left() < 4 {
		return 0, errTruncated
	}
	v := binary.BigEndian.Uint32(d.b[d.i:])
	d.i += 4
	return v, nil
}

func (d *dec) varint() (int, error) {
	v, n, err := ParseVarInt(d.b[d.i:])
	if err != nil {
		if err == ErrShort {
			return 0, errTruncated
		}
		return 0, err
	}
	d.i += n
	return v, nil
}

// raw reads a two-byte length and that many bytes, aliasing d.b with the
// capacity capped so appending to the result cannot overwrite the body.
func (d *dec) raw() ([]byte, error) {
	n, err := d.u16()
	if err != nil {
		return nil, err
	}
	if d.left() < int(n) {
		return nil, errTruncated
	}
	s := d.b[d.i : d.i+int(n) : d.i+int(n)]
	d.i += int(n)
	return s, nil
}

// bin reads Binary Data; empty data is returned as nil.
func (d *dec) bin() ([]byte, error) {
	b, err := d.raw()
	if len(b) == 0 {
		b = nil
	}
	return b, err
}

// utf8 reads a UTF-8 Encoded String as bytes and validates it.
func (d *dec) utf8() ([]byte, error) {
	b, err := d.raw()
	if err != nil {
		return nil, err
	}
	if !ValidUTF8(b) {
		return nil, errBadUTF8
	}
	return b, nil
}

func (d *dec) str() (string, error) {
	b, err := d.utf8()
	return string(b), err
}

func (d *dec) strIntern(old string) (string, error) {
	b, err := d.utf8()
	if err != nil {
		return "", err
	}
	return intern(b, old), nil
}

// rest returns the remaining bytes (nil when none), aliasing d.b.
func (d *dec) rest() []byte {
	if d.i >= len(d.b) {
		return nil
	}
	b := d.b[d.i:len(d.b):len(d.b)]
	d.i = len(d.b)
	return b
}

func (d *dec) end() error {
	if d.i != len(d.b) {
		return errTrailing
	}
	return nil
}

func (d *dec) packetID() (uint16, error) {
	id, err := d.u16()
	if err == nil && id == 0 {
		return 0, errPacketID
	}
	return id, err
}

// Decode decodes the body of one packet whose fixed header is fh into a
// new value: *Connect, *Connack, *Publish, *Ack (PUBACK, PUBREC, PUBREL,
// PUBCOMP), *Subscribe, *Suback, *Unsubscribe, *Unsuback, *Pingreq,
// *Pingresp, *Disconnect or *Auth. body must be exactly the fh.Remaining
// bytes after the fixed header.
//
// version is the connection's protocol level (V31, V311 or V5); it is
// ignored for CONNECT, which carries its own (see DecodeConnect).
//
// Invalid input yields an *Error whose Code is the reason code the
// specification requires (MalformedPacket, ProtocolError, TopicNameInvalid,
// TopicAliasInvalid, UnsupportedProtocolVersion); Decode never panics. An
// invalid version argument yields ErrVersion. On error the Packet is nil.
//
// Aliasing: []byte fields of the result (Payload, WillPayload, Password,
// CorrelationData, AuthData) point into body; copy them before reusing
// body. Strings are copies. Empty []byte fields are nil.
//
// Decode validates syntax, not policy: it does not check topic filters in
// SUBSCRIBE and UNSUBSCRIBE beyond UTF-8 (use ValidTopicFilter and answer
// per filter), client identifiers, payload UTF-8 for Payload Format 1,
// Topic Alias maximums, or which side may send which packet (a PUBLISH
// with Subscription Identifiers or a CONNACK decodes fine).
func Decode(fh FixedHeader, body []byte, version byte) (Packet, error) {
	if err := fh.Check(version); err != nil {
		return nil, err
	}
	if fh.Remaining != len(body) {
		return nil, malformed("body length %d differs from remaining length %d", len(body), fh.Remaining)
	}
	d := dec{b: body}
	switch fh.Type {
	case CONNECT:
		c, err := DecodeConnect(body)
		if err != nil {
			return nil, err
		}
		return c, nil
	case CONNACK:
		return decodeConnack(&d, version)
	case PUBLISH:
		p := new(Publish)
		if err := p.Decode(fh.Flags, body, version); err != nil {
			return nil, err
		}
		return p, nil
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		a := new(Ack)
		if err := a.decode(&d, fh.Type, version); err != nil {
			return nil, err
		}
		return a, nil
	case SUBSCRIBE:
		return decodeSubscribe(&d, version)
	case SUBACK:
		return decodeSuback(&d, version)
	case UNSUBSCRIBE:
		return decodeUnsubscribe(&d, version)
	case UNSUBACK:
		return decodeUnsuback(&d, version)
	case PINGREQ, PINGRESP:
		if err := d.end(); err != nil {
			return nil, err
		}
		if fh.Type == PINGREQ {
			return new(Pingreq), nil
		}
		return new(Pingresp), nil
	case DISCONNECT:
		return decodeDisconnect(&d, version)
	case AUTH:
		return decodeAuth(&d)
	}
	return nil, malformed("unknown packet type")
}

// Reason codes each MQTT 5 packet type may carry (section 2.4 and the
// packet sections).
var (
	connackCodes = codeSet(0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88,
		0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F)
	pubackCodes = codeSet(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99)
	pubrelCodes = codeSet(0x00, 0x92)
	subackCodes = codeSet(0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E,
		0xA1, 0xA2)
	subackV3Codes   = codeSet(0x00, 0x01, 0x02, 0x80)
	unsubackCodes   = codeSet(0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91)
	disconnectCodes = codeSet(0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D,
		0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C,
		0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2)
	authCodes = codeSet(0x00, 0x18, 0x19)
)

type reasonSet [4]uint64

func codeSet(codes ...byte) (s reasonSet) {
	for _, c := range codes {
		s[c>>6] |= 1 << (c & 63)
	}
	return s
}

func (s *reasonSet) has(c byte) bool { return s[c>>6]&(1<<(c&63)) != 0 }

func (d *dec) reasonCode(set *reasonSet, t Type) (ReasonCode, error) {
	c, err := d.u8()
	if err != nil {
		return 0, err
	}
	if !set.has(c) {
		return 0, protocolError("reason code 0x%02X not valid in %s", c, t)
	}
	return ReasonCode(c), nil
}

func decodeConnack(d *dec, version byte) (Packet, error) {
	c := new(Connack)
	flags, err := d.u8()
	if err != nil {
		return nil, err
	}
	if flags&^1 != 0 {
		return nil, malformed("CONNACK reserved flag bits set")
	}
	c.SessionPresent = flags == 1
	if version != V5 {
		code, err := d.u8()
		if err != nil {
			return nil, err
		}
		if code > V3NotAuthorized {
			return nil, malformed("CONNACK return code 0x%02X", code)
		}
		c.ReasonCode = ReasonCode(code)
		if err := d.end(); err != nil {
			return nil, err
		}
		return c, nil
	}
	if c.ReasonCode, err = d.reasonCode(&connackCodes, CONNACK); err != nil {
		return nil, err
	}
	if err := c.Properties.decode(d, &connackProps); err != nil {
		return nil, err
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return c, nil
}

// Decode decodes a PUBACK, PUBREC, PUBREL or PUBCOMP (fh.Type) into a,
// reusing a's memory like Publish.Decode: every field is overwritten and
// user property strings equal to the previous ones are reused, so a stream
// of acknowledgements decoded into one value allocates nothing. Errors are
// as in Decode; on error a's content is unspecified.
func (a *Ack) Decode(fh FixedHeader, body []byte, version byte) error {
	if fh.Type < PUBACK || fh.Type > PUBCOMP {
		return malformed("%s is not an acknowledgement", fh.Type)
	}
	if err := fh.Check(version); err != nil {
		return err
	}
	if fh.Remaining != len(body) {
		return malformed("body length %d differs from remaining length %d", len(body), fh.Remaining)
	}
	d := dec{b: body}
	return a.decode(&d, fh.Type, version)
}

func (a *Ack) decode(d *dec, t Type, version byte) error {
	a.PacketType = t
	a.ReasonCode = Success
	var err error
	if a.PacketID, err = d.packetID(); err != nil {
		return err
	}
	if version != V5 || d.left() == 0 {
		a.Properties.Reset()
		return d.end()
	}
	set := &pubackCodes
	if t == PUBREL || t == PUBCOMP {
		set = &pubrelCodes
	}
	if a.ReasonCode, err = d.reasonCode(set, t); err != nil {
		return err
	}
	// The property length may be left out when nothing follows.
	if d.left() == 0 {
		a.Properties.Reset()
		return nil
	}
	if err := a.Properties.decode(d, ackProps(t)); err != nil {
		return err
	}
	return d.end()
}

func decodeSubscribe(d *dec, version byte) (Packet, error) {
	s := new(Subscribe)
	var err error
	if s.PacketID, err = d.packetID(); err != nil {
		return nil, err
	}
	if version == V5 {
		if err := s.Properties.decode(d, &subscribeProps); err != nil {
			return nil, err
		}
	}
	if d.left() == 0 {
		return nil, protocolError("SUBSCRIBE without subscriptions")
	}
	for d.left() > 0 {
		f, err := d.str()
		if err != nil {
			return nil, err
		}
		o, err := d.u8()
		if err != nil {
			return nil, err
		}
		sub := Subscription{Filter: f, QoS: o & 3}
		if sub.QoS == 3 {
			return nil, malformed("SUBSCRIBE with QoS 3")
		}
		if version != V5 {
			if o&^3 != 0 {
				return nil, malformed("SUBSCRIBE options reserved bits set")
			}
		} else {
			if o&0xC0 != 0 {
				return nil, malformed("SUBSCRIBE options reserved bits set")
			}
			sub.NoLocal = o&0x04 != 0
			sub.RetainAsPublished = o&0x08 != 0
			sub.RetainHandling = o >> 4 & 3
			if sub.RetainHandling == 3 {
				return nil, protocolError("SUBSCRIBE with Retain Handling 3")
			}
			if sub.NoLocal && strings.HasPrefix(f, sharePrefix) {
				return nil, protocolError("No Local on a shared subscription")
			}
		}
		s.Subscriptions = append(s.Subscriptions, sub)
	}
	return s, nil
}

func decodeSuback(d *dec, version byte) (Packet, error) {
	s := new(Suback)
	var err error
	if s.PacketID, err = d.packetID(); err != nil {
		return nil, err
	}
	set := &subackV3Codes
	if version == V5 {
		if err := s.Properties.decode(d, &subackProps); err != nil {
			return nil, err
		}
		set = &subackCodes
	}
	if d.left() == 0 {
		return nil, protocolError("SUBACK without reason codes")
	}
	s.ReasonCodes = make([]ReasonCode, 0, d.left()) // one byte each: bounded by the body
	for d.left() > 0 {
		c, err := d.reasonCode(set, SUBACK)
		if err != nil {
			return nil, err
		}
		s.ReasonCodes = append(s.ReasonCodes, c)
	}
	return s, nil
}

func decodeUnsubscribe(d *dec, version byte) (Packet, error) {
	u := new(Unsubscribe)
	var err error
	if u.PacketID, err = d.packetID(); err != nil {
		return nil, err
	}
	if version == V5 {
		if err := u.Properties.decode(d, &unsubscribeProps); err != nil {
			return nil, err
		}
	}
	if d.left() == 0 {
		return nil, protocolError("UNSUBSCRIBE without topic filters")
	}
	for d.left() > 0 {
		f, err := d.str()
		if err != nil {
			return nil, err
		}
		u.Filters = append(u.Filters, f)
	}
	return u, nil
}

func decodeUnsuback(d *dec, version byte) (Packet, error) {
	u := new(Unsuback)
	var err error
	if u.PacketID, err = d.packetID(); err != nil {
		return nil, err
	}
	if version != V5 {
		if err := d.end(); err != nil {
			return nil, err
		}
		return u, nil
	}
	if err := u.Properties.decode(d, &unsubackProps); err != nil {
		return nil, err
	}
	if d.left() == 0 {
		return nil, protocolError("UNSUBACK without reason codes")
	}
	u.ReasonCodes = make([]ReasonCode, 0, d.left())
	for d.left() > 0 {
		c, err := d.reasonCode(&unsubackCodes, UNSUBACK)
		if err != nil {
			return nil, err
		}
		u.ReasonCodes = append(u.ReasonCodes, c)
	}
	return u, nil
}

func decodeDisconnect(d *dec, version byte) (Packet, error) {
	p := new(Disconnect)
	if version == V5 && d.left() > 0 {
		var err error
		if p.ReasonCode, err = d.reasonCode(&disconnectCodes, DISCONNECT); err != nil {
			return nil, err
		}
		if d.left() > 0 {
			if err := p.Properties.decode(d, &disconnectProps); err != nil {
				return nil, err
			}
		}
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return p, nil
}

func decodeAuth(d *dec) (Packet, error) {
	p := new(Auth)
	if d.left() > 0 {
		var err error
		if p.ReasonCode, err = d.reasonCode(&authCodes, AUTH); err != nil {
			return nil, err
		}
		if d.left() > 0 {
			if err := p.Properties.decode(d, &authProps); err != nil {
				return nil, err
			}
		}
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return p, nil
}
