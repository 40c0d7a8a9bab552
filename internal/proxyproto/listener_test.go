package proxyproto

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// Clients dial from 127.0.0.1 (the trusted "balancer") or 127.0.0.2 (an
// untrusted client); Linux routes all of 127.0.0.0/8 to loopback.
const (
	fromTrusted   = "127.0.0.1"
	fromUntrusted = "127.0.0.2"
)

var trustedLoopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

// served is what the test server saw of one connection.
type served struct {
	hdr    *Header
	err    error
	remote net.Addr
	proxy  net.Addr
	ssl    *SSLInfo
	line   string
	peerCN string // of a TLS client certificate, when the server terminated TLS
}

// startServer runs a server on a loopback listener wrapped by Listen: per
// connection it reads the header, then one line, answers "ok\n" and
// reports on the channel.
func startServer(t *testing.T, opts Options) (string, *Listener, chan served) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pl := Listen(ln, opts).(*Listener)
	t.Cleanup(func() { pl.Close() })
	out := make(chan served, 16)
	go func() {
		for {
			c, err := pl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				pc := c.(*Conn)
				hdr, err := pc.Header(context.Background())
				s := served{hdr: hdr, err: err, remote: pc.RemoteAddr(), proxy: pc.ProxyAddr(), ssl: pc.SSL()}
				if err == nil {
					br := bufio.NewReader(pc)
					for s.err == nil && !strings.HasSuffix(s.line, "hello\n") {
						var l string
						l, s.err = br.ReadString('\n')
						s.line += l
					}
					if s.err == nil {
						_, s.err = io.WriteString(pc, "ok\n")
					}
				}
				out <- s
			}()
		}
	}()
	return ln.Addr().String(), pl, out
}

func dialFrom(t *testing.T, addr, from string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func wait(t *testing.T, ch chan served) served {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("server reported nothing")
	}
	return served{}
}

// closedByPeer reports whether the server closed c without sending data.
func closedByPeer(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	return n == 0 && err != nil && !isTimeout(err)
}

func TestListenerTrustRules(t *testing.T) {
	sslHdr := v2(0x21, 0x11, inet4("203.0.113.9", "198.51.100.1", 4242, 8883),
		ssl(0x07, 0, str(SubtypeSSLVersion, "TLSv1.3"), str(SubtypeSSLCN, "sensor-17")))
	tests := []struct {
		name     string
		required bool
		from     string
		send     string
		wantErr  error
		remote   string // "" = the client's own address
		header   bool
	}{
		{"trusted v1", false, fromTrusted, "PROXY TCP4 203.0.113.9 198.51.100.1 4242 8883\r\n", nil, "203.0.113.9:4242", true},
		{"trusted v1 required", true, fromTrusted, "PROXY TCP6 2001:db8::9 2001:db8::1 4242 8883\r\n", nil, "[2001:db8::9]:4242", true},
		{"trusted v2 ssl required", true, fromTrusted, string(sslHdr), nil, "203.0.113.9:4242", true},
		{"trusted v2 local", true, fromTrusted, string(v2(0x20, 0x00)), nil, "", true},
		{"trusted v1 unknown", true, fromTrusted, "PROXY UNKNOWN\r\n", nil, "", true},
		{"trusted without header", false, fromTrusted, "", nil, "", false},
		{"trusted without header required", true, fromTrusted, "", ErrMissingHeader, "", false},
		{"trusted invalid header", false, fromTrusted, "PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n", ErrInvalidHeader, "", false},
		{"trusted invalid header required", true, fromTrusted, string(v2(0x22, 0x11)), ErrInvalidHeader, "", false},
		{"untrusted v1", false, fromUntrusted, "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n", ErrUntrustedProxy, "", false},
		{"untrusted v2", false, fromUntrusted, string(sslHdr), ErrUntrustedProxy, "", false},
		{"untrusted invalid v1", false, fromUntrusted, "PROXY garbage\r\n", ErrUntrustedProxy, "", false},
		{"untrusted direct", false, fromUntrusted, "", nil, "", false},
		{"untrusted direct starting like v1", false, fromUntrusted, "PROBE ", nil, "", false},
		{"untrusted direct starting like v2", false, fromUntrusted, "\r\n\r\nhi ", nil, "", false},
		{"trusted direct starting like v1", false, fromTrusted, "PROXIMITY ", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _, out := startServer(t, Options{Trusted: trustedLoopback, Required: tt.required, HeaderTimeout: 5 * time.Second})
			c := dialFrom(t, addr, tt.from)
			if _, err := io.WriteString(c, tt.send+"hello\n"); err != nil {
				t.Fatal(err)
			}
			s := wait(t, out)
			if tt.wantErr != nil {
				if !errors.Is(s.err, tt.wantErr) {
					t.Fatalf("server got %v, want %v", s.err, tt.wantErr)
				}
				if !closedByPeer(t, c) {
					t.Fatal("connection not closed")
				}
				return
			}
			if s.err != nil {
				t.Fatal(s.err)
			}
			wantLine := "hello\n"
			if !tt.header {
				wantLine = tt.send + "hello\n"
			}
			if s.line != wantLine {
				t.Fatalf("line %q, want %q", s.line, wantLine)
			}
			want := tt.remote
			if want == "" {
				want = c.LocalAddr().String()
			}
			if s.remote.String() != want {
				t.Fatalf("RemoteAddr %v, want %v", s.remote, want)
			}
			if (s.hdr != nil) != tt.header {
				t.Fatalf("header %+v", s.hdr)
			}
			if tt.header && s.proxy.String() != c.LocalAddr().String() || !tt.header && s.proxy != nil {
				t.Fatalf("ProxyAddr %v", s.proxy)
			}
			if tt.name == "trusted v2 ssl required" && (!s.ssl.Verified() || s.ssl.CN != "sensor-17") {
				t.Fatalf("SSL %+v", s.ssl)
			}
			reply, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || reply != "ok\n" {
				t.Fatalf("reply %q, %v", reply, err)
			}
		})
	}
}

