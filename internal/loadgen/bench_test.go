package loadgen

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"moat/internal/packet"
)

// benchClient is a client wired to buffers instead of a broker.
func benchClient(b *testing.B, ro role, qos byte, version byte, w io.Writer) *client {
	cfg := Defaults()
	cfg.QoS, cfg.Version = qos, version
	r := &runner{cfg: &cfg, base: time.Now(), stopCh: make(chan struct{})}
	c := newClient(r, 0, ro, "bench")
	c.bw = bufio.NewWriterSize(w, cfg.WriteBuffer)
	c.conn = nopConn{}
	if ro == rolePub && qos > 0 {
		c.window = make(chan struct{}, cfg.Inflight)
		c.slots = make([]atomic.Uint64, cfg.Inflight)
		c.ackLat = new(Histogram)
	}
	return c
}

type nopConn struct{ net.Conn }

func (nopConn) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkGeneratorPublish is the publisher's hot path: stamp, patch and
// buffer one 64-byte PUBLISH (the buffer flushes to io.Discard when full).
// It must not allocate.
func BenchmarkGeneratorPublish(b *testing.B) {
	b.Run("qos0", benchPublish(0))
	b.Run("qos1", benchPublish(1))
}

func benchPublish(qos byte) func(*testing.B) {
	return func(b *testing.B) {
		c := benchClient(b, rolePub, qos, 5, io.Discard)
		if err := c.preparePublish("bench/0", 64); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(c.tmpl)))
		for b.Loop() {
			if err := c.publishOne(time.Now()); err != nil {
				b.Fatal(err)
			}
			if c.window != nil { // the broker acknowledges at once
				c.complete(c.nextPID)
			}
		}
	}
}

// BenchmarkGeneratorReceive is the subscriber's hot path: read, decode and
// time one PUBLISH from 100 topics, and acknowledge it at QoS 1. It must
// not allocate once every topic has been seen.
func BenchmarkGeneratorReceive(b *testing.B) {
	b.Run("qos0", benchReceive(0))
	b.Run("qos1", benchReceive(1))
}

func benchReceive(qos byte) func(*testing.B) {
	return func(b *testing.B) {
		var stream bytes.Buffer
		const topics = 100
		for i := range topics {
			p := packet.Publish{QoS: qos, Topic: "bench/" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Payload: fillPayload(64)}
			if qos > 0 {
				p.PacketID = uint16(i + 1)
			}
			PutTimestamp(p.Payload, time.Now().UnixNano())
			bs, err := p.Append(nil, 5)
			if err != nil {
				b.Fatal(err)
			}
			stream.Write(bs)
		}
		data := stream.Bytes()
		src := &loopReader{data: data}
		c := benchClient(b, roleSub, qos, 5, io.Discard)
		c.br = bufio.NewReaderSize(src, 16<<10)
		c.lat = new(Histogram)
		c.pubs = make(map[string]*packet.Publish)
		step := func() {
			fh, body, peeked, err := c.readPacket()
			if err != nil {
				b.Fatal(err)
			}
			if err := c.handle(fh, body); err != nil {
				b.Fatal(err)
			}
			c.br.Discard(peeked)
			if c.ackPending && c.br.Buffered() == 0 {
				c.ackPending = false
				_ = c.bw.Flush()
			}
		}
		for range topics {
			step()
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(data) / topics))
		for b.Loop() {
			step()
		}
	}
}

// loopReader replays data forever.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

func TestGeneratorHotPathsDoNotAllocate(t *testing.T) {
	if testing.Short() {
		t.Skip("benchmarks")
	}
	for _, qos := range []byte{0, 1} {
		for name, fn := range map[string]func(*testing.B){"publish": benchPublish(qos), "receive": benchReceive(qos)} {
			r := testing.Benchmark(fn)
			if r.AllocsPerOp() != 0 {
				t.Errorf("%s QoS %d: %d allocs/op", name, qos, r.AllocsPerOp())
			}
		}
	}
}
