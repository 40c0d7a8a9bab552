package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

var (
	sigV1 = []byte("PROXY")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")

	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// Parse reads exactly one PROXY protocol header (v1 or v2) from r and
// returns it; the next byte r yields is the first byte after the header.
// Input that does not start with a PROXY signature gives ErrNoHeader and
// is left unread; empty input gives io.EOF. Everything else that is not a
// complete, valid header gives an error wrapping ErrInvalidHeader (or the
// reader's error, e.g. a timeout). A client certificate is taken from the
// PP2_SUBTYPE_SSL_CLIENT_CERT sub-TLV or from a TLV of type DefaultCertTLV;
// ParseWithCertTLV names another type.
func Parse(r *bufio.Reader) (*Header, error) {
	return ParseWithCertTLV(r, DefaultCertTLV)
}

// ParseWithCertTLV is Parse with the client certificate forwarded in a
// custom TLV of type certTLV. Only types of the custom (0xE0-0xEF) and
// experimental (0xF0-0xF7) ranges are honoured; any other value turns the
// custom certificate TLV off.
func ParseWithCertTLV(r *bufio.Reader, certTLV byte) (*Header, error) {
	v, err := detect(r)
	switch {
	case v == 0 && err == nil:
		return nil, ErrNoHeader
	case v == 0 && errors.Is(err, io.EOF):
		if r.Buffered() == 0 {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: truncated signature: %w", ErrInvalidHeader, io.ErrUnexpectedEOF)
	case err != nil:
		return nil, fmt.Errorf("proxyproto: reading header: %w", err)
	}
	return parseVersion(r, v, certTLV)
}

func parseVersion(r *bufio.Reader, v int, certTLV byte) (*Header, error) {
	if v == 1 {
		return parseV1(r)
	}
	return parseV2(r, certTLV)
}

// detect peeks at the start of r, one byte at a time, and returns 1 or 2
// when it begins with the v1 or v2 signature, or 0 as soon as a byte shows
// it does not. It consumes nothing and never waits for more bytes than it
// needs to decide: a first byte other than 'P' or '\r' (MQTT, TLS and HTTP
// all start otherwise) decides at once. An error (io.EOF included) comes
// with 0 when the input ended or failed inside a signature prefix.
func detect(r *bufio.Reader) (int, error) {
	b, err := r.Peek(1)
	if err != nil {
		return 0, err
	}
	var sig []byte
	var v int
	switch b[0] {
	case sigV1[0]:
		sig, v = sigV1, 1
	case sigV2[0]:
		sig, v = sigV2, 2
	default:
		return 0, nil
	}
	for n := 2; n <= len(sig); n++ {
		b, err := r.Peek(n)
		if len(b) >= n && b[n-1] != sig[n-1] {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
	}
	return v, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidHeader}, args...)...)
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return invalid("truncated: %w", err)
	}
	return fmt.Errorf("proxyproto: reading header: %w", err)
}

// parseV1 reads a v1 line up to CRLF, byte by byte so that nothing after
// the line is consumed, and at most MaxV1HeaderLen bytes.
func parseV1(r *bufio.Reader) (*Header, error) {
	var line [MaxV1HeaderLen]byte
	n := 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			return nil, truncated(err)
		}
		line[n] = c
		n++
		if c == '\n' {
			if n < 2 || line[n-2] != '\r' {
				return nil, invalid("v1: LF without CR")
			}
			break
		}
		if n >= 2 && line[n-2] == '\r' {
			return nil, invalid("v1: CR without LF")
		}
		if n == MaxV1HeaderLen {
			return nil, invalid("v1: %w: no CRLF in %d bytes", ErrHeaderTooLong, MaxV1HeaderLen)
		}
	}
	return parseV1Line(string(line[:n-2]))
}

