// Package devices tests the device registry wired into a real broker, end
// to end: every credential kind with a real client (mosquitto_pub for
// TLS-PSK, certificates and passwords; paho.golang over crypto/tls or
// moat's TLS-PSK client for live sessions), the live effect of disabling a
// device or rotating its credential, per-device ACLs (deny wins), the
// HTTPS admin API and its audit log, and secrets at rest.
//
// Waiting is event driven: a test waits for a message, a DISCONNECT or a
// process to exit, always bounded by waitTimeout. Where a test must show
// that something did NOT happen (a message that must not be delivered), it
// uses a sentinel: the forbidden action first, then an allowed one from the
// same kind of client; the subscriber's first message must be the
// sentinel, which proves the forbidden one was handled and dropped.
package devices

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/crypto/argon2"

	"moat/internal/admin"
	"moat/internal/broker"
	"moat/internal/config"
	"moat/internal/registry"
	"moat/internal/testpki"
	"moat/internal/tlspsk"
)

// waitTimeout bounds every wait for something that should happen.
const waitTimeout = 10 * time.Second

// liveLimit is how fast a disabled device's or rotated credential's live
// connection must be closed (the acceptance: within one second).
const liveLimit = time.Second

// Reason codes the tests expect.
const (
	rcBadCredentials       = 0x86 // CONNACK: bad user name or password
	rcNotAuthorized        = 0x87 // CONNACK, PUBACK, SUBACK
	rcAdministrativeAction = 0x98 // DISCONNECT
)

// baseACL is the configuration ACL of every test broker: anything under
// devices/ for everyone. Device rules can only narrow it, so a device that
// cannot publish to another device's topic shows that the registry's ACL,
// and therefore the device's Principal, applied.
var baseACL = []config.ACLRule{{Permission: config.PermissionAllow, Action: config.ActionAll, Topic: "devices/#"}}

// ownTopicRule lets a device publish under devices/<its id>/ only.
var ownTopicRule = registry.Rule{Permission: registry.PermissionAllow, Action: registry.ActionPublish, Topic: "devices/%i/#"}

func need(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not found: install mosquitto-clients (scripts/test.sh does)", b)
		}
	}
}

// env is a running broker with the device registry, a "tls" listener
// (server certificate, optional client certificates from the test PKI,
// TLS-PSK from the registry) and the admin API.
type env struct {
	t       *testing.T
	srv     *broker.Server
	cfg     *config.Config
	logs    *logWatch
	stop    func() // stops the broker and waits for it; idempotent
	reg     *registry.Registry
	pki     *testpki.Set
	tcp     string // plain MQTT listener (anonymous allowed)
	tls     string // "tls" listener
	admin   string // admin API host:port
	token   string // a valid admin bearer token
	dataDir string
}

// option changes the configuration before defaults are applied.
type option func(*config.Config)

// withACL adds configuration ACL rules to baseACL.
func withACL(rules ...config.ACLRule) option {
	return func(c *config.Config) { c.ACL = append(c.ACL, rules...) }
}

// withPSKFile gives the "tls" listener a psk_file, the fallback for
// identities the registry does not know.
func withPSKFile(path string) option {
	return func(c *config.Config) {
		for i := range c.Listeners {
			if c.Listeners[i].Name == "tls" {
				c.Listeners[i].TLS.PSKFile = path
			}
		}
	}
}

