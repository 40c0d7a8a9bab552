package packet

import (
	"errors"
	"io"
	"slices"
)

var errType0 = &Error{Code: MalformedPacket, Msg: "reserved packet type 0"}

// ReadFixedHeader reads a fixed header (the first byte and the remaining
// length) from r. It does not read the body.
//
// The caller must check Remaining against its maximum packet size before
// allocating or reading the body: Remaining comes from the peer and may be
// up to MaxVarInt (256 MB).
//
// A malformed remaining length or packet type 0 is an *Error with
// MalformedPacket. io.EOF before the first byte is returned as io.EOF (the
// peer closed cleanly); the stream ending inside the header is
// io.ErrUnexpectedEOF. Other read errors are returned as they are. Flags
// are not checked here (they depend on the protocol version): Decode
// checks them, and FixedHeader.Check can check them early.
func ReadFixedHeader(r io.ByteReader) (FixedHeader, error) {
	var fh FixedHeader
	b0, err := r.ReadByte()
	if err != nil {
		return fh, err
	}
	fh.Type, fh.Flags = Type(b0>>4), b0&0x0F
	if fh.Type == 0 {
		return fh, errType0
	}
	v := 0
	for i := 0; ; i++ {
		if i == 4 {
			return fh, errVarInt
		}
		c, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fh, err
		}
		v |= int(c&0x7F) << (7 * i)
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return fh, errVarInt
			}
			break
		}
	}
	fh.Remaining = v
	return fh, nil
}

// ParseFixedHeader parses a fixed header at the start of b and returns it
// with its length in bytes (2 to 5). It returns ErrShort when b is
// incomplete, and an *Error with MalformedPacket for packet type 0 or a
// malformed remaining length. As with ReadFixedHeader, the caller checks
// Remaining against its limit before waiting for the body; flags are
// checked by Decode and FixedHeader.Check.
func ParseFixedHeader(b []byte) (fh FixedHeader, n int, err error) {
	if len(b) == 0 {
		return fh, 0, ErrShort
	}
	fh.Type, fh.Flags = Type(b[0]>>4), b[0]&0x0F
	if fh.Type == 0 {
		return fh, 0, errType0
	}
	v, m, err := ParseVarInt(b[1:])
	if err != nil {
		return fh, 0, err
	}
	fh.Remaining = v
	return fh, 1 + m, nil
}

// Check validates the packet type and the fixed-header flags for protocol
// level version (MQTT-2.1.3-1 / 2.2.2): PUBREL, SUBSCRIBE and UNSUBSCRIBE
// carry flags 0b0010, PUBLISH any flags but QoS 3 or DUP with QoS 0, every
// other type 0. AUTH exists only in MQTT 5. For MQTT 3.1 the DUP bit is
// tolerated on PUBREL, SUBSCRIBE and UNSUBSCRIBE (3.1 clients set it on
// retransmission). Violations are *Error with MalformedPacket. version is
// ignored for CONNECT.
func (fh FixedHeader) Check(version byte) error {
	if fh.Flags > 0x0F {
		return malformed("fixed header flags out of range")
	}
	if fh.Type != CONNECT && !validVersion(version) {
		return ErrVersion
	}
	switch fh.Type {
	case 0:
		return errType0
	case PUBLISH:
		qos := fh.Flags >> 1 & 3
		if qos == 3 {
			return malformed("PUBLISH with QoS 3")
		}
		if qos == 0 && fh.Flags&0x08 != 0 {
			return malformed("PUBLISH with DUP set and QoS 0")
		}
		return nil
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		f := fh.Flags
		if version == V31 {
			f &^= 0x08
		}
		if f != 0x02 {
			return malformed("%s fixed header flags must be 0010", fh.Type)
		}
		return nil
	case AUTH:
		if version != V5 {
			return malformed("AUTH packet before MQTT 5")
		}
	case CONNECT, CONNACK, PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT:
	default:
		return malformed("unknown packet type")
	}
	if fh.Flags != 0 {
		return malformed("%s fixed header flags must be 0000", fh.Type)
	}
	return nil
}

func validVersion(v byte) bool { return v == V31 || v == V311 || v == V5 }

// appendHeader grows dst once for the whole packet and appends the fixed
// header.
func appendHeader(dst []byte, b0 byte, remaining int) ([]byte, error) {
	if remaining > MaxVarInt {
		return dst, ErrTooLarge
	}
	dst = slices.Grow(dst, 1+VarIntSize(remaining)+remaining)
	dst = append(dst, b0)
	return AppendVarInt(dst, remaining), nil
}
