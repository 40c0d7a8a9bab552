package listener

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"moat/internal/tlspolicy"
)

func TestIPLimiterTokenBucket(t *testing.T) {
	l := newIPLimiter(2, 3, 100) // 2/s, burst 3
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	now := time.Unix(1000, 0)
	for i := range 3 {
		if !l.allow(a, now) {
			t.Fatalf("burst connection %d refused", i)
		}
	}
	if l.allow(a, now) {
		t.Fatal("fourth connection in the same instant allowed")
	}
	if !l.allow(b, now) {
		t.Fatal("another source limited by the first one")
	}
	if l.allow(a, now.Add(400*time.Millisecond)) {
		t.Fatal("refilled too fast")
	}
	if !l.allow(a, now.Add(600*time.Millisecond)) { // 0.6 s * 2/s = 1.2 tokens
		t.Fatal("not refilled")
	}
	// After a long pause the bucket is full again, but never above burst.
	later := now.Add(time.Hour)
	for i := range 3 {
		if !l.allow(a, later) {
			t.Fatalf("after pause: %d refused", i)
		}
	}
	if l.allow(a, later) {
		t.Fatal("bucket above burst")
	}
}

func TestIPLimiterDefaultBurst(t *testing.T) {
	l := newIPLimiter(0.5, 0, 0)
	if l.burst != 1 || l.half != DefaultMaxTrackedIPs/2 {
		t.Fatalf("burst %v half %d", l.burst, l.half)
	}
}

func TestIPLimiterBoundedMemory(t *testing.T) {
	l := newIPLimiter(1, 1, 100)
	now := time.Unix(0, 0)
	for i := range 100000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.allow(ip, now)
		if n := l.tracked(); n > 100 {
			t.Fatalf("tracking %d sources, bound is 100", n)
		}
	}
	// A source seen recently is still limited after others came and went.
	hot := netip.MustParseAddr("192.0.2.9")
	l.allow(hot, now)
	for i := range 40 {
		l.allow(netip.AddrFrom4([4]byte{172, 16, 0, byte(i)}), now)
	}
	if l.allow(hot, now) {
		t.Fatal("recent source forgotten too early")
	}
}

func TestSourceKey(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 1}, "2001:db8:1:2::"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::1"), Port: 1}, "2001:db8:1:2::"},
	} {
		k, ok := sourceKey(tc.addr)
		if !ok || k.String() != tc.want {
			t.Errorf("%v: got %v %v", tc.addr, k, ok)
		}
	}
	if _, ok := sourceKey(&net.UnixAddr{Name: "/tmp/x", Net: "unix"}); ok {
		t.Error("unix address keyed")
	}
}

// dialFrom connects from a chosen loopback source address.
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	return d.Dial("tcp", addr)
}

// canUseLoopbackAliases reports whether 127.0.0.2 can be a source address.
func canUseLoopbackAliases(t *testing.T, addr string) bool {
	c, err := dialFrom("127.0.0.2", addr)
	if err != nil {
		t.Logf("no loopback aliases: %v", err)
		return false
	}
	c.Close()
	return true
}

func TestGuardRefusesOverRate(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aliases := canUseLoopbackAliases(t, probe.Addr().String())
	probe.Close()

	ln := Guard(raw, GuardOptions{MaxConnRatePerIP: 0.001, Burst: 2}).(*GuardedListener)
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	addr := ln.Addr().String()
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i := range 2 {
		c, err := dialFrom("127.0.0.1", addr)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		select {
		case s := <-accepted:
			defer s.Close()
		case <-time.After(2 * time.Second):
			t.Fatalf("connection %d within burst not accepted", i)
		}
	}
	// The third is closed by the guard without being returned. The reset
	// may even reach the dialer before connect returns.
	c, err := dialFrom("127.0.0.1", addr)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	if err == nil {
		clients = append(clients, c)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("over-rate connection not closed: %v", err)
		}
	} else {
		// Wait until the guard has counted it.
		deadline := time.Now().Add(2 * time.Second)
		for ln.Refused() == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // the guard's counter has no event to wait on
		}
	}
	if ln.Refused() != 1 {
		t.Fatalf("refused %d", ln.Refused())
	}
	select {
	case s := <-accepted:
		t.Fatalf("over-rate connection returned by Accept: %v", s.RemoteAddr())
	default:
	}
	if aliases {
		c, err := dialFrom("127.0.0.2", addr)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		select {
		case s := <-accepted:
			defer s.Close()
		case <-time.After(2 * time.Second):
			t.Fatal("other source limited")
		}
	}
}

