package tlspsk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Record content types.
const (
	recordTypeChangeCipherSpec uint8 = 20
	recordTypeAlert            uint8 = 21
	recordTypeHandshake        uint8 = 22
	recordTypeApplicationData  uint8 = 23
)

const (
	recordHeaderLen  = 5
	maxPlaintext     = 1 << 14
	maxCiphertext12  = maxPlaintext + 2048 // RFC 5246 §6.2.3
	maxCiphertext13  = maxPlaintext + 256  // RFC 8446 §5.2
	maxHandshakeSize = 1 << 15             // largest handshake message body accepted
	// maxUselessRecords bounds consecutive records that carry nothing
	// (empty data, warning alerts, dropped change_cipher_spec).
	maxUselessRecords = 16
	// maxEarlyDataSkip bounds the 0-RTT bytes a server skips after refusing
	// early data (RFC 8446 §4.2.10).
	maxEarlyDataSkip = 1 << 16
	// keyUpdateRecords: a TLS 1.3 writer updates its keys after this many
	// records, well inside the AES-GCM limit of RFC 8446 §5.5.
	keyUpdateRecords = 1 << 24
	// writeBatch is how many bytes of records Write gathers per syscall.
	writeBatch         = 64 << 10
	closeNotifyTimeout = 5 * time.Second
)

// halfConn is one direction of the record layer.
type halfConn struct {
	sync.Mutex
	err     error  // permanent error
	version uint16 // 0 until keys are installed
	suite   *cipherSuite
	aead    recordAEAD // nil: plaintext
	seq     uint64
	secret  []byte     // TLS 1.3 traffic secret, for KeyUpdate
	pending recordAEAD // TLS 1.2: keys activated by change_cipher_spec
}

func (hc *halfConn) setKeys(version uint16, s *cipherSuite, a recordAEAD, secret []byte) {
	hc.version, hc.suite, hc.aead, hc.seq, hc.secret = version, s, a, 0, secret
}

func (hc *halfConn) setTrafficSecret13(s *cipherSuite, secret []byte) {
	key, iv := trafficKey(s, secret)
	hc.setKeys(VersionTLS13, s, s.aead(key, iv, true), secret)
}

func (hc *halfConn) seqBytes() [8]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], hc.seq)
	return b
}

func (hc *halfConn) incSeq() error {
	hc.seq++
	if hc.seq == 0 {
		return &handshakeError{alertInternalError, fmt.Errorf("%w: sequence number wrapped", ErrProtocol)}
	}
	return nil
}

// seal appends one record holding payload to out.
func (hc *halfConn) seal(out []byte, typ uint8, payload []byte, recordVersion uint16) ([]byte, error) {
	if hc.aead == nil {
		out = append(out, typ, byte(recordVersion>>8), byte(recordVersion), byte(len(payload)>>8), byte(len(payload)))
		return append(out, payload...), nil
	}
	seq := hc.seqBytes()
	if hc.version == VersionTLS13 {
		n := len(payload) + 1 + hc.aead.Overhead()
		out = grow(out, recordHeaderLen+n)
		start := len(out) + recordHeaderLen
		out = append(out, recordTypeApplicationData, 3, 3, byte(n>>8), byte(n))
		out = append(out, payload...)
		out = append(out, typ)
		hc.aead.Seal(out[start:start], seq[:], out[start:], out[start-recordHeaderLen:start])
		out = out[:start+n]
	} else {
		explicit := hc.aead.explicitNonceLen()
		n := explicit + len(payload) + hc.aead.Overhead()
		out = grow(out, recordHeaderLen+n)
		out = append(out, typ, 3, 3, byte(n>>8), byte(n))
		if explicit > 0 {
			out = append(out, seq[:explicit]...)
		}
		start := len(out)
		var aad [13]byte
		copy(aad[:], seq[:])
		aad[8], aad[9], aad[10], aad[11], aad[12] = typ, 3, 3, byte(len(payload)>>8), byte(len(payload))
		out = append(out, payload...)
		hc.aead.Seal(out[start:start], seq[:], out[start:], aad[:])
		out = out[:start+len(payload)+hc.aead.Overhead()]
	}
	return out, hc.incSeq()
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n+len(b)/2)
	copy(nb, b)
	return nb
}

var errBadRecordMAC = errors.New("record authentication failed")

