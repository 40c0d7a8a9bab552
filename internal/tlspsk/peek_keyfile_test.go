package tlspsk

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clientFlight captures the first bytes a client sends.
func clientFlight(t *testing.T, cfg *Config) []byte {
	t.Helper()
	cc, sc := tcpPair(t)
	go Client(cc, cfg).Handshake(context.Background())
	sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(sc, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	io.ReadFull(sc, body)
	return append(hdr, body...)
}

// splitRecords re-frames one handshake record into records of n bytes.
func splitRecords(rec []byte, n int) []byte {
	var out []byte
	body := rec[5:]
	for len(body) > 0 {
		k := min(n, len(body))
		out = append(out, recordTypeHandshake, 3, 1, byte(k>>8), byte(k))
		out = append(out, body[:k]...)
		body = body[k:]
	}
	return out
}

// slowConn returns its data a few bytes per Read.
type slowReader struct {
	data []byte
	n    int
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), s.n, len(s.data))
	copy(p, s.data[:k])
	s.data = s.data[k:]
	return k, nil
}

func TestPeekClientHello(t *testing.T) {
	tls13 := clientFlight(t, clientCfg())
	c12 := clientCfg()
	c12.MaxVersion = VersionTLS12
	tls12 := clientFlight(t, c12)
	certHello := (&clientHelloMsg{vers: VersionTLS12, random: make([]byte, 32), cipherSuites: []uint16{0x1301, 0xC02F},
		compressionMethods: []uint8{0}, hasExtensions: true, supportedVersions: []uint16{VersionTLS13, VersionTLS12},
		serverName: "broker", hasKeyShares: true, keyShares: []keyShare{{X25519, make([]byte, 32)}}}).marshal()
	ticket := baseHello13()
	ticket.pskIdentities[0].age = 12345 // a crypto/tls session ticket, not an external PSK
	mixed12 := (&clientHelloMsg{vers: VersionTLS12, random: make([]byte, 32), cipherSuites: []uint16{0x00A8, 0xC02F},
		compressionMethods: []uint8{0}}).marshal()
	rec := func(m []byte) []byte { return append([]byte{22, 3, 1, byte(len(m) >> 8), byte(len(m))}, m...) }

	for _, tc := range []struct {
		name string
		data []byte
		want bool
	}{
		{"tls13 psk", tls13, true},
		{"tls13 psk split", splitRecords(tls13, 7), true},
		{"tls12 psk only", tls12, true},
		{"tls12 psk split", splitRecords(tls12, 1), true},
		{"certificate client", rec(certHello), false},
		{"resumption ticket", rec(ticket.marshal()), false},
		{"tls12 mixed suites", rec(mixed12), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(&slowReader{data: append([]byte(nil), tc.data...), n: 3}, PeekBufferSize)
			info, err := PeekClientHello(br)
			if err != nil {
				t.Fatal(err)
			}
			if info.OffersPSK() != tc.want {
				t.Fatalf("OffersPSK = %v, want %v (%+v)", info.OffersPSK(), tc.want, info)
			}
			all, _ := io.ReadAll(br)
			if !bytes.Equal(all, tc.data) {
				t.Fatal("peek consumed data")
			}
			ok, err := ClientHelloOffersPSK(tc.data)
			if err != nil || ok != tc.want {
				t.Fatalf("ClientHelloOffersPSK = %v, %v", ok, err)
			}
			if _, err := ClientHelloOffersPSK(tc.data[:len(tc.data)-1]); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("short data: %v", err)
			}
		})
	}
	if info, _ := PeekClientHello(bufio.NewReader(bytes.NewReader(tls13))); info == nil || len(info.PSKIdentities) != 1 || info.PSKIdentities[0] != testIdentity {
		t.Fatalf("identities: %+v", info)
	}
	for _, bad := range [][]byte{[]byte("GET / HTTP/1.1\r\n\r\n"), {22, 3, 1, 0, 0}, {22, 3, 1, 0, 4, 2, 0, 0, 0}} {
		if _, err := PeekClientHello(bufio.NewReader(bytes.NewReader(bad))); !errors.Is(err, ErrNotTLS) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
	// A reader too small to hold the hello fails cleanly.
	if _, err := PeekClientHello(bufio.NewReaderSize(bytes.NewReader(tls13), 16)); !errors.Is(err, ErrNotTLS) {
		t.Fatalf("small buffer: %v", err)
	}
}

