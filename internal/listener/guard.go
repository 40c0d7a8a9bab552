package listener

// Handshake protection: per-source-IP connection-rate limiting in front of
// Accept, and a gate that bounds concurrent TLS handshakes and their time.
//
// How the broker uses it, for a "tls" listener:
//
//	tcp, _ := listener.TCP(addr)
//	ln := listener.Guard(tcp, listener.GuardOptions{
//		MaxConnRatePerIP: 20, Burst: 40, // new connections per second per IP
//		MaxHandshakes:    256,           // concurrent handshakes
//		HandshakeTimeout: 10 * time.Second,
//		Log:              log,
//	})
//	gate := ln.(*listener.GuardedListener).Gate()
//	for {
//		raw, err := ln.Accept()          // over-rate connections never get here
//		...
//		go func() {
//			tc, err := gate.Handshake(ctx, raw, policy.TLSConfig())
//			if err != nil {                // raw is already closed
//				policy.ObserveHandshakeError(raw.RemoteAddr().String(), err)
//				return
//			}
//			serve(tc)                      // no deadline left on the conn
//		}()
//	}
//
// or, equivalently, accept ready *tls.Conns from
// gate.TLSListener(ln, policy.TLSConfig(), onError); that form also suits
// "wss": listener.ServeWebSocket(gate.TLSListener(...), wsOpts).
//
// Why it holds up against a flood of slow or bogus handshakes:
//   - A connection takes a handshake slot only once its whole first TLS
//     record (the ClientHello) has arrived. Half-open connections that send
//     nothing, or trickle bytes, cost a goroutine and a socket until the
//     handshake timeout, never a slot, so they cannot starve real clients.
//   - Waiting for a slot and the handshake itself share one deadline
//     (HandshakeTimeout, default 10 s).
//   - Connections that did send a ClientHello and then stall hold a slot
//     until the timeout; the per-IP rate limit bounds how many of those one
//     source can create (IPv4 per address, IPv6 per /64).
//   - MaxPending bounds connections still waiting for their ClientHello.
//
// With the PROXY protocol in front, Guard sees the proxy's address; apply
// per-IP limits where the real client address is known.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of the handshake guard.
var (
	// ErrTooManyPending: more connections are waiting for their ClientHello
	// than GuardOptions.MaxPending allows.
	ErrTooManyPending = errors.New("listener: too many connections waiting to handshake")
)

// Defaults of GuardOptions.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultMaxTrackedIPs    = 65536
	DefaultMaxPending       = 4096
)

// DefaultMaxHandshakes is the concurrent-handshake limit when none is set:
// handshakes spend most of their time waiting on the network, so the bound
// is well above the CPU count.
func DefaultMaxHandshakes() int { return max(64, 16*runtime.GOMAXPROCS(0)) }

// GuardOptions configure Guard.
type GuardOptions struct {
	// MaxConnRatePerIP is the sustained rate of new connections allowed per
	// source (an IPv4 address or an IPv6 /64), per second. 0 disables the
	// per-IP limit. Connections over the limit are closed at once.
	MaxConnRatePerIP float64
	// Burst is how many connections a source may open at once before the
	// rate applies; 0 means max(1, ceil(MaxConnRatePerIP)).
	Burst int
	// MaxTrackedIPs bounds the memory of the rate limiter (default 65536
	// sources). When full, the least recently active half is forgotten
	// (those sources start again with a full bucket).
	MaxTrackedIPs int
	// MaxHandshakes bounds concurrent TLS handshakes through Gate();
	// 0 means DefaultMaxHandshakes().
	MaxHandshakes int
	// MaxPending bounds connections waiting for their first TLS record
	// (default 4096); connections beyond it are closed.
	MaxPending int
	// HandshakeTimeout bounds the whole handshake, including the wait for
	// a slot (default 10 s).
	HandshakeTimeout time.Duration
	// Log receives rate-limited warnings about refused connections.
	Log *slog.Logger
	// DeferRateLimit leaves the per-IP limit to the caller (Allow), for
	// listeners that learn the real client address only later (the PROXY
	// protocol): Accept then limits nothing.
	DeferRateLimit bool
}

// GuardedListener is the net.Listener returned by Guard.
type GuardedListener struct {
	net.Listener
	limiter *ipLimiter // nil when the per-IP limit is off
	gate    *HandshakeGate
	log     *slog.Logger
	refused atomic.Uint64
	lastLog atomic.Int64 // unix nanos of the last refusal warning
	logged  atomic.Uint64
	deferRL bool
}

