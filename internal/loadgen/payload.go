package loadgen

import "encoding/binary"

// Payload layout of the messages the generator publishes: a 4-byte magic,
// the send time in Unix nanoseconds (big endian) and filler. A subscriber
// in this or another process on the same host computes end-to-end latency
// from it. Payloads shorter than TimestampSize carry no timestamp.
const (
	payloadMagic  = 0x6d42_7431 // "mBt1"
	TimestampSize = 12
)

// PutTimestamp writes the magic and t (Unix nanoseconds) at the start of p
// and reports whether p was large enough.
func PutTimestamp(p []byte, t int64) bool {
	if len(p) < TimestampSize {
		return false
	}
	binary.BigEndian.PutUint32(p, payloadMagic)
	binary.BigEndian.PutUint64(p[4:], uint64(t))
	return true
}

// Timestamp returns the send time written by PutTimestamp, or false when
// p does not start with one.
func Timestamp(p []byte) (int64, bool) {
	if len(p) < TimestampSize || binary.BigEndian.Uint32(p) != payloadMagic {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(p[4:])), true
}

// fillPayload makes a payload of size bytes: a zero timestamp and a
// printable filler (some brokers log payloads).
func fillPayload(size int) []byte {
	p := make([]byte, size)
	for i := range p {
		p[i] = 'a' + byte(i%26)
	}
	PutTimestamp(p, 0)
	return p
}
