package tlstest

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"moat/internal/config"
	"moat/internal/tlspolicy"
)

// TestHandshakeFlood: with max_handshakes = 4 and a 2 s handshake timeout,
// 50 connections that send nothing, 5 that send half a ClientHello and 3
// that complete the ClientHello and then stall (holding 3 of the 4 slots
// the whole time) do not keep a real client from completing TLS and
// CONNECT/CONNACK well within the handshake timeout (in half of it, before
// any stalled slot could have been freed by its timeout). Afterwards every
// flood connection is closed by the broker at the timeout.
func TestHandshakeFlood(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second
	p := newPKI(t)
	b := start(t, tlsListener(p, func(l *config.Listener) {
		l.MaxHandshakes = 4
		l.HandshakeTimeout.Duration = timeout
		// The flood comes from 127.0.0.1 like the real client: keep the
		// per-IP limit out of the way; this test is about the gate.
		l.ConnRatePerIP, l.ConnBurstPerIP = 1e6, 1e6
	}), anonymous)
	addr := b.addr(t, "tls")

	var flood []net.Conn
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, waitTimeout)
		if err != nil {
			t.Fatalf("flood dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		flood = append(flood, c)
		return c
	}
	for range 50 {
		dial() // sends nothing
	}
	for range 5 {
		// A handshake record header announcing 512 bytes, then 3 of them.
		c := dial()
		if _, err := c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01}); err != nil {
			t.Fatal(err)
		}
	}
	// Complete ClientHellos whose handshakes then stall: each holds a slot.
	var stalls []*stallConn
	for range 3 {
		sc := &stallConn{Conn: dial(), stalled: make(chan struct{}), release: make(chan struct{})}
		stalls = append(stalls, sc)
		go func() { _ = tls.Client(sc, clientTLS(p, nil)).Handshake() }()
	}
	for _, sc := range stalls {
		select {
		case <-sc.stalled: // the server answered: it is in the handshake
		case <-time.After(waitTimeout):
			t.Fatal("stalling client never got the server's answer")
		}
	}
	t.Cleanup(func() {
		for _, sc := range stalls {
			sc.unblock()
		}
	})

	// The real client, behind the flood in the accept queue. It must not
	// have to wait for a stalled handshake to time out (those end about
	// 2 s from now, when their slots free up): it gets half of that.
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout/2)
	defer cancel()
	d := &tls.Dialer{Config: clientTLS(p, nil)}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("real client: TLS handshake during the flood: %v (after %v)", err, time.Since(begin))
	}
	t.Cleanup(func() { nc.Close() })
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: "real", CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("real client: CONNECT during the flood: %v (connack %s, after %v)", err, connackString(ca), time.Since(begin))
	}
	elapsed := time.Since(begin)
	t.Logf("real client connected in %v during a flood of %d connections", elapsed, len(flood))
	_ = c.Disconnect(&paho.Disconnect{})

	// The broker ends every flood connection at the handshake timeout
	// (reads see EOF or a reset); stalled handshakes are counted as
	// timeouts.
	var wg sync.WaitGroup
	errs := make(chan error, len(flood))
	for _, fc := range flood {
		wg.Go(func() {
			_ = fc.SetReadDeadline(time.Now().Add(timeout + waitTimeout))
			buf := make([]byte, 4096)
			for {
				_, err := fc.Read(buf)
				if err == nil {
					continue // the stalled handshakes' server flight
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					errs <- errors.New("flood connection still open long after the handshake timeout")
				}
				return
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// A failure is counted, then logged: once the log line is there, the
	// counter must show it.
	b.logs.waitFrom(t, 0, "handshake timeout", func(r logRec) bool {
		return r.msg == "tls handshake failed" && r.attrs["reason"] == tlspolicy.ReasonTimeout
	})
	if n := b.HandshakeFailures()[tlspolicy.ReasonTimeout]; n == 0 {
		t.Error("no handshake timeouts counted")
	}
}

// stallConn lets the first write (the ClientHello) through and blocks every
// later one (the client's Finished), so the server sits in the middle of
// the handshake. stalled is closed when that happens.
type stallConn struct {
	net.Conn
	writes  int
	stalled chan struct{}
	release chan struct{}
	once    sync.Once
	uonce   sync.Once
}

func (c *stallConn) Write(b []byte) (int, error) {
	c.writes++
	if c.writes == 1 {
		return c.Conn.Write(b)
	}
	c.once.Do(func() { close(c.stalled) })
	<-c.release
	return 0, io.ErrClosedPipe
}

func (c *stallConn) unblock() { c.uonce.Do(func() { close(c.release) }) }
