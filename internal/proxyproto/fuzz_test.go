package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse feeds arbitrary bytes to Parse. Seeds: the valid headers of
// the unit tests (here) and testdata/fuzz/FuzzParse (real HAProxy headers
// and malformed ones). Properties checked:
//   - no panic, and only ErrNoHeader, ErrInvalidHeader or io.EOF come back
//     from an in-memory reader;
//   - ErrNoHeader consumes nothing;
//   - a header consumes exactly its bytes (at most 107 for v1, 16+len and at
//     most MaxV2HeaderLen for v2) and the rest stays readable;
//   - the header is self-delimiting: parsing only its bytes gives the same
//     result, and parsing a strict prefix of them fails;
//   - what is returned is consistent (addresses only with the Proxy
//     command over TCP, identities only with the certificate flag, clean
//     strings).
func FuzzParse(f *testing.F) {
	for _, h := range validHeaders() {
		f.Add(h)
	}
	f.Add([]byte(handBuilt))
	f.Add([]byte(payload))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 16)
		h, err := Parse(br)
		rest, rerr := io.ReadAll(br)
		if rerr != nil {
			t.Fatal(rerr)
		}
		consumed := len(data) - len(rest)
		if !bytes.Equal(rest, data[consumed:]) {
			t.Fatal("bytes after the header changed")
		}
		if err != nil {
			switch {
			case err == ErrNoHeader:
				if consumed != 0 {
					t.Fatalf("ErrNoHeader consumed %d bytes", consumed)
				}
			case err == io.EOF:
				if len(data) != 0 {
					t.Fatal("io.EOF on non-empty input")
				}
			case errors.Is(err, ErrInvalidHeader):
			default:
				t.Fatalf("unexpected error %v", err)
			}
			if h != nil {
				t.Fatal("header with an error")
			}
			return
		}
		switch h.Version {
		case 1:
			if consumed > MaxV1HeaderLen || !bytes.HasSuffix(data[:consumed], []byte("\r\n")) {
				t.Fatalf("v1 consumed %d bytes", consumed)
			}
		case 2:
			if consumed < 16 || consumed > MaxV2HeaderLen || consumed != 16+int(data[14])<<8+int(data[15]) {
				t.Fatalf("v2 consumed %d bytes", consumed)
			}
		default:
			t.Fatalf("version %d", h.Version)
		}
		checkConsistent(t, h)

		again, err := Parse(bufio.NewReader(bytes.NewReader(data[:consumed])))
		if err != nil || !reflect.DeepEqual(again, h) {
			t.Fatalf("header alone parses differently: %+v, %v", again, err)
		}
		for _, n := range []int{0, 1, consumed / 2, consumed - 1} {
			if n < 0 || n >= consumed {
				continue
			}
			if h2, err := Parse(bufio.NewReader(bytes.NewReader(data[:n]))); err == nil {
				t.Fatalf("prefix of %d of %d bytes parsed: %+v", n, consumed, h2)
			}
		}
	})
}

func checkConsistent(t *testing.T, h *Header) {
	t.Helper()
	if h.Command != Local && h.Command != Proxy {
		t.Fatalf("command %v", h.Command)
	}
	if h.Source.IsValid() != h.Destination.IsValid() {
		t.Fatal("one address only")
	}
	if h.Source.IsValid() {
		if h.Command != Proxy || h.Protocol != ProtoTCP4 && h.Protocol != ProtoTCP6 {
			t.Fatalf("addresses with %v %#x", h.Command, h.Protocol)
		}
		if h.Source.Addr().Is4In6() || h.Source.Addr().Zone() != "" {
			t.Fatalf("source %v", h.Source)
		}
	}
	if h.Version == 1 && h.TLVs != nil {
		t.Fatal("v1 with TLVs")
	}
	s := h.SSL
	if s == nil {
		return
	}
	if _, ok := h.TLV(TypeSSL); !ok {
		t.Fatal("SSL info without SSL TLV")
	}
	if s.Verified() && (s.Client&ClientSSL == 0 || s.Verify != 0) {
		t.Fatal("Verified without TLS or with a failed verification")
	}
	if (s.CN != "" || s.ClientCert != nil) && !s.HasClientCert() {
		t.Fatal("identity without the certificate flag")
	}
	if s.CN != "" && (!utf8.ValidString(s.CN) || strings.ContainsAny(s.CN, "\x00\r\n")) {
		t.Fatalf("CN %q", s.CN)
	}
	for _, v := range []string{s.Version, s.Cipher, s.SigAlg, s.KeyAlg, s.Group, s.SigScheme} {
		if !printableASCII([]byte(v)) {
			t.Fatalf("string %q", v)
		}
	}
	if s.ClientCert != nil && (len(s.ClientCert) == 0 || s.ClientCert[0] != 0x30) {
		t.Fatalf("client certificate %x", s.ClientCert)
	}
}

