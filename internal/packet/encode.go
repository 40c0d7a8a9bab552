package packet

import "encoding/binary"

// Encode encodes p for protocol level version into a new slice sized for
// it. Use p.Append to encode into a reused buffer.
func Encode(p Packet, version byte) ([]byte, error) {
	if p == nil {
		return nil, invalid("nil packet")
	}
	return p.Append(nil, version)
}

// Append encodes the acknowledgement. In MQTT 5 the reason code and the
// properties are left out when the code is Success and there are no
// properties, and the property length is left out when there are no
// properties; 3.1 and 3.1.1 carry only the packet identifier. PacketType
// must be PUBACK, PUBREC, PUBREL or PUBCOMP and PacketID non-zero.
func (a *Ack) Append(dst []byte, version byte) ([]byte, error) {
	if !validVersion(version) {
		return dst, ErrVersion
	}
	if a.PacketType < PUBACK || a.PacketType > PUBCOMP {
		return dst, invalid("Ack with packet type %s", a.PacketType)
	}
	if a.PacketID == 0 {
		return dst, invalid("%s packet identifier 0", a.PacketType)
	}
	b0 := byte(a.PacketType) << 4
	if a.PacketType == PUBREL {
		b0 |= 0x02
	}
	pn := 0
	if version == V5 {
		var err error
		if pn, err = a.Properties.size(ackProps(a.PacketType)); err != nil {
			return dst, err
		}
	}
	switch {
	case version != V5 || (a.ReasonCode == Success && pn == 0):
		dst = append(dst, b0, 2)
		return binary.BigEndian.AppendUint16(dst, a.PacketID), nil
	case pn == 0:
		dst = append(dst, b0, 3)
		dst = binary.BigEndian.AppendUint16(dst, a.PacketID)
		return append(dst, byte(a.ReasonCode)), nil
	}
	dst, err := appendHeader(dst, b0, 3+VarIntSize(pn)+pn)
	if err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint16(dst, a.PacketID)
	dst = append(dst, byte(a.ReasonCode))
	return a.Properties.append(dst, pn), nil
}

// Append encodes the SUBSCRIBE. Before MQTT 5 only each subscription's
// QoS is written (No Local, Retain As Published and Retain Handling do not
// exist there) and Properties are left out.
func (s *Subscribe) Append(dst []byte, version byte) ([]byte, error) {
	if !validVersion(version) {
		return dst, ErrVersion
	}
	if s.PacketID == 0 {
		return dst, invalid("SUBSCRIBE packet identifier 0")
	}
	if len(s.Subscriptions) == 0 {
		return dst, invalid("SUBSCRIBE without subscriptions")
	}
	n := 2
	var pn int
	if version == V5 {
		var err error
		if pn, err = s.Properties.size(&subscribeProps); err != nil {
			return dst, err
		}
		n += VarIntSize(pn) + pn
	}
	for i := range s.Subscriptions {
		sub := &s.Subscriptions[i]
		if len(sub.Filter) > maxString {
			return dst, ErrTooLong
		}
		if sub.QoS > 2 || sub.RetainHandling > 2 {
			return dst, invalid("SUBSCRIBE QoS %d, Retain Handling %d", sub.QoS, sub.RetainHandling)
		}
		n += 3 + len(sub.Filter)
	}
	dst, err := appendHeader(dst, byte(SUBSCRIBE)<<4|0x02, n)
	if err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint16(dst, s.PacketID)
	if version == V5 {
		dst = s.Properties.append(dst, pn)
	}
	for i := range s.Subscriptions {
		sub := &s.Subscriptions[i]
		o := sub.QoS
		if version == V5 {
			o |= sub.RetainHandling << 4
			if sub.NoLocal {
				o |= 0x04
			}
			if sub.RetainAsPublished {
				o |= 0x08
			}
		}
		dst = append(appendString(dst, sub.Filter), o)
	}
	return dst, nil
}

// Append encodes the SUBACK (Properties only in MQTT 5).
func (s *Suback) Append(dst []byte, version byte) ([]byte, error) {
	return appendIDCodes(dst, version, SUBACK, s.PacketID, &s.Properties, &subackProps, s.ReasonCodes, true)
}

// Append encodes the UNSUBACK. Before MQTT 5 it carries only the packet
// identifier; in MQTT 5 ReasonCodes (one per filter) must not be empty.
func (u *Unsuback) Append(dst []byte, version byte) ([]byte, error) {
	return appendIDCodes(dst, version, UNSUBACK, u.PacketID, &u.Properties, &unsubackProps, u.ReasonCodes, version == V5)
}