// On a Required (PROXY-only) listener, untrusted sources are closed in
// Accept, without a read, and never reach the server.
func TestListenerRequiredRefusesUntrustedInAccept(t *testing.T) {
	var logs logBuffer
	addr, pl, out := startServer(t, Options{Trusted: trustedLoopback, Required: true, Log: slog.New(&logs)})
	c := dialFrom(t, addr, fromUntrusted)
	if !closedByPeer(t, c) {
		t.Fatal("untrusted connection not closed")
	}
	c2 := dialFrom(t, addr, fromTrusted)
	io.WriteString(c2, "PROXY TCP4 203.0.113.9 198.51.100.1 4242 8883\r\nhello\n")
	s := wait(t, out)
	if s.err != nil || s.remote.String() != "203.0.113.9:4242" {
		t.Fatalf("trusted client after the refused one: %+v", s)
	}
	if pl.Refused() != 1 {
		t.Fatalf("Refused() = %d", pl.Refused())
	}
	if !logs.has(slog.LevelWarn, ErrUntrustedSource.Error()) {
		t.Fatalf("no warning logged: %v", logs.lines())
	}
}

func TestListenerUntrustedHeaderLogsRateLimited(t *testing.T) {
	var logs logBuffer
	addr, pl, out := startServer(t, Options{Trusted: trustedLoopback, Log: slog.New(&logs)})
	for range 3 {
		c := dialFrom(t, addr, fromUntrusted)
		io.WriteString(c, "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n")
		if s := wait(t, out); !errors.Is(s.err, ErrUntrustedProxy) {
			t.Fatal(s.err)
		}
	}
	if pl.Refused() != 3 {
		t.Fatalf("Refused() = %d", pl.Refused())
	}
	if n := logs.count(slog.LevelWarn); n != 1 {
		t.Fatalf("%d warnings, want 1 (rate-limited): %v", n, logs.lines())
	}
}