func parseV1Line(s string) (*Header, error) {
	f := strings.Split(s, " ")
	if len(f) < 2 || f[0] != "PROXY" {
		return nil, invalid("v1: expected \"PROXY \"")
	}
	h := &Header{Version: 1, Command: Proxy}
	var v4 bool
	switch f[1] {
	case "UNKNOWN":
		// The receiver must ignore anything up to the CRLF.
		h.Protocol = ProtoUnspec
		return h, nil
	case "TCP4":
		h.Protocol, v4 = ProtoTCP4, true
	case "TCP6":
		h.Protocol = ProtoTCP6
	default:
		return nil, invalid("v1: unknown protocol %q", truncate(f[1]))
	}
	if len(f) != 6 {
		return nil, invalid("v1: %s needs exactly 4 fields separated by single spaces, got %d", f[1], len(f)-2)
	}
	src, err := parseV1Addr(f[2], v4)
	if err != nil {
		return nil, err
	}
	dst, err := parseV1Addr(f[3], v4)
	if err != nil {
		return nil, err
	}
	sp, err := parseV1Port(f[4])
	if err != nil {
		return nil, err
	}
	dp, err := parseV1Port(f[5])
	if err != nil {
		return nil, err
	}
	h.Source = netip.AddrPortFrom(src, sp)
	h.Destination = netip.AddrPortFrom(dst, dp)
	return h, nil
}

// parseV1Addr accepts an IPv4 address in dotted decimal without leading
// zeros, or an IPv6 address (no zone) for TCP6.
func parseV1Addr(s string, v4 bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, invalid("v1: %w %q", ErrInvalidAddress, truncate(s))
	}
	if v4 && !a.Is4() || !v4 && (!a.Is6() || a.Zone() != "") {
		return netip.Addr{}, invalid("v1: %w %q for the protocol", ErrInvalidAddress, truncate(s))
	}
	return a.Unmap(), nil
}

// parseV1Port accepts a decimal 0..65535 without leading zeros or signs.
func parseV1Port(s string) (uint16, error) {
	if len(s) == 0 || len(s) > 5 || len(s) > 1 && s[0] == '0' {
		return 0, invalid("v1: %w: port %q", ErrInvalidAddress, truncate(s))
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, invalid("v1: %w: port %q", ErrInvalidAddress, truncate(s))
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 65535 {
		return 0, invalid("v1: %w: port %q", ErrInvalidAddress, truncate(s))
	}
	return uint16(n), nil
}

// truncate shortens s for error messages.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// addrLen is the length of the address block of each v2 family.
var addrLen = [4]int{0, 12, 36, 216}

func parseV2(r *bufio.Reader, certTLV byte) (*Header, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return nil, truncated(err)
	}
	verCmd, fam := fixed[12], fixed[13]
	length := int(binary.BigEndian.Uint16(fixed[14:16]))
	if verCmd>>4 != 2 {
		return nil, invalid("v2: version %d", verCmd>>4)
	}
	if verCmd&0x0f > 1 {
		return nil, invalid("v2: command %#x", verCmd&0x0f)
	}
	family, transport := fam>>4, fam&0x0f
	if family > 3 || transport > 2 {
		return nil, invalid("v2: family/protocol %#02x", fam)
	}
	if 16+length > MaxV2HeaderLen {
		return nil, invalid("v2: %w: %d bytes (limit %d)", ErrHeaderTooLong, 16+length, MaxV2HeaderLen)
	}
	al := addrLen[family]
	if length < al {
		return nil, invalid("v2: %w: %d bytes for a %d-byte address block", ErrInvalidAddress, length, al)
	}
	buf := make([]byte, 16+length)
	copy(buf, fixed[:])
	if _, err := io.ReadFull(r, buf[16:]); err != nil {
		return nil, truncated(err)
	}
	h := &Header{Version: 2, Command: Command(verCmd & 0x0f), Protocol: fam}
	if h.Command == Proxy && transport == 1 {
		a := buf[16 : 16+al]
		switch family {
		case 1:
			src := netip.AddrFrom4([4]byte(a[0:4]))
			dst := netip.AddrFrom4([4]byte(a[4:8]))
			h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(a[8:10]))
			h.Destination = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(a[10:12]))
		case 2:
			src := netip.AddrFrom16([16]byte(a[0:16])).Unmap()
			dst := netip.AddrFrom16([16]byte(a[16:32])).Unmap()
			h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(a[32:34]))
			h.Destination = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(a[34:36]))
		}
	}
	if err := parseTLVs(h, buf, 16+al, certTLV); err != nil {
		return nil, err
	}
	return h, nil
}

