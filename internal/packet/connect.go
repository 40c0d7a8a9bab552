package packet

import "encoding/binary"

// DecodeConnect decodes a CONNECT body (the bytes after the fixed header).
// The protocol level comes from the packet itself: "MQIsdp" level 3 (MQTT
// 3.1), "MQTT" level 4 (3.1.1) or "MQTT" level 5 (5.0). Any other name or
// level is an *Error with UnsupportedProtocolVersion (answer CONNACK 0x84
// in MQTT 5, return code 1 in 3.1.1).
//
// Other checks, each an *Error: reserved connect flag set, will QoS 3, will
// QoS or will retain set without the will flag, and (3.1 and 3.1.1) the
// password flag without the username flag are MalformedPacket; bad UTF-8
// anywhere is MalformedPacket; a will topic that is empty or holds a
// wildcard is TopicNameInvalid; property errors are as in Decode. For MQTT
// 3.1, a username or password flag whose field is missing at the end of the
// packet is treated as absent (old 3.1 clients send that) and the flag is
// cleared.
//
// Once the protocol name and level have been read, DecodeConnect returns a
// non-nil *Connect together with any error, with ProtocolName and
// ProtocolVersion set (other fields unspecified), so that the caller can
// pick the CONNACK format for the refusal. Before that the *Connect is nil.
//
// WillPayload and Password alias body (nil when empty); strings are copies.
// Client identifier rules (length, characters, empty with clean start) are
// left to the caller.
func DecodeConnect(body []byte) (*Connect, error) {
	d := dec{b: body}
	name, err := d.utf8()
	if err != nil {
		return nil, err
	}
	level, err := d.u8()
	if err != nil {
		return nil, err
	}
	c := &Connect{ProtocolVersion: level}
	switch string(name) {
	case "MQTT":
		c.ProtocolName = "MQTT"
	case "MQIsdp":
		c.ProtocolName = "MQIsdp"
	default:
		c.ProtocolName = string(name)
	}
	if !(level == V31 && c.ProtocolName == "MQIsdp") && !((level == V311 || level == V5) && c.ProtocolName == "MQTT") {
		return c, &Error{Code: UnsupportedProtocolVersion, Msg: "unsupported protocol name or level"}
	}
	return c, c.decodeRest(&d)
}

func (c *Connect) decodeRest(d *dec) error {
	flags, err := d.u8()
	if err != nil {
		return err
	}
	if flags&0x01 != 0 {
		return malformed("CONNECT reserved flag set")
	}
	c.CleanStart = flags&0x02 != 0
	c.WillFlag = flags&0x04 != 0
	c.WillQoS = flags >> 3 & 3
	c.WillRetain = flags&0x20 != 0
	c.PasswordFlag = flags&0x40 != 0
	c.UsernameFlag = flags&0x80 != 0
	switch {
	case c.WillQoS == 3:
		return malformed("CONNECT with will QoS 3")
	case !c.WillFlag && (c.WillQoS != 0 || c.WillRetain):
		return malformed("CONNECT with will QoS or will retain but no will flag")
	case c.ProtocolVersion != V5 && c.PasswordFlag && !c.UsernameFlag:
		return malformed("CONNECT with password flag but no username flag")
	}
	if c.KeepAlive, err = d.u16(); err != nil {
		return err
	}
	v5 := c.ProtocolVersion == V5
	if v5 {
		if err := c.Properties.decode(d, &connectProps); err != nil {
			return err
		}
	}
	if c.ClientID, err = d.str(); err != nil {
		return err
	}
	if c.WillFlag {
		if v5 {
			if err := c.WillProperties.decode(d, &willProps); err != nil {
				return err
			}
		}
		t, err := d.utf8()
		if err != nil {
			return err
		}
		if err := checkTopicName(t); err != nil {
			return &Error{Code: TopicNameInvalid, Msg: "will topic: " + err.(*Error).Msg}
		}
		c.WillTopic = string(t)
		if c.WillPayload, err = d.bin(); err != nil {
			return err
		}
	}
	if c.UsernameFlag {
		if c.ProtocolVersion == V31 && d.left() == 0 {
			c.UsernameFlag = false
		} else if c.Username, err = d.str(); err != nil {
			return err
		}
	}
	if c.PasswordFlag {
		if c.ProtocolVersion == V31 && d.left() == 0 {
			c.PasswordFlag = false
		} else if c.Password, err = d.bin(); err != nil {
			return err
		}
	}
	return d.end()
}