// start starts a broker whose registry is on (a master key file exists)
// and whose configuration ACL is baseACL, changed by opts, and waits until
// the admin API listens.
//
// It does what brokertest.Start does, with a logger of its own: the admin
// API starts inside Server.Serve, after brokertest.Start has returned, and
// Server.AdminAddr is not synchronized with that, so the only race-free
// sign that it is up is its "admin API listening" log record.
func start(t *testing.T, opts ...option) *env {
	t.Helper()
	keys := t.TempDir() // outside the data directory
	mk := filepath.Join(keys, "master.key")
	if _, err := registry.WriteMasterKeyFile(mk); err != nil {
		t.Fatal(err)
	}
	set, err := testpki.Generate(t.TempDir())
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	token, rec := admin.GenerateToken("ops")
	tokens := filepath.Join(keys, "tokens")
	if err := os.WriteFile(tokens, []byte("# admin tokens\n"+rec.Name+":"+rec.SHA256+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Auth.AllowAnonymous = true
	cfg.Auth.ACLDefault = "" // "deny", since there are ACL rules
	cfg.ACL = append([]config.ACLRule(nil), baseACL...)
	cfg.Listeners = []config.Listener{
		{Name: "tcp", Type: "tcp", Address: "127.0.0.1:0"},
		{Name: "tls", Type: "tls", Address: "127.0.0.1:0", TLS: &config.TLS{
			Cert: set.Server.CertFile, Key: set.Server.KeyFile, ClientAuth: "optional", ClientCA: []string{set.CAFile}}},
	}
	cfg.MasterKeyFile = mk
	cfg.Admin.Cert, cfg.Admin.Key = set.Server.CertFile, set.Server.KeyFile
	cfg.Admin.Address = "127.0.0.1:0"
	cfg.Admin.TokensFile = tokens
	// Explicit: config.Default() derived it from ./moat-data before the
	// data directory was set, and ApplyDefaults keeps it.
	cfg.Admin.AuditLog = filepath.Join(cfg.DataDir, "admin", "audit.log")
	for _, o := range opts {
		o(cfg)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("invalid config: %v", err)
	}

	logs := newLogWatch(os.Getenv("MOAT_TEST_LOG") != "")
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := broker.New(broker.Options{Config: cfg, Log: log, Version: "devicestest"})
	if err != nil {
		t.Fatalf("broker: %v", err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatalf("broker: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Errorf("broker did not stop within 15s")
			}
		})
	}
	t.Cleanup(stop)

	e := &env{t: t, srv: srv, cfg: cfg, logs: logs, stop: stop, reg: srv.Registry(), pki: set, token: token, dataDir: cfg.DataDir}
	if e.reg == nil {
		t.Fatal("the broker did not open the device registry although a master key exists")
	}
	e.tcp = srv.Addr("tcp").String()
	e.tls = srv.Addr("tls").String()
	logs.wait(t, `"msg":"admin API listening"`)
	a := srv.AdminAddr()
	if a == nil {
		t.Fatal("admin API logged that it listens, but AdminAddr is nil")
	}
	e.admin = a.String()
	return e
}

// logWatch receives the broker's JSON log and lets a test wait for a
// record.
type logWatch struct {
	echo bool
	mu   sync.Mutex // guards the following fields
	buf  []byte
	wake chan struct{} // closed and replaced on every write
}

func newLogWatch(echo bool) *logWatch { return &logWatch{echo: echo, wake: make(chan struct{})} }

func (l *logWatch) Write(p []byte) (int, error) {
	if l.echo {
		os.Stderr.Write(p)
	}
	l.mu.Lock()
	l.buf = append(l.buf, p...)
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
	return len(p), nil
}

// recordTime waits for the record with message msg whose attributes
// include attrs, and returns its time.
func (l *logWatch) recordTime(t testing.TB, msg string, attrs map[string]string) time.Time {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		l.mu.Lock()
		buf, wake := string(l.buf), l.wake
		l.mu.Unlock()
	lines:
		for _, line := range strings.Split(buf, "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != msg {
				continue
			}
			for k, v := range attrs {
				if rec[k] != v {
					continue lines
				}
			}
			ts, _ := rec["time"].(string)
			tm, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil {
				t.Fatalf("log record %s: time %q: %v", line, ts, err)
			}
			return tm
		}
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("no log record %q %v within %v", msg, attrs, waitTimeout)
		}
	}
}

// wait waits until the log holds substr.
func (l *logWatch) wait(t testing.TB, substr string) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		l.mu.Lock()
		found, wake := strings.Contains(string(l.buf), substr), l.wake
		l.mu.Unlock()
		if found {
			return
		}
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("no log record with %s within %v", substr, waitTimeout)
		}
	}
}

