package broker

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"moat/internal/auth"
	"moat/internal/packet"
	"moat/internal/proxyproto"
	"moat/internal/topic"
)

// errKicked ends a connection the server closed on purpose (takeover,
// shutdown, administrative action).
var errKicked = errors.New("broker: connection closed by server")

// reasonError ends a connection with an MQTT 5 DISCONNECT reason code.
type reasonError struct {
	code packet.ReasonCode
	msg  string
}

func (e *reasonError) Error() string { return e.msg + " (" + e.code.String() + ")" }

func protoErr(code packet.ReasonCode, msg string) error { return &reasonError{code: code, msg: msg} }

// conn is one client network connection: a reader (serve) and a writer
// (flush, started on demand) that drains the outbound buffer, coalescing
// packets.
type conn struct {
	s       *Server
	nc      net.Conn
	bl      *boundListener
	br      *bufio.Reader // nil while nothing is buffered: see readPacket
	readers *sync.Pool    // where br comes from
	first   firstByte     // the byte that woke an idle connection
	remote  string
	rbuf    []byte

	// Set during CONNECT, read-only afterwards.
	version       byte
	clientID      string
	principal     *auth.Principal
	sess          *session
	keepAlive     time.Duration
	clientRecvMax uint16
	clientMaxPkt  uint32
	aliases       []string // inbound topic aliases, index = alias; made on first use
	aliasMax      uint16   // Topic Alias Maximum granted to this client
	authMethod    string
	tlsVersion    uint16
	tlsSuite      uint16
	connectedAt   time.Time
	deadline      time.Time                           // for the TLS handshake and CONNECT together
	leaf          *x509.Certificate                   // verified client certificate, if any
	chain         []*x509.Certificate                 // its verified chain, leaf first
	idFields      func(source string) (string, error) // certificate fields for client-id templates
	proxySSL      *proxyproto.SSLInfo                 // what a trusted balancer said about TLS

	pub       packet.Publish       // reused decode target
	ack       packet.Ack           // reused decode target
	matchBuf  []topic.Subscription // reused routing scratch
	connected atomic.Bool          // CONNACK sent; principal, clientID, version are set
	// pendingAcks counts acknowledgements waiting for the store;
	// lastApplied is the store write count when this connection last
	// waited for it.
	pendingAcks      atomic.Int32
	lastApplied      uint64
	normalDisconnect bool // DISCONNECT 0x00 received: no will

	// wmu guards the following fields.
	wmu      sync.Mutex
	wbuf     []byte
	wclosing bool
	writing  bool // a flush goroutine is running
	inline   bool // the reader writes what is queued itself when it is done (CONNECT)
	ready    bool // the transport is set up (TLS handshake done): writes may start

	closed    chan struct{}
	closeOnce sync.Once
	detached  chan struct{} // closed when the session is released
}

func newConn(s *Server, nc net.Conn, bl *boundListener) *conn {
	return &conn{
		s:        s,
		nc:       nc,
		bl:       bl,
		remote:   nc.RemoteAddr().String(),
		deadline: time.Now().Add(bl.cfg.HandshakeTimeout.Duration),
		closed:   make(chan struct{}),
		detached: make(chan struct{}),
	}
}

// serve runs the connection: CONNECT, then the packet loop, then cleanup.
func (c *conn) serve() {
	if err := c.readProxyHeader(); err != nil {
		c.nc.Close()
		c.release()
		return
	}
	if err := c.handshake(); err != nil {
		c.nc.Close()
		c.release()
		return
	}
	if c.bl.cfg.IsTLS() {
		// The handshake grew this goroutine's stack; the connection lives
		// on, mostly idle, on a fresh goroutine with a small one.
		c.s.goFunc(c.run)
		return
	}
	c.run()
}

// release forgets a connection that has ended.
func (c *conn) release() {
	c.bl.n.Add(-1)
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
}

