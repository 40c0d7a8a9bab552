package proxyproto

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultHeaderTimeout bounds reading the PROXY header when
// Options.HeaderTimeout is not set (the specification asks for at least
// 3 s, to cover a TCP retransmit).
const DefaultHeaderTimeout = 5 * time.Second

// Options configure Listen.
type Options struct {
	// Trusted are the addresses of the proxies (load balancers) whose
	// PROXY headers are believed. IPv4-mapped IPv6 peers are unmapped
	// before matching, so list IPv4 networks as IPv4 prefixes.
	Trusted []netip.Prefix
	// Required makes the listener PROXY-only: connections from addresses
	// outside Trusted are closed in Accept, and trusted connections
	// without a header are refused (ErrMissingHeader).
	Required bool
	// HeaderTimeout bounds reading the header, from the first Read (or
	// Header call) on (default DefaultHeaderTimeout). On a mixed listener
	// it also bounds the wait for the first byte of a direct client.
	HeaderTimeout time.Duration
	// CertTLV is the custom TLV type carrying the client certificate
	// (default DefaultCertTLV, 0xE0); it must be in the custom
	// (0xE0-0xEF) or experimental (0xF0-0xF7) range.
	CertTLV byte
	// Log receives refused connections: untrusted PROXY headers at Warn
	// (at most one line per 10 s), other failures at Debug.
	Log *slog.Logger
}

// Validate reports options that cannot work: a CertTLV outside the custom
// and experimental ranges (it would be ignored), a Required listener
// without trusted proxies (it would refuse everyone), an invalid prefix or
// a negative timeout. The config layer should call it; Listen logs the
// error and goes on.
func (o Options) Validate() error {
	var errs []error
	for _, p := range o.Trusted {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("invalid trusted prefix %v", p))
		}
	}
	if o.Required && len(o.Trusted) == 0 {
		errs = append(errs, errors.New("PROXY header required but no trusted proxies"))
	}
	if o.CertTLV != 0 && !customCertType(o.CertTLV) {
		errs = append(errs, fmt.Errorf("certificate TLV type %#02x outside 0xE0-0xF7", o.CertTLV))
	}
	if o.HeaderTimeout < 0 {
		errs = append(errs, fmt.Errorf("negative header timeout %v", o.HeaderTimeout))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
	}
	return nil
}

// Listener wraps a net.Listener; Accept returns *Conn.
type Listener struct {
	net.Listener
	trusted  []netip.Prefix
	required bool
	timeout  time.Duration
	certTLV  byte
	log      *slog.Logger

	refused  atomic.Uint64 // connections refused by the trust rules
	lastWarn atomic.Int64  // unix nanos of the last Warn line
	warned   atomic.Uint64 // refused count at the last Warn line
}

// Listen wraps ln so that its connections may carry a PROXY protocol
// header (v1 or v2) from the Trusted proxies. Accept never reads from a
// connection: the header is read by the first Read, Write or Header call
// of the returned *Conn, so one slow client cannot block the accept loop.
func Listen(ln net.Listener, opts Options) net.Listener {
	l := &Listener{
		Listener: ln,
		required: opts.Required,
		timeout:  opts.HeaderTimeout,
		certTLV:  opts.CertTLV,
		log:      opts.Log,
	}
	for _, p := range opts.Trusted {
		if p.IsValid() {
			l.trusted = append(l.trusted, p.Masked())
		}
	}
	if l.timeout <= 0 {
		l.timeout = DefaultHeaderTimeout
	}
	if l.certTLV == 0 {
		l.certTLV = DefaultCertTLV
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if err := opts.Validate(); err != nil {
		l.log.Error("proxyproto: listener options", "addr", ln.Addr().String(), "err", err)
	}
	return l
}

// Accept returns the next connection as a *Conn. On a Required listener,
// connections from untrusted addresses are closed here without reading.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		trusted := l.isTrusted(c.RemoteAddr())
		if !trusted && l.required {
			_ = c.Close()
			l.warn(c.RemoteAddr(), ErrUntrustedSource)
			continue
		}
		return &Conn{conn: c, l: l, trusted: trusted}, nil
	}
}

// Refused returns how many connections the trust rules refused (untrusted
// PROXY headers, and untrusted sources on a Required listener).
func (l *Listener) Refused() uint64 { return l.refused.Load() }

func (l *Listener) isTrusted(a net.Addr) bool {
	ip, ok := addrIP(a)
	if !ok {
		return false
	}
	for _, p := range l.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func addrIP(a net.Addr) (netip.Addr, bool) {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.TCPAddr:
		ip = a.AddrPort().Addr()
	default:
		if a == nil {
			return netip.Addr{}, false
		}
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}, false
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap().WithZone("")
	return ip, ip.IsValid()
}