func TestHandshakeGateBound(t *testing.T) {
	g := NewHandshakeGate(GateOptions{MaxHandshakes: 3})
	var cur, peak atomic.Int64
	var wg sync.WaitGroup
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := g.Acquire(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			n := cur.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(2 * time.Millisecond)
			cur.Add(-1)
			release()
			release() // idempotent
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 3 || p < 1 {
		t.Fatalf("peak concurrency %d, bound 3", p)
	}
	if g.InFlight() != 0 {
		t.Fatalf("in flight %d", g.InFlight())
	}

	// Full gate: Acquire gives up at the deadline with a timeout error.
	var rels []func()
	for range 3 {
		r, err := g.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		rels = append(rels, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := g.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) || tlspolicy.ClassifyHandshakeError(err) != tlspolicy.ReasonTimeout {
		t.Fatalf("got %v", err)
	}
	rels[0]()
	if r, err := g.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	} else {
		r()
	}
	for _, r := range rels[1:] {
		r()
	}
}

// testPolicy writes a self-signed ECDSA certificate for localhost and
// builds a tlspolicy.Policy from it.
func testPolicy(t testing.TB) (*tlspolicy.Policy, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cf := filepath.Join(dir, "c.pem")
	kf := filepath.Join(dir, "k.pem")
	os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	p, err := tlspolicy.New(tlspolicy.Options{Certs: []tlspolicy.CertSource{{CertFile: cf, KeyFile: kf}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return p, pool
}

// captureClientHello returns the first TLS record a Go client sends.
func captureClientHello(t testing.TB) []byte {
	t.Helper()
	c1, c2 := net.Pipe()
	defer c2.Close()
	go func() {
		_ = tls.Client(c1, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}).Handshake()
		c1.Close()
	}()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c2, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(c2, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// tlsEcho serves an echo over the gate's TLSListener and records failures.
type tlsEcho struct {
	ln     net.Listener
	guard  *GuardedListener
	errs   chan error
	wg     sync.WaitGroup
	policy *tlspolicy.Policy
}

func startTLSEcho(t *testing.T, p *tlspolicy.Policy, opts GuardOptions) *tlsEcho {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := Guard(raw, opts).(*GuardedListener)
	e := &tlsEcho{guard: g, errs: make(chan error, 1024), policy: p}
	e.ln = g.Gate().TLSListener(g, p.TLSConfig(), func(remote net.Addr, err error) {
		p.ObserveHandshakeError(remote.String(), err)
		select {
		case e.errs <- err:
		default:
		}
	})
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := e.ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		e.ln.Close()
		e.wg.Wait()
	})
	return e
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func echoOnce(c net.Conn) error {
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	_, err := io.ReadFull(c, buf)
	return err
}

// Many half-open connections that send nothing (and some that trickle a
// few bytes, and one that sends a ClientHello and stalls) must not stop a
// real client from completing its handshake within the handshake timeout.
func TestHandshakeFlood(t *testing.T) {
	p, pool := testPolicy(t)
	const timeout = 2 * time.Second
	e := startTLSEcho(t, p, GuardOptions{MaxConnRatePerIP: 1, Burst: 60, MaxHandshakes: 2, HandshakeTimeout: timeout})
	addr := e.ln.Addr().String()
	gate := e.guard.Gate()

	attacker, slow, staller, client := "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.1"
	if !canUseLoopbackAliases(t, addr) {
		attacker, slow, staller, client = "", "", "", ""
	} else {
		// The alias probe itself was one (empty) connection from .2.
		waitUntil(t, "probe to finish", func() bool { return gate.Pending() == 0 })
	}

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	const halfOpen = 50
	for range halfOpen {
		c, err := dialFrom(attacker, addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	hello := captureClientHello(t)
	for range 5 {
		c, err := dialFrom(slow, addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(hello[:3]) // a few bytes of a record header, then nothing
		conns = append(conns, c)
	}
	c, err := dialFrom(staller, addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(hello) // a whole ClientHello, then silence: holds one slot
	conns = append(conns, c)

	waitUntil(t, "attack connections to be pending", func() bool {
		return gate.Pending() >= halfOpen+5 && gate.InFlight() == 1
	})

	start := time.Now()
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: timeout, LocalAddr: localAddr(client)}, "tcp", addr,
		&tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("real client failed during the flood: %v", err)
	}
	defer tc.Close()
	if err := echoOnce(tc); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	t.Logf("real client handshake + echo during flood: %v (pending %d, in flight %d)", elapsed, gate.Pending(), gate.InFlight())
	if elapsed >= timeout {
		t.Fatalf("real client took %v, handshake timeout is %v", elapsed, timeout)
	}
	if gate.InFlight() > 2 {
		t.Fatalf("in flight %d > 2", gate.InFlight())
	}

	// The attack connections end at the handshake timeout, counted as such.
	waitUntil(t, "half-open connections to time out", func() bool {
		return p.Stats().Snapshot()[tlspolicy.ReasonTimeout] >= halfOpen+5+1
	})
	if gate.Pending() != 0 || gate.InFlight() != 0 {
		t.Fatalf("pending %d in flight %d after timeout", gate.Pending(), gate.InFlight())
	}
	// The real client's connection was not affected.
	if err := echoOnce(tc); err != nil {
		t.Fatal(err)
	}
}

func localAddr(ip string) net.Addr {
	if ip == "" {
		return nil
	}
	return &net.TCPAddr{IP: net.ParseIP(ip)}
}

func TestHandshakeTimeoutAndPendingBound(t *testing.T) {
	p, pool := testPolicy(t)
	e := startTLSEcho(t, p, GuardOptions{MaxPending: 2, HandshakeTimeout: 300 * time.Millisecond})
	addr := e.ln.Addr().String()
	gate := e.guard.Gate()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitUntil(t, "two pending", func() bool { return gate.Pending() == 2 })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conns = append(conns, c)
	select {
	case err := <-e.errs:
		if !errors.Is(err, ErrTooManyPending) {
			t.Fatalf("got %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("third pending connection not refused")
	}
	for range 2 {
		select {
		case err := <-e.errs:
			if r := tlspolicy.ClassifyHandshakeError(err); r != tlspolicy.ReasonTimeout {
				t.Fatalf("reason %q for %v", r, err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("half-open connection not timed out")
		}
	}
	// The server closed them.
	conns[0].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conns[0].Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("timed-out connection still open: %v", err)
	}
	// And a real client still gets through.
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := echoOnce(tc); err != nil {
		t.Fatal(err)
	}
}

func TestGateHandshakeNotTLS(t *testing.T) {
	p, _ := testPolicy(t)
	e := startTLSEcho(t, p, GuardOptions{HandshakeTimeout: time.Second})
	c, err := net.Dial("tcp", e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 4, 2, 0, 60}) // plain MQTT CONNECT
	select {
	case err := <-e.errs:
		if r := tlspolicy.ClassifyHandshakeError(err); r != tlspolicy.ReasonProtocolVersion {
			t.Fatalf("reason %q for %v", r, err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("plain MQTT on the TLS port not refused")
	}
}

func TestTLSListenerClose(t *testing.T) {
	p, _ := testPolicy(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := NewHandshakeGate(GateOptions{Timeout: time.Minute})
	ln := g.TLSListener(raw, p.TLSConfig(), nil)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitUntil(t, "pending", func() bool { return g.Pending() == 1 })
	done := make(chan struct{})
	go func() {
		ln.Close() // must abort the pending handshake, not wait a minute
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close blocked on a pending handshake")
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
}

type tempErr struct{}

func (tempErr) Error() string   { return "accept: too many open files" }
func (tempErr) Timeout() bool   { return false }
func (tempErr) Temporary() bool { return true }

// flakyListener fails its first Accept calls with a temporary error.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if f.fails.Add(-1) >= 0 {
		return nil, tempErr{}
	}
	return f.Listener.Accept()
}

func TestTLSListenerSurvivesTemporaryErrors(t *testing.T) {
	p, pool := testPolicy(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: raw}
	fl.fails.Store(3)
	ln := NewHandshakeGate(GateOptions{}).TLSListener(fl, p.TLSConfig(), nil)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	tc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := echoOnce(tc); err != nil {
		t.Fatal(err)
	}
}

// TestFirstRecordReplay: the gate reads the first record (in one read when
// it can) and hands the handshake the record alone as "first", while the
// connection replays every byte read, including what came after it.
func TestFirstRecordReplay(t *testing.T) {
	big := make([]byte, 5+3000) // larger than the first read: needs a second
	big[0], big[3], big[4] = 0x16, byte(3000>>8), byte(3000&0xff)
	for i := 5; i < len(big); i++ {
		big[i] = byte(i)
	}
	small := []byte{0x16, 3, 1, 0, 3, 'a', 'b', 'c'}
	cases := []struct {
		name      string
		send      []byte
		wantFirst []byte
	}{
		{"record and what follows", append(append([]byte{}, small...), "tail"...), small},
		{"record over the first read", big, big},
		{"not a handshake record", []byte("GET / HTTP/1.1\r\n"), []byte("GET /")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			go func() { b.Write(tc.send); b.Close() }()
			pc, first, err := readFirstRecord(a)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(first, tc.wantFirst) {
				t.Fatalf("first = %q, want %q", first, tc.wantFirst)
			}
			all, _ := io.ReadAll(pc)
			if !bytes.Equal(all, tc.send) {
				t.Fatalf("replayed %d bytes, want the %d sent", len(all), len(tc.send))
			}
		})
	}
}
