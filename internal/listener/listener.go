// Package listener owns the transports MQTT arrives on: plain TCP and MQTT
// over WebSocket (subprotocol "mqtt"). Each transport is presented to the
// broker as a net.Listener yielding net.Conns, so the broker core never
// knows which transport a client used.
package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// ErrClosed is returned by Accept after Close.
var ErrClosed = errors.New("listener: closed")

// TCP listens for plain MQTT over TCP.
//
// Accepted connections have no TCP keep-alive: setting it costs four
// system calls per connection, and MQTT's own keep alive already finds
// dead peers for the clients that use one. The broker turns it on with
// EnableTCPKeepAlive for clients that connect with a keep alive of zero.
func TCP(address string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("listener: tcp %s: %w", address, err)
	}
	return ln, nil
}

// TCPKeepAlive is what EnableTCPKeepAlive sets: probes after 15 s of
// silence, every 15 s, nine unanswered probes end the connection (Go's
// defaults for dialled and accepted connections).
var TCPKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 15 * time.Second, Count: 9}

// EnableTCPKeepAlive turns TCP keep-alive on for the TCP connection under
// nc, looking through TLS, the PROXY protocol and other wrappers that have
// a NetConn method. It reports whether it found a TCP connection.
func EnableTCPKeepAlive(nc net.Conn) bool {
	for i := 0; i < 8 && nc != nil; i++ {
		if tc, ok := nc.(*net.TCPConn); ok {
			return tc.SetKeepAliveConfig(TCPKeepAlive) == nil
		}
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			return false
		}
		nc = u.NetConn()
	}
	return false
}

// WSOptions configures a WebSocket listener.
type WSOptions struct {
	Path          string // HTTP path clients connect to, e.g. "/mqtt"
	MaxPacketSize int    // largest WebSocket message accepted
	Log           *slog.Logger
}

// WebSocket listens for MQTT over WebSocket on address. Only clients that
// offer the "mqtt" subprotocol (or the MQTT 3.1 "mqttv3.1") are accepted;
// cross-origin browser requests are refused.
func WebSocket(address string, opts WSOptions) (net.Listener, error) {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("listener: ws %s: %w", address, err)
	}
	return ServeWebSocket(ln, opts), nil
}

// ServeWebSocket serves MQTT over WebSocket on an existing listener (which
// may already be a TLS listener).
func ServeWebSocket(ln net.Listener, opts WSOptions) net.Listener {
	if opts.Path == "" {
		opts.Path = "/mqtt"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	w := &wsListener{
		ln:    ln,
		conns: make(chan net.Conn),
		done:  make(chan struct{}),
		opts:  opts,
	}
	mux := http.NewServeMux()
	mux.HandleFunc(opts.Path, w.handle)
	w.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(opts.Log.Handler(), slog.LevelDebug),
		// The handler asks the connection for its peer address once the
		// request is read: behind the PROXY protocol, that is when the
		// connection knows the real client address.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, rawConnKey{}, c)
		},
	}
	go func() { _ = w.srv.Serve(ln) }()
	return w
}

// rawConnKey keys the accepted connection in a request's context.
type rawConnKey struct{}

type wsListener struct {
	ln    net.Listener
	srv   *http.Server
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	opts  WSOptions
}

func (w *wsListener) handle(rw http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(rw, r, &websocket.AcceptOptions{
		Subprotocols: []string{"mqtt", "mqttv3.1"},
	})
	if err != nil {
		w.opts.Log.Debug("websocket upgrade refused", "remote", r.RemoteAddr, "err", err)
		return
	}
	if c.Subprotocol() == "" {
		w.opts.Log.Debug("websocket client offered no mqtt subprotocol", "remote", r.RemoteAddr)
		c.Close(websocket.StatusPolicyViolation, "subprotocol mqtt required")
		return
	}
	limit := int64(w.opts.MaxPacketSize) + 8
	if w.opts.MaxPacketSize <= 0 {
		limit = -1
	}
	c.SetReadLimit(limit)
	ctx, cancel := context.WithCancel(context.Background())
	nc := websocket.NetConn(ctx, c, websocket.MessageBinary)
	remote := addrOf(r.RemoteAddr, nc.RemoteAddr())
	if rc, ok := r.Context().Value(rawConnKey{}).(net.Conn); ok {
		remote = rc.RemoteAddr()
	}
	conn := &wsConn{Conn: nc, cancel: cancel, remote: remote, tls: r.TLS}
	select {
	case w.conns <- conn:
	case <-w.done:
		conn.Close()
	}
}

func (w *wsListener) Accept() (net.Conn, error) {
	select {
	case c := <-w.conns:
		return c, nil
	case <-w.done:
		return nil, ErrClosed
	}
}

func (w *wsListener) Close() error {
	var err error
	w.once.Do(func() {
		close(w.done)
		err = w.srv.Close()
	})
	return err
}

func (w *wsListener) Addr() net.Addr { return w.ln.Addr() }

// wsConn reports the HTTP peer address and, for "wss", the TLS state, and
// releases the WebSocket context on Close.
type wsConn struct {
	net.Conn
	cancel context.CancelFunc
	remote net.Addr
	tls    *tls.ConnectionState // nil for plain "ws"
}

// ConnectionState is the TLS state of a "wss" connection (zero for "ws").
func (c *wsConn) ConnectionState() tls.ConnectionState {
	if c.tls == nil {
		return tls.ConnectionState{}
	}
	return *c.tls
}

func (c *wsConn) RemoteAddr() net.Addr { return c.remote }

func (c *wsConn) Close() error {
	err := c.Conn.Close()
	c.cancel()
	return err
}

func addrOf(s string, fallback net.Addr) net.Addr {
	if a, err := net.ResolveTCPAddr("tcp", s); err == nil {
		return a
	}
	return fallback
}