// open decrypts a record in place and returns its content type and
// plaintext.
func (hc *halfConn) open(hdr, payload []byte) (uint8, []byte, error) {
	typ := hdr[0]
	if hc.aead == nil {
		return typ, payload, nil
	}
	seq := hc.seqBytes()
	if hc.version == VersionTLS13 {
		if typ != recordTypeApplicationData {
			return 0, nil, &handshakeError{alertUnexpectedMessage, fmt.Errorf("%w: unencrypted record of type %d", ErrProtocol, typ)}
		}
		if len(payload) < hc.aead.Overhead()+1 {
			return 0, nil, errBadRecordMAC
		}
		pt, err := hc.aead.Open(payload[:0], seq[:], payload, hdr)
		if err != nil {
			return 0, nil, errBadRecordMAC
		}
		i := len(pt) - 1
		for i >= 0 && pt[i] == 0 {
			i--
		}
		if i < 0 {
			return 0, nil, &handshakeError{alertUnexpectedMessage, fmt.Errorf("%w: record without content type", ErrProtocol)}
		}
		typ, pt = pt[i], pt[:i]
		if len(pt) > maxPlaintext {
			return 0, nil, &handshakeError{alertRecordOverflow, fmt.Errorf("%w: record too large", ErrProtocol)}
		}
		return typ, pt, hc.incSeq()
	}
	explicit := hc.aead.explicitNonceLen()
	if len(payload) < explicit+hc.aead.Overhead() {
		return 0, nil, errBadRecordMAC
	}
	nonce := seq[:]
	if explicit > 0 {
		nonce = payload[:explicit]
	}
	ct := payload[explicit:]
	n := len(ct) - hc.aead.Overhead()
	var aad [13]byte
	copy(aad[:], seq[:])
	aad[8], aad[9], aad[10], aad[11], aad[12] = typ, 3, 3, byte(n>>8), byte(n)
	pt, err := hc.aead.Open(ct[:0], nonce, ct, aad[:])
	if err != nil {
		return 0, nil, errBadRecordMAC
	}
	if len(pt) > maxPlaintext {
		return 0, nil, &handshakeError{alertRecordOverflow, fmt.Errorf("%w: record too large", ErrProtocol)}
	}
	return typ, pt, hc.incSeq()
}

var readBufPool = sync.Pool{New: func() any {
	b := make([]byte, recordHeaderLen+maxCiphertext12+1024)
	return &b
}}

var writeBufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, writeBatch+recordHeaderLen+maxCiphertext13)
	return &b
}}

// Conn is a TLS-PSK connection. It is safe for one concurrent reader and
// one concurrent writer; Close may be called at any time.
//
// Lock order: handshakeMu, then in, then out. stateMu is a leaf.
type Conn struct {
	conn     net.Conn
	isClient bool
	config   *Config

	handshakeMu  sync.Mutex
	handshakeErr error // guarded by handshakeMu
	handshakeOK  atomic.Bool
	closed       atomic.Bool

	// stateMu guards the following fields.
	stateMu  sync.Mutex
	vers     uint16
	suite    *cipherSuite
	identity string
	resumed  bool   // certificate-mode client: a ticket was accepted
	alpn     string // certificate-mode client: the negotiated protocol

	// in guards the following fields (and in's own).
	in             halfConn
	rbuf           *[]byte // raw input, pooled
	small          [recordHeaderLen]byte
	rpos, rend     int
	input          []byte // decrypted application data not yet read
	hand           []byte // handshake bytes not yet parsed
	useless        int
	readVers       uint16       // negotiated version as seen by the reader
	ccsAllowed     bool         // TLS 1.3: a peer's dummy change_cipher_spec may arrive
	earlyDataSkip  int          // TLS 1.3 server: rejected 0-RTT bytes still skippable
	firstRecord    bool         // no record read yet
	handshakeDoneR bool         // reader's view: handshake finished
	didHRR         bool         // a HelloRetryRequest was sent or received (for tests)
	testEarlyData  int          // tests: a client sends a fake 0-RTT record of this size
	tickets        *ticketState // certificate-mode client with a SessionCache

	// out guards the following fields (and out's own).
	out             halfConn
	sendBuf         []byte
	sendPooled      bool // sendBuf belongs to writeBufPool (during Write)
	closeNotifySent bool
	recordVersion   uint16
}

