package proxyproto

// Test-only builders of PROXY headers, written from the specification
// (doc/proxy-protocol.txt, 2.2), independent of the parser.

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
)

const sig2 = "\r\n\r\n\x00\r\nQUIT\n"

// tlv encodes one TLV.
func tlv(t byte, v []byte) []byte {
	return append([]byte{t, byte(len(v) >> 8), byte(len(v))}, v...)
}

// v2 builds a v2 header: signature, ver_cmd, fam, length, body.
func v2(verCmd, fam byte, body ...[]byte) []byte {
	var b []byte
	for _, p := range body {
		b = append(b, p...)
	}
	h := []byte(sig2)
	h = append(h, verCmd, fam, byte(len(b)>>8), byte(len(b)))
	return append(h, b...)
}

// withCRC appends a PP2_TYPE_CRC32C TLV to a v2 header, fixes the length
// and fills in the checksum.
func withCRC(h []byte) []byte {
	h = append(append([]byte(nil), h...), tlv(TypeCRC32C, make([]byte, 4))...)
	binary.BigEndian.PutUint16(h[14:16], uint16(len(h)-16))
	sum := crc32.Checksum(h, crc32.MakeTable(crc32.Castagnoli))
	binary.BigEndian.PutUint32(h[len(h)-4:], sum)
	return h
}

// inet4 is the address block of TCP over IPv4.
func inet4(src, dst string, sp, dp uint16) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	b := append(s[:], d[:]...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, sp), dp)
}

// inet6 is the address block of TCP over IPv6.
func inet6(src, dst string, sp, dp uint16) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	b := append(s[:], d[:]...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, sp), dp)
}

// ssl builds a PP2_TYPE_SSL TLV: client, verify, sub-TLVs.
func ssl(client byte, verify uint32, subs ...[]byte) []byte {
	v := binary.BigEndian.AppendUint32([]byte{client}, verify)
	for _, s := range subs {
		v = append(v, s...)
	}
	return tlv(TypeSSL, v)
}

func str(t byte, s string) []byte { return tlv(t, []byte(s)) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}