// Guard wraps ln with per-source-IP connection-rate limiting and creates the
// handshake gate for its connections (see Gate). Over-rate connections are
// closed inside Accept (with a TCP reset) and never returned.
func Guard(ln net.Listener, opts GuardOptions) net.Listener {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	g := &GuardedListener{
		Listener: ln,
		log:      opts.Log,
		deferRL:  opts.DeferRateLimit,
		gate: NewHandshakeGate(GateOptions{
			MaxHandshakes: opts.MaxHandshakes,
			MaxPending:    opts.MaxPending,
			Timeout:       opts.HandshakeTimeout,
		}),
	}
	if opts.MaxConnRatePerIP > 0 && !math.IsInf(opts.MaxConnRatePerIP, 1) {
		g.limiter = newIPLimiter(opts.MaxConnRatePerIP, opts.Burst, opts.MaxTrackedIPs)
	}
	return g
}

// Gate returns the handshake gate for connections of this listener.
func (g *GuardedListener) Gate() *HandshakeGate { return g.gate }

// Refused returns how many connections the per-IP rate limit refused.
func (g *GuardedListener) Refused() uint64 { return g.refused.Load() }

// Accept returns the next connection within its source's rate.
func (g *GuardedListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if g.limiter == nil || g.deferRL {
			return c, nil
		}
		key, ok := sourceKey(c.RemoteAddr())
		if !ok || g.limiter.allow(key, time.Now()) {
			return c, nil
		}
		g.refused.Add(1)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST: no TIME_WAIT for refused floods
		}
		_ = c.Close()
		g.warnRefused(key)
	}
}

// Allow applies the per-IP rate limit to a client address learned after
// Accept (with DeferRateLimit). It reports whether the connection may go
// on; the caller closes it otherwise.
func (g *GuardedListener) Allow(remote net.Addr) bool {
	if g.limiter == nil {
		return true
	}
	key, ok := sourceKey(remote)
	if !ok || g.limiter.allow(key, time.Now()) {
		return true
	}
	g.refused.Add(1)
	g.warnRefused(key)
	return false
}

// warnRefused logs at most one warning per 10 seconds.
func (g *GuardedListener) warnRefused(key netip.Addr) {
	now := time.Now().UnixNano()
	last := g.lastLog.Load()
	if now-last < int64(10*time.Second) || !g.lastLog.CompareAndSwap(last, now) {
		return
	}
	total := g.refused.Load()
	since := total - g.logged.Swap(total)
	g.log.Warn("connections refused by the per-IP rate limit", "source", key.String(), "refused_since_last_warning", since, "refused_total", total)
}

// sourceKey is the rate-limit key of a remote address: the IPv4 address or
// the IPv6 /64.
func sourceKey(a net.Addr) (netip.Addr, bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.Addr{}, false
		}
	}
	ip := ap.Addr().Unmap().WithZone("")
	if !ip.IsValid() {
		return netip.Addr{}, false
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		ip = p.Addr()
	}
	return ip, true
}

// ipLimiter is a token bucket per source. Memory is bounded by keeping two
// generations of buckets: when the current one reaches half the bound it
// becomes the previous one and the old previous one is dropped, so at most
// max sources are tracked and lookups stay O(1).
type ipLimiter struct {
	rate  float64
	burst float64
	half  int

	// mu guards the following fields.
	mu   sync.Mutex
	cur  map[netip.Addr]bucket
	prev map[netip.Addr]bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newIPLimiter(rate float64, burst, maxTracked int) *ipLimiter {
	if burst <= 0 {
		burst = max(1, int(math.Ceil(rate)))
	}
	if maxTracked <= 0 {
		maxTracked = DefaultMaxTrackedIPs
	}
	half := max(1, maxTracked/2)
	return &ipLimiter{
		rate:  rate,
		burst: float64(burst),
		half:  half,
		cur:   make(map[netip.Addr]bucket),
		prev:  make(map[netip.Addr]bucket),
	}
}

func (l *ipLimiter) allow(key netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.cur[key]
	if !ok {
		if b, ok = l.prev[key]; ok {
			delete(l.prev, key)
		}
	}
	if ok {
		if dt := now.Sub(b.last).Seconds(); dt > 0 {
			b.tokens = math.Min(l.burst, b.tokens+dt*l.rate)
		}
	} else {
		b.tokens = l.burst
		if len(l.cur) >= l.half {
			l.prev = l.cur
			l.cur = make(map[netip.Addr]bucket, l.half)
		}
	}
	b.last = now
	allowed := b.tokens >= 1
	if allowed {
		b.tokens--
	}
	l.cur[key] = b
	return allowed
}

func (l *ipLimiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.cur) + len(l.prev)
}