// A client that sends nothing does not hold up Accept or other clients.
func TestAcceptDoesNotWaitForHeaders(t *testing.T) {
	addr, _, out := startServer(t, Options{Trusted: trustedLoopback, Required: true, HeaderTimeout: 3 * time.Second})
	silent := dialFrom(t, addr, fromTrusted)
	_ = silent
	start := time.Now()
	for i := range 3 {
		c := dialFrom(t, addr, fromTrusted)
		io.WriteString(c, "PROXY TCP4 203.0.113.9 198.51.100.1 4242 8883\r\nhello\n")
		s := wait(t, out)
		if s.err != nil {
			t.Fatalf("client %d: %v", i, s.err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("served after %v: waited for the silent client", d)
	}
	if s := wait(t, out); s.err == nil {
		t.Fatal("silent client served")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestHeaderTimeout(t *testing.T) {
	tests := []struct {
		name     string
		required bool
		from     string
		send     string
	}{
		{"trusted silent", true, fromTrusted, ""},
		{"trusted partial v2", true, fromTrusted, sig2[:7]},
		{"trusted partial v1 line", false, fromTrusted, "PROXY TCP4 1.2.3.4"},
		{"untrusted silent", false, fromUntrusted, ""},
		{"untrusted partial signature", false, fromUntrusted, "PRO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _, out := startServer(t, Options{Trusted: trustedLoopback, Required: tt.required, HeaderTimeout: 200 * time.Millisecond})
			c := dialFrom(t, addr, tt.from)
			io.WriteString(c, tt.send)
			start := time.Now()
			s := wait(t, out)
			if !isTimeout(s.err) {
				t.Fatalf("got %v, want a timeout", s.err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("timed out after %v", d)
			}
			if !closedByPeer(t, c) {
				t.Fatal("not closed")
			}
		})
	}
}

// serveOne accepts one connection and runs f on it.
func serveOne(t *testing.T, opts Options, f func(*Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pl := Listen(ln, opts)
	t.Cleanup(func() { pl.Close() })
	done := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("server function did not return")
		}
	})
	go func() {
		defer close(done)
		c, err := pl.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		f(c.(*Conn))
	}()
	return ln.Addr().String()
}

// After the header, the header's deadline is gone and the user's is back.
func TestDeadlinesAroundHeader(t *testing.T) {
	t.Run("no user deadline", func(t *testing.T) {
		res := make(chan error, 1)
		addr := serveOne(t, Options{Trusted: trustedLoopback, HeaderTimeout: 500 * time.Millisecond}, func(c *Conn) {
			if _, err := c.Header(context.Background()); err != nil {
				res <- err
				return
			}
			_, err := bufio.NewReader(c).ReadString('\n') // arrives after the header timeout
			res <- err
		})
		c := dialFrom(t, addr, fromTrusted)
		io.WriteString(c, "PROXY TCP4 203.0.113.9 198.51.100.1 4242 8883\r\n")
		time.Sleep(1200 * time.Millisecond)
		io.WriteString(c, "late\n")
		if err := <-res; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("user deadline kept", func(t *testing.T) {
		res := make(chan error, 1)
		addr := serveOne(t, Options{Trusted: trustedLoopback, HeaderTimeout: 5 * time.Second}, func(c *Conn) {
			c.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := c.Header(context.Background()); err != nil {
				res <- err
				return
			}
			_, err := c.Read(make([]byte, 1)) // nothing comes: the user deadline fires
			res <- err
		})
		c := dialFrom(t, addr, fromTrusted)
		start := time.Now()
		io.WriteString(c, "PROXY TCP4 203.0.113.9 198.51.100.1 4242 8883\r\n")
		if err := <-res; !isTimeout(err) {
			t.Fatalf("got %v, want the user's timeout", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("user deadline fired after %v", d)
		}
	})
	t.Run("user deadline shorter than header timeout", func(t *testing.T) {
		res := make(chan error, 1)
		addr := serveOne(t, Options{Trusted: trustedLoopback, Required: true, HeaderTimeout: 10 * time.Second}, func(c *Conn) {
			c.SetDeadline(time.Now().Add(200 * time.Millisecond))
			_, err := c.Header(context.Background())
			res <- err
		})
		dialFrom(t, addr, fromTrusted)
		select {
		case err := <-res:
			if !isTimeout(err) {
				t.Fatalf("got %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the user's deadline did not apply to the header read")
		}
	})
}

func TestHeaderContext(t *testing.T) {
	t.Run("cancel", func(t *testing.T) {
		res := make(chan error, 2)
		addr := serveOne(t, Options{Trusted: trustedLoopback, Required: true, HeaderTimeout: 10 * time.Second}, func(c *Conn) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			_, err := c.Header(ctx)
			res <- err
			_, err = c.Read(make([]byte, 1))
			res <- err
		})
		dialFrom(t, addr, fromTrusted)
		select {
		case err := <-res:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v", err)
			}
			if err2 := <-res; !errors.Is(err2, context.Canceled) {
				t.Fatalf("later Read: %v", err2)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("cancel did not stop the header read")
		}
	})
	t.Run("deadline", func(t *testing.T) {
		res := make(chan error, 1)
		addr := serveOne(t, Options{Trusted: trustedLoopback, Required: true, HeaderTimeout: 10 * time.Second}, func(c *Conn) {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err := c.Header(ctx)
			res <- err
		})
		dialFrom(t, addr, fromTrusted)
		select {
		case err := <-res:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the context deadline did not apply")
		}
	})
	t.Run("cancel after header leaves no deadline", func(t *testing.T) {
		res := make(chan error, 1)
		addr := serveOne(t, Options{Trusted: trustedLoopback, HeaderTimeout: 10 * time.Second}, func(c *Conn) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if _, err := c.Header(ctx); err != nil {
				res <- err
				return
			}
			cancel()
			_, err := bufio.NewReader(c).ReadString('\n')
			res <- err
		})
		c := dialFrom(t, addr, fromTrusted)
		io.WriteString(c, "PROXY TCP4 203.0.113.9 198.51.100.1 4242 8883\r\n")
		time.Sleep(100 * time.Millisecond)
		io.WriteString(c, "after cancel\n")
		if err := <-res; err != nil {
			t.Fatal(err)
		}
	})
}

// RemoteAddr does not read: before the header it is the proxy's address.
func TestRemoteAddrBeforeAndAfterHeader(t *testing.T) {
	type addrs struct{ before, proxyBefore, after, proxyAfter net.Addr }
	res := make(chan addrs, 1)
	addr := serveOne(t, Options{Trusted: trustedLoopback}, func(c *Conn) {
		var a addrs
		a.before, a.proxyBefore = c.RemoteAddr(), c.ProxyAddr()
		c.Header(context.Background())
		a.after, a.proxyAfter = c.RemoteAddr(), c.ProxyAddr()
		res <- a
	})
	c := dialFrom(t, addr, fromTrusted)
	time.Sleep(50 * time.Millisecond)
	io.WriteString(c, "PROXY TCP4 203.0.113.9 198.51.100.1 4242 8883\r\n")
	a := <-res
	if a.before.String() != c.LocalAddr().String() || a.proxyBefore != nil {
		t.Fatalf("before: %v %v", a.before, a.proxyBefore)
	}
	if a.after.String() != "203.0.113.9:4242" || a.proxyAfter.String() != c.LocalAddr().String() {
		t.Fatalf("after: %v %v", a.after, a.proxyAfter)
	}
	if _, ok := a.after.(*net.TCPAddr); !ok {
		t.Fatalf("RemoteAddr is a %T", a.after)
	}
}

// Write waits for the header: nothing is sent to an unidentified peer.
func TestWriteReadsHeaderFirst(t *testing.T) {
	res := make(chan error, 1)
	addr := serveOne(t, Options{Trusted: trustedLoopback, Required: true}, func(c *Conn) {
		_, err := io.WriteString(c, "server first\n")
		res <- err
	})
	c := dialFrom(t, addr, fromTrusted)
	select {
	case err := <-res:
		t.Fatalf("Write returned before the header: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	io.WriteString(c, "PROXY UNKNOWN\r\n")
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "server first\n" {
		t.Fatalf("%q %v", line, err)
	}
}

// Data sent with the header and after it arrives in order, whatever the
// segmentation.
func TestDataAroundHeader(t *testing.T) {
	body := strings.Repeat("0123456789", 300) + "\n"
	for _, split := range []int{0, 1, 16, 47, 48, 600} {
		res := make(chan string, 1)
		addr := serveOne(t, Options{Trusted: trustedLoopback, Required: true}, func(c *Conn) {
			b, _ := bufio.NewReader(c).ReadString('\n')
			res <- b
		})
		c := dialFrom(t, addr, fromTrusted)
		all := "PROXY TCP4 203.0.113.9 198.51.100.1 4242 8883\r\n" + body
		io.WriteString(c, all[:len(all)-len(body)+split])
		time.Sleep(20 * time.Millisecond)
		io.WriteString(c, all[len(all)-len(body)+split:])
		if got := <-res; got != body {
			t.Fatalf("split %d: got %d bytes", split, len(got))
		}
	}
}

func TestConcurrentHeaderReadWrite(t *testing.T) {
	res := make(chan error, 8)
	addr := serveOne(t, Options{Trusted: trustedLoopback}, func(c *Conn) {
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				h, err := c.Header(context.Background())
				if err == nil && h.Source != ap("203.0.113.9:4242") {
					err = errors.New("wrong source")
				}
				res <- err
			})
		}
		wg.Go(func() {
			_, err := io.ReadFull(c, make([]byte, 5))
			res <- err
		})
		wg.Go(func() {
			_, err := c.Write([]byte("x"))
			res <- err
		})
		wg.Wait()
	})
	c := dialFrom(t, addr, fromTrusted)
	io.WriteString(c, "PROXY TCP4 203.0.113.9 198.51.100.1 4242 8883\r\nhello")
	for range 6 {
		if err := <-res; err != nil {
			t.Fatal(err)
		}
	}
}

func TestTrustedIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	pl := Listen(ln, Options{Trusted: []netip.Prefix{netip.MustParsePrefix("::1/128")}, Required: true})
	defer pl.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			io.WriteString(c, "PROXY TCP4 203.0.113.9 198.51.100.1 4242 8883\r\n")
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	c, err := pl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.(*Conn).Header(context.Background()); err != nil || c.RemoteAddr().String() != "203.0.113.9:4242" {
		t.Fatalf("%v %v", err, c.RemoteAddr())
	}
}

func TestListenDefaults(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l := Listen(ln, Options{Trusted: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8"), {}}}).(*Listener)
	if l.timeout != DefaultHeaderTimeout || l.certTLV != DefaultCertTLV || l.log == nil {
		t.Fatalf("%+v", l)
	}
	if len(l.trusted) != 1 || l.trusted[0] != netip.MustParsePrefix("10.0.0.0/8") {
		t.Fatalf("trusted %v", l.trusted)
	}
	for addr, want := range map[string]bool{"10.200.0.1:1": true, "[::ffff:10.0.0.1]:1": true, "11.0.0.1:1": false, "[::1]:1": false} {
		if got := l.isTrusted(net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr))); got != want {
			t.Errorf("%s trusted = %v", addr, got)
		}
	}
	if l.isTrusted(&net.UnixAddr{Name: "/tmp/x", Net: "unix"}) || l.isTrusted(nil) {
		t.Error("non-IP address trusted")
	}
}

// logBuffer is a slog.Handler that keeps records.
type logBuffer struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logBuffer) Enabled(context.Context, slog.Level) bool { return true }
func (l *logBuffer) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logBuffer) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logBuffer) WithGroup(string) slog.Handler      { return l }

func (l *logBuffer) count(level slog.Level) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if r.Level == level {
			n++
		}
	}
	return n
}

func (l *logBuffer) has(level slog.Level, errText string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		found := false
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" && strings.Contains(a.Value.String(), errText) {
				found = true
			}
			return true
		})
		if r.Level == level && found {
			return true
		}
	}
	return false
}

func (l *logBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s []string
	for _, r := range l.recs {
		s = append(s, r.Level.String()+" "+r.Message)
	}
	return s
}

func TestOptionsValidate(t *testing.T) {
	good := []Options{
		{},
		{Trusted: trustedLoopback, Required: true, CertTLV: 0xE0, HeaderTimeout: time.Second},
		{Trusted: trustedLoopback, CertTLV: 0xF7},
	}
	for _, o := range good {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	bad := []Options{
		{Required: true},
		{Trusted: []netip.Prefix{{}}},
		{CertTLV: TypeSSL},
		{CertTLV: 0xF8},
		{HeaderTimeout: -1},
	}
	for _, o := range bad {
		if err := o.Validate(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: %v", o, err)
		}
	}
}
