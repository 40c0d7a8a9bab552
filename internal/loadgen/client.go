package loadgen

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"moat/internal/packet"
)

type role byte

const (
	roleConn role = iota // connect, then close or hold idle
	rolePub
	roleSub
)

// maxPacket bounds what a client accepts from the broker.
const maxPacket = MaxPayload + 64<<10

// maxTopicCache bounds the per-connection map of reused PUBLISH decode
// values, one per topic; beyond it a shared value is used (and a topic
// string is allocated when the topic changes).
const maxTopicCache = 1024

// slotTimeMask keeps the low 48 bits of a send time (ns since the run's
// base: 78 hours) next to a 16-bit packet identifier in one atomic word.
const slotTimeMask = 1<<48 - 1

var pingreq = []byte{byte(packet.PINGREQ) << 4, 0}

// client is one MQTT connection of the generator.
type client struct {
	r    *runner
	idx  int
	role role
	id   string
	conn net.Conn
	info connInfo

	version byte
	qos     byte

	br   *bufio.Reader // reader goroutine only
	rbuf []byte        // bodies larger than br's buffer

	// wmu guards the following fields (the writers: the publisher, the
	// reader's acknowledgements, the pinger, the closer).
	wmu     sync.Mutex
	bw      *bufio.Writer
	ackOut  packet.Ack
	scratch []byte
	closed  bool

	// Publisher state, owned by the publishing goroutine.
	topic   string
	tmpl    []byte // the PUBLISH packet, patched in place
	payOff  int    // payload offset in tmpl
	pidOff  int    // packet identifier offset in tmpl, -1 for QoS 0
	stamp   bool   // payload large enough for a timestamp
	nextPID uint16
	quota   int64         // messages left to publish; -1 unlimited
	window  chan struct{} // QoS > 0: one token per unacknowledged publish
	slots   []atomic.Uint64
	timer   *time.Timer

	// Reader state, owned by the reader goroutine.
	pubs       map[string]*packet.Publish
	pubAny     packet.Publish
	ackPending bool // acknowledgements buffered, not flushed
	ack        packet.Ack
	lat        *Histogram // end to end, from payload timestamps
	ackLat     *Histogram // publish to PUBACK / PUBCOMP

	done  chan struct{} // closed when the reader returns
	err   error         // the reader's error, read after done
	early bool          // the reader ended before the run closed the connection; read after done
	cut   atomic.Bool   // the run ended a blocked write: later write errors are expected

	_     [64]byte // keep the counters off the fields above
	sent  atomic.Int64
	_     [56]byte
	recv  atomic.Int64
	acked atomic.Int64
}

func newClient(r *runner, idx int, ro role, id string) *client {
	return &client{r: r, idx: idx, role: ro, id: id, version: r.cfg.Version, qos: r.cfg.QoS, pidOff: -1, quota: -1}
}

// open dials, runs the transport handshake and CONNECT/CONNACK.
func (c *client) open(ctx context.Context) error {
	cfg := c.r.cfg
	ctx, cancel := context.WithDeadline(ctx, dialDeadline(cfg))
	defer cancel()
	conn, info, err := c.r.d.dial(ctx, c.idx)
	if err != nil {
		return err
	}
	c.conn, c.info = conn, info
	rs, ws := 512, 512
	switch c.role {
	case rolePub:
		rs, ws = 4<<10, cfg.WriteBuffer
	case roleSub:
		rs, ws = cfg.ReadBuffer, 4<<10
	}
	c.br = bufio.NewReaderSize(conn, rs)
	c.bw = bufio.NewWriterSize(conn, ws)
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if err := c.connect(); err != nil {
		conn.Close()
		return err
	}
	_ = conn.SetDeadline(time.Time{})
	return nil
}

