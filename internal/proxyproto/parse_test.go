package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
)

const payload = "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c" // the MQTT CONNECT that follows

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// parseAll parses in and checks that exactly the header was consumed.
func parseAll(t *testing.T, in []byte) (*Header, error) {
	t.Helper()
	r := bufio.NewReaderSize(bytes.NewReader(append(append([]byte(nil), in...), payload...)), 16)
	h, err := Parse(r)
	if err != nil {
		return nil, err
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != payload {
		t.Fatalf("bytes after the header: got %q, want %q", rest, payload)
	}
	return h, nil
}

func TestParseV1(t *testing.T) {
	worst := "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
	if len(worst) != MaxV1HeaderLen {
		t.Fatalf("worst case is %d bytes", len(worst))
	}
	tests := []struct {
		name     string
		in       string
		proto    byte
		src, dst string // "" for zero
	}{
		{"tcp4", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", ProtoTCP4, "192.168.0.1:56324", "192.168.0.11:443"},
		{"tcp4 max", "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", ProtoTCP4, "255.255.255.255:65535", "255.255.255.255:65535"},
		{"tcp4 zeros", "PROXY TCP4 0.0.0.0 10.0.0.1 0 1\r\n", ProtoTCP4, "0.0.0.0:0", "10.0.0.1:1"},
		{"tcp6 full", "PROXY TCP6 2001:0db8:0000:0000:0000:0000:0000:0001 2001:db8::2 1 2\r\n", ProtoTCP6, "[2001:db8::1]:1", "[2001:db8::2]:2"},
		{"tcp6 max", "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF 65535 65535\r\n", ProtoTCP6, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"},
		{"tcp6 v4-mapped", "PROXY TCP6 ::ffff:127.0.0.2 ::1 40000 1883\r\n", ProtoTCP6, "127.0.0.2:40000", "[::1]:1883"},
		{"unknown short", "PROXY UNKNOWN\r\n", ProtoUnspec, "", ""},
		{"unknown with addresses", "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", ProtoUnspec, "", ""},
		{"unknown anything", "PROXY UNKNOWN whatever \x00 it says\r\n", ProtoUnspec, "", ""},
		{"unknown worst case", worst, ProtoUnspec, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseAll(t, []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if h.Version != 1 || h.Command != Proxy || h.Protocol != tt.proto || h.TLVs != nil || h.SSL != nil {
				t.Fatalf("header %+v", h)
			}
			var src, dst netip.AddrPort
			if tt.src != "" {
				src, dst = ap(tt.src), ap(tt.dst)
			}
			if h.Source != src || h.Destination != dst {
				t.Fatalf("addresses %v %v, want %v %v", h.Source, h.Destination, src, dst)
			}
			if h.HasAddresses() != (tt.src != "") {
				t.Fatalf("HasAddresses = %v", h.HasAddresses())
			}
		})
	}
}

func TestParseV1Invalid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error // in addition to ErrInvalidHeader
	}{
		{"no space", "PROXY\r\n", nil},
		{"no protocol", "PROXY \r\n", nil},
		{"no fields", "PROXY TCP4\r\n", nil},
		{"bad protocol", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", nil},
		{"lower-case protocol", "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", nil},
		{"PROXY without space", "PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", nil},
		{"double space", "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", nil},
		{"two spaces before port", "PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", nil},
		{"trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", nil},
		{"tab", "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", nil},
		{"missing port", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", nil},
		{"extra field", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", nil},
		{"leading zero octet", "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", ErrInvalidAddress},
		{"octet 256", "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", ErrInvalidAddress},
		{"three octets", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", ErrInvalidAddress},
		{"five octets", "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", ErrInvalidAddress},
		{"hex octet", "PROXY TCP4 0x1.2.3.4 5.6.7.8 1 2\r\n", ErrInvalidAddress},
		{"empty address", "PROXY TCP4  5.6.7.8 1 2\r\n", nil},
		{"v6 in TCP4", "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", ErrInvalidAddress},
		{"v4 in TCP6", "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", ErrInvalidAddress},
		{"v4 dst in TCP6", "PROXY TCP6 ::1 1.2.3.4 1 2\r\n", ErrInvalidAddress},
		{"zone", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", ErrInvalidAddress},
		{"two double colons", "PROXY TCP6 1::2::3 ::1 1 2\r\n", ErrInvalidAddress},
		{"five hex digits", "PROXY TCP6 12345::1 ::1 1 2\r\n", ErrInvalidAddress},
		{"brackets", "PROXY TCP6 [::1] ::1 1 2\r\n", ErrInvalidAddress},
		{"hostname", "PROXY TCP4 localhost 5.6.7.8 1 2\r\n", ErrInvalidAddress},
		{"port 65536", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", ErrInvalidAddress},
		{"port 99999", "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", ErrInvalidAddress},
		{"port leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", ErrInvalidAddress},
		{"port 00", "PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", ErrInvalidAddress},
		{"port six digits", "PROXY TCP4 1.2.3.4 5.6.7.8 000001 2\r\n", ErrInvalidAddress},
		{"port sign", "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", ErrInvalidAddress},
		{"port negative", "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", ErrInvalidAddress},
		{"port hex", "PROXY TCP4 1.2.3.4 5.6.7.8 0x50 2\r\n", ErrInvalidAddress},
		{"port letters", "PROXY TCP4 1.2.3.4 5.6.7.8 http 2\r\n", ErrInvalidAddress},
		{"LF only", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", nil},
		{"CR only", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\r\n", nil},
		{"CR CR LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", nil},
		{"NUL", "PROXY TCP4 1.2.3.4\x005.6.7.8 1 2\r\n", nil},
		{"LF CR", "PROXY UNKNOWN\n\r", nil},
		{"too long", "PROXY UNKNOWN " + strings.Repeat("x", 200) + "\r\n", ErrHeaderTooLong},
		{"108 bytes", "PROXY UNKNOWN " + strings.Repeat("x", MaxV1HeaderLen-len("PROXY UNKNOWN ")-1) + "\r\n", ErrHeaderTooLong},
		{"CR at byte 107", "PROXY UNKNOWN " + strings.Repeat("x", MaxV1HeaderLen-len("PROXY UNKNOWN ")-1) + "\r", ErrHeaderTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseAll(t, []byte(tt.in))
			if !errors.Is(err, ErrInvalidHeader) {
				t.Fatalf("got %+v, %v; want ErrInvalidHeader", h, err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("got %v; want %v", err, tt.want)
			}
		})
	}
}

func TestParseV1ReadsNoMoreThan107Bytes(t *testing.T) {
	in := []byte("PROXY UNKNOWN " + strings.Repeat("x", 500))
	br := bufio.NewReaderSize(bytes.NewReader(in), 1024)
	if _, err := Parse(br); !errors.Is(err, ErrHeaderTooLong) {
		t.Fatal(err)
	}
	if left := br.Buffered(); len(in)-left != MaxV1HeaderLen {
		t.Fatalf("consumed %d bytes", len(in)-left)
	}
}

func TestParseV2(t *testing.T) {
	uid := bytes.Repeat([]byte{'u'}, 128)
	big := bytes.Repeat([]byte{0xAA}, MaxV2HeaderLen-16-12-3)
	tests := []struct {
		name     string
		in       []byte
		cmd      Command
		proto    byte
		src, dst string
		tlvs     int
	}{
		{"tcp4", v2(0x21, 0x11, inet4("192.0.2.1", "198.51.100.7", 51234, 8883)), Proxy, ProtoTCP4, "192.0.2.1:51234", "198.51.100.7:8883", 0},
		{"tcp6", v2(0x21, 0x21, inet6("2001:db8::1", "2001:db8::ff", 1, 65535)), Proxy, ProtoTCP6, "[2001:db8::1]:1", "[2001:db8::ff]:65535", 0},
		{"tcp6 v4-mapped", v2(0x21, 0x21, inet6("::ffff:10.1.2.3", "::1", 7, 8)), Proxy, ProtoTCP6, "10.1.2.3:7", "[::1]:8", 0},
		{"local", v2(0x20, 0x00), Local, ProtoUnspec, "", "", 0},
		{"local with addresses", v2(0x20, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2)), Local, ProtoTCP4, "", "", 0},
		{"local with TLV", v2(0x20, 0x00, str(TypeNOOP, "")), Local, ProtoUnspec, "", "", 1},
		{"proxy unspec", v2(0x21, 0x00), Proxy, ProtoUnspec, "", "", 0},
		{"proxy unspec with bytes as TLVs", v2(0x21, 0x00, str(TypeAuthority, "x")), Proxy, ProtoUnspec, "", "", 1},
		{"udp4 skipped", v2(0x21, 0x12, inet4("1.2.3.4", "5.6.7.8", 1, 2)), Proxy, ProtoUDP4, "", "", 0},
		{"udp6 skipped", v2(0x21, 0x22, inet6("::1", "::2", 1, 2)), Proxy, ProtoUDP6, "", "", 0},
		{"unix skipped", v2(0x21, 0x31, make([]byte, 216)), Proxy, ProtoUnix, "", "", 0},
		{"unix dgram skipped", v2(0x21, 0x32, make([]byte, 216), str(TypeNOOP, "ab")), Proxy, ProtoUnixDG, "", "", 1},
		{"inet unspec transport", v2(0x21, 0x10, inet4("1.2.3.4", "5.6.7.8", 1, 2)), Proxy, 0x10, "", "", 0},
		{"tlvs", v2(0x21, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2),
			str(TypeALPN, "mqtt"), str(TypeAuthority, "mqtt.example.com"), str(TypeNOOP, ""), str(TypeNOOP, "pad"),
			tlv(TypeUniqueID, uid), str(TypeNetNS, "blue"), str(0xEA, "\x01vpce-0123"), str(0xEE, "x"), str(0xEE, "y"), str(0x42, "unregistered")),
			Proxy, ProtoTCP4, "1.2.3.4:1", "5.6.7.8:2", 10},
		{"crc32c", withCRC(v2(0x21, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2), str(TypeALPN, "mqtt"))), Proxy, ProtoTCP4, "1.2.3.4:1", "5.6.7.8:2", 2},
		{"crc32c local", withCRC(v2(0x20, 0x00)), Local, ProtoUnspec, "", "", 1},
		{"exactly the size limit", v2(0x21, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2), tlv(0xE7, big)), Proxy, ProtoTCP4, "1.2.3.4:1", "5.6.7.8:2", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseAll(t, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if h.Version != 2 || h.Command != tt.cmd || h.Protocol != tt.proto || len(h.TLVs) != tt.tlvs {
				t.Fatalf("header %+v", h)
			}
			var src, dst netip.AddrPort
			if tt.src != "" {
				src, dst = ap(tt.src), ap(tt.dst)
			}
			if h.Source != src || h.Destination != dst {
				t.Fatalf("addresses %v %v, want %v %v", h.Source, h.Destination, src, dst)
			}
		})
	}
	t.Run("tlv values", func(t *testing.T) {
		h, err := parseAll(t, tests[len(tests)-4].in)
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := h.TLV(TypeAuthority); !ok || string(v) != "mqtt.example.com" {
			t.Fatalf("authority %q %v", v, ok)
		}
		if v, _ := h.TLV(0xEE); string(v) != "x" {
			t.Fatalf("first 0xEE %q", v)
		}
		if _, ok := h.TLV(TypeSSL); ok || h.SSL != nil {
			t.Fatal("no SSL TLV was sent")
		}
	})
}

func TestParseV2Invalid(t *testing.T) {
	a4 := inet4("1.2.3.4", "5.6.7.8", 1, 2)
	badCRC := withCRC(v2(0x21, 0x11, a4))
	badCRC[len(badCRC)-1] ^= 1
	flipped := withCRC(v2(0x21, 0x11, a4))
	flipped[17] ^= 0x80 // the source address changed after the checksum
	tooBig := v2(0x21, 0x11, a4, tlv(0xE7, make([]byte, MaxV2HeaderLen-16-12-3+1)))
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"version 1", v2(0x11, 0x11, a4), nil},
		{"version 3", v2(0x31, 0x11, a4), nil},
		{"version 0", v2(0x01, 0x11, a4), nil},
		{"command 2", v2(0x22, 0x11, a4), nil},
		{"command 15", v2(0x2F, 0x11, a4), nil},
		{"family 4", v2(0x21, 0x41, a4), nil},
		{"family 15", v2(0x21, 0xF1, a4), nil},
		{"transport 3", v2(0x21, 0x13, a4), nil},
		{"inet address block short", v2(0x21, 0x11, a4[:11]), ErrInvalidAddress},
		{"inet6 with inet4 block", v2(0x21, 0x21, a4), ErrInvalidAddress},
		{"unix block short", v2(0x21, 0x31, make([]byte, 215)), ErrInvalidAddress},
		{"local inet block short", v2(0x20, 0x11, a4[:4]), ErrInvalidAddress},
		{"oversize", tooBig, ErrHeaderTooLong},
		{"length 65535", append([]byte(sig2), 0x21, 0x11, 0xFF, 0xFF), ErrHeaderTooLong},
		{"one stray byte", v2(0x21, 0x11, a4, []byte{0x04}), ErrInvalidTLV},
		{"two stray bytes", v2(0x21, 0x11, a4, []byte{0x04, 0x00}), ErrInvalidTLV},
		{"tlv longer than header", v2(0x21, 0x11, a4, []byte{0x04, 0x00, 0x05, 'a'}), ErrInvalidTLV},
		{"stray byte after tlv", v2(0x21, 0x11, a4, str(TypeALPN, "mqtt"), []byte{0}), ErrInvalidTLV},
		{"crc mismatch", badCRC, ErrChecksum},
		{"crc over changed header", flipped, ErrChecksum},
		{"crc 3 bytes", v2(0x21, 0x11, a4, tlv(TypeCRC32C, []byte{1, 2, 3})), ErrInvalidTLV},
		{"crc 5 bytes", v2(0x21, 0x11, a4, tlv(TypeCRC32C, []byte{1, 2, 3, 4, 5})), ErrInvalidTLV},
		{"duplicate crc", withCRC(withCRC(v2(0x21, 0x11, a4))), ErrInvalidTLV},
		{"duplicate ssl", v2(0x21, 0x11, a4, ssl(0x01, 0), ssl(0x01, 0)), ErrInvalidTLV},
		{"duplicate authority", v2(0x21, 0x11, a4, str(TypeAuthority, "a"), str(TypeAuthority, "b")), ErrInvalidTLV},
		{"duplicate alpn", v2(0x21, 0x11, a4, str(TypeALPN, "a"), str(TypeALPN, "a")), ErrInvalidTLV},
		{"unique id 129", v2(0x21, 0x11, a4, tlv(TypeUniqueID, make([]byte, 129))), ErrInvalidTLV},
		{"authority not utf-8", v2(0x21, 0x11, a4, str(TypeAuthority, "\xff\xfe")), ErrInvalidTLV},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseAll(t, tt.in)
			if !errors.Is(err, ErrInvalidHeader) {
				t.Fatalf("got %+v, %v; want ErrInvalidHeader", h, err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("got %v; want %v", err, tt.want)
			}
		})
	}
}

func TestParseV2OversizeReadsOnlyFixedPart(t *testing.T) {
	in := append([]byte(sig2), 0x21, 0x11, 0xFF, 0xFF)
	in = append(in, make([]byte, 1000)...)
	br := bufio.NewReaderSize(bytes.NewReader(in), 2048)
	if _, err := Parse(br); !errors.Is(err, ErrHeaderTooLong) {
		t.Fatal(err)
	}
	if consumed := len(in) - br.Buffered(); consumed != 16 {
		t.Fatalf("consumed %d bytes", consumed)
	}
}

// validHeaders are complete headers of every kind, for truncation and
// split-read tests.
func validHeaders() map[string][]byte {
	return map[string][]byte{
		"v1 tcp4":    []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"),
		"v1 tcp6":    []byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"),
		"v1 unknown": []byte("PROXY UNKNOWN\r\n"),
		"v2 tcp4":    v2(0x21, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2)),
		"v2 local":   v2(0x20, 0x00),
		"v2 tcp6 ssl crc": withCRC(v2(0x21, 0x21, inet6("2001:db8::1", "2001:db8::2", 3, 4),
			ssl(0x07, 0, str(SubtypeSSLVersion, "TLSv1.3"), str(SubtypeSSLCN, "sensor-17")),
			str(TypeAuthority, "mqtt.example.com"))),
		"v2 unix": v2(0x21, 0x31, make([]byte, 216)),
	}
}

func TestParseTruncatedAtEveryByte(t *testing.T) {
	for name, in := range validHeaders() {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(bufio.NewReader(bytes.NewReader(in))); err != nil {
				t.Fatalf("complete header: %v", err)
			}
			for n := range len(in) {
				h, err := Parse(bufio.NewReader(bytes.NewReader(in[:n])))
				switch {
				case n == 0 && err == io.EOF:
				case n > 0 && errors.Is(err, ErrInvalidHeader) && errors.Is(err, io.ErrUnexpectedEOF):
				default:
					t.Fatalf("%d of %d bytes: got %+v, %v", n, len(in), h, err)
				}
			}
		})
	}
}

