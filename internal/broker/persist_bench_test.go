package broker_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"moat/internal/brokertest"
	"moat/internal/config"
	"moat/internal/packet"
)

// BenchmarkQoS1Publish measures QoS 1 publish throughput end to end: a few
// publishers, each with a window of messages in flight, publish to one
// subscriber with a persistent session that acknowledges everything. Every
// message is therefore written to the store (queued, then deleted on
// PUBACK), and every PUBACK to a publisher waits for the store's Sync.
// b.N is the total number of messages; msgs/s counts a message once its
// PUBACK reached the publisher and its copy reached the subscriber.
func BenchmarkQoS1Publish(b *testing.B) {
	for _, v := range []struct{ name, store, sync string }{
		{"memory", config.StoreMemory, ""},
		{"bolt-batch", config.StoreBolt, config.SyncBatch},
		{"bolt-always", config.StoreBolt, config.SyncAlways},
		{"bolt-periodic", config.StoreBolt, config.SyncPeriodic},
	} {
		b.Run(v.name, func(b *testing.B) {
			br := brokertest.Start(b, func(c *config.Config) {
				c.Store = v.store
				c.Sync = v.sync
			})
			benchQoS1(b, br.Addr)
		})
	}
}

const (
	benchPublishers = 4
	benchWindow     = 256 // QoS 1 messages in flight per publisher
	benchPayload    = 64
)

func benchQoS1(b *testing.B, addr string) {
	sub, _ := qRawConnect(b, addr, "bench-sub", true, 3600, 65535)
	sub.subscribe("bench/#", 1)
	pubs := make([]*qRaw, benchPublishers)
	for i := range pubs {
		pubs[i], _ = qRawConnect(b, addr, fmt.Sprintf("bench-pub-%d", i), true, 0, 65535)
	}
	share := func(i int) int {
		n := b.N / benchPublishers
		if i < b.N%benchPublishers {
			n++
		}
		return n
	}
	errs := make(chan error, 2*benchPublishers+1)
	var wg sync.WaitGroup

	b.ResetTimer()
	start := time.Now()
	wg.Go(func() { errs <- benchSubscribe(sub.nc, sub.br, b.N) })
	for i, p := range pubs {
		n := share(i)
		sem := make(chan struct{}, benchWindow)
		wg.Go(func() { errs <- benchPublish(p.nc, fmt.Sprintf("bench/%d", i), n, sem) })
		wg.Go(func() { errs <- benchAcks(p.nc, p.br, n, sem) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

// benchPublish sends n QoS 1 PUBLISHes, at most cap(sem) unacknowledged.
func benchPublish(nc net.Conn, topic string, n int, sem chan struct{}) error {
	w := bufio.NewWriterSize(nc, 64<<10)
	p := packet.Publish{QoS: 1, Topic: topic, Payload: make([]byte, benchPayload)}
	var buf []byte
	var id uint16
	for range n {
		select {
		case sem <- struct{}{}:
		default:
			if err := w.Flush(); err != nil {
				return err
			}
			sem <- struct{}{}
		}
		if id++; id == 0 {
			id = 1
		}
		p.PacketID = id
		var err error
		if buf, err = p.Append(buf[:0], packet.V5); err != nil {
			return err
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return w.Flush()
}

// benchAcks reads n PUBACKs, freeing a window slot for each.
func benchAcks(nc net.Conn, br *bufio.Reader, n int, sem chan struct{}) error {
	nc.SetReadDeadline(time.Now().Add(5 * time.Minute))
	for got := 0; got < n; {
		fh, err := packet.ReadFixedHeader(br)
		if err != nil {
			return fmt.Errorf("publisher: %d of %d PUBACKs: %w", got, n, err)
		}
		body := make([]byte, fh.Remaining)
		if _, err := io.ReadFull(br, body); err != nil {
			return err
		}
		p, err := packet.Decode(fh, body, packet.V5)
		if err != nil {
			return err
		}
		a, ok := p.(*packet.Ack)
		if !ok || a.PacketType != packet.PUBACK || a.ReasonCode >= 0x80 {
			return fmt.Errorf("publisher: unexpected %#v", p)
		}
		got++
		<-sem
	}
	return nil
}

// benchSubscribe receives n QoS 1 PUBLISHes and acknowledges each.
func benchSubscribe(nc net.Conn, br *bufio.Reader, n int) error {
	nc.SetReadDeadline(time.Now().Add(5 * time.Minute))
	w := bufio.NewWriterSize(nc, 16<<10)
	var out []byte
	for got := 0; got < n; {
		fh, err := packet.ReadFixedHeader(br)
		if err != nil {
			return fmt.Errorf("subscriber: %d of %d messages: %w", got, n, err)
		}
		body := make([]byte, fh.Remaining)
		if _, err := io.ReadFull(br, body); err != nil {
			return err
		}
		p, err := packet.Decode(fh, body, packet.V5)
		if err != nil {
			return err
		}
		pub, ok := p.(*packet.Publish)
		if !ok || pub.QoS != 1 {
			return fmt.Errorf("subscriber: unexpected %#v", p)
		}
		got++
		ack := packet.Ack{PacketType: packet.PUBACK, PacketID: pub.PacketID}
		if out, err = ack.Append(out[:0], packet.V5); err != nil {
			return err
		}
		w.Write(out)
		if br.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
	return w.Flush()
}
