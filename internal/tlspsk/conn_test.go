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

var (
	testIdentity = "sensor-17"
	testKey      = []byte("0123456789abcdef0123456789abcdef")
)

func testStore() KeyStore {
	return KeyStoreFunc(func(id string) ([]byte, bool) {
		if id == testIdentity {
			return append([]byte(nil), testKey...), true
		}
		return nil, false
	})
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-ch
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

type hsResult struct {
	client, server       *Conn
	clientErr, serverErr error
}

// handshakePair runs both handshakes concurrently with a timeout.
func handshakePair(t testing.TB, ccfg, scfg *Config) hsResult {
	t.Helper()
	cc, sc := tcpPair(t)
	r := hsResult{client: Client(cc, ccfg), server: Server(sc, scfg)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		r.serverErr = r.server.Handshake(ctx)
		if r.serverErr != nil {
			sc.Close()
		}
	}()
	go func() {
		defer wg.Done()
		r.clientErr = r.client.Handshake(ctx)
		if r.clientErr != nil {
			cc.Close()
		}
	}()
	wg.Wait()
	return r
}

func exchange(t testing.TB, a, b *Conn, size int) {
	t.Helper()
	msg := make([]byte, size)
	rand.Read(msg)
	errc := make(chan error, 1)
	go func() {
		_, err := a.Write(msg)
		errc <- err
	}()
	got := make([]byte, size)
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("data mismatch")
	}
}

func allSuites() []uint16 {
	var ids []uint16
	for _, s := range cipherSuites {
		ids = append(ids, s.id)
	}
	return ids
}

func TestRoundTripEverySuite(t *testing.T) {
	for _, s := range cipherSuites {
		for _, curves := range [][]CurveID{{X25519}, {P256}} {
			t.Run(s.name+"/"+curveName(curves[0]), func(t *testing.T) {
				if !s.ecdhe && s.version == VersionTLS12 && curves[0] == P256 {
					t.Skip("no key exchange group in plain PSK")
				}
				scfg := &Config{Keys: testStore(), CipherSuites: []uint16{s.id}, CurvePreferences: curves, IdentityHint: "moat"}
				ccfg := &Config{Identity: testIdentity, Key: testKey, CipherSuites: []uint16{s.id}, CurvePreferences: curves}
				if s.hash.Size() == 48 && s.version == VersionTLS13 {
					ccfg.KeyHash = s.hash
					scfg.Keys = sha384Store{testStore()}
				}
				r := handshakePair(t, ccfg, scfg)
				if r.clientErr != nil || r.serverErr != nil {
					t.Fatalf("client: %v, server: %v", r.clientErr, r.serverErr)
				}
				for _, c := range []*Conn{r.client, r.server} {
					st := c.ConnectionState()
					if st.Version != s.version || st.CipherSuite != s.id || st.Identity != testIdentity || !st.HandshakeComplete {
						t.Fatalf("state %+v", st)
					}
				}
				exchange(t, r.client, r.server, 1000)
				exchange(t, r.server, r.client, 100000)
				r.client.Close()
				if _, err := r.server.Read(make([]byte, 1)); err != io.EOF {
					t.Fatalf("after close_notify: %v, want io.EOF", err)
				}
			})
		}
	}
}

type sha384Store struct{ KeyStore }

func (s sha384Store) LookupPSKHash(id string) ([]byte, cryptoHash, bool) {
	k, ok := s.LookupPSK(id)
	return k, sha384, ok
}

func curveName(c CurveID) string {
	if c == X25519 {
		return "X25519"
	}
	return "P256"
}

func TestWrongKeyAndUnknownIdentityFailAlike(t *testing.T) {
	for _, v := range []uint16{VersionTLS12, VersionTLS13} {
		for _, suite := range []uint16{0, TLS_PSK_WITH_AES_128_GCM_SHA256} {
			if v == VersionTLS13 && suite != 0 {
				continue
			}
			var suites []uint16
			if suite != 0 {
				suites = []uint16{suite}
			}
			run := func(id string, key []byte) hsResult {
				scfg := &Config{Keys: testStore(), MinVersion: v, MaxVersion: v, CipherSuites: suites}
				ccfg := &Config{Identity: id, Key: key, MinVersion: v, MaxVersion: v, CipherSuites: suites}
				return handshakePair(t, ccfg, scfg)
			}
			wrong := run(testIdentity, []byte("not the right key"))
			unknown := run("nobody", testKey)
			if !errors.Is(wrong.serverErr, ErrBadKey) || !errors.Is(unknown.serverErr, ErrUnknownIdentity) {
				t.Fatalf("v%x server errors: wrong key %v, unknown %v", v, wrong.serverErr, unknown.serverErr)
			}
			var a1, a2 *AlertError
			if !errors.As(wrong.clientErr, &a1) || !errors.As(unknown.clientErr, &a2) || a1.Alert != a2.Alert || a1.Alert != alertDecryptError {
				t.Fatalf("v%x client errors differ: wrong key %v, unknown %v", v, wrong.clientErr, unknown.clientErr)
			}
			if wrong.clientErr.Error() != unknown.clientErr.Error() {
				t.Fatalf("client errors differ: %q vs %q", wrong.clientErr, unknown.clientErr)
			}
		}
	}
}