func (c *client) connect() error {
	cfg := c.r.cfg
	cp := &packet.Connect{
		ProtocolName:    "MQTT",
		ProtocolVersion: c.version,
		CleanStart:      true,
		KeepAlive:       uint16(cfg.KeepAlive / time.Second),
		ClientID:        c.id,
	}
	if cfg.SessionExpiry > 0 {
		if c.version == packet.V5 {
			cp.Properties.SessionExpiry = uint32(cfg.SessionExpiry / time.Second)
			cp.Properties.Set(packet.PropSessionExpiry)
		} else {
			cp.CleanStart = false
		}
	}
	if cfg.Username != "" {
		cp.UsernameFlag, cp.Username = true, cfg.Username
	}
	if cfg.Password != "" {
		cp.PasswordFlag, cp.Password = true, []byte(cfg.Password)
	}
	b, err := cp.Append(nil, c.version)
	if err != nil {
		return err
	}
	if err := c.writeFlush(b); err != nil {
		return err
	}
	fh, body, peeked, err := c.readPacket()
	if err != nil {
		return fmt.Errorf("waiting for CONNACK: %w", err)
	}
	if fh.Type != packet.CONNACK {
		return fmt.Errorf("%w: %s instead of CONNACK", ErrProtocol, fh.Type)
	}
	p, err := packet.Decode(fh, body, c.version)
	c.br.Discard(peeked)
	if err != nil {
		return fmt.Errorf("%w: CONNACK: %v", ErrProtocol, err)
	}
	ca := p.(*packet.Connack)
	if ca.ReasonCode != packet.Success {
		return fmt.Errorf("%w: %s", ErrConnack, connackReason(c.version, ca.ReasonCode))
	}
	inflight := cfg.Inflight
	if c.version == packet.V5 && ca.Properties.Has(packet.PropReceiveMaximum) {
		inflight = min(inflight, int(ca.Properties.ReceiveMaximum))
	}
	if c.version == packet.V5 && ca.Properties.Has(packet.PropServerKeepAlive) {
		c.r.noteServerKeepAlive(time.Duration(ca.Properties.ServerKeepAlive) * time.Second)
	}
	if c.role == rolePub && c.qos > 0 {
		c.window = make(chan struct{}, inflight)
		c.slots = make([]atomic.Uint64, inflight)
	}
	return nil
}

func connackReason(version byte, rc packet.ReasonCode) string {
	if version == packet.V5 {
		return rc.String()
	}
	switch byte(rc) {
	case packet.V3UnacceptableProtocolVersion:
		return "unacceptable protocol version"
	case packet.V3IdentifierRejected:
		return "identifier rejected"
	case packet.V3ServerUnavailable:
		return "server unavailable"
	case packet.V3BadUsernameOrPassword:
		return "bad user name or password"
	case packet.V3NotAuthorized:
		return "not authorized"
	}
	return fmt.Sprintf("return code %d", rc)
}

// subscribe sends one SUBSCRIBE and waits for its SUBACK (before the
// reader goroutine starts).
func (c *client) subscribe(filter string) error {
	cfg := c.r.cfg
	_ = c.conn.SetDeadline(dialDeadline(cfg))
	defer c.conn.SetDeadline(time.Time{})
	s := &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: filter, QoS: c.qos}}}
	b, err := s.Append(nil, c.version)
	if err != nil {
		return err
	}
	if err := c.writeFlush(b); err != nil {
		return err
	}
	for {
		fh, body, peeked, err := c.readPacket()
		if err != nil {
			return fmt.Errorf("waiting for SUBACK: %w", err)
		}
		if fh.Type != packet.SUBACK {
			// A retained message may come first; anything else is odd.
			if fh.Type == packet.PUBLISH {
				err = c.handle(fh, body)
				c.br.Discard(peeked)
				if err != nil {
					return err
				}
				continue
			}
			c.br.Discard(peeked)
			return fmt.Errorf("%w: %s instead of SUBACK", ErrProtocol, fh.Type)
		}
		p, err := packet.Decode(fh, body, c.version)
		c.br.Discard(peeked)
		if err != nil {
			return fmt.Errorf("%w: SUBACK: %v", ErrProtocol, err)
		}
		sa := p.(*packet.Suback)
		if len(sa.ReasonCodes) != 1 || sa.ReasonCodes[0] >= 0x80 {
			return fmt.Errorf("%w: %q", ErrSuback, filter)
		}
		return nil
	}
}

func (c *client) writeFlush(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.bw.Write(b); err != nil {
		return err
	}
	return c.bw.Flush()
}

// readPacket reads one packet. When the body fits the bufio buffer it is
// peeked, not copied: the caller discards peeked bytes once done with it.
func (c *client) readPacket() (fh packet.FixedHeader, body []byte, peeked int, err error) {
	fh, err = packet.ReadFixedHeader(c.br)
	if err != nil {
		return fh, nil, 0, err
	}
	n := fh.Remaining
	if n > maxPacket {
		return fh, nil, 0, fmt.Errorf("%w: %s of %d bytes", ErrProtocol, fh.Type, n)
	}
	if n <= c.br.Size() {
		body, err = c.br.Peek(n)
		if err != nil {
			return fh, nil, 0, err
		}
		return fh, body, n, nil
	}
	if cap(c.rbuf) < n {
		c.rbuf = make([]byte, n)
	}
	body = c.rbuf[:n]
	if _, err := io.ReadFull(c.br, body); err != nil {
		return fh, nil, 0, err
	}
	return fh, body, 0, nil
}

// startReader runs the reader goroutine.
func (c *client) startReader() {
	c.done = make(chan struct{})
	if c.role == roleSub {
		c.lat = new(Histogram)
		c.pubs = make(map[string]*packet.Publish)
	}
	if c.role == rolePub && c.qos > 0 {
		c.ackLat = new(Histogram)
	}
	go c.readLoop()
}

