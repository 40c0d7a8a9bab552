package packet

// VarIntSize returns how many bytes AppendVarInt writes for v (1 to 4).
// v must be in [0, MaxVarInt].
func VarIntSize(v int) int {
	switch {
	case v < 1<<7:
		return 1
	case v < 1<<14:
		return 2
	case v < 1<<21:
		return 3
	}
	return 4
}

// AppendVarInt appends v as an MQTT variable byte integer (1 to 4 bytes,
// least significant group first, the minimum number of bytes). v must be
// in [0, MaxVarInt]; anything else is a programming error and panics.
// Encoders in this package check lengths before calling it.
func AppendVarInt(dst []byte, v int) []byte {
	if v < 0 || v > MaxVarInt {
		panic("packet: AppendVarInt value out of range")
	}
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// ParseVarInt decodes the variable byte integer at the start of b and
// returns its value and length in bytes. It returns ErrShort when b ends
// before the integer does, and an *Error with MalformedPacket when the
// integer has more than 4 bytes or does not use the minimum number of
// bytes [MQTT-1.5.5-1].
func ParseVarInt(b []byte) (v int, n int, err error) {
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, ErrShort
		}
		c := b[i]
		v |= int(c&0x7F) << (7 * i)
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return 0, 0, errVarInt // non-minimal: trailing zero group
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, errVarInt
}