// readSeed reads one file of the fuzz corpus (go test fuzz v1, one []byte).
func readSeed(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzParse", name))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(b), "\n", 3)
	if len(lines) < 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") {
		t.Fatalf("%s: not a corpus file", name)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return []byte(s)
}

// The haproxy-* seeds are headers HAProxy 2.6.12 sent (captured with the
// configuration of TestHAProxy, followed by the client's first line).
func TestCapturedHAProxyHeaders(t *testing.T) {
	parse := func(name string) (*Header, string) {
		t.Helper()
		br := bufio.NewReader(bytes.NewReader(readSeed(t, name)))
		h, err := Parse(br)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rest, _ := io.ReadAll(br)
		return h, string(rest)
	}
	h, rest := parse("haproxy-send-proxy-v1")
	if h.Version != 1 || h.Source != ap("127.0.0.2:45159") || h.Destination != ap("127.0.0.1:19001") || rest != "hello-v1\n" {
		t.Fatalf("v1: %+v %q", h, rest)
	}
	h, rest = parse("haproxy-send-proxy-v2")
	if h.Version != 2 || h.Source.Addr() != netip.MustParseAddr("127.0.0.2") || h.Destination != ap("127.0.0.1:19002") || rest != "hello-v2\n" {
		t.Fatalf("v2: %+v %q", h, rest)
	}
	h, rest = parse("haproxy-send-proxy-v2-ipv6")
	if h.Protocol != ProtoTCP6 || h.Source.Addr() != netip.IPv6Loopback() || rest != "hello-v6\n" {
		t.Fatalf("v2 IPv6: %+v %q", h, rest)
	}
	h, _ = parse("haproxy-v2-local-healthcheck")
	if h.Command != Local || h.HasAddresses() {
		t.Fatalf("LOCAL: %+v", h)
	}
	h, rest = parse("haproxy-v2-ssl-cn-crc-uniqueid")
	s := h.SSL
	if !s.Verified() || s.CN != "sensor-17" || s.Version != "TLSv1.3" || s.Cipher != "TLS_AES_256_GCM_SHA384" ||
		s.SigAlg != "ecdsa-with-SHA256" || s.KeyAlg != "EC256" || rest != "hello-tls\n" {
		t.Fatalf("SSL with certificate: %+v %q", s, rest)
	}
	if id, _ := h.TLV(TypeUniqueID); len(id) != 64 {
		t.Fatalf("UNIQUE_ID %q", id)
	}
	h, rest = parse("haproxy-v2-ssl-nocert-tls12")
	s = h.SSL
	if !s.TLS() || s.HasClientCert() || s.Verified() || s.Version != "TLSv1.2" || s.Cipher != "ECDHE-ECDSA-AES256-GCM-SHA384" || rest != "hello-nocert\n" {
		t.Fatalf("SSL without certificate: %+v %q", s, rest)
	}
	if id, ok := h.TLV(TypeUniqueID); !ok || len(id) != 0 {
		t.Fatalf("UNIQUE_ID %q %v: HAProxy sends it empty without a certificate", id, ok)
	}
}