// GateOptions configure a HandshakeGate.
type GateOptions struct {
	MaxHandshakes int           // concurrent handshakes; 0 = DefaultMaxHandshakes()
	MaxPending    int           // connections waiting for a ClientHello; 0 = DefaultMaxPending
	Timeout       time.Duration // whole handshake; 0 = DefaultHandshakeTimeout
}

// HandshakeGate bounds concurrent TLS handshakes and their duration.
type HandshakeGate struct {
	sem        chan struct{}
	timeout    time.Duration
	maxPending int64
	pending    atomic.Int64
}

// NewHandshakeGate returns a gate (Guard makes one for its listener).
func NewHandshakeGate(opts GateOptions) *HandshakeGate {
	if opts.MaxHandshakes <= 0 {
		opts.MaxHandshakes = DefaultMaxHandshakes()
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultHandshakeTimeout
	}
	return &HandshakeGate{
		sem:        make(chan struct{}, opts.MaxHandshakes),
		timeout:    opts.Timeout,
		maxPending: int64(opts.MaxPending),
	}
}

// Timeout is the handshake timeout of the gate.
func (g *HandshakeGate) Timeout() time.Duration { return g.timeout }

// InFlight is the number of handshake slots in use.
func (g *HandshakeGate) InFlight() int { return len(g.sem) }

// Pending is the number of connections waiting for their ClientHello.
func (g *HandshakeGate) Pending() int { return int(g.pending.Load()) }

// Acquire waits for a handshake slot until ctx is done. The caller must call
// release (once; further calls do nothing) when the handshake is over.
// Handshake does this for you; use Acquire directly only around a handshake
// you drive yourself, with ctx carrying the handshake deadline.
func (g *HandshakeGate) Acquire(ctx context.Context) (release func(), err error) {
	select {
	case g.sem <- struct{}{}:
	default:
		select {
		case g.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("listener: waiting for a handshake slot: %w", ctx.Err())
		}
	}
	var once sync.Once
	return func() { once.Do(func() { <-g.sem }) }, nil
}

// Handshake runs the server side of a TLS handshake on raw within the
// gate's timeout (and ctx): it waits, without holding a slot, for the
// client's first TLS record, then takes a slot for the handshake proper.
// On success the returned conn has no deadline set. On failure raw is
// closed and the error (classifiable with tlspolicy.ClassifyHandshakeError)
// is returned.
func (g *HandshakeGate) Handshake(ctx context.Context, raw net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	tc, err := g.handshake(ctx, raw, cfg)
	if err != nil {
		_ = raw.Close()
		return nil, err
	}
	return tc, nil
}

func (g *HandshakeGate) handshake(ctx context.Context, raw net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	c, err := g.serve(ctx, raw, func(ctx context.Context, pc net.Conn, _ []byte) (net.Conn, error) {
		tc := tls.Server(pc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, err
		}
		return tc, nil
	})
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// HandshakeFunc is a server handshake run by HandshakeWith: pc replays the
// client's first record (first) and then reads from the connection; ctx
// carries the handshake deadline.
type HandshakeFunc func(ctx context.Context, pc net.Conn, first []byte) (net.Conn, error)

// HandshakeWith is Handshake for any handshake protocol: it waits, without
// a slot, for the client's first record, takes a slot, and runs fn, all
// within the gate's timeout. fn can look at the first record to choose a
// protocol (crypto/tls or TLS-PSK on one port). On failure raw is closed.
func (g *HandshakeGate) HandshakeWith(ctx context.Context, raw net.Conn, fn HandshakeFunc) (net.Conn, error) {
	c, err := g.serve(ctx, raw, fn)
	if err != nil {
		_ = raw.Close()
		return nil, err
	}
	return c, nil
}

func (g *HandshakeGate) serve(ctx context.Context, raw net.Conn, fn HandshakeFunc) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	if err := raw.SetDeadline(deadline); err != nil {
		return nil, err
	}
	// Unblock the first-record read if ctx is cancelled early.
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if g.pending.Add(1) > g.maxPending {
		g.pending.Add(-1)
		return nil, ErrTooManyPending
	}
	pc, first, err := readFirstRecord(raw)
	g.pending.Add(-1)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("listener: waiting for the ClientHello: %w", cerr)
		}
		return nil, err
	}

	release, err := g.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	c, err := fn(ctx, pc, first)
	if err != nil {
		return nil, err
	}
	if !stop() {
		return nil, ctx.Err() // cancelled right at the end: the deadline is poisoned
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return c, nil
}

