package tlspsk

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

func mustHandshake(t *testing.T, ccfg, scfg *Config) hsResult {
	t.Helper()
	r := handshakePair(t, ccfg, scfg)
	if r.clientErr != nil || r.serverErr != nil {
		t.Fatalf("handshake: client %v, server %v", r.clientErr, r.serverErr)
	}
	return r
}

func clientCfg() *Config { return &Config{Identity: testIdentity, Key: testKey} }
func serverCfg() *Config { return &Config{Keys: testStore()} }

func TestHelloRetryRequest(t *testing.T) {
	for _, tc := range []struct{ client, server []CurveID }{
		{[]CurveID{P256, X25519}, []CurveID{X25519}}, // client's share is for a group the server won't take
		{[]CurveID{X25519, P256}, []CurveID{P256}},
	} {
		c, s := clientCfg(), serverCfg()
		c.CurvePreferences, s.CurvePreferences = tc.client, tc.server
		r := mustHandshake(t, c, s)
		if !r.client.didHRR || !r.server.didHRR {
			t.Fatal("no HelloRetryRequest")
		}
		exchange(t, r.client, r.server, 5000)
		exchange(t, r.server, r.client, 5000)
	}
	// No common group at all.
	c, s := clientCfg(), serverCfg()
	c.CurvePreferences, s.CurvePreferences = []CurveID{X25519}, []CurveID{P256}
	r := handshakePair(t, c, s)
	if !errors.Is(r.serverErr, ErrNegotiation) || r.clientErr == nil {
		t.Fatalf("no common group: client %v, server %v", r.clientErr, r.serverErr)
	}
}

func TestVersionNegotiation(t *testing.T) {
	for _, tc := range []struct {
		cmin, cmax, smin, smax, want uint16
	}{
		{0, 0, 0, 0, VersionTLS13},
		{0, 0, 0, VersionTLS12, VersionTLS12},
		{0, VersionTLS12, 0, 0, VersionTLS12},
		{VersionTLS13, 0, 0, 0, VersionTLS13},
		{0, VersionTLS12, VersionTLS13, 0, 0},
	} {
		c, s := clientCfg(), serverCfg()
		c.MinVersion, c.MaxVersion, s.MinVersion, s.MaxVersion = tc.cmin, tc.cmax, tc.smin, tc.smax
		r := handshakePair(t, c, s)
		if tc.want == 0 {
			if r.serverErr == nil || !errors.Is(r.serverErr, ErrNegotiation) {
				t.Fatalf("%+v: expected failure, got %v / %v", tc, r.clientErr, r.serverErr)
			}
			continue
		}
		if r.clientErr != nil || r.serverErr != nil || r.client.ConnectionState().Version != tc.want {
			t.Fatalf("%+v: %v / %v / %+v", tc, r.clientErr, r.serverErr, r.client.ConnectionState())
		}
	}
}

func TestKeyUpdate(t *testing.T) {
	r := mustHandshake(t, clientCfg(), serverCfg())
	cOut, sOut := append([]byte(nil), r.client.out.secret...), append([]byte(nil), r.server.out.secret...)
	if err := r.client.SendKeyUpdate(true); err != nil {
		t.Fatal(err)
	}
	exchange(t, r.client, r.server, 100) // server reads KeyUpdate, answers with its own
	exchange(t, r.server, r.client, 100) // client reads the answer
	if bytes.Equal(cOut, r.client.out.secret) || bytes.Equal(sOut, r.server.out.secret) {
		t.Fatal("keys not updated in both directions")
	}
	if !bytes.Equal(r.client.out.secret, r.server.in.secret) || !bytes.Equal(r.server.out.secret, r.client.in.secret) {
		t.Fatal("peers disagree on traffic secrets")
	}
	for i := 0; i < 3; i++ {
		if err := r.server.SendKeyUpdate(false); err != nil {
			t.Fatal(err)
		}
	}
	exchange(t, r.server, r.client, 70000)
	exchange(t, r.client, r.server, 70000)
}