func (c *client) readLoop() {
	defer func() {
		c.early = !c.isClosed()
		close(c.done)
	}()
	for {
		fh, body, peeked, err := c.readPacket()
		if err != nil {
			c.err = err
			return
		}
		err = c.handle(fh, body)
		if peeked > 0 {
			c.br.Discard(peeked)
		}
		if err != nil {
			c.err = err
			return
		}
		// Input drained: send the acknowledgements written meanwhile.
		if c.ackPending && c.br.Buffered() == 0 {
			c.ackPending = false
			c.wmu.Lock()
			if !c.closed {
				err = c.bw.Flush()
			}
			c.wmu.Unlock()
			if err != nil {
				c.err = err
				return
			}
		}
	}
}

// handle processes one packet from the broker.
func (c *client) handle(fh packet.FixedHeader, body []byte) error {
	switch fh.Type {
	case packet.PUBLISH:
		p, err := c.decodePublish(fh.Flags, body)
		if err != nil {
			return fmt.Errorf("%w: PUBLISH: %v", ErrProtocol, err)
		}
		if ts, ok := Timestamp(p.Payload); ok && c.lat != nil {
			c.lat.Record(time.Now().UnixNano() - ts)
		}
		c.recv.Add(1)
		switch p.QoS {
		case 1:
			return c.writeAck(packet.PUBACK, p.PacketID)
		case 2:
			return c.writeAck(packet.PUBREC, p.PacketID)
		}
	case packet.PUBACK, packet.PUBREC, packet.PUBREL, packet.PUBCOMP:
		if err := c.ack.Decode(fh, body, c.version); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrProtocol, fh.Type, err)
		}
		switch fh.Type {
		case packet.PUBACK, packet.PUBCOMP:
			c.complete(c.ack.PacketID)
		case packet.PUBREC:
			if c.ack.ReasonCode >= 0x80 {
				c.complete(c.ack.PacketID)
				return nil
			}
			return c.writeAck(packet.PUBREL, c.ack.PacketID)
		case packet.PUBREL:
			return c.writeAck(packet.PUBCOMP, c.ack.PacketID)
		}
	case packet.PINGRESP, packet.SUBACK, packet.UNSUBACK:
	case packet.DISCONNECT:
		p, err := packet.Decode(fh, body, c.version)
		if err == nil && c.version == packet.V5 {
			return fmt.Errorf("%w: DISCONNECT from broker: %s", ErrProtocol, p.(*packet.Disconnect).ReasonCode)
		}
		return fmt.Errorf("%w: DISCONNECT from broker", ErrProtocol)
	default:
		return fmt.Errorf("%w: unexpected %s", ErrProtocol, fh.Type)
	}
	return nil
}

// decodePublish decodes into a value kept per topic, so that the topic
// string is reused (Publish.Decode allocates only when the topic differs
// from the value's previous one).
func (c *client) decodePublish(flags byte, body []byte) (*packet.Publish, error) {
	p := &c.pubAny
	fresh := false
	if len(body) >= 2 && c.pubs != nil {
		if n := int(binary.BigEndian.Uint16(body)); 2+n <= len(body) {
			if q, ok := c.pubs[string(body[2:2+n])]; ok {
				p = q
			} else if len(c.pubs) < maxTopicCache {
				p, fresh = new(packet.Publish), true
			}
		}
	}
	if err := p.Decode(flags, body, c.version); err != nil {
		return nil, err
	}
	if fresh {
		c.pubs[p.Topic] = p
	}
	return p, nil
}

// writeAck buffers an acknowledgement; the reader flushes when its input
// is drained. Only the reader goroutine (or subscribe, before it starts)
// calls it.
func (c *client) writeAck(t packet.Type, id uint16) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return nil
	}
	c.ackPending = true
	c.ackOut.PacketType, c.ackOut.PacketID, c.ackOut.ReasonCode = t, id, packet.Success
	var err error
	if c.scratch, err = c.ackOut.Append(c.scratch[:0], c.version); err != nil {
		return err
	}
	_, err = c.bw.Write(c.scratch)
	return err
}

// complete ends the flow of an outgoing QoS 1/2 publish.
func (c *client) complete(id uint16) {
	if c.window == nil {
		return
	}
	s := &c.slots[int(id)%len(c.slots)]
	if v := s.Load(); v != 0 && uint16(v>>48) == id {
		c.ackLat.Record(int64(c.r.mono()) - int64(v&slotTimeMask))
		s.Store(0)
	}
	c.acked.Add(1)
	select {
	case <-c.window:
	default:
	}
}