// warn logs a trust refusal at most once per 10 seconds.
func (l *Listener) warn(remote net.Addr, err error) {
	total := l.refused.Add(1)
	now := time.Now().UnixNano()
	last := l.lastWarn.Load()
	if now-last < int64(10*time.Second) || !l.lastWarn.CompareAndSwap(last, now) {
		l.log.Debug("proxyproto: connection refused", "remote", addrString(remote), "err", err)
		return
	}
	since := total - l.warned.Swap(total)
	l.log.Warn("proxyproto: connection refused", "remote", addrString(remote), "err", err,
		"refused_since_last_warning", since, "refused_total", total)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// readerPool holds the small buffers used while reading headers; a
// connection gives its buffer back once the header is read, so idle
// connections hold none.
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 512) }}

// Conn is a connection accepted by a Listener. Its header is read on the
// first Read, Write or Header call; until then RemoteAddr is the TCP peer's
// address.
//
// Lock order: hmu before dmu and before rmu; dmu and rmu are never held
// together.
type Conn struct {
	conn    net.Conn
	l       *Listener
	trusted bool

	// ready is set once the header has been processed (successfully or
	// not); from then on hdr, err and remote are read-only.
	ready atomic.Bool
	// hmu serializes processing the header; it guards the following
	// fields until ready is set.
	hmu    sync.Mutex
	hdr    *Header
	err    error
	remote net.Addr

	// dmu guards the following fields.
	dmu        sync.Mutex
	userRD     time.Time // read deadline asked for by the user
	hdrRD      time.Time // deadline of the header read, while inHeader
	inHeader   bool
	hdrAborted bool // the header read's context ended

	// rmu guards rest; hasRest says whether it may be non-empty.
	rmu     sync.Mutex
	rest    []byte // bytes read past the header, served before the socket
	hasRest atomic.Bool
}

// Header reads the PROXY header if that has not happened yet, bounded by
// Options.HeaderTimeout and ctx, and returns it: nil with a nil error for a
// direct connection (no header). On a listener that is not Required, telling
// a direct connection from a proxied one takes the client's first byte, so
// Header waits for it. Any error is final: the connection is closed and
// every later Read, Write and Header returns it. Concurrent calls wait for
// the first one.
func (c *Conn) Header(ctx context.Context) (*Header, error) {
	if err := c.process(ctx); err != nil {
		return nil, err
	}
	return c.hdr, nil
}

// RemoteAddr is the client's address: the header's source when the header
// names one (Proxy command over TCP), else the TCP peer's address (a
// direct client, or the proxy itself for LOCAL, UNKNOWN and AF_UNSPEC
// headers). It does not read the header: before Header or the first Read
// returns, it is the TCP peer's address, which for a proxied connection
// is the proxy's.
func (c *Conn) RemoteAddr() net.Addr {
	if c.ready.Load() && c.remote != nil {
		return c.remote
	}
	return c.conn.RemoteAddr()
}

// ProxyAddr is the address of the proxy that sent the header, nil for a
// direct connection or before the header is read.
func (c *Conn) ProxyAddr() net.Addr {
	if c.ready.Load() && c.hdr != nil {
		return c.conn.RemoteAddr()
	}
	return nil
}

// SSL is the TLS information the proxy forwarded, nil when there is none
// or before the header is read.
func (c *Conn) SSL() *SSLInfo {
	if c.ready.Load() && c.hdr != nil {
		return c.hdr.SSL
	}
	return nil
}

// Trusted reports whether the TCP peer is one of Options.Trusted.
func (c *Conn) Trusted() bool { return c.trusted }

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.conn }

// Read reads the header first, then data.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.process(context.Background()); err != nil {
		return 0, err
	}
	if c.hasRest.Load() {
		c.rmu.Lock()
		if len(c.rest) > 0 {
			n := copy(p, c.rest)
			c.rest = c.rest[n:]
			if len(c.rest) == 0 {
				c.rest = nil
				c.hasRest.Store(false)
			}
			c.rmu.Unlock()
			return n, nil
		}
		c.rmu.Unlock()
	}
	return c.conn.Read(p)
}

// Write reads the header first (the protocol forbids processing a
// connection before its header), then writes.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.process(context.Background()); err != nil {
		return 0, err
	}
	return c.conn.Write(p)
}

// Close closes the connection; a header read in progress fails.
func (c *Conn) Close() error { return c.conn.Close() }

