package tlstest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"moat/internal/config"
)

// connectV5 is an MQTT 5 CONNECT: clean start, keep alive 30 s, no
// properties, empty client id (the broker assigns one).
var connectV5 = []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 30, 0, 0, 0}

// disconnectV5 is DISCONNECT, normal disconnection.
var disconnectV5 = []byte{0xe0, 0}

// BenchmarkTLSConnect measures what a device costs the broker to come
// online: TCP connect, TLS 1.3 handshake against an ECDSA P-256 server
// certificate (X25519MLKEM768 key exchange, Go's default), CONNECT, CONNACK,
// DISCONNECT. "full" does a full handshake every time; "resumed" resumes
// a TLS session from a ticket (tls.ClientSessionCache), which skips the
// certificate and its signature (the key exchange is still done: Go
// resumes with psk_dhe_ke). Client and broker share the machine's CPUs.
func BenchmarkTLSConnect(b *testing.B) {
	p := newPKI(b)
	br := start(b, tlsListener(p, func(l *config.Listener) {
		l.ConnRatePerIP, l.ConnBurstPerIP = 1e9, 1<<30 // one source, thousands of connections a second
	}), anonymous, func(c *config.Config) { c.Log.Level = "error" })
	addr := br.addr(b, "tls")

	for _, mode := range []string{"full", "resumed"} {
		b.Run(mode, func(b *testing.B) {
			cfg := clientTLS(p, nil)
			if mode == "resumed" {
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(16)
				if _, err := connectOnce(addr, cfg); err != nil { // obtain a ticket
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				st, err := connectOnce(addr, cfg)
				if err != nil {
					b.Fatal(err)
				}
				if st.Version != tls.VersionTLS13 || st.DidResume != (mode == "resumed") {
					b.Fatalf("%s: version %s, resumed %v", mode, tls.VersionName(st.Version), st.DidResume)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "connects/s")
		})
	}
}

// connectOnce runs one TLS + CONNECT/CONNACK + DISCONNECT cycle.
func connectOnce(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	raw, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(waitTimeout))
	c := tls.Client(raw, cfg)
	if err := c.Handshake(); err != nil {
		return tls.ConnectionState{}, err
	}
	if _, err := c.Write(connectV5); err != nil {
		return tls.ConnectionState{}, err
	}
	r := bufio.NewReader(c)
	typ, err := r.ReadByte()
	if err != nil {
		return tls.ConnectionState{}, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return tls.ConnectionState{}, err
		}
		n += int(b&0x7f) * mul
		mul <<= 7
		if b&0x80 == 0 || i == 3 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return tls.ConnectionState{}, err
	}
	if typ != 0x20 || n < 2 || body[1] != 0 {
		return tls.ConnectionState{}, fmt.Errorf("bad CONNACK %#x % x", typ, body)
	}
	if _, err := c.Write(disconnectV5); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}