// preparePublish encodes the client's PUBLISH once; publishOne patches
// the timestamp and packet identifier in place.
func (c *client) preparePublish(topic string, size int) error {
	c.topic = topic
	p := &packet.Publish{QoS: c.qos, Topic: topic, Payload: fillPayload(size)}
	if c.qos > 0 {
		p.PacketID = 1
	}
	tmpl, err := p.Append(nil, c.version)
	if err != nil {
		return err
	}
	_, hl, err := packet.ParseFixedHeader(tmpl)
	if err != nil {
		return err
	}
	c.tmpl = tmpl
	c.payOff = len(tmpl) - size
	c.stamp = size >= TimestampSize
	if c.qos > 0 {
		c.pidOff = hl + 2 + len(topic)
	}
	return nil
}

// publishOne buffers one PUBLISH stamped with now. For QoS > 0 the caller
// holds a window token. It allocates nothing.
func (c *client) publishOne(now time.Time) error {
	c.wmu.Lock()
	if c.closed {
		c.wmu.Unlock()
		return net.ErrClosed
	}
	if c.stamp {
		PutTimestamp(c.tmpl[c.payOff:], now.UnixNano())
	}
	if c.pidOff >= 0 {
		c.nextPID++
		if c.nextPID == 0 {
			c.nextPID = 1
		}
		id := c.nextPID
		binary.BigEndian.PutUint16(c.tmpl[c.pidOff:], id)
		c.slots[int(id)%len(c.slots)].Store(uint64(id)<<48 | uint64(c.r.mono())&slotTimeMask)
	}
	_, err := c.bw.Write(c.tmpl)
	c.wmu.Unlock()
	c.sent.Add(1)
	return err
}

// flush writes what is buffered.
func (c *client) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed || c.bw.Buffered() == 0 {
		return nil
	}
	return c.bw.Flush()
}

// publishLoop publishes until the window closes, the quota is reached or
// the connection fails: paced by Rate, or as fast as TCP and (QoS > 0)
// the inflight window allow. It flushes whenever it would wait.
func (c *client) publishLoop() error {
	r := c.r
	defer c.flush()
	var interval time.Duration
	if r.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / r.cfg.Rate)
	}
	next := time.Now()
	for c.quota != 0 {
		if r.stopping.Load() {
			return nil
		}
		now := time.Now()
		if interval > 0 {
			if d := next.Sub(now); d > 0 {
				if err := c.flush(); err != nil {
					return err
				}
				if !c.sleep(d) {
					return nil
				}
				continue
			}
			next = next.Add(interval)
			if now.Sub(next) > time.Second { // far behind: do not burst
				next = now
			}
		}
		if c.window != nil {
			select {
			case c.window <- struct{}{}:
			default:
				if err := c.flush(); err != nil {
					return err
				}
				select {
				case c.window <- struct{}{}:
				case <-r.stopCh:
					return nil
				case <-c.done:
					return c.err
				}
				now = time.Now()
			}
		}
		if err := c.publishOne(now); err != nil {
			return err
		}
		if c.quota > 0 {
			c.quota--
		}
	}
	return nil
}

// sleep waits d or until the run stops; false when it stopped.
func (c *client) sleep(d time.Duration) bool {
	if c.timer == nil {
		c.timer = time.NewTimer(d)
	} else {
		c.timer.Reset(d)
	}
	select {
	case <-c.timer.C:
		return true
	case <-c.r.stopCh:
		c.timer.Stop()
		return false
	}
}

// ping sends PINGREQ (keep alive for clients that publish nothing).
func (c *client) ping() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if c.bw != nil {
		_, _ = c.bw.Write(pingreq)
		_ = c.bw.Flush()
	} else {
		_, _ = c.conn.Write(pingreq)
	}
	_ = c.conn.SetWriteDeadline(time.Time{})
}

// close sends DISCONNECT and closes the connection.
func (c *client) close() {
	c.wmu.Lock()
	if c.closed {
		c.wmu.Unlock()
		return
	}
	c.closed = true
	_ = c.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	d := []byte{byte(packet.DISCONNECT) << 4, 0}
	if c.bw != nil {
		_, _ = c.bw.Write(d)
		_ = c.bw.Flush()
	} else {
		_, _ = c.conn.Write(d)
	}
	c.wmu.Unlock()
	_ = c.conn.Close()
}

// idle drops the buffers of a connection that will only be held open.
func (c *client) idle() {
	c.wmu.Lock()
	c.bw, c.br = nil, nil
	c.wmu.Unlock()
}

// readErr reports the reader's error unless the run closed the connection.
func (c *client) readErr() error {
	if c.done == nil {
		return nil
	}
	select {
	case <-c.done:
	default:
		return nil
	}
	if c.err == nil || !c.early || c.cut.Load() {
		return nil
	}
	return c.err
}

func (c *client) isClosed() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.closed
}