// Server returns a server-side connection over conn. The handshake runs on
// the first Read, Write or Handshake call.
func Server(conn net.Conn, cfg *Config) *Conn {
	return &Conn{conn: conn, config: cfg, firstRecord: true, recordVersion: VersionTLS12}
}

// Client returns a client-side connection over conn.
func Client(conn net.Conn, cfg *Config) *Conn {
	return &Conn{conn: conn, config: cfg, isClient: true, firstRecord: true, recordVersion: 0x0301}
}

func (c *Conn) LocalAddr() net.Addr                { return c.conn.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.conn.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.conn.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.conn.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.conn }

// ConnectionState reports the negotiated parameters.
func (c *Conn) ConnectionState() State {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	st := State{Version: c.vers, Identity: c.identity, HandshakeComplete: c.handshakeOK.Load(),
		DidResume: c.resumed, NegotiatedProtocol: c.alpn}
	if c.suite != nil {
		st.CipherSuite = c.suite.id
	}
	return st
}

func (c *Conn) setState(vers uint16, s *cipherSuite, identity string) {
	c.stateMu.Lock()
	c.vers, c.suite, c.identity = vers, s, identity
	c.stateMu.Unlock()
}

// Handshake runs the handshake if it has not run yet. ctx bounds it: when
// ctx ends first the handshake fails with ErrHandshakeTimeout and the
// connection is unusable (its deadline is set in the past).
func (c *Conn) Handshake(ctx context.Context) error {
	c.handshakeMu.Lock()
	defer c.handshakeMu.Unlock()
	if c.handshakeOK.Load() {
		return nil
	}
	if c.handshakeErr != nil {
		return c.handshakeErr
	}
	if err := ctx.Err(); err != nil {
		c.handshakeErr = fmt.Errorf("%w: %w", ErrHandshakeTimeout, err)
		return c.handshakeErr
	}
	c.in.Lock()
	defer c.in.Unlock()

	var interrupted atomic.Bool
	var fired chan struct{}
	stop := func() bool { return true }
	if ctx.Done() != nil {
		fired = make(chan struct{})
		stop = context.AfterFunc(ctx, func() {
			interrupted.Store(true)
			c.conn.SetDeadline(time.Unix(1, 0))
			close(fired)
		})
	}

	var err error
	if err = c.config.check(c.isClient); err == nil {
		if c.isClient {
			err = c.clientHandshake()
		} else {
			err = c.serverHandshake()
		}
	}
	if !stop() {
		<-fired
	}
	if interrupted.Load() {
		err = fmt.Errorf("%w: %w", ErrHandshakeTimeout, context.Cause(ctx))
	}
	if err != nil {
		c.sendAlertFor(err)
		c.handshakeErr = err
		c.in.err = err
		return err
	}
	c.handshakeDoneR = true
	c.handshakeOK.Store(true)
	return nil
}

// sendAlertFor sends the alert a local error calls for, and breaks both
// directions.
func (c *Conn) sendAlertFor(err error) {
	var he *handshakeError
	if errors.As(err, &he) {
		c.out.Lock()
		c.sendAlertLocked(he.alert)
		c.out.Unlock()
	}
	c.out.Lock()
	if c.out.err == nil {
		c.out.err = err
	}
	c.out.Unlock()
}

// sendAlertLocked sends an alert; close_notify, user_canceled and
// no_renegotiation go at warning level, the others are fatal.
func (c *Conn) sendAlertLocked(a uint8) error {
	if c.out.err != nil {
		return c.out.err
	}
	level := uint8(2)
	switch a {
	case alertCloseNotify, alertUserCanceled, alertNoRenegotiation:
		level = 1
	}
	if err := c.writeRecordLocked(recordTypeAlert, []byte{level, a}); err != nil {
		return err
	}
	return c.flushLocked()
}

// writeRecordLocked appends records carrying data to the send buffer.
func (c *Conn) writeRecordLocked(typ uint8, data []byte) error {
	if c.out.err != nil {
		return c.out.err
	}
	for first := true; first || len(data) > 0; first = false {
		m := min(len(data), maxPlaintext)
		var err error
		c.sendBuf, err = c.out.seal(c.sendBuf, typ, data[:m], c.recordVersion)
		if err != nil {
			c.out.err = err
			return err
		}
		data = data[m:]
	}
	return nil
}