func TestLargeWritesAndConcurrency(t *testing.T) {
	for _, v := range []uint16{VersionTLS12, VersionTLS13} {
		c, s := clientCfg(), serverCfg()
		c.MaxVersion = v
		r := mustHandshake(t, c, s)
		const size = 3<<20 + 123
		var wg sync.WaitGroup
		for _, pair := range [][2]*Conn{{r.client, r.server}, {r.server, r.client}} {
			wg.Add(1)
			go func(w, rd *Conn) {
				defer wg.Done()
				data := make([]byte, size)
				rand.Read(data)
				errc := make(chan error, 1)
				go func() { _, err := w.Write(data); errc <- err }()
				got := make([]byte, size)
				if _, err := io.ReadFull(rd, got); err != nil {
					t.Error(err)
					return
				}
				if err := <-errc; err != nil || !bytes.Equal(got, data) {
					t.Errorf("write %v / mismatch", err)
				}
			}(pair[0], pair[1])
		}
		wg.Wait()
	}
}

func TestCloseWriteHalfClose(t *testing.T) {
	r := mustHandshake(t, clientCfg(), serverCfg())
	if err := r.client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.client.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after CloseWrite: %v", err)
	}
	if _, err := r.server.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("server read: %v", err)
	}
	exchange(t, r.server, r.client, 1000) // the other direction still works
}

func TestRenegotiationRefused(t *testing.T) {
	c := clientCfg()
	c.MaxVersion = VersionTLS12
	r := mustHandshake(t, c, serverCfg())
	// Client asks to renegotiate: the server refuses and fails.
	hello := &clientHelloMsg{vers: VersionTLS12, random: make([]byte, 32), cipherSuites: []uint16{0x00A8}, compressionMethods: []uint8{0}}
	r.client.writeHandshake(hello.marshal())
	r.client.flush()
	if _, err := r.server.Read(make([]byte, 1)); !errors.Is(err, ErrRenegotiation) {
		t.Fatalf("server: %v", err)
	}

	// Server sends HelloRequest: the client declines and carries on.
	r = mustHandshake(t, c, serverCfg())
	r.server.writeHandshake(emptyMsg(typeHelloRequest))
	r.server.flush()
	exchange(t, r.server, r.client, 100)
	exchange(t, r.client, r.server, 100)
}