// run serves an established transport: CONNECT, the packet loop, cleanup.
func (c *conn) run() {
	defer c.release()
	defer c.putReader()
	// TLS buffers whole records itself: a small reader above it is enough.
	c.readers = &tcpReaders
	if c.bl.cfg.IsTLS() {
		c.readers = &tlsReaders
	}
	// The CONNACK (or the refusal) and whatever was queued during the
	// handshake go out from this goroutine once CONNECT is handled: no
	// writer goroutine for them.
	c.wmu.Lock()
	c.ready = true
	c.inline = true
	closing := c.wclosing
	c.wmu.Unlock()
	if closing {
		c.signal() // closed during the handshake
	}
	err := c.connect()
	c.flushInline()
	if err == nil {
		err = c.loop()
	}
	c.finish(err)
}

// finish releases the session, handles the will and the session expiry, and
// closes the connection after the writer has flushed.
func (c *conn) finish(err error) {
	var re *reasonError
	var pe *packet.Error
	switch {
	case errors.As(err, &re):
		c.s.log.Debug("closing connection", "client", c.clientID, "remote", c.remote, "reason", re.Error())
		c.sendDisconnect(re.code)
	case errors.As(err, &pe):
		c.s.log.Debug("closing connection: bad packet", "client", c.clientID, "remote", c.remote, "err", pe.Error())
		c.sendDisconnect(pe.Code)
	case err == nil || errors.Is(err, io.EOF) || errors.Is(err, errKicked) || errors.Is(err, net.ErrClosed):
	default:
		c.s.log.Debug("connection ended", "client", c.clientID, "remote", c.remote, "err", err)
	}
	c.wmu.Lock()
	c.wclosing = true
	c.wmu.Unlock()
	c.flushInline()
	if c.connected.Load() {
		c.s.detach(c)
		c.s.stats.connected.Add(-1)
	}
	close(c.detached)
	// Wait for the writer to finish flushing, bounded by its deadline.
	<-c.closed
}

// sendDisconnect queues an MQTT 5 DISCONNECT with code, once connected.
// A server never sends DISCONNECT to 3.1.1 clients.
func (c *conn) sendDisconnect(code packet.ReasonCode) {
	if !c.connected.Load() || c.version != packet.V5 {
		return
	}
	c.send(&packet.Disconnect{ReasonCode: code})
}

// kick ends the connection from outside: an MQTT 5 client is told why.
func (c *conn) kick(code packet.ReasonCode) {
	c.wmu.Lock()
	if !c.wclosing && c.connected.Load() && c.version == packet.V5 {
		d := packet.Disconnect{ReasonCode: code}
		c.wbuf, _ = d.Append(c.wbuf, c.version)
	}
	c.wmu.Unlock()
	c.closeAfterFlush()
}

// abort closes the connection at once.
func (c *conn) abort() {
	c.closeOnce.Do(func() {
		c.nc.Close()
		close(c.closed)
	})
}

// closeAfterFlush makes the writer flush what is queued and close.
func (c *conn) closeAfterFlush() {
	c.wmu.Lock()
	c.wclosing = true
	c.wmu.Unlock()
	c.signal()
}

func (c *conn) signal() {
	c.wmu.Lock()
	if c.writing || !c.ready || c.inline && !c.wclosing {
		c.wmu.Unlock()
		return
	}
	c.writing = true
	c.wmu.Unlock()
	c.s.goFunc(c.flush)
}

// send queues one packet. It reports false when the connection is closing.
func (c *conn) send(p packet.Packet) bool {
	c.wmu.Lock()
	if c.wclosing {
		c.wmu.Unlock()
		return false
	}
	var err error
	c.wbuf, err = p.Append(c.wbuf, c.version)
	c.wmu.Unlock()
	if err != nil {
		c.s.log.Error("encoding packet failed", "type", p.Type().String(), "client", c.clientID, "err", err)
		return false
	}
	c.signal()
	return true
}

// flush drains the outbound buffer: everything queued since the last write
// goes out in one Write, until nothing is left. It runs only while there is
// something to send, so an idle connection has no writer goroutine and no
// write buffer.
func (c *conn) flush() { c.drain(false) }