func TestParseSplitReads(t *testing.T) {
	for name, in := range validHeaders() {
		t.Run(name, func(t *testing.T) {
			want, err := Parse(bufio.NewReader(bytes.NewReader(in)))
			if err != nil {
				t.Fatal(err)
			}
			all := append(append([]byte(nil), in...), payload...)
			br := bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(all)), 16)
			got, err := Parse(br)
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != want.Version || got.Source != want.Source || len(got.TLVs) != len(want.TLVs) {
				t.Fatalf("one byte at a time: %+v, want %+v", got, want)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != payload {
				t.Fatalf("rest %q", rest)
			}
		})
	}
}

func TestParseNoHeader(t *testing.T) {
	for _, in := range []string{
		payload,                    // MQTT CONNECT
		"\x16\x03\x01\x02\x00\x01", // TLS ClientHello
		"GET /mqtt HTTP/1.1\r\n",
		"PRXY TCP4",
		"PROXx",
		"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"\r\n\r\n\x00\r\nQUIT\r", // v2 signature with a wrong last byte
		"\r\n\r\n\x01",
		"\x00",
	} {
		br := bufio.NewReader(strings.NewReader(in))
		if _, err := Parse(br); err != ErrNoHeader {
			t.Errorf("%q: got %v, want ErrNoHeader", in, err)
		}
		if br.Buffered() != len(in) {
			t.Errorf("%q: consumed bytes", in)
		}
	}
	if _, err := Parse(bufio.NewReader(strings.NewReader(""))); err != io.EOF {
		t.Errorf("empty: %v", err)
	}
}

// A v2 header bigger than the bufio buffer is read whole.
func TestParseV2LargerThanBuffer(t *testing.T) {
	in := v2(0x21, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2), tlv(0xE5, bytes.Repeat([]byte{'z'}, 5000)))
	h, err := parseAll(t, in)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := h.TLV(0xE5); len(v) != 5000 {
		t.Fatalf("TLV of %d bytes", len(v))
	}
}

func TestCommandString(t *testing.T) {
	if Local.String() != "LOCAL" || Proxy.String() != "PROXY" || Command(7).String() != "Command(7)" {
		t.Fatal(Local, Proxy, Command(7))
	}
}

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct {
		name string
		in   []byte
	}{
		{"v1", []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n")},
		{"v2", v2(0x21, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2))},
		{"v2-ssl", []byte(handBuilt)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := bytes.NewReader(bc.in)
			br := bufio.NewReader(r)
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(bc.in)
				br.Reset(r)
				if _, err := Parse(br); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