func (c *Conn) flushLocked() error {
	if len(c.sendBuf) == 0 {
		return nil
	}
	_, err := c.conn.Write(c.sendBuf)
	if c.sendPooled {
		c.sendBuf = c.sendBuf[:0]
	} else {
		c.sendBuf = nil // small control writes do not keep a buffer
	}
	if err != nil {
		c.out.err = err
	}
	return err
}

// writeHandshake queues handshake messages; flush sends them.
func (c *Conn) writeHandshake(msgs ...[]byte) error {
	c.out.Lock()
	defer c.out.Unlock()
	for _, m := range msgs {
		if err := c.writeRecordLocked(recordTypeHandshake, m); err != nil {
			return err
		}
	}
	return nil
}

func (c *Conn) writeCCS() error {
	c.out.Lock()
	defer c.out.Unlock()
	return c.writeRecordLocked(recordTypeChangeCipherSpec, []byte{1})
}

func (c *Conn) flush() error {
	c.out.Lock()
	defer c.out.Unlock()
	return c.flushLocked()
}

// ---- reading ----

// fill makes sure n raw bytes are buffered. An idle connection waits for
// its next record in a 5-byte array, holding no pooled buffer.
func (c *Conn) fill(n int) error {
	if c.rbuf == nil {
		m, err := c.conn.Read(c.small[:])
		if m == 0 {
			if err == nil {
				return nil
			}
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		c.rbuf = readBufPool.Get().(*[]byte)
		c.rpos, c.rend = 0, copy(*c.rbuf, c.small[:m])
	}
	buf := *c.rbuf
	if c.rend-c.rpos >= n {
		return nil
	}
	if c.rpos+n > len(buf) {
		copy(buf, buf[c.rpos:c.rend])
		c.rend -= c.rpos
		c.rpos = 0
	}
	for c.rend-c.rpos < n {
		m, err := c.conn.Read(buf[c.rend:])
		c.rend += m
		if c.rend-c.rpos >= n {
			return nil
		}
		if err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// releaseReadBuf returns the raw input buffer to the pool when idle.
func (c *Conn) releaseReadBuf() {
	if c.rbuf != nil && c.rpos == c.rend && len(c.input) == 0 {
		readBufPool.Put(c.rbuf)
		c.rbuf, c.rpos, c.rend = nil, 0, 0
	}
}

func protoErr(alert uint8, format string, args ...any) error {
	return &handshakeError{alert, fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)}
}

// readRecord reads and processes one record: application data goes to
// c.input, handshake bytes to c.hand, alerts and change_cipher_spec are
// handled here. Caller holds c.in.
func (c *Conn) readRecord() error {
	if c.in.err != nil {
		return c.in.err
	}
	err := c.readRecordInner()
	if err != nil && !isTimeout(err) {
		if err == io.ErrUnexpectedEOF && c.firstRecord {
			err = fmt.Errorf("%w: connection closed before the handshake: %w", ErrProtocol, io.ErrUnexpectedEOF)
		}
		c.in.err = err
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (c *Conn) readRecordInner() error {
	for c.rbuf == nil || c.rend-c.rpos < recordHeaderLen {
		if err := c.fill(recordHeaderLen); err != nil {
			return err
		}
	}
	buf := *c.rbuf
	hdr := buf[c.rpos : c.rpos+recordHeaderLen]
	typ, vers, n := hdr[0], uint16(hdr[1])<<8|uint16(hdr[2]), int(hdr[3])<<8|int(hdr[4])
	if typ < recordTypeChangeCipherSpec || typ > recordTypeApplicationData {
		if c.firstRecord {
			return fmt.Errorf("%w: first record is not TLS", ErrProtocol)
		}
		return protoErr(alertUnexpectedMessage, "unknown record type %d", typ)
	}
	if vers>>8 != 3 || (c.in.aead != nil && vers != VersionTLS12) {
		return protoErr(alertProtocolVersion, "bad record version 0x%04x", vers)
	}
	limit := maxCiphertext12
	switch {
	case c.in.aead == nil:
		limit = maxPlaintext
	case c.in.version == VersionTLS13:
		limit = maxCiphertext13
	}
	if n > limit {
		return protoErr(alertRecordOverflow, "record of %d bytes", n)
	}
	if err := c.fill(recordHeaderLen + n); err != nil {
		return err
	}
	buf = *c.rbuf
	hdr = buf[c.rpos : c.rpos+recordHeaderLen]
	payload := buf[c.rpos+recordHeaderLen : c.rpos+recordHeaderLen+n]
	c.rpos += recordHeaderLen + n
	c.firstRecord = false

	// TLS 1.3 change_cipher_spec is never protected (RFC 8446 §5).
	if typ == recordTypeChangeCipherSpec && c.readVers == VersionTLS13 {
		if n != 1 || payload[0] != 1 || !c.ccsAllowed {
			return protoErr(alertUnexpectedMessage, "change_cipher_spec")
		}
		return c.uselessRecord()
	}
	// A peer failing before it has our keys alerts in the clear.
	if typ == recordTypeAlert && c.in.aead != nil && c.in.version == VersionTLS13 && !c.handshakeDoneR && n == 2 {
		return c.handleAlert(payload)
	}
	// Rejected 0-RTT data: skip what does not decrypt (RFC 8446 §4.2.10).
	if c.earlyDataSkip > 0 && typ == recordTypeApplicationData && c.in.aead == nil && !c.handshakeDoneR {
		return c.skipEarlyData(n)
	}
	typ, data, err := c.in.open(hdr, payload)
	if err != nil {
		if err == errBadRecordMAC {
			if c.earlyDataSkip > 0 {
				return c.skipEarlyData(n)
			}
			return &handshakeError{alertBadRecordMAC, fmt.Errorf("%w: %w", ErrProtocol, errBadRecordMAC)}
		}
		return err
	}
	if c.in.aead != nil {
		c.earlyDataSkip = 0
	}

	switch typ {
	case recordTypeAlert:
		return c.handleAlert(data)
	case recordTypeChangeCipherSpec:
		if len(data) != 1 || data[0] != 1 || c.in.pending == nil || len(c.hand) > 0 {
			return protoErr(alertUnexpectedMessage, "change_cipher_spec")
		}
		c.in.setKeys(VersionTLS12, c.in.suite, c.in.pending, nil)
		c.in.pending = nil
		return nil
	case recordTypeHandshake:
		if len(data) == 0 {
			return protoErr(alertUnexpectedMessage, "empty handshake record")
		}
		if len(c.hand)+len(data) > maxHandshakeSize+4+maxPlaintext {
			return protoErr(alertUnexpectedMessage, "handshake data too large")
		}
		c.hand = append(c.hand, data...)
		c.useless = 0
		if c.handshakeDoneR {
			return c.handlePostHandshake()
		}
		return nil
	default: // application data
		if !c.handshakeDoneR {
			return protoErr(alertUnexpectedMessage, "application data during the handshake")
		}
		if len(data) == 0 {
			return c.uselessRecord()
		}
		c.useless = 0
		c.input = data
		return nil
	}
}

func (c *Conn) skipEarlyData(n int) error {
	if n > c.earlyDataSkip {
		return &handshakeError{alertBadRecordMAC, fmt.Errorf("%w: too much rejected early data", ErrProtocol)}
	}
	c.earlyDataSkip -= n
	return nil
}

func (c *Conn) uselessRecord() error {
	c.useless++
	if c.useless > maxUselessRecords {
		return protoErr(alertUnexpectedMessage, "too many empty records")
	}
	return nil
}

func (c *Conn) handleAlert(data []byte) error {
	if len(data) != 2 {
		return protoErr(alertDecodeError, "bad alert")
	}
	level, desc := data[0], data[1]
	switch {
	case desc == alertCloseNotify:
		return io.EOF
	case c.readVers == VersionTLS13 && desc == alertUserCanceled:
		return c.uselessRecord()
	case c.readVers != VersionTLS13 && level == 1:
		return c.uselessRecord()
	}
	return &AlertError{Alert: desc, Remote: true}
}

// expectMessage refuses a handshake message of another type than typ
// (name is its name in the error).
func expectMessage(msg []byte, typ uint8, name string) error {
	if msg[0] != typ {
		return protoErr(alertUnexpectedMessage, "expected %s, got message %d", name, msg[0])
	}
	return nil
}

// readHandshake returns the next whole handshake message.
func (c *Conn) readHandshake() ([]byte, error) {
	for {
		if len(c.hand) >= 4 {
			n := int(c.hand[1])<<16 | int(c.hand[2])<<8 | int(c.hand[3])
			if n > maxHandshakeSize {
				return nil, protoErr(alertIllegalParameter, "handshake message of %d bytes", n)
			}
			if len(c.hand) >= 4+n {
				msg := append([]byte(nil), c.hand[:4+n]...)
				c.hand = c.hand[4+n:]
				if len(c.hand) == 0 {
					c.hand = nil
				}
				return msg, nil
			}
		}
		if err := c.readRecord(); err != nil {
			return nil, err
		}
	}
}

// handlePostHandshake processes whole handshake messages after the
// handshake: KeyUpdate and NewSessionTicket (TLS 1.3), renegotiation
// attempts (TLS 1.2, refused).
func (c *Conn) handlePostHandshake() error {
	for len(c.hand) >= 4 {
		n := int(c.hand[1])<<16 | int(c.hand[2])<<8 | int(c.hand[3])
		if n > maxHandshakeSize {
			return protoErr(alertIllegalParameter, "handshake message of %d bytes", n)
		}
		if len(c.hand) < 4+n {
			return nil
		}
		msg := c.hand[:4+n]
		c.hand = c.hand[4+n:]
		if err := c.handlePostHandshakeMsg(msg); err != nil {
			return err
		}
	}
	return nil
}

func (c *Conn) handlePostHandshakeMsg(msg []byte) error {
	if c.readVers != VersionTLS13 {
		if c.isClient && msg[0] == typeHelloRequest && len(msg) == 4 {
			// RFC 5746 §4.2: decline with a warning and carry on.
			c.out.Lock()
			err := c.sendAlertLocked(alertNoRenegotiation)
			c.out.Unlock()
			if err != nil {
				return err
			}
			return c.uselessRecord()
		}
		if !c.isClient && msg[0] == typeClientHello {
			return &handshakeError{alertNoRenegotiation, fmt.Errorf("%w: client asked to renegotiate", ErrRenegotiation)}
		}
		return protoErr(alertUnexpectedMessage, "handshake message %d after the handshake", msg[0])
	}
	switch msg[0] {
	case typeNewSessionTicket:
		if c.isClient {
			return c.handleNewSessionTicket(msg)
		}
	case typeKeyUpdate:
		var ku keyUpdateMsg
		if err := ku.unmarshal(msg); err != nil {
			return protoErr(alertDecodeError, "key_update")
		}
		if len(c.hand) > 0 {
			return protoErr(alertUnexpectedMessage, "data after key_update in the same record")
		}
		c.in.setTrafficSecret13(c.in.suite, nextTrafficSecret(c.in.suite.hash, c.in.secret))
		if ku.updateRequested {
			c.out.Lock()
			defer c.out.Unlock()
			if c.out.err != nil || c.closeNotifySent {
				return nil
			}
			return c.sendKeyUpdateLocked(false)
		}
		return nil
	}
	return protoErr(alertUnexpectedMessage, "handshake message %d after the handshake", msg[0])
}

// ticketState is what a certificate-mode client needs to turn the
// server's tickets into sessions: the resumption master secret.
type ticketState struct {
	suite  *cipherSuite
	secret []byte // resumption_master_secret
	key    string // SessionCache key
}

// handleNewSessionTicket stores a ticket in the session cache (RFC 8446
// §4.6.1); without one (PSK mode, or no Config.SessionCache) tickets are
// ignored. Caller holds c.in.
func (c *Conn) handleNewSessionTicket(msg []byte) error {
	ts := c.tickets
	if ts == nil {
		return nil
	}
	var m newSessionTicketMsg
	if err := m.unmarshal(msg); err != nil {
		return protoErr(alertDecodeError, "NewSessionTicket")
	}
	lifetime := time.Duration(m.lifetime) * time.Second
	if lifetime > maxTicketLifetime {
		return protoErr(alertIllegalParameter, "ticket lifetime of %d s", m.lifetime)
	}
	if lifetime == 0 {
		return nil // not to be used (RFC 8446 §4.6.1)
	}
	h := ts.suite.hash
	c.config.SessionCache.put(ts.key, &session{
		suite:    ts.suite,
		ticket:   m.ticket,
		psk:      resumptionPSK(h, ts.secret, m.nonce),
		ageAdd:   m.ageAdd,
		received: c.config.now(),
		lifetime: lifetime,
	})
	return nil
}

// sendKeyUpdateLocked sends a KeyUpdate and switches to the next write key.
func (c *Conn) sendKeyUpdateLocked(requestPeer bool) error {
	m := keyUpdateMsg{updateRequested: requestPeer}
	if err := c.writeRecordLocked(recordTypeHandshake, m.marshal()); err != nil {
		return err
	}
	if err := c.flushLocked(); err != nil {
		return err
	}
	c.out.setTrafficSecret13(c.out.suite, nextTrafficSecret(c.out.suite.hash, c.out.secret))
	return nil
}

// SendKeyUpdate updates the TLS 1.3 write keys and, with requestPeer, asks
// the peer to update its own.
func (c *Conn) SendKeyUpdate(requestPeer bool) error {
	if err := c.Handshake(context.Background()); err != nil {
		return err
	}
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.version != VersionTLS13 {
		return fmt.Errorf("%w: KeyUpdate needs TLS 1.3", ErrNegotiation)
	}
	if c.out.err != nil {
		return c.out.err
	}
	return c.sendKeyUpdateLocked(requestPeer)
}

// Read reads application data, running the handshake first if needed.
// It returns io.EOF after the peer's close_notify.
func (c *Conn) Read(b []byte) (int, error) {
	if err := c.Handshake(context.Background()); err != nil {
		return 0, err
	}
	if len(b) == 0 {
		return 0, nil
	}
	c.in.Lock()
	defer c.in.Unlock()
	for len(c.input) == 0 {
		if err := c.readRecord(); err != nil {
			if !isTimeout(err) && err != io.EOF {
				c.sendAlertFor(err)
			}
			return 0, err
		}
	}
	n := copy(b, c.input)
	c.input = c.input[n:]
	c.releaseReadBuf()
	return n, nil
}

var errShutdown = fmt.Errorf("%w: write after CloseWrite", ErrClosed)

// Write writes application data, running the handshake first if needed.
func (c *Conn) Write(b []byte) (int, error) {
	if err := c.Handshake(context.Background()); err != nil {
		return 0, err
	}
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.err != nil {
		return 0, c.out.err
	}
	if c.closeNotifySent {
		return 0, errShutdown
	}
	if !c.sendPooled {
		bp := writeBufPool.Get().(*[]byte)
		c.sendBuf, c.sendPooled = append((*bp)[:0], c.sendBuf...), true
		defer func() {
			*bp = c.sendBuf[:0]
			c.sendBuf, c.sendPooled = nil, false
			writeBufPool.Put(bp)
		}()
	}
	sent, queued := 0, 0
	for len(b) > 0 {
		if c.out.version == VersionTLS13 && c.out.seq >= keyUpdateRecords {
			if err := c.sendKeyUpdateLocked(false); err != nil {
				return sent, err
			}
		}
		m := min(len(b), maxPlaintext)
		var err error
		c.sendBuf, err = c.out.seal(c.sendBuf, recordTypeApplicationData, b[:m], c.recordVersion)
		if err != nil {
			c.out.err = err
			return sent, err
		}
		b = b[m:]
		queued += m
		if len(c.sendBuf) >= writeBatch || len(b) == 0 {
			if err := c.flushLocked(); err != nil {
				return sent, err
			}
			sent += queued
			queued = 0
		}
	}
	return sent, nil
}

// CloseWrite sends close_notify; later writes fail. The peer reads io.EOF.
func (c *Conn) CloseWrite() error {
	if !c.handshakeOK.Load() {
		return fmt.Errorf("%w: CloseWrite before the handshake", ErrClosed)
	}
	c.out.Lock()
	defer c.out.Unlock()
	if c.closeNotifySent {
		return nil
	}
	c.closeNotifySent = true
	return c.sendAlertLocked(alertCloseNotify)
}

// Close sends close_notify (when the handshake is done and no write is
// blocked) and closes the connection.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("%w", ErrClosed)
	}
	if c.handshakeOK.Load() && c.out.TryLock() {
		if c.out.err == nil && !c.closeNotifySent {
			c.closeNotifySent = true
			c.conn.SetWriteDeadline(time.Now().Add(closeNotifyTimeout))
			c.sendAlertLocked(alertCloseNotify)
		}
		c.out.Unlock()
	}
	return c.conn.Close()
}