// rawHello sends one ClientHello record and returns the alert the server
// answers with (0 when it answered with a handshake message).
func rawHello(t *testing.T, scfg *Config, hello *clientHelloMsg) (alert uint8, serverErr error) {
	t.Helper()
	cc, sc := tcpPair(t)
	srv := Server(sc, scfg)
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		errc <- srv.Handshake(ctx)
	}()
	raw := hello.marshal()
	rec := append([]byte{recordTypeHandshake, 3, 1, byte(len(raw) >> 8), byte(len(raw))}, raw...)
	cc.Write(rec)
	cc.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(cc, hdr); err != nil {
		t.Fatalf("reading answer: %v", err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	io.ReadFull(cc, body)
	cc.Close()
	err := <-errc
	if hdr[0] == recordTypeAlert && len(body) == 2 {
		return body[1], err
	}
	return 0, err
}

func baseHello13() *clientHelloMsg {
	pub := make([]byte, 32)
	rand.Read(pub)
	return &clientHelloMsg{
		vers: VersionTLS12, random: make([]byte, 32), sessionID: make([]byte, 32),
		cipherSuites: []uint16{TLS_AES_128_GCM_SHA256}, compressionMethods: []uint8{0}, hasExtensions: true,
		supportedGroups: []CurveID{X25519}, supportedVersions: []uint16{VersionTLS13},
		hasKeyShares: true, keyShares: []keyShare{{X25519, pub}},
		hasPSKModes: true, pskModes: []uint8{pskModeDHE},
		pskIdentities: []pskIdentity{{[]byte(testIdentity), 0}}, pskBinders: [][]byte{make([]byte, 32)},
	}
}

func TestServerAlerts(t *testing.T) {
	pskKE := baseHello13()
	pskKE.pskModes = []uint8{pskModeKE}
	noModes := baseHello13()
	noModes.hasPSKModes = false
	noPSK := baseHello13()
	noPSK.pskIdentities, noPSK.pskBinders = nil, nil
	badBinder := baseHello13()
	unknown := baseHello13()
	unknown.pskIdentities[0].label = []byte("nobody")
	noEMS := &clientHelloMsg{vers: VersionTLS12, random: make([]byte, 32), cipherSuites: []uint16{0x00A8},
		compressionMethods: []uint8{0}}
	oldVersion := &clientHelloMsg{vers: 0x0302, random: make([]byte, 32), cipherSuites: []uint16{0x00A8},
		compressionMethods: []uint8{0}, hasExtensions: true, extendedMasterSecret: true}
	noSuite := &clientHelloMsg{vers: VersionTLS12, random: make([]byte, 32), cipherSuites: []uint16{0xC02F},
		compressionMethods: []uint8{0}, hasExtensions: true, extendedMasterSecret: true}
	reneg := &clientHelloMsg{vers: VersionTLS12, random: make([]byte, 32), cipherSuites: []uint16{0x00A8},
		compressionMethods: []uint8{0}, hasExtensions: true, extendedMasterSecret: true,
		secureRenegotiationExt: true, secureRenegotiation: []byte{1, 2, 3}}
	for _, tc := range []struct {
		name  string
		hello *clientHelloMsg
		alert uint8
		err   error
	}{
		{"psk_ke only", pskKE, alertHandshakeFailure, ErrNegotiation},
		{"no psk modes", noModes, alertMissingExtension, ErrProtocol},
		{"no psk", noPSK, alertHandshakeFailure, ErrNegotiation},
		{"bad binder", badBinder, alertDecryptError, ErrBadKey},
		{"unknown identity", unknown, alertDecryptError, ErrUnknownIdentity},
		{"no extended master secret", noEMS, alertHandshakeFailure, ErrNegotiation},
		{"TLS 1.1", oldVersion, alertProtocolVersion, ErrNegotiation},
		{"no common suite", noSuite, alertHandshakeFailure, ErrNegotiation},
		{"renegotiation_info not empty", reneg, alertHandshakeFailure, ErrRenegotiation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alert, err := rawHello(t, serverCfg(), tc.hello)
			if alert != tc.alert || !errors.Is(err, tc.err) {
				t.Fatalf("alert %s, err %v; want %s, %v", alertText(alert), err, alertText(tc.alert), tc.err)
			}
		})
	}
}

