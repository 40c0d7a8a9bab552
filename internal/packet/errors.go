package packet

import (
	"errors"
	"fmt"
)

// Sentinel errors. Decoding errors that map to an MQTT reason code are
// *Error values instead; see ReasonCodeOf.
var (
	// ErrShort reports that a buffer ends before the item being parsed:
	// more bytes are needed. It is not a protocol violation by itself.
	ErrShort = errors.New("packet: need more bytes")

	// ErrTooLong: a string or binary field to encode is longer than the
	// 65,535 bytes its two-byte length prefix can express.
	ErrTooLong = errors.New("packet: string or binary field longer than 65535 bytes")

	// ErrTooLarge: the packet to encode would have a remaining length
	// above MaxVarInt.
	ErrTooLarge = errors.New("packet: packet larger than the maximum remaining length")

	// ErrVersion: a protocol level other than V31, V311 or V5 was passed
	// to an encoder or decoder, or the packet does not exist in that
	// version (AUTH before MQTT 5) when encoding.
	ErrVersion = errors.New("packet: unsupported protocol version")

	// ErrInvalid: a field holds a value that cannot be put on the wire
	// (QoS 3, packet identifier 0 where one is required, a property not
	// allowed in the packet type, ...). Returned wrapped with details.
	ErrInvalid = errors.New("packet: invalid field")
)

// ReasonCodeOf returns the reason code carried by a decoding error (an
// *Error anywhere in err's chain) and true, or UnspecifiedError and false
// when err carries none.
func ReasonCodeOf(err error) (ReasonCode, bool) {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Code, true
	}
	return UnspecifiedError, false
}

// Frequent decoding errors, shared to keep error paths cheap.
var (
	errTruncated   = &Error{Code: MalformedPacket, Msg: "field runs past the end of the packet"}
	errTrailing    = &Error{Code: MalformedPacket, Msg: "unexpected bytes after the end of the packet"}
	errBadUTF8     = &Error{Code: MalformedPacket, Msg: "string is not well-formed UTF-8 or contains U+0000"}
	errVarInt      = &Error{Code: MalformedPacket, Msg: "malformed variable byte integer"}
	errPacketID    = &Error{Code: ProtocolError, Msg: "packet identifier 0"}
	errPropLength  = &Error{Code: MalformedPacket, Msg: "property length exceeds the packet"}
	errUnknownProp = &Error{Code: MalformedPacket, Msg: "unknown property identifier"}
)

func malformed(format string, args ...any) error {
	return &Error{Code: MalformedPacket, Msg: fmt.Sprintf(format, args...)}
}

func protocolError(format string, args ...any) error {
	return &Error{Code: ProtocolError, Msg: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
