package tlspsk

import (
	"context"
	"io"
	"net"
	"testing"
)

func benchHandshake(b *testing.B, ccfg, scfg *Config) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c1, c2 := net.Pipe()
		cli, srv := Client(c1, ccfg), Server(c2, scfg)
		errc := make(chan error, 1)
		go func() { errc <- srv.Handshake(ctx) }()
		if err := cli.Handshake(ctx); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		c1.Close()
		c2.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}

func BenchmarkHandshake(b *testing.B) {
	for _, tc := range []struct {
		name  string
		suite uint16
	}{
		{"TLS12-ECDHE-PSK-CHACHA20", TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256},
		{"TLS12-PSK-AES128-GCM", TLS_PSK_WITH_AES_128_GCM_SHA256},
		{"TLS13-PSK-DHE-AES128-GCM", TLS_AES_128_GCM_SHA256},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c, s := clientCfg(), serverCfg()
			c.CipherSuites, s.CipherSuites = []uint16{tc.suite}, []uint16{tc.suite}
			benchHandshake(b, c, s)
		})
	}
}

func BenchmarkThroughput(b *testing.B) {
	for _, s := range cipherSuites {
		b.Run(s.name, func(b *testing.B) {
			c, sv := clientCfg(), serverCfg()
			c.CipherSuites, sv.CipherSuites = []uint16{s.id}, []uint16{s.id}
			if s.hash.Size() == 48 && s.version == VersionTLS13 {
				c.KeyHash = s.hash
				sv.Keys = sha384Store{testStore()}
			}
			r := handshakePair(b, c, sv)
			if r.clientErr != nil || r.serverErr != nil {
				b.Fatal(r.clientErr, r.serverErr)
			}
			done := make(chan struct{})
			go func() { io.Copy(io.Discard, r.server); close(done) }()
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.client.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			r.client.Close()
			<-done
		})
	}
}
