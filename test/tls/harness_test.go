// Package tlstest tests moat's TLS listeners end to end: a real broker with
// "tls" and "wss" listeners, certificates from internal/testpki, and
// clients moat did not write (mosquitto_pub/mosquitto_sub, openssl
// s_client, sslscan, paho.golang over crypto/tls and coder/websocket).
//
// Waiting is event driven: a test waits for a log record, a message on a
// channel or a process to exit, always bounded by waitTimeout. The broker's
// log goes to a recorder (set MOAT_TEST_LOG=1 to also see it on stderr);
// a handshake failure is counted before it is logged, so once the log line
// is seen the counter must show it.
package tlstest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"moat/internal/broker"
	"moat/internal/config"
	"moat/internal/testpki"
)

// waitTimeout bounds every wait for something that should happen.
const waitTimeout = 10 * time.Second

// ---------------------------------------------------------------------------
// PKI

// newPKI generates the standard test PKI in a fresh temporary directory.
func newPKI(t testing.TB) *testpki.Set {
	t.Helper()
	s, err := testpki.Generate(t.TempDir())
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return s
}

// ---------------------------------------------------------------------------
// Broker

// tb is a running broker with its log recorder.
type tb struct {
	*broker.Server
	cfg  *config.Config
	logs *logRecorder
}

// option changes the configuration before the broker starts (defaults are
// applied afterwards, as brokertest does).
type option func(*config.Config)

// tlsListener adds a "tls" listener named "tls" on 127.0.0.1:0 serving the
// set's server certificate; mod adjusts its TLS table.
func tlsListener(p *testpki.Set, mod func(*config.Listener)) option {
	return addListener(config.ListenerTLS, "tls", p, mod)
}

// wssListener adds a "wss" listener named "wss" (path /mqtt).
func wssListener(p *testpki.Set, mod func(*config.Listener)) option {
	return addListener(config.ListenerWSS, "wss", p, mod)
}

func addListener(typ, name string, p *testpki.Set, mod func(*config.Listener)) option {
	return func(c *config.Config) {
		l := config.Listener{
			Name:    name,
			Type:    typ,
			Address: "127.0.0.1:0",
			TLS:     &config.TLS{Cert: p.Server.CertFile, Key: p.Server.KeyFile},
		}
		if mod != nil {
			mod(&l)
		}
		c.Listeners = append(c.Listeners, l)
	}
}

// mtls turns a listener into a mutual-TLS listener trusting the set's root.
func mtls(p *testpki.Set, mode string) func(*config.Listener) {
	return func(l *config.Listener) {
		l.TLS.ClientAuth = mode
		l.TLS.ClientCA = []string{p.CAFile}
	}
}

// newServer builds, validates and binds a broker (not serving yet). Tests
// that expect start-up to fail call it directly.
func newServer(t testing.TB, opts ...option) (*broker.Server, *config.Config, *logRecorder, error) {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Store = config.StoreMemory
	cfg.Listeners = nil
	cfg.Auth.AllowAnonymous = false
	for _, o := range opts {
		o(cfg)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("invalid config: %v", err)
	}
	logs := newLogRecorder(os.Getenv("MOAT_TEST_LOG") != "")
	srv, err := broker.New(broker.Options{Config: cfg, Log: slog.New(logs.handler()), Version: "tlstest"})
	if err != nil {
		return nil, cfg, logs, err
	}
	if err := srv.Listen(); err != nil {
		return nil, cfg, logs, err
	}
	return srv, cfg, logs, nil
}

// start starts a broker that is stopped when the test ends. Listeners are
// bound before it returns, so clients may connect at once.
func start(t testing.TB, opts ...option) *tb {
	t.Helper()
	srv, cfg, logs, err := newServer(t, opts...)
	if err != nil {
		t.Fatalf("broker: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("broker did not stop within 15s")
		}
	})
	return &tb{Server: srv, cfg: cfg, logs: logs}
}

// addr is the bound host:port of the named listener.
func (b *tb) addr(t testing.TB, name string) string {
	t.Helper()
	a := b.Addr(name)
	if a == nil {
		t.Fatalf("no listener %q", name)
	}
	return a.String()
}