// LocalAddr is the local address of the socket.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// SetDeadline sets the read and write deadlines. While the header is being
// read, the read deadline in force is the earlier of t and the header's.
func (c *Conn) SetDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.userRD = t
	if err := c.conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.conn.SetReadDeadline(c.readDeadlineLocked())
}

// SetReadDeadline sets the read deadline (see SetDeadline).
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.userRD = t
	return c.conn.SetReadDeadline(c.readDeadlineLocked())
}

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// readDeadlineLocked is the socket read deadline to apply; dmu is held.
func (c *Conn) readDeadlineLocked() time.Time {
	if !c.inHeader {
		return c.userRD
	}
	if c.hdrAborted {
		return aLongTimeAgo
	}
	if !c.userRD.IsZero() && c.userRD.Before(c.hdrRD) {
		return c.userRD
	}
	return c.hdrRD
}

var aLongTimeAgo = time.Unix(1, 0)

// process reads the header once; later calls return its outcome.
func (c *Conn) process(ctx context.Context) error {
	if c.ready.Load() {
		return c.err
	}
	c.hmu.Lock()
	defer c.hmu.Unlock()
	if c.ready.Load() {
		return c.err
	}
	hdr, err := c.readHeader(ctx)
	c.hdr, c.err = hdr, err
	c.remote = c.conn.RemoteAddr()
	if hdr.HasAddresses() {
		c.remote = net.TCPAddrFromAddrPort(hdr.Source)
	}
	c.ready.Store(true)
	if err != nil {
		_ = c.conn.Close()
		if errors.Is(err, ErrUntrustedProxy) {
			c.l.warn(c.conn.RemoteAddr(), err)
		} else {
			c.l.log.Debug("proxyproto: connection refused", "remote", addrString(c.conn.RemoteAddr()), "trusted", c.trusted, "err", err)
		}
	}
	return err
}

// readHeader applies the trust rules:
//
//	trusted, Required:      a header must come (else ErrMissingHeader)
//	trusted, not Required:  a header is read if one comes, else direct
//	untrusted:              a header is refused (ErrUntrustedProxy), else direct
//
// (untrusted sources on a Required listener never get here: Accept closed
// them).
func (c *Conn) readHeader(ctx context.Context) (*Header, error) {
	deadline := time.Now().Add(c.l.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.dmu.Lock()
	c.inHeader, c.hdrRD, c.hdrAborted = true, deadline, false
	err := c.conn.SetReadDeadline(c.readDeadlineLocked())
	c.dmu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("proxyproto: %w", err)
	}
	stop := context.AfterFunc(ctx, func() {
		c.dmu.Lock()
		defer c.dmu.Unlock()
		if c.inHeader {
			c.hdrAborted = true
			_ = c.conn.SetReadDeadline(aLongTimeAgo)
		}
	})
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(c.conn)
	defer func() {
		stop()
		c.dmu.Lock()
		c.inHeader = false
		_ = c.conn.SetReadDeadline(c.userRD)
		c.dmu.Unlock()
		br.Reset(nil)
		readerPool.Put(br)
	}()

	hdr, err := c.parse(br)
	if err != nil {
		// The socket deadline may fire a moment before ctx's own timer.
		var ne net.Error
		if d, ok := ctx.Deadline(); ctx.Err() == nil && ok && errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(d) {
			return nil, fmt.Errorf("proxyproto: reading header: %w", context.DeadlineExceeded)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("proxyproto: reading header: %w", context.Cause(ctx))
		}
		return nil, err
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		c.rmu.Lock()
		c.rest = append([]byte(nil), b...)
		c.hasRest.Store(true)
		c.rmu.Unlock()
	}
	return hdr, nil
}

func (c *Conn) parse(br *bufio.Reader) (*Header, error) {
	if c.trusted && c.l.required {
		h, err := ParseWithCertTLV(br, c.l.certTLV)
		if errors.Is(err, ErrNoHeader) || errors.Is(err, io.EOF) && !errors.Is(err, ErrInvalidHeader) {
			return nil, ErrMissingHeader
		}
		return h, err
	}
	v, err := detect(br)
	if v == 0 {
		if err != nil && !errors.Is(err, io.EOF) {
			// A timeout or reset before the first bytes decided.
			return nil, fmt.Errorf("proxyproto: reading first bytes: %w", err)
		}
		// Not a header (or the peer closed inside a signature prefix):
		// a direct connection; whatever was read is passed on.
		return nil, nil
	}
	if !c.trusted {
		return nil, ErrUntrustedProxy
	}
	return parseVersion(br, v, c.l.certTLV)
}