// The routing helper and PeekedConn in front of a real server.
func TestPeekedConnHandshake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		br := bufio.NewReaderSize(nc, PeekBufferSize)
		info, err := PeekClientHello(br)
		if err != nil || !info.OffersPSK() {
			return
		}
		c := Server(PeekedConn(nc, br), serverCfg())
		io.Copy(c, c)
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := Client(nc, clientCfg())
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("%q %v", buf, err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadPSKFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "psk")
	writeFile(t, path, "# devices\n\nsensor-17:000102030405060708090a0b0c0d0e0f\r\nurn:dev:9 : 101112131415161718191a1b1c1d1e1f\n")
	f, err := LoadPSKFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := f.LookupPSK("sensor-17"); !ok || len(k) != 16 || k[15] != 0x0f {
		t.Fatal("sensor-17 missing")
	}
	if _, ok := f.LookupPSK("urn:dev:9"); !ok {
		t.Fatal("identity with colons missing")
	}
	k, _ := f.LookupPSK("sensor-17")
	k[0] = 99
	if k2, _ := f.LookupPSK("sensor-17"); k2[0] != 0 {
		t.Fatal("LookupPSK does not return a copy")
	}
	secret := "deadbeefdeadbeefdeadbeefdeadbeez"
	for _, tc := range []struct{ content, want string }{
		{"a:00\n", ":1: key of \"a\" is 1 bytes"},
		{"# x\nno colon here\n", ":2: expected identity:hexkey"},
		{":000102030405060708090a0b0c0d0e0f\n", ":1: empty identity"},
		{"a:" + secret + "\n", ":1: key of \"a\" is not valid hex"},
		{"a:000102030405060708090a0b0c0d0e0f\na:000102030405060708090a0b0c0d0e0f\n", ":2: duplicate identity"},
	} {
		p := filepath.Join(dir, "bad")
		writeFile(t, p, tc.content)
		_, err := LoadPSKFile(p)
		if !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%q: %v", tc.content, err)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "0001020304") {
			t.Fatalf("error echoes key material: %v", err)
		}
	}
	if _, err := LoadPSKFile(filepath.Join(dir, "missing")); !errors.Is(err, ErrKeyFile) {
		t.Fatal(err)
	}
}

func TestFileStoreWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "psk")
	writeFile(t, path, "a:000102030405060708090a0b0c0d0e0f\n")
	f, err := LoadPSKFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Watch(ctx, 10*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil))); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor := func(cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("condition not met; logs:\n%s", logs.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	writeFile(t, path, "a:000102030405060708090a0b0c0d0e0f\nb:101112131415161718191a1b1c1d1e1f\n")
	waitFor(func() bool { _, ok := f.LookupPSK("b"); return ok })
	// A broken file keeps the old keys, and the log says why.
	writeFile(t, path, "a:000102030405060708090a0b0c0d0e0f\nbroken line\n")
	waitFor(func() bool { return strings.Contains(logs.String(), "expected identity:hexkey") })
	if _, ok := f.LookupPSK("b"); !ok {
		t.Fatal("old keys dropped after a broken reload")
	}
	if strings.Contains(logs.String(), "000102") {
		t.Fatal("log contains key material")
	}
	// Same size, same mtime, new content: caught by the periodic hash.
	writeFile(t, path, "c:000102030405060708090a0b0c0d0e0f\n")
	st, _ := os.Stat(path)
	writeFile(t, path, "d:000102030405060708090a0b0c0d0e0f\n")
	os.Chtimes(path, st.ModTime(), st.ModTime())
	waitFor(func() bool { _, ok := f.LookupPSK("d"); return ok })
	if _, ok := f.LookupPSK("b"); ok {
		t.Fatal("removed identity still present")
	}
}

// A FileStore works as the server's KeyStore end to end.
func TestFileStoreServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "psk")
	writeFile(t, path, testIdentity+":"+strings.TrimSpace(hexOf(testKey))+"\n")
	f, err := LoadPSKFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := mustHandshake(t, clientCfg(), &Config{Keys: f})
	exchange(t, r.client, r.server, 10)
}