// flushInline writes what is queued on the calling goroutine (the reader),
// unless a writer runs: one write, and a writer goroutine for anything
// queued meanwhile, so the reader is not kept from reading. When the
// connection is closing it closes it.
func (c *conn) flushInline() {
	c.wmu.Lock()
	c.inline = false
	if c.writing || !c.ready || len(c.wbuf) == 0 && !c.wclosing {
		c.wmu.Unlock()
		return
	}
	c.writing = true
	c.wmu.Unlock()
	c.drain(true)
}

// drain writes until the buffer is empty; with once, it writes one batch
// and hands the rest to a writer goroutine. The caller has set writing.
func (c *conn) drain(once bool) {
	var buf []byte
	for i := 0; ; i++ {
		c.wmu.Lock()
		if once && i > 0 && len(c.wbuf) > 0 {
			c.wmu.Unlock()
			c.s.goFunc(c.flush) // writing stays set: the goroutine takes over
			return
		}
		if len(c.wbuf) == 0 {
			c.writing = false
			closing := c.wclosing
			if cap(c.wbuf) > 4096 {
				c.wbuf = nil // do not pin a burst's buffer on an idle connection
			}
			c.wmu.Unlock()
			if closing {
				if tc, ok := c.nc.(interface{ CloseWrite() error }); ok {
					tc.CloseWrite()
				}
				c.abort()
			}
			return
		}
		buf, c.wbuf = c.wbuf, buf[:0]
		c.wmu.Unlock()
		c.nc.SetWriteDeadline(time.Now().Add(c.s.limits.writeTimeout))
		n, err := c.nc.Write(buf)
		c.s.stats.bytesSent.Add(int64(n))
		if err != nil {
			c.wmu.Lock()
			c.writing = false
			c.wbuf = nil
			c.wclosing = true
			c.wmu.Unlock()
			c.abort()
			return
		}
		if cap(buf) > 64<<10 {
			buf = nil
		}
	}
}

// Read buffers are lent to connections while they have data: an idle
// connection (the common case in IoT fleets) waits for its next packet
// without one, reading its first byte into firstByte.
var (
	tlsReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 1024) }}
	tcpReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
)

// firstByte yields one byte already read, then reads from br. It lives
// in the connection: a local would escape, one allocation per wake-up.
type firstByte struct {
	b    [1]byte
	used bool
	br   *bufio.Reader
}

func (f *firstByte) ReadByte() (byte, error) {
	if !f.used {
		f.used = true
		return f.b[0], nil
	}
	return f.br.ReadByte()
}

// putReader gives the read buffer back.
func (c *conn) putReader() {
	if c.br != nil {
		c.br.Reset(nil)
		c.readers.Put(c.br)
		c.br = nil
	}
}

// readPacket reads one packet, refusing before allocation anything over
// the maximum packet size. With nothing buffered it gives the read buffer
// back and waits for the next byte without one.
func (c *conn) readPacket() (packet.FixedHeader, []byte, error) {
	var fh packet.FixedHeader
	var err error
	if c.br != nil && c.br.Buffered() > 0 {
		fh, err = packet.ReadFixedHeader(c.br)
	} else {
		c.putReader()
		if _, err := io.ReadFull(c.nc, c.first.b[:]); err != nil {
			return fh, nil, err
		}
		c.br = c.readers.Get().(*bufio.Reader)
		c.br.Reset(c.nc)
		c.first.used, c.first.br = false, c.br
		fh, err = packet.ReadFixedHeader(&c.first)
	}
	if err != nil {
		return fh, nil, err
	}
	total := uint64(fh.Remaining) + 1 + uint64(varIntLen(fh.Remaining))
	if total > uint64(c.s.limits.maxPacket) {
		return fh, nil, protoErr(packet.PacketTooLarge, "packet exceeds maximum packet size")
	}
	if cap(c.rbuf) < fh.Remaining {
		c.rbuf = make([]byte, fh.Remaining, max(fh.Remaining, 256))
	}
	body := c.rbuf[:fh.Remaining]
	if _, err := io.ReadFull(c.br, body); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		return fh, nil, err
	}
	c.s.stats.bytesRecv.Add(int64(total))
	// Do not keep a large buffer on a connection that sent one big packet.
	if cap(c.rbuf) > 64<<10 {
		defer func() { c.rbuf = nil }()
	}
	return fh, body, nil
}