// in returns a copy of e whose helpers report to t (a subtest).
func (e *env) in(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// add registers a device and returns the secrets the registry issued.
func (e *env) add(nd registry.NewDevice) (*registry.Device, []registry.Issued) {
	e.t.Helper()
	d, issued, err := e.reg.Add(nd)
	if err != nil {
		e.t.Fatalf("add device %s: %v", nd.ID, err)
	}
	return d, issued
}

// cheapHash is an argon2id hash with small parameters, imported through
// NewCredential.PasswordHash, for tests where the cost of the default
// parameters (hundreds of ms per login under -race) buys nothing.
func cheapHash(pw string) string {
	salt := []byte("moat-test-salt-1")
	key := argon2.IDKey([]byte(pw), salt, 1, 1024, 1, 32)
	return fmt.Sprintf("$argon2id$v=19$m=1024,t=1,p=1$%s$%s", b64(salt), b64(key))
}

// ---------------------------------------------------------------------------
// MQTT clients (paho.golang)

// client is a connected MQTT 5 client whose events land on channels.
type client struct {
	t    testing.TB
	id   string
	c    *paho.Client
	conn net.Conn
	msgs chan *paho.Publish
	disc chan *paho.Disconnect // DISCONNECT packets from the server
	once sync.Once
}

// connect runs CONNECT over conn. It returns the CONNACK and an error
// when the broker refused; the connection is closed then.
func connect(t testing.TB, conn net.Conn, cp *paho.Connect) (*client, *paho.Connack, error) {
	t.Helper()
	c := &client{t: t, id: cp.ClientID, conn: conn, msgs: make(chan *paho.Publish, 256), disc: make(chan *paho.Disconnect, 4)}
	c.c = paho.NewClient(paho.ClientConfig{
		ClientID: cp.ClientID,
		Conn:     packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case c.msgs <- pr.Packet:
			default:
				t.Errorf("client %s: message buffer full", cp.ClientID)
			}
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case c.disc <- d:
			default:
			}
		},
		OnClientError: func(error) {},
	})
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	cp.CleanStart = true
	ctx, cancel := ctxTimeout()
	defer cancel()
	ca, err := c.c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return nil, ca, err
	}
	t.Cleanup(c.close)
	return c, ca, nil
}

// mustConnect is connect that fails the test on refusal.
func mustConnect(t testing.TB, conn net.Conn, cp *paho.Connect) *client {
	t.Helper()
	c, ca, err := connect(t, conn, cp)
	if err != nil {
		t.Fatalf("connect %s: %v (connack %s)", cp.ClientID, err, connackString(ca))
	}
	return c
}

func connackString(ca *paho.Connack) string {
	if ca == nil {
		return "none"
	}
	return fmt.Sprintf("0x%02x", ca.ReasonCode)
}

func (c *client) close() {
	c.once.Do(func() {
		_ = c.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		c.conn.Close()
	})
}

// subscribe subscribes at QoS 1 and returns the SUBACK reason code.
func (c *client) subscribe(filter string) byte {
	c.t.Helper()
	ctx, cancel := ctxTimeout()
	defer cancel()
	sa, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if sa == nil || len(sa.Reasons) != 1 {
		c.t.Fatalf("client %s: subscribe %s: %v (suback %+v)", c.id, filter, err, sa)
	}
	return sa.Reasons[0]
}

// mustSubscribe subscribes and fails the test unless granted.
func (c *client) mustSubscribe(filter string) {
	c.t.Helper()
	if rc := c.subscribe(filter); rc >= 0x80 {
		c.t.Fatalf("client %s: subscribe %s refused: 0x%02x", c.id, filter, rc)
	}
}

// publish publishes at QoS 1 and returns the PUBACK reason code.
func (c *client) publish(topic, payload string) byte {
	c.t.Helper()
	ctx, cancel := ctxTimeout()
	defer cancel()
	pr, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if pr == nil {
		c.t.Fatalf("client %s: publish %s: %v", c.id, topic, err)
	}
	return pr.ReasonCode
}

// recv waits for the next message and checks it.
func (c *client) recv(topic, payload string) {
	c.t.Helper()
	select {
	case m := <-c.msgs:
		if m.Topic != topic || string(m.Payload) != payload {
			c.t.Fatalf("client %s: got %q on %s, want %q on %s (a message that should have been refused was delivered)", c.id, m.Payload, m.Topic, payload, topic)
		}
	case <-time.After(waitTimeout):
		c.t.Fatalf("client %s: no message within %v (want %q on %s)", c.id, waitTimeout, payload, topic)
	}
}

// waitDisconnect waits for a server DISCONNECT and returns its reason code
// and how long it took from since. (paho closes the client before it
// calls OnServerDisconnect, so Done is no sign that none came.)
func (c *client) waitDisconnect(since time.Time) (byte, time.Duration) {
	c.t.Helper()
	select {
	case d := <-c.disc:
		return d.ReasonCode, time.Since(since)
	case <-time.After(waitTimeout):
		c.t.Fatalf("client %s: no DISCONNECT within %v", c.id, waitTimeout)
	}
	return 0, 0
}