// port is the port of the named listener, for command line clients.
func (b *tb) port(t testing.TB, name string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(b.addr(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// expectHandshakeFailure waits until the broker has logged a failed
// handshake with the given reason (after mark), then checks the counter.
func (b *tb) expectHandshakeFailure(t testing.TB, mark int, reason string, before map[string]uint64) logRec {
	t.Helper()
	rec := b.logs.waitFrom(t, mark, "handshake failure "+reason, func(r logRec) bool {
		return r.msg == "tls handshake failed" && r.attrs["reason"] == reason
	})
	after := b.HandshakeFailures()
	if after[reason] <= before[reason] {
		t.Errorf("HandshakeFailures()[%q] = %d, was %d before: not incremented", reason, after[reason], before[reason])
	}
	return rec
}

// ---------------------------------------------------------------------------
// Log recorder

type logRec struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (r logRec) String() string { return fmt.Sprintf("%s %q %v", r.level, r.msg, r.attrs) }

// logRecorder keeps every record the broker logs and wakes waiters.
type logRecorder struct {
	echo bool
	mu   sync.Mutex
	recs []logRec
	wake chan struct{} // closed and replaced on every record
}

func newLogRecorder(echo bool) *logRecorder {
	return &logRecorder{echo: echo, wake: make(chan struct{})}
}

func (l *logRecorder) handler() slog.Handler { return &recHandler{l: l} }

func (l *logRecorder) add(r logRec) {
	if l.echo {
		fmt.Fprintln(os.Stderr, "broker:", r)
	}
	l.mu.Lock()
	l.recs = append(l.recs, r)
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
}

// mark is the index of the next record; waitFrom(mark) looks only at
// records logged after mark was taken.
func (l *logRecorder) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recs)
}

// all returns a copy of every record.
func (l *logRecorder) all() []logRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]logRec(nil), l.recs...)
}

// waitFrom waits for a record at or after index from that satisfies pred.
func (l *logRecorder) waitFrom(t testing.TB, from int, what string, pred func(logRec) bool) logRec {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		l.mu.Lock()
		for i := from; i < len(l.recs); i++ {
			if pred(l.recs[i]) {
				r := l.recs[i]
				l.mu.Unlock()
				return r
			}
		}
		from = len(l.recs)
		wake := l.wake
		l.mu.Unlock()
		select {
		case <-wake:
		case <-timer.C:
			t.Fatalf("timed out waiting for broker log: %s", what)
		}
	}
}

type recHandler struct {
	l     *logRecorder
	attrs []slog.Attr
}

func (h *recHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRec{level: r.Level, msg: r.Message, attrs: make(map[string]string)}
	add := func(a slog.Attr) bool {
		rec.attrs[a.Key] = fmt.Sprint(a.Value.Resolve().Any())
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	h.l.add(rec)
	return nil
}

func (h *recHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recHandler{l: h.l, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *recHandler) WithGroup(string) slog.Handler { return h }

// ---------------------------------------------------------------------------
// TLS clients

// clientTLS is a client config that trusts the set's root and optionally
// presents a client certificate.
func clientTLS(p *testpki.Set, cert *testpki.Files) *tls.Config {
	cfg := &tls.Config{RootCAs: testpki.Pool(p.Root), ServerName: "127.0.0.1"}
	if cert != nil {
		// Always present the certificate. (With Certificates, crypto/tls
		// silently sends none when the server's list of acceptable CAs
		// does not name the certificate's issuer, which would turn an
		// "untrusted CA" test into a "no certificate" one.)
		tc := cert.TLSCertificate()
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tc, nil }
	}
	return cfg
}

// dialTLS connects and completes the client side of the handshake.
func dialTLS(t testing.TB, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: waitTimeout}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c.(*tls.Conn), nil
}

// mustDialTLS is dialTLS that fails the test on error.
func mustDialTLS(t testing.TB, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	c, err := dialTLS(t, addr, cfg)
	if err != nil {
		t.Fatalf("tls dial %s: %v", addr, err)
	}
	return c
}

// ---------------------------------------------------------------------------
// MQTT 5 client (paho.golang)

var idCounter atomic.Uint64

func uniqueID(prefix string) string { return fmt.Sprintf("%s-%d", prefix, idCounter.Add(1)) }

// mqttClient is a paho.golang client whose received messages arrive on msgs.
type mqttClient struct {
	t       testing.TB
	c       *paho.Client
	conn    net.Conn
	connack *paho.Connack
	msgs    chan *paho.Publish
	once    sync.Once
}