func varIntLen(n int) int {
	switch {
	case n < 128:
		return 1
	case n < 16384:
		return 2
	case n < 2097152:
		return 3
	}
	return 4
}

// setReadDeadline arms the keep-alive timer: 1.5 times the keep alive.
func (c *conn) setReadDeadline() {
	if c.keepAlive > 0 {
		c.nc.SetReadDeadline(time.Now().Add(c.keepAlive))
	} else {
		c.nc.SetReadDeadline(time.Time{})
	}
}

// loop reads and handles packets until the connection ends.
func (c *conn) loop() error {
	for {
		c.setReadDeadline()
		fh, body, err := c.readPacket()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return protoErr(packet.KeepAliveTimeout, "keep alive timeout")
			}
			return err
		}
		if err := c.handle(fh, body); err != nil {
			return err
		}
		if c.normalDisconnect {
			return nil
		}
	}
}

// handle dispatches one packet to its handler.
func (c *conn) handle(fh packet.FixedHeader, body []byte) error {
	switch fh.Type {
	case packet.PUBLISH:
		return c.handlePublish(fh, body)
	case packet.PINGREQ:
		if _, err := packet.Decode(fh, body, c.version); err != nil {
			return err
		}
		c.send(&packet.Pingresp{})
		return nil
	}
	if fh.Type >= packet.PUBACK && fh.Type <= packet.PUBCOMP {
		if err := c.ack.Decode(fh, body, c.version); err != nil {
			return err
		}
		return c.handleAck(&c.ack)
	}
	p, err := packet.Decode(fh, body, c.version)
	if err != nil {
		return err
	}
	switch p := p.(type) {
	case *packet.Subscribe:
		return c.handleSubscribe(p)
	case *packet.Unsubscribe:
		return c.handleUnsubscribe(p)
	case *packet.Disconnect:
		return c.handleDisconnect(p)
	case *packet.Auth:
		return c.handleAuth(p)
	case *packet.Connect:
		return protoErr(packet.ProtocolError, "second CONNECT")
	default:
		return protoErr(packet.ProtocolError, "packet type "+fh.Type.String()+" not allowed from a client")
	}
}

func (c *conn) handleAuth(p *packet.Auth) error {
	if c.authMethod == "" {
		return protoErr(packet.ProtocolError, "AUTH without an authentication method")
	}
	return protoErr(packet.BadAuthenticationMethod, "re-authentication not supported")
}

func (c *conn) handleDisconnect(p *packet.Disconnect) error {
	if p.Properties.Has(packet.PropSessionExpiry) {
		ss := c.sess
		ss.mu.Lock()
		if ss.expiry == 0 && p.Properties.SessionExpiry != 0 {
			ss.mu.Unlock()
			return protoErr(packet.ProtocolError, "session expiry set on DISCONNECT after 0 on CONNECT")
		}
		ss.expiry = c.s.capSessionExpiry(p.Properties.SessionExpiry)
		c.s.saveSession(ss)
		ss.mu.Unlock()
	}
	if p.ReasonCode != packet.DisconnectWithWill {
		c.sess.mu.Lock()
		c.sess.will = nil
		c.sess.mu.Unlock()
	}
	c.normalDisconnect = true
	return nil
}

// randomClientID makes a server-assigned client identifier.
func randomClientID() string {
	var b [12]byte
	rand.Read(b[:])
	return "moat-" + hex.EncodeToString(b[:])
}

// ctxFor returns a context bounded by the connect timeout.
func (c *conn) ctxFor() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.s.limits.connectTimeout)
}
