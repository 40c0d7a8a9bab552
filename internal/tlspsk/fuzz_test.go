package tlspsk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fuzzConn is a net.Conn that reads a fixed input and discards writes.
type fuzzConn struct{ r *bytes.Reader }

func (f *fuzzConn) Read(p []byte) (int, error)       { return f.r.Read(p) }
func (f *fuzzConn) Write(p []byte) (int, error)      { return len(p), nil }
func (f *fuzzConn) Close() error                     { return nil }
func (f *fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (f *fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (f *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (f *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// countingReader is a deterministic "random" source, so that a recorded
// client flight replays against the fuzzed server (plain PSK suites use no
// ephemeral keys).
type countingReader struct{ n byte }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		c.n++
		p[i] = c.n
	}
	return len(p), nil
}

func fuzzServerConfig() *Config {
	return &Config{Keys: testStore(), Rand: &countingReader{}, CipherSuites: allSuites(), AllowLegacyMasterSecret: true}
}

func FuzzClientHello(f *testing.F) {
	f.Add(baseHello13().marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		var m clientHelloMsg
		if err := m.unmarshal(data); err == nil {
			if m.bindersLen > len(data) {
				t.Fatal("binders beyond message")
			}
			_ = m.truncated()
			raw := m.marshal()
			var m2 clientHelloMsg
			if err := m2.unmarshal(raw); err != nil {
				t.Fatalf("re-encoded hello does not parse: %v", err)
			}
			if !bytes.Equal(m2.marshal(), raw) {
				t.Fatal("encoding not stable")
			}
			helloInfo(&m)
		}
		rec := append([]byte{22, 3, 1, byte(len(data) >> 8), byte(len(data))}, data...)
		ClientHelloOffersPSK(rec)
		ClientHelloOffersPSK(data)
	})
}

func FuzzHandshakeMessages(f *testing.F) {
	f.Add((&serverHelloMsg{vers: VersionTLS12, random: make([]byte, 32), cipherSuite: 0x1301, hasExtensions: true,
		supportedVersion: VersionTLS13, serverShare: keyShare{X25519, make([]byte, 32)}, selectedIdentityPresent: true}).marshal())
	f.Add((&serverKeyExchangeMsg{hint: []byte("h"), ecdhe: true, group: X25519, public: make([]byte, 32)}).marshal())
	f.Add((&clientKeyExchangeMsg{identity: []byte("id"), ecdhe: true, public: make([]byte, 32)}).marshal())
	f.Add((&encryptedExtensionsMsg{groups: []CurveID{X25519}}).marshal())
	f.Add((&keyUpdateMsg{updateRequested: true}).marshal())
	f.Add((&finishedMsg{verifyData: make([]byte, 12)}).marshal())
	f.Add((&certificateMsg{chain: [][]byte{{1, 2, 3}, {4}}}).marshal())
	f.Add((&certificateRequestMsg{}).marshal())
	f.Add((&certificateVerifyMsg{scheme: SignatureECDSAP256SHA256, signature: []byte{0x30, 0}}).marshal())
	f.Add((&newSessionTicketMsg{lifetime: 60, ageAdd: 7, nonce: []byte{0}, ticket: []byte("ticket")}).marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		var sh serverHelloMsg
		if sh.unmarshal(data) == nil {
			var sh2 serverHelloMsg
			if err := sh2.unmarshal(sh.marshal()); err != nil {
				t.Fatalf("ServerHello re-encoding: %v", err)
			}
		}
		for _, ecdhe := range []bool{false, true} {
			var ske serverKeyExchangeMsg
			if ske.unmarshal(data, ecdhe) == nil && !bytes.Equal(ske.marshal(), data) {
				t.Fatal("ServerKeyExchange not canonical")
			}
			var cke clientKeyExchangeMsg
			if cke.unmarshal(data, ecdhe) == nil && !bytes.Equal(cke.marshal(), data) {
				t.Fatal("ClientKeyExchange not canonical")
			}
		}
		var ee encryptedExtensionsMsg
		ee.unmarshal(data)
		var ku keyUpdateMsg
		if ku.unmarshal(data) == nil && !bytes.Equal(ku.marshal(), data) {
			t.Fatal("KeyUpdate not canonical")
		}
		var fin finishedMsg
		if fin.unmarshal(data) == nil && !bytes.Equal(fin.marshal(), data) {
			t.Fatal("Finished not canonical")
		}
		var cm certificateMsg
		if cm.unmarshal(data) == nil {
			var cm2 certificateMsg
			if err := cm2.unmarshal(cm.marshal()); err != nil || len(cm2.chain) != len(cm.chain) {
				t.Fatalf("Certificate re-encoding: %v", err)
			}
		}
		var cr certificateRequestMsg
		cr.unmarshal(data)
		var cv certificateVerifyMsg
		if cv.unmarshal(data) == nil && !bytes.Equal(cv.marshal(), data) {
			t.Fatal("CertificateVerify not canonical")
		}
		var nst newSessionTicketMsg
		if nst.unmarshal(data) == nil {
			var nst2 newSessionTicketMsg
			if err := nst2.unmarshal(nst.marshal()); err != nil || !bytes.Equal(nst2.ticket, nst.ticket) {
				t.Fatalf("NewSessionTicket re-encoding: %v", err)
			}
		}
	})
}