// singleTLV reports whether at most one TLV of type t may appear.
func singleTLV(t byte) bool {
	switch t {
	case TypeALPN, TypeAuthority, TypeCRC32C, TypeUniqueID, TypeSSL, TypeNetNS:
		return true
	}
	return false
}

func customCertType(t byte) bool { return t >= TypeMinCustom && t <= 0xF7 }

func badTLV(format string, args ...any) error {
	return fmt.Errorf("%w: v2: %w: "+format, append([]any{ErrInvalidHeader, ErrInvalidTLV}, args...)...)
}

// splitTLV cuts the first TLV off b.
func splitTLV(b []byte) (t byte, v, rest []byte, ok bool) {
	if len(b) < 3 {
		return 0, nil, nil, false
	}
	n := int(b[1])<<8 | int(b[2])
	if len(b)-3 < n {
		return 0, nil, nil, false
	}
	return b[0], b[3 : 3+n : 3+n], b[3+n:], true
}

func parseTLVs(h *Header, buf []byte, start int, certTLV byte) error {
	if !customCertType(certTLV) {
		certTLV = 0 // never a custom type: off
	}
	var seen [256]bool
	var cert []byte
	crcAt := -1
	for b := buf[start:]; len(b) > 0; {
		t, v, rest, ok := splitTLV(b)
		if !ok {
			return badTLV("truncated TLV at offset %d", len(buf)-len(b))
		}
		if (singleTLV(t) || t == certTLV && certTLV != 0) && seen[t] {
			return badTLV("duplicate TLV %#02x", t)
		}
		seen[t] = true
		switch t {
		case TypeCRC32C:
			if len(v) != 4 {
				return badTLV("CRC32C of %d bytes", len(v))
			}
			crcAt = len(buf) - len(b) + 3
		case TypeUniqueID:
			if len(v) > 128 {
				return badTLV("UNIQUE_ID of %d bytes (max 128)", len(v))
			}
		case TypeAuthority:
			if !utf8.Valid(v) {
				return badTLV("AUTHORITY is not UTF-8")
			}
		case TypeSSL:
			s, err := parseSSL(v)
			if err != nil {
				return err
			}
			h.SSL = s
		}
		if t == certTLV && certTLV != 0 {
			cert = v
		}
		h.TLVs = append(h.TLVs, TLV{Type: t, Value: v})
		b = rest
	}
	if crcAt >= 0 {
		want := binary.BigEndian.Uint32(buf[crcAt:])
		var saved [4]byte
		copy(saved[:], buf[crcAt:crcAt+4])
		clear(buf[crcAt : crcAt+4])
		got := crc32.Checksum(buf, castagnoli)
		copy(buf[crcAt:], saved[:])
		if got != want {
			return fmt.Errorf("%w: v2: %w: got %#08x, header says %#08x", ErrInvalidHeader, ErrChecksum, got, want)
		}
	}
	// A custom certificate TLV is read only next to an SSL TLV: the same
	// type means something else to other senders (see DefaultCertTLV).
	if len(cert) > 0 && h.SSL != nil {
		der, err := decodeCert(cert)
		if err != nil {
			return err
		}
		if !h.SSL.HasClientCert() {
			return badTLV("client certificate TLV but the SSL TLV says the client sent none")
		}
		if h.SSL.ClientCert != nil && !bytes.Equal(h.SSL.ClientCert, der) {
			return badTLV("client certificate TLV %#02x differs from PP2_SUBTYPE_SSL_CLIENT_CERT", certTLV)
		}
		h.SSL.ClientCert = der
	}
	return nil
}