func TestRecordOverflow(t *testing.T) {
	for _, n := range []int{maxPlaintext + 1, maxCiphertext12 + 1, 0xffff} {
		cc, sc := tcpPair(t)
		srv := Server(sc, serverCfg())
		go func() {
			hdr := []byte{recordTypeHandshake, 3, 1, byte(n >> 8), byte(n)}
			cc.Write(append(hdr, make([]byte, n)...))
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := srv.Handshake(ctx)
		cancel()
		var he *handshakeError
		if !errors.As(err, &he) || he.alert != alertRecordOverflow {
			t.Fatalf("record of %d: %v", n, err)
		}
	}
}

func TestHandshakeMessageTooLarge(t *testing.T) {
	cc, sc := tcpPair(t)
	srv := Server(sc, serverCfg())
	go func() {
		msg := []byte{typeClientHello, 0x01, 0, 0} // claims 64 KiB
		cc.Write(append([]byte{recordTypeHandshake, 3, 1, 0, 4}, msg...))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Handshake(ctx); !errors.Is(err, ErrProtocol) {
		t.Fatalf("got %v", err)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	_, sc := tcpPair(t)
	srv := Server(sc, serverCfg())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := srv.Handshake(ctx)
	if !errors.Is(err, ErrHandshakeTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatal("timeout not honoured")
	}
	if _, err := srv.Read(make([]byte, 1)); !errors.Is(err, ErrHandshakeTimeout) {
		t.Fatalf("read after failed handshake: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []*Config{
		{},                                      // server without keys
		{Keys: testStore(), MinVersion: 0x0302}, // below TLS 1.2
		{Keys: testStore(), CipherSuites: []uint16{0xC02F}},
		{Keys: testStore(), CurvePreferences: []CurveID{24}},
		{Keys: testStore(), MaxVersion: VersionTLS12, CipherSuites: []uint16{TLS_AES_128_GCM_SHA256}},
	} {
		c1, c2 := net.Pipe()
		defer c1.Close()
		defer c2.Close()
		if err := Server(c1, cfg).Handshake(context.Background()); !errors.Is(err, ErrConfig) {
			t.Fatalf("%+v: %v", cfg, err)
		}
	}
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	if err := Client(c1, &Config{Identity: "x"}).Handshake(context.Background()); !errors.Is(err, ErrConfig) {
		t.Fatalf("client without key: %v", err)
	}
}

// A peer that goes away mid-stream yields an error, not a hang or panic.
func TestTruncatedStream(t *testing.T) {
	r := mustHandshake(t, clientCfg(), serverCfg())
	r.client.NetConn().Write([]byte{recordTypeApplicationData, 3, 3, 0, 100, 1, 2, 3})
	r.client.NetConn().Close()
	if _, err := r.server.Read(make([]byte, 10)); err == nil || err == io.EOF {
		t.Fatalf("truncated record: %v", err)
	}
}

// 0-RTT data is refused: the server skips records it cannot decrypt, up to
// a bound, and the handshake completes.
func TestEarlyDataSkipped(t *testing.T) {
	for _, tc := range []struct {
		size int
		ok   bool
		hrr  bool
	}{{100, true, false}, {5000, true, true}, {maxEarlyDataSkip + 1, false, false}} {
		c, s := clientCfg(), serverCfg()
		if tc.hrr {
			c.CurvePreferences, s.CurvePreferences = []CurveID{P256, X25519}, []CurveID{X25519}
		}
		cc, sc := tcpPair(t)
		cli, srv := Client(cc, c), Server(sc, s)
		cli.testEarlyData = tc.size
		errc := make(chan error, 1)
		go func() { errc <- srv.Handshake(context.Background()) }()
		cerr := cli.Handshake(context.Background())
		serr := <-errc
		if tc.ok != (serr == nil && cerr == nil) {
			t.Fatalf("size %d: client %v, server %v", tc.size, cerr, serr)
		}
		if tc.ok {
			exchange(t, cli, srv, 10)
		}
		cc.Close()
		sc.Close()
	}
}

func TestLongIdentityFailsLikeUnknown(t *testing.T) {
	h := baseHello13()
	h.pskIdentities[0].label = bytes.Repeat([]byte("a"), 200)
	alert, err := rawHello(t, &Config{Keys: KeyStoreFunc(func(string) ([]byte, bool) { return testKey, true })}, h)
	if alert != alertDecryptError || !errors.Is(err, ErrUnknownIdentity) {
		t.Fatalf("alert %s, err %v", alertText(alert), err)
	}
}

// A man in the middle that removes TLS 1.3 from the client's hello makes
// the server answer TLS 1.2 with the downgrade sentinel (RFC 8446 §4.1.3),
// and the client aborts.
func TestDowngradeDetected(t *testing.T) {
	cc, mc := tcpPair(t)
	ms, sc := tcpPair(t)
	go func() {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(mc, hdr); err != nil {
			return
		}
		body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
		io.ReadFull(mc, body)
		var h clientHelloMsg
		if h.unmarshal(body) != nil {
			return
		}
		h.supportedVersions, h.pskIdentities, h.pskBinders, h.hasKeyShares, h.keyShares = nil, nil, nil, false, nil
		raw := h.marshal()
		ms.Write(append([]byte{22, 3, 1, byte(len(raw) >> 8), byte(len(raw))}, raw...))
		go io.Copy(ms, mc)
		io.Copy(mc, ms)
	}()
	srv := Server(sc, serverCfg())
	go srv.Handshake(context.Background())
	err := Client(cc, clientCfg()).Handshake(context.Background())
	var he *handshakeError
	if !errors.As(err, &he) || he.alert != alertIllegalParameter || !bytes.Contains([]byte(err.Error()), []byte("downgrade")) {
		t.Fatalf("got %v", err)
	}
}