// FuzzRecordLayer feeds arbitrary bytes to a connection: the first byte
// picks server (even) or client (odd; 3 mod 4: a certificate-mode client
// with a session cache), the rest is what the peer "sent".
func FuzzRecordLayer(f *testing.F) {
	f.Add([]byte{0, 22, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || len(data) > 1<<20 {
			return
		}
		conn := &fuzzConn{r: bytes.NewReader(data[1:])}
		var c *Conn
		switch {
		case data[0]&1 == 0:
			c = Server(conn, fuzzServerConfig())
		case data[0]&3 == 3:
			c = Client(conn, &Config{CertificateMode: true, ServerName: "fuzz.test", VerifyServer: noVerify,
				NextProtos: []string{"mqtt"}, SessionCache: NewSessionCache(1), Rand: &countingReader{}})
		default:
			c = Client(conn, &Config{Identity: testIdentity, Key: testKey, Rand: &countingReader{}, CipherSuites: allSuites(), AllowLegacyMasterSecret: true})
		}
		if err := c.Handshake(context.Background()); err != nil {
			return
		}
		buf := make([]byte, 4096)
		for i := 0; i < len(data); i++ { // every Read consumes input or fails
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		c.Write([]byte("x"))
		c.Close()
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz seeds from real handshakes
// (ours and OpenSSL's). Run with TLSPSK_WRITE_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("TLSPSK_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set TLSPSK_WRITE_FUZZ_SEEDS=1 to regenerate fuzz seeds")
	}
	write := func(target string, data []byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		os.MkdirAll(dir, 0o755)
		sum := sha256.Sum256(data)
		name := filepath.Join(dir, fmt.Sprintf("seed-%x", sum[:8]))
		if err := os.WriteFile(name, []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Our clients' hellos, 1.3 and 1.2-only, and HRR material.
	c12 := clientCfg()
	c12.MaxVersion = VersionTLS12
	for _, cfg := range []*Config{clientCfg(), c12} {
		rec := clientFlight(t, cfg)
		write("FuzzClientHello", rec[5:])
	}
	// OpenSSL's hellos.
	if _, err := exec.LookPath("openssl"); err == nil {
		for _, args := range [][]string{{"-tls1_3"}, {"-tls1_2", "-cipher", "PSK"}, {}} {
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			got := make(chan []byte, 1)
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					got <- nil
					return
				}
				nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				hdr := make([]byte, 5)
				io.ReadFull(nc, hdr)
				body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
				io.ReadFull(nc, body)
				nc.Close()
				got <- body
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			cmd := exec.CommandContext(ctx, "openssl", append([]string{"s_client", "-connect", ln.Addr().String(), "-psk", "00112233445566778899aabbccddeeff", "-psk_identity", "dev"}, args...)...)
			cmd.Stdin = strings.NewReader("")
			cmd.Run()
			cancel()
			if b := <-got; len(b) > 0 {
				write("FuzzClientHello", b)
			}
			ln.Close()
		}
	}
	// Handshake messages.
	for _, m := range [][]byte{
		(&serverHelloMsg{vers: VersionTLS12, random: helloRetryRequestRandom, sessionID: make([]byte, 32), cipherSuite: 0x1301, hasExtensions: true, supportedVersion: VersionTLS13, selectedGroup: P256}).marshal(),
		(&serverHelloMsg{vers: VersionTLS12, random: make([]byte, 32), cipherSuite: 0x00A8, hasExtensions: true, extendedMasterSecret: true, secureRenegotiationSupported: true}).marshal(),
		(&serverKeyExchangeMsg{hint: []byte("moat"), ecdhe: true, group: P256, public: make([]byte, 65)}).marshal(),
		(&clientKeyExchangeMsg{identity: []byte(testIdentity)}).marshal(),
	} {
		write("FuzzHandshakeMessages", m)
	}
	// Whole client flights against the deterministic fuzz server: the
	// plain-PSK TLS 1.2 ones replay to a complete handshake.
	for _, suites := range [][]uint16{{TLS_PSK_WITH_AES_128_GCM_SHA256}, {TLS_PSK_WITH_CHACHA20_POLY1305_SHA256}, {TLS_PSK_WITH_AES_128_CCM_8}, {TLS_AES_128_GCM_SHA256}} {
		cc, sc := tcpPair(t)
		rec := &recordingConn{Conn: cc}
		ccfg := clientCfg()
		ccfg.CipherSuites = suites
		done := make(chan struct{})
		go func() {
			defer close(done)
			s := Server(sc, fuzzServerConfig())
			io.Copy(io.Discard, s)
			s.Close()
		}()
		c := Client(rec, ccfg)
		if err := c.Handshake(context.Background()); err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("hello"))
		c.Close()
		<-done
		write("FuzzRecordLayer", append([]byte{0}, rec.buf.Bytes()...))
	}
}

type recordingConn struct {
	net.Conn
	buf bytes.Buffer
}

func (r *recordingConn) Write(p []byte) (int, error) {
	r.buf.Write(p)
	return r.Conn.Write(p)
}

// The recorded TLS 1.2 plain-PSK flights must replay to a finished
// handshake, so that FuzzRecordLayer reaches the post-handshake code.
func TestRecordLayerSeedsReplay(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzRecordLayer", "*"))
	complete := 0
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(string(b), "\n", 3)
		var s string
		if _, err := fmt.Sscanf(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"), "%q", &s); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c := Server(&fuzzConn{r: bytes.NewReader([]byte(s)[1:])}, fuzzServerConfig())
		if c.Handshake(context.Background()) == nil {
			buf := make([]byte, 16)
			if n, _ := c.Read(buf); string(buf[:n]) == "hello" {
				complete++
			}
		}
	}
	if complete < 2 {
		t.Fatalf("only %d recorded flights replay to a complete handshake", complete)
	}
}