// maxFirstRecord is the largest TLS record body crypto/tls accepts
// (16 KiB of plaintext plus expansion).
const maxFirstRecord = 16384 + 2048

// firstReadSize is the buffer of the first read: a whole ClientHello in
// one system call, even one with a post-quantum key share.
const firstReadSize = 2048

// readFirstRecord reads the 5-byte record header and, for a plausible
// handshake record, its body, usually in one read, and returns a conn that
// replays every byte read, and the first record (just the header for
// anything that does not look like a handshake record: it is passed on for
// crypto/tls to refuse).
func readFirstRecord(raw net.Conn) (*prefixConn, []byte, error) {
	buf := make([]byte, firstReadSize)
	got, err := io.ReadAtLeast(raw, buf, 5)
	if err != nil {
		return nil, nil, err
	}
	buf = buf[:got]
	n := int(buf[3])<<8 | int(buf[4])
	if buf[0] != 0x16 || n == 0 || n > maxFirstRecord {
		return &prefixConn{Conn: raw, buf: buf}, buf[:5], nil
	}
	if need := 5 + n; got < need {
		whole := make([]byte, need)
		copy(whole, buf)
		if _, err := io.ReadFull(raw, whole[got:]); err != nil {
			return nil, nil, err
		}
		buf = whole
	}
	return &prefixConn{Conn: raw, buf: buf}, buf[:5+n], nil
}

// prefixConn replays already-read bytes before reading from the conn. The
// buffer is dropped once consumed, so an idle connection keeps nothing.
type prefixConn struct {
	net.Conn
	buf []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		if len(c.buf) == 0 {
			c.buf = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// NetConn returns the underlying connection.
func (c *prefixConn) NetConn() net.Conn { return c.Conn }

// TLSListener accepts raw connections from ln, runs each handshake through
// the gate in its own goroutine and returns only completed *tls.Conns from
// Accept. onError (may be nil) is called for every failed handshake, with
// the already closed raw conn's remote address; it typically calls
// tlspolicy's Policy.ObserveHandshakeError. Close closes ln and aborts
// handshakes in progress.
func (g *HandshakeGate) TLSListener(ln net.Listener, cfg *tls.Config, onError func(remote net.Addr, err error)) net.Listener {
	ctx, cancel := context.WithCancel(context.Background())
	t := &tlsListener{
		ln:     ln,
		gate:   g,
		cfg:    cfg,
		onErr:  onError,
		ctx:    ctx,
		cancel: cancel,
		conns:  make(chan net.Conn),
		errc:   make(chan error, 1),
	}
	t.wg.Add(1)
	go t.acceptLoop()
	return t
}

type tlsListener struct {
	ln     net.Listener
	gate   *HandshakeGate
	cfg    *tls.Config
	onErr  func(net.Addr, error)
	ctx    context.Context
	cancel context.CancelFunc
	conns  chan net.Conn
	errc   chan error // the accept error that stopped the loop
	wg     sync.WaitGroup
	once   sync.Once
}

func (t *tlsListener) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		raw, err := t.ln.Accept()
		if err != nil {
			// Transient errors (EMFILE/ENFILE under a flood, ECONNABORTED)
			// must not kill the listener: back off and retry, as
			// net/http.Server does.
			var te interface{ Temporary() bool }
			if t.ctx.Err() == nil && errors.As(err, &te) && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
					continue
				case <-t.ctx.Done():
				}
			}
			t.errc <- err
			t.cancel()
			return
		}
		delay = 0
		t.wg.Add(1)
		go t.serve(raw)
	}
}

func (t *tlsListener) serve(raw net.Conn) {
	defer t.wg.Done()
	tc, err := t.gate.Handshake(t.ctx, raw, t.cfg)
	if err != nil {
		if t.onErr != nil && t.ctx.Err() == nil {
			t.onErr(raw.RemoteAddr(), err)
		}
		return
	}
	select {
	case t.conns <- tc:
	case <-t.ctx.Done():
		_ = tc.Close()
	}
}

func (t *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-t.conns:
		return c, nil
	case <-t.ctx.Done():
		select {
		case c := <-t.conns:
			return c, nil
		default:
		}
		select {
		case err := <-t.errc:
			t.errc <- err // keep it for later calls
			return nil, err
		default:
			return nil, net.ErrClosed
		}
	}
}

func (t *tlsListener) Close() error {
	var err error
	t.once.Do(func() {
		t.cancel()
		err = t.ln.Close()
		t.wg.Wait()
	})
	return err
}

func (t *tlsListener) Addr() net.Addr { return t.ln.Addr() }