// expectKicked waits for DISCONNECT 0x98 within liveLimit of since.
func (c *client) expectKicked(since time.Time, what string) {
	c.t.Helper()
	rc, took := c.waitDisconnect(since)
	if rc != rcAdministrativeAction {
		c.t.Fatalf("%s: DISCONNECT reason 0x%02x, want 0x%02x (administrative action)", what, rc, rcAdministrativeAction)
	}
	if took > liveLimit {
		c.t.Fatalf("%s: the live connection was closed after %v, want within %v", what, took, liveLimit)
	}
}

// ctxTimeout bounds one client operation.
func ctxTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), waitTimeout)
}

// dialTCP opens a plain TCP connection.
func dialTCP(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dialPSK runs a TLS-PSK handshake (TLS 1.3 unless maxVersion says
// otherwise) with moat's own client.
func dialPSK(t testing.TB, addr, identity string, key []byte, maxVersion uint16) (net.Conn, error) {
	t.Helper()
	raw := dialTCP(t, addr)
	pc := tlspsk.Client(raw, &tlspsk.Config{Identity: identity, Key: key, MaxVersion: maxVersion})
	ctx, cancel := ctxTimeout()
	defer cancel()
	if err := pc.Handshake(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return pc, nil
}

// dialCert runs a TLS handshake presenting cert.
func (e *env) dialCert(cert tls.Certificate) (net.Conn, error) {
	d := &net.Dialer{Timeout: waitTimeout}
	return tls.DialWithDialer(d, "tcp", e.tls, &tls.Config{RootCAs: testpki.Pool(e.pki.Root), Certificates: []tls.Certificate{cert}})
}

// subscriber connects an anonymous client on the plain listener and
// subscribes to filter.
func (e *env) subscriber(id, filter string) *client {
	e.t.Helper()
	c := mustConnect(e.t, dialTCP(e.t, e.tcp), &paho.Connect{ClientID: id})
	c.mustSubscribe(filter)
	return c
}

// ---------------------------------------------------------------------------
// mosquitto_pub

// mosqPub runs mosquitto_pub (MQTT 5, QoS 1, debug output) against addr
// and returns its exit error and output.
func mosqPub(t *testing.T, addr, topic, payload string, args ...string) (string, error) {
	t.Helper()
	h, p, _ := net.SplitHostPort(addr)
	ctx, cancel := ctxTimeout()
	defer cancel()
	full := append([]string{"-h", h, "-p", p, "-V", "mqttv5", "-q", "1", "-d", "-t", topic, "-m", payload}, args...)
	out, err := exec.CommandContext(ctx, "mosquitto_pub", full...).CombinedOutput()
	return string(out), err
}

// ---------------------------------------------------------------------------
// Admin API

// adminClient is an HTTPS client trusting the test PKI.
func (e *env) adminClient() *http.Client {
	return &http.Client{Timeout: waitTimeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: testpki.Pool(e.pki.Root)},
	}}
}

// call makes an admin API request; auth is the Authorization header ("" for
// none). It returns the status and the body.
func (e *env) call(method, path, auth string, body any) (int, []byte) {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, "https://"+e.admin+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.adminClient().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, out
}

// api makes an authenticated request, checks the status and decodes the
// answer into out (when not nil).
func (e *env) api(method, path string, body any, want int, out any) {
	e.t.Helper()
	st, b := e.call(method, path, "Bearer "+e.token, body)
	if st != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, st, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// secretForms are the encodings a secret might be written in.
func secretForms(secret []byte) map[string][]byte {
	h := hex.EncodeToString(secret)
	return map[string][]byte{
		"raw":          secret,
		"hex":          []byte(h),
		"HEX":          []byte(strings.ToUpper(h)),
		"base64":       []byte(b64std(secret)),
		"base64-raw":   []byte(strings.TrimRight(b64std(secret), "=")),
		"base64url":    []byte(b64url(secret)),
		"base64url-ra": []byte(strings.TrimRight(b64url(secret), "=")),
	}
}

// findSecret reports in which form a secret occurs in data, or "".
func findSecret(data, secret []byte) string {
	for form, v := range secretForms(secret) {
		if strings.Contains(string(data), string(v)) {
			return form
		}
	}
	return ""
}

func b64(b []byte) string    { return base64.RawStdEncoding.EncodeToString(b) }
func b64std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
func b64url(b []byte) string { return base64.URLEncoding.EncodeToString(b) }