// mqttConnect runs CONNECT on an established connection. It returns the
// CONNACK and the error paho reports (a refusal is an error with a CONNACK).
func mqttConnect(t testing.TB, conn net.Conn, cp *paho.Connect) (*mqttClient, *paho.Connack, error) {
	t.Helper()
	mc := &mqttClient{t: t, conn: conn, msgs: make(chan *paho.Publish, 64)}
	mc.c = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				select {
				case mc.msgs <- pr.Packet:
				default:
					t.Errorf("message buffer full")
				}
				return true, nil
			},
		},
	})
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ca, err := mc.c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return nil, ca, err
	}
	mc.connack = ca
	t.Cleanup(mc.disconnect)
	return mc, ca, nil
}

// mustConnect is mqttConnect that fails the test unless CONNACK is 0.
func mustConnect(t testing.TB, conn net.Conn, cp *paho.Connect) *mqttClient {
	t.Helper()
	mc, ca, err := mqttConnect(t, conn, cp)
	if err != nil {
		t.Fatalf("connect %q: %v (connack %s)", cp.ClientID, err, connackString(ca))
	}
	return mc
}

func connackString(ca *paho.Connack) string {
	if ca == nil {
		return "none"
	}
	return fmt.Sprintf("0x%02x", ca.ReasonCode)
}

func (mc *mqttClient) disconnect() {
	mc.once.Do(func() { _ = mc.c.Disconnect(&paho.Disconnect{ReasonCode: 0}) })
}

func (mc *mqttClient) subscribe(filter string) {
	mc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	sa, err := mc.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if err != nil {
		mc.t.Fatalf("subscribe %s: %v", filter, err)
	}
	if sa.Reasons[0] >= 0x80 {
		mc.t.Fatalf("subscribe %s: reason 0x%02x", filter, sa.Reasons[0])
	}
}

// publish publishes at QoS 1 and returns the PUBACK reason code (0x10, no
// matching subscribers, is a success).
func (mc *mqttClient) publish(topic, payload string) byte {
	mc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	pr, err := mc.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if pr == nil {
		mc.t.Fatalf("publish %s: %v", topic, err)
	}
	return pr.ReasonCode // paho also returns an error for codes >= 0x80
}

// recv waits for the next message.
func (mc *mqttClient) recv() *paho.Publish {
	mc.t.Helper()
	select {
	case m := <-mc.msgs:
		return m
	case <-time.After(waitTimeout):
		mc.t.Fatalf("no message within %v", waitTimeout)
		return nil
	}
}

// roundTrip subscribes to a fresh topic under prefix, publishes to it and
// waits for the message: proof that the connection works both ways.
func (mc *mqttClient) roundTrip(prefix string) {
	mc.t.Helper()
	topic := uniqueID(prefix)
	mc.subscribe(topic)
	if rc := mc.publish(topic, "ping"); rc >= 0x80 {
		mc.t.Fatalf("publish %s refused: 0x%02x", topic, rc)
	}
	m := mc.recv()
	if m.Topic != topic || string(m.Payload) != "ping" {
		mc.t.Fatalf("got %s %q, want %s \"ping\"", m.Topic, m.Payload, topic)
	}
}

// connectTLS dials the listener with cfg and connects with client id id.
func connectTLS(t testing.TB, addr string, cfg *tls.Config, id string) *mqttClient {
	t.Helper()
	return mustConnect(t, mustDialTLS(t, addr, cfg), &paho.Connect{ClientID: id, CleanStart: true})
}

// refusedAtTLS reports whether err is the failure of a client whose
// certificate the server refused. In TLS 1.3 the client finishes its side
// of the handshake before the server checks the certificate, so the alert
// may only show on the first read (CONNECT/CONNACK).
func refusedAtTLS(err error) bool {
	var ne *net.OpError
	return err != nil && (errors.As(err, &ne) || strings.Contains(err.Error(), "tls:") ||
		strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "reset"))
}

// ---------------------------------------------------------------------------
// Command line tools

func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (%v); install it (mosquitto-clients, openssl, sslscan)", name, err)
	}
	return p
}

// run runs a command with a deadline and returns its combined output and
// error.
func run(t testing.TB, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	bin := requireTool(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: timed out: %s", name, strings.Join(args, " "), out)
	}
	return string(out), err
}

// leafSerial is the serial number of the certificate the server presented.
func leafSerial(c *tls.Conn) string {
	st := c.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return ""
	}
	return st.PeerCertificates[0].SerialNumber.String()
}

func serialOf(c *x509.Certificate) string { return c.SerialNumber.String() }
