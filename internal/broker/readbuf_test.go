package broker

import (
	"net"
	"sync"
	"testing"

	"moat/internal/packet"
)

// readSizes records the size of every Read on a connection.
type readSizes struct {
	net.Conn
	mu    sync.Mutex
	sizes []int
}

func (r *readSizes) Read(p []byte) (int, error) {
	r.mu.Lock()
	r.sizes = append(r.sizes, len(p))
	r.mu.Unlock()
	return r.Conn.Read(p)
}

func (r *readSizes) take() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sizes
	r.sizes = nil
	return s
}

// TestIdleConnectionHoldsNoReadBuffer: packets already buffered are read
// from the buffer; with nothing buffered the connection waits for the next
// byte with a one-byte read (no buffer held while idle) and borrows a
// buffer for the rest.
func TestIdleConnectionHoldsNoReadBuffer(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	rs := &readSizes{Conn: server}
	c := &conn{s: &Server{limits: limits{maxPacket: 1 << 20}}, nc: rs, readers: &tlsReaders}
	defer c.putReader()

	ping := []byte{0xC0, 0x00}
	go client.Write(append(append([]byte{}, ping...), ping...)) // two packets at once
	for i := 0; i < 2; i++ {
		fh, _, err := c.readPacket()
		if err != nil || fh.Type != packet.PINGREQ {
			t.Fatalf("packet %d: %v %v", i, fh.Type, err)
		}
	}
	if got := rs.take(); len(got) != 2 || got[0] != 1 || got[1] != 1024 {
		t.Fatalf("reads %v: want a one-byte read, then one buffered read for both packets", got)
	}
	if c.br == nil || c.br.Buffered() != 0 {
		t.Fatal("the buffer should be lent while the packet is handled")
	}

	go client.Write(ping)
	if fh, _, err := c.readPacket(); err != nil || fh.Type != packet.PINGREQ {
		t.Fatalf("third packet: %v %v", fh.Type, err)
	}
	if got := rs.take(); len(got) == 0 || got[0] != 1 {
		t.Fatalf("reads %v: an idle connection must wait with a one-byte read, not a buffer", got)
	}
}