// Append encodes the CONNECT for protocol level version, which sets the
// protocol name and level written ("MQIsdp"/3, "MQTT"/4 or "MQTT"/5);
// the ProtocolName and ProtocolVersion fields are ignored. Properties and
// will properties are written only for V5. The flags fields decide which
// optional fields are written (Username/Password only with their flags,
// the will only with WillFlag).
func (c *Connect) Append(dst []byte, version byte) ([]byte, error) {
	if !validVersion(version) {
		return dst, ErrVersion
	}
	name := "MQTT"
	if version == V31 {
		name = "MQIsdp"
	}
	var flags byte
	if c.CleanStart {
		flags |= 0x02
	}
	switch {
	case c.WillQoS > 2:
		return dst, invalid("will QoS %d", c.WillQoS)
	case !c.WillFlag && (c.WillQoS != 0 || c.WillRetain):
		return dst, invalid("will QoS or will retain without will flag")
	case version != V5 && c.PasswordFlag && !c.UsernameFlag:
		return dst, invalid("password without username before MQTT 5")
	}
	if c.WillFlag {
		flags |= 0x04 | c.WillQoS<<3
		if c.WillRetain {
			flags |= 0x20
		}
	}
	if c.PasswordFlag {
		flags |= 0x40
	}
	if c.UsernameFlag {
		flags |= 0x80
	}
	n := 2 + len(name) + 1 + 1 + 2 + 2 + len(c.ClientID)
	long := len(c.ClientID) > maxString
	var pn, wn int
	var err error
	if version == V5 {
		if pn, err = c.Properties.size(&connectProps); err != nil {
			return dst, err
		}
		n += VarIntSize(pn) + pn
	}
	if c.WillFlag {
		if version == V5 {
			if wn, err = c.WillProperties.size(&willProps); err != nil {
				return dst, err
			}
			n += VarIntSize(wn) + wn
		}
		n += 4 + len(c.WillTopic) + len(c.WillPayload)
		long = long || len(c.WillTopic) > maxString || len(c.WillPayload) > maxString
	}
	if c.UsernameFlag {
		n += 2 + len(c.Username)
		long = long || len(c.Username) > maxString
	}
	if c.PasswordFlag {
		n += 2 + len(c.Password)
		long = long || len(c.Password) > maxString
	}
	if long {
		return dst, ErrTooLong
	}
	if dst, err = appendHeader(dst, byte(CONNECT)<<4, n); err != nil {
		return dst, err
	}
	dst = appendString(dst, name)
	dst = append(dst, version, flags)
	dst = binary.BigEndian.AppendUint16(dst, c.KeepAlive)
	if version == V5 {
		dst = c.Properties.append(dst, pn)
	}
	dst = appendString(dst, c.ClientID)
	if c.WillFlag {
		if version == V5 {
			dst = c.WillProperties.append(dst, wn)
		}
		dst = appendString(dst, c.WillTopic)
		dst = appendString(dst, c.WillPayload)
	}
	if c.UsernameFlag {
		dst = appendString(dst, c.Username)
	}
	if c.PasswordFlag {
		dst = appendString(dst, c.Password)
	}
	return dst, nil
}

// Append encodes the CONNACK. For 3.1 and 3.1.1 ReasonCode is written as
// the return code (use the V3* values) and Properties are left out.
func (c *Connack) Append(dst []byte, version byte) ([]byte, error) {
	if !validVersion(version) {
		return dst, ErrVersion
	}
	var flags byte
	if c.SessionPresent {
		flags = 1
	}
	if version != V5 {
		return append(dst, byte(CONNACK)<<4, 2, flags, byte(c.ReasonCode)), nil
	}
	pn, err := c.Properties.size(&connackProps)
	if err != nil {
		return dst, err
	}
	if dst, err = appendHeader(dst, byte(CONNACK)<<4, 2+VarIntSize(pn)+pn); err != nil {
		return dst, err
	}
	dst = append(dst, flags, byte(c.ReasonCode))
	return c.Properties.append(dst, pn), nil
}