// decodeCert accepts DER (a SEQUENCE, first byte 0x30), or its hex or
// standard base64 encoding (the three cannot be mistaken for each other:
// base64 of a SEQUENCE starts with 'M', hex with '3').
func decodeCert(v []byte) ([]byte, error) {
	var der []byte
	var err error
	switch {
	case v[0] == 0x30:
		der = v
	case v[0] == '3':
		der = make([]byte, hex.DecodedLen(len(v)))
		_, err = hex.Decode(der, v)
	default:
		der = make([]byte, base64.StdEncoding.DecodedLen(len(v)))
		var n int
		n, err = base64.StdEncoding.Decode(der, v)
		der = der[:n]
	}
	if err != nil {
		return nil, badTLV("client certificate TLV is neither DER nor hex nor base64: %v", err)
	}
	if len(der) == 0 || der[0] != 0x30 {
		return nil, badTLV("client certificate TLV does not hold a DER certificate")
	}
	return der, nil
}

func parseSSL(v []byte) (*SSLInfo, error) {
	if len(v) < 5 {
		return nil, badTLV("SSL TLV of %d bytes (min 5)", len(v))
	}
	s := &SSLInfo{Client: v[0], Verify: binary.BigEndian.Uint32(v[1:5])}
	var seen [256]bool
	for b := v[5:]; len(b) > 0; {
		t, sv, rest, ok := splitTLV(b)
		if !ok {
			return nil, badTLV("truncated SSL sub-TLV")
		}
		if t >= SubtypeSSLVersion && t <= SubtypeSSLClientCert {
			if seen[t] {
				return nil, badTLV("duplicate SSL sub-TLV %#02x", t)
			}
			seen[t] = true
		}
		var dst *string
		switch t {
		case SubtypeSSLVersion:
			dst = &s.Version
		case SubtypeSSLCipher:
			dst = &s.Cipher
		case SubtypeSSLSigAlg:
			dst = &s.SigAlg
		case SubtypeSSLKeyAlg:
			dst = &s.KeyAlg
		case SubtypeSSLGroup:
			dst = &s.Group
		case SubtypeSSLSigScheme:
			dst = &s.SigScheme
		case SubtypeSSLCN:
			// An identity: UTF-8, not empty, no control characters (a NUL
			// or a newline in a CN is a spoofing or log-injection attempt).
			if len(sv) == 0 || !utf8.Valid(sv) || strings.IndexFunc(string(sv), unicode.IsControl) >= 0 {
				return nil, badTLV("SSL CN is empty, not UTF-8 or has control characters")
			}
			s.CN = string(sv)
		case SubtypeSSLClientCert:
			if len(sv) == 0 || sv[0] != 0x30 {
				return nil, badTLV("SSL client certificate is not DER")
			}
			s.ClientCert = sv
		}
		if dst != nil {
			if !printableASCII(sv) {
				return nil, badTLV("SSL sub-TLV %#02x is not printable US-ASCII", t)
			}
			*dst = string(sv)
		}
		s.TLVs = append(s.TLVs, TLV{Type: t, Value: sv})
		b = rest
	}
	if s.Client&ClientSSL == 0 && s.Client&(ClientCertConn|ClientCertSess) != 0 {
		return nil, badTLV("SSL TLV: client certificate flag without PP2_CLIENT_SSL")
	}
	if (s.CN != "" || s.ClientCert != nil) && !s.HasClientCert() {
		return nil, badTLV("SSL TLV: client certificate data but no client certificate flag")
	}
	return s, nil
}

func printableASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
