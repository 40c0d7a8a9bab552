package tlstest

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"moat/internal/config"
)

// TestConnRatePerIP: a source that used up its burst of new connections is
// refused at accept (the TLS handshake never starts), while another source
// address is not affected.
func TestConnRatePerIP(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	b := start(t, tlsListener(p, func(l *config.Listener) {
		l.ConnRatePerIP, l.ConnBurstPerIP = 0.001, 3 // refill: one per 1000 s
	}), anonymous)
	addr := b.addr(t, "tls")
	dialFrom := func(src string) (*tls.Conn, error) {
		d := &tls.Dialer{
			NetDialer: &net.Dialer{Timeout: waitTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}},
			Config:    clientTLS(p, nil),
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { c.Close() })
		return c.(*tls.Conn), nil
	}
	for i := range 3 {
		c, err := dialFrom("127.0.0.1")
		if err != nil {
			t.Fatalf("connection %d of the burst refused: %v", i+1, err)
		}
		mustConnect(t, c, &paho.Connect{ClientID: uniqueID("burst"), CleanStart: true})
	}
	if _, err := dialFrom("127.0.0.1"); err == nil {
		t.Fatal("a 4th connection within the burst window completed a TLS handshake")
	}
	// Linux routes all of 127.0.0.0/8 to the loopback interface.
	c, err := dialFrom("127.0.0.2")
	if err != nil {
		t.Skipf("cannot use 127.0.0.2 as a source address here: %v", err)
	}
	mustConnect(t, c, &paho.Connect{ClientID: "other-source", CleanStart: true}).roundTrip("rate")
}