func appendIDCodes(dst []byte, version byte, t Type, id uint16, props *Properties, spec *propSpec, codes []ReasonCode, withCodes bool) ([]byte, error) {
	if !validVersion(version) {
		return dst, ErrVersion
	}
	if id == 0 {
		return dst, invalid("%s packet identifier 0", t)
	}
	if withCodes && len(codes) == 0 {
		return dst, invalid("%s without reason codes", t)
	}
	n := 2
	var pn int
	if version == V5 {
		var err error
		if pn, err = props.size(spec); err != nil {
			return dst, err
		}
		n += VarIntSize(pn) + pn
	}
	if withCodes {
		n += len(codes)
	}
	dst, err := appendHeader(dst, byte(t)<<4, n)
	if err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint16(dst, id)
	if version == V5 {
		dst = props.append(dst, pn)
	}
	if withCodes {
		for _, c := range codes {
			dst = append(dst, byte(c))
		}
	}
	return dst, nil
}

// Append encodes the UNSUBSCRIBE (Properties only in MQTT 5).
func (u *Unsubscribe) Append(dst []byte, version byte) ([]byte, error) {
	if !validVersion(version) {
		return dst, ErrVersion
	}
	if u.PacketID == 0 {
		return dst, invalid("UNSUBSCRIBE packet identifier 0")
	}
	if len(u.Filters) == 0 {
		return dst, invalid("UNSUBSCRIBE without topic filters")
	}
	n := 2
	var pn int
	if version == V5 {
		var err error
		if pn, err = u.Properties.size(&unsubscribeProps); err != nil {
			return dst, err
		}
		n += VarIntSize(pn) + pn
	}
	for _, f := range u.Filters {
		if len(f) > maxString {
			return dst, ErrTooLong
		}
		n += 2 + len(f)
	}
	dst, err := appendHeader(dst, byte(UNSUBSCRIBE)<<4|0x02, n)
	if err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint16(dst, u.PacketID)
	if version == V5 {
		dst = u.Properties.append(dst, pn)
	}
	for _, f := range u.Filters {
		dst = appendString(dst, f)
	}
	return dst, nil
}

// Append encodes the PINGREQ.
func (*Pingreq) Append(dst []byte, version byte) ([]byte, error) {
	if !validVersion(version) {
		return dst, ErrVersion
	}
	return append(dst, byte(PINGREQ)<<4, 0), nil
}

// Append encodes the PINGRESP.
func (*Pingresp) Append(dst []byte, version byte) ([]byte, error) {
	if !validVersion(version) {
		return dst, ErrVersion
	}
	return append(dst, byte(PINGRESP)<<4, 0), nil
}

// Append encodes the DISCONNECT. Before MQTT 5 it is two bytes. In MQTT
// 5 the reason code and properties are left out for Normal disconnection
// without properties, and the property length when there are none.
func (p *Disconnect) Append(dst []byte, version byte) ([]byte, error) {
	if !validVersion(version) {
		return dst, ErrVersion
	}
	if version != V5 {
		return append(dst, byte(DISCONNECT)<<4, 0), nil
	}
	pn, err := p.Properties.size(&disconnectProps)
	if err != nil {
		return dst, err
	}
	switch {
	case pn == 0 && p.ReasonCode == NormalDisconnection:
		return append(dst, byte(DISCONNECT)<<4, 0), nil
	case pn == 0:
		return append(dst, byte(DISCONNECT)<<4, 1, byte(p.ReasonCode)), nil
	}
	if dst, err = appendHeader(dst, byte(DISCONNECT)<<4, 1+VarIntSize(pn)+pn); err != nil {
		return dst, err
	}
	return p.Properties.append(append(dst, byte(p.ReasonCode)), pn), nil
}

// Append encodes the AUTH packet, which exists only in MQTT 5 (other
// versions get ErrVersion). Reason code and properties are left out for
// Success without properties.
func (p *Auth) Append(dst []byte, version byte) ([]byte, error) {
	if version != V5 {
		return dst, ErrVersion
	}
	pn, err := p.Properties.size(&authProps)
	if err != nil {
		return dst, err
	}
	if pn == 0 && p.ReasonCode == Success {
		return append(dst, byte(AUTH)<<4, 0), nil
	}
	if dst, err = appendHeader(dst, byte(AUTH)<<4, 1+VarIntSize(pn)+pn); err != nil {
		return dst, err
	}
	return p.Properties.append(append(dst, byte(p.ReasonCode)), pn), nil
}
