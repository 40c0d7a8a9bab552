package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// waitTimeout bounds every wait for an event that should happen.
const waitTimeout = 10 * time.Second

var idCounter atomic.Uint64

// runID keeps ids unique across `go test -count=N` and across packages
// that share one broker.
var runID = func() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// uniqueID returns a client id of at most 23 characters, the length every
// MQTT 3.1.1 server must accept.
func uniqueID(prefix string) string {
	if len(prefix) > 8 {
		prefix = prefix[:8]
	}
	return fmt.Sprintf("%s-%s-%d", prefix, runID, idCounter.Add(1))
}

// uniqueTopic returns a topic that no other test uses.
func uniqueTopic(name string) string {
	return fmt.Sprintf("it/%s/%s-%d", name, runID, idCounter.Add(1))
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// ---------------------------------------------------------------------------
// MQTT 5: paho.golang

// v5Client is a connected paho.golang client whose events land on channels.
type v5Client struct {
	t       testing.TB
	c       *paho.Client
	conn    net.Conn // the raw network connection; close it to simulate a failure
	Connack *paho.Connack

	msgs        chan *paho.Publish
	disconnects chan *paho.Disconnect // DISCONNECT packets sent by the server
	errs        chan error            // client errors (e.g. connection lost)

	closeOnce sync.Once
}

// v5Opts tunes connectV5.
type v5Opts struct {
	conn net.Conn // pre-dialled connection (WebSocket); TCP to the broker if nil
}

// connectV5 dials the broker and connects with cp (ClientID, CleanStart,
// properties and will as given; KeepAlive defaults to 30s).
func connectV5(t testing.TB, b *testBroker, cp *paho.Connect) *v5Client {
	t.Helper()
	return connectV5With(t, b, cp, v5Opts{})
}

func connectV5With(t testing.TB, b *testBroker, cp *paho.Connect, o v5Opts) *v5Client {
	t.Helper()
	conn := o.conn
	if conn == nil {
		conn = dialGraceful(t, b.Addr)
	}
	vc := &v5Client{
		t:           t,
		conn:        conn,
		msgs:        make(chan *paho.Publish, 4096),
		disconnects: make(chan *paho.Disconnect, 4),
		errs:        make(chan error, 16),
	}
	vc.c = paho.NewClient(paho.ClientConfig{
		ClientID: cp.ClientID,
		// paho writes from several goroutines; keep each packet whole.
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				select {
				case vc.msgs <- pr.Packet:
				default:
					t.Errorf("client %s: message buffer full", cp.ClientID)
				}
				return true, nil
			},
		},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case vc.disconnects <- d:
			default:
			}
		},
		OnClientError: func(err error) {
			select {
			case vc.errs <- err:
			default:
			}
		},
	})
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ca, err := vc.c.Connect(ctxT(t), cp)
	if err != nil {
		conn.Close()
		t.Fatalf("connect %s: %v", cp.ClientID, err)
	}
	vc.Connack = ca
	t.Cleanup(func() { vc.disconnect() })
	return vc
}

// disconnect sends DISCONNECT (normal) and closes the connection.
func (vc *v5Client) disconnect() {
	vc.disconnectWith(&paho.Disconnect{ReasonCode: 0})
}

func (vc *v5Client) disconnectWith(d *paho.Disconnect) {
	vc.closeOnce.Do(func() {
		_ = vc.c.Disconnect(d)
	})
}

// kill closes the network connection without DISCONNECT, as a network
// failure would.
func (vc *v5Client) kill() {
	vc.closeOnce.Do(func() {
		if g, ok := vc.conn.(*gracefulConn); ok {
			g.kill()
		} else {
			vc.conn.Close()
		}
		<-vc.c.Done()
	})
}

func (vc *v5Client) subscribe(opts ...paho.SubscribeOptions) {
	vc.t.Helper()
	vc.subscribeWith(nil, opts...)
}

func (vc *v5Client) subscribeWith(props *paho.SubscribeProperties, opts ...paho.SubscribeOptions) *paho.Suback {
	vc.t.Helper()
	sa, err := vc.c.Subscribe(ctxT(vc.t), &paho.Subscribe{Subscriptions: opts, Properties: props})
	if err != nil {
		vc.t.Fatalf("subscribe %+v: %v", opts, err)
	}
	for i, r := range sa.Reasons {
		if r >= 0x80 {
			vc.t.Fatalf("subscribe %+v: reason 0x%02x for #%d", opts, r, i)
		}
	}
	return sa
}

// publish publishes and, for QoS 1 and 2, waits for the acknowledgement.
func (vc *v5Client) publish(p *paho.Publish) {
	vc.t.Helper()
	pr, err := vc.c.Publish(ctxT(vc.t), p)
	if err != nil {
		vc.t.Fatalf("publish %s qos %d: %v", p.Topic, p.QoS, err)
	}
	if pr != nil && pr.ReasonCode >= 0x80 {
		vc.t.Fatalf("publish %s qos %d: reason 0x%02x", p.Topic, p.QoS, pr.ReasonCode)
	}
}

func (vc *v5Client) pub(topic string, qos byte, retain bool, payload string) {
	vc.t.Helper()
	vc.publish(&paho.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte(payload)})
}

// recv waits for the next message.
func (vc *v5Client) recv() *paho.Publish {
	vc.t.Helper()
	select {
	case m := <-vc.msgs:
		return m
	case <-time.After(waitTimeout):
		vc.t.Fatalf("client %s: no message within %v", vc.c.ClientID(), waitTimeout)
		return nil
	}
}

// recvPayload waits for the next message and checks its topic and payload.
func (vc *v5Client) recvPayload(topic, payload string) *paho.Publish {
	vc.t.Helper()
	m := vc.recv()
	if m.Topic != topic || string(m.Payload) != payload {
		vc.t.Fatalf("client %s: got %q on %q, want %q on %q", vc.c.ClientID(), m.Payload, m.Topic, payload, topic)
	}
	return m
}

// waitClosed waits until the client has shut down (server DISCONNECT or
// connection loss).
func (vc *v5Client) waitClosed() {
	vc.t.Helper()
	select {
	case <-vc.c.Done():
	case <-time.After(waitTimeout):
		vc.t.Fatalf("client %s: connection not closed within %v", vc.c.ClientID(), waitTimeout)
	}
}

// gracefulConn is a TCP connection whose Close only half-closes: the
// client's reader keeps reading until the broker closes its side, so a
// client's Disconnect returns once the broker has processed the DISCONNECT
// and dropped the connection. kill closes it at once (a network failure).
type gracefulConn struct {
	*net.TCPConn
	peerClosed chan struct{} // closed when a read fails (EOF, reset, deadline)
	once       sync.Once
	killed     atomic.Bool
}

// errKilled is what reads return after kill. paho.mqtt.golang ignores
// "use of closed network connection" (it assumes it closed the socket
// itself), so the test's own close must look like a network failure.
var errKilled = errors.New("connection killed by the test")

func dialGraceful(t testing.TB, addr string) *gracefulConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	g := &gracefulConn{TCPConn: c.(*net.TCPConn), peerClosed: make(chan struct{})}
	t.Cleanup(func() { g.TCPConn.Close() })
	return g
}

func (g *gracefulConn) Read(b []byte) (int, error) {
	n, err := g.TCPConn.Read(b)
	if err != nil {
		if g.killed.Load() {
			err = errKilled
		}
		g.once.Do(func() { close(g.peerClosed) })
	}
	return n, err
}

// Close sends FIN and reads whatever the broker still sends until it
// closes its side (or waitTimeout passes); the client's own reader may
// have stopped already.
func (g *gracefulConn) Close() error {
	_ = g.TCPConn.SetReadDeadline(time.Now().Add(waitTimeout))
	err := g.TCPConn.CloseWrite()
	go func() {
		buf := make([]byte, 512)
		for {
			if _, err := g.Read(buf); err != nil {
				return
			}
		}
	}()
	return err
}

func (g *gracefulConn) kill() {
	g.killed.Store(true)
	g.TCPConn.Close()
}

// waitPeerClosed waits until the broker has closed its side.
func (g *gracefulConn) waitPeerClosed(t testing.TB) {
	t.Helper()
	select {
	case <-g.peerClosed:
	case <-time.After(waitTimeout):
		t.Fatal("broker did not close the connection")
	}
}

func u32(v uint32) *uint32 { return &v }
func u16(v uint16) *uint16 { return &v }

// ---------------------------------------------------------------------------
// MQTT 3.1.1: paho.mqtt.golang

type v3Msg struct {
	topic    string
	payload  string
	qos      byte
	retained bool
}

// v3Client is a connected paho.mqtt.golang client.
type v3Client struct {
	t              testing.TB
	c              mqtt3.Client
	id             string
	sessionPresent bool
	msgs           chan v3Msg
	lost           chan error

	mu   sync.Mutex
	conn *gracefulConn // last network connection opened by the client
}

type v3Opts struct {
	clean bool
	will  *v3Msg
}

func connectV3(t testing.TB, b *testBroker, id string, o v3Opts) *v3Client {
	t.Helper()
	vc := &v3Client{
		t:    t,
		id:   id,
		msgs: make(chan v3Msg, 4096),
		lost: make(chan error, 1),
	}
	opts := mqtt3.NewClientOptions().
		AddBroker("tcp://" + b.Addr).
		SetClientID(id).
		SetProtocolVersion(4).
		SetCleanSession(o.clean).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(waitTimeout).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) {
			vc.deliver(m)
		}).
		SetConnectionLostHandler(func(_ mqtt3.Client, err error) {
			select {
			case vc.lost <- err:
			default:
			}
		}).
		SetCustomOpenConnectionFn(func(uri *url.URL, _ mqtt3.ClientOptions) (net.Conn, error) {
			c := dialGraceful(t, uri.Host)
			vc.mu.Lock()
			vc.conn = c
			vc.mu.Unlock()
			return c, nil
		})
	if o.will != nil {
		opts.SetWill(o.will.topic, o.will.payload, o.will.qos, o.will.retained)
	}
	vc.c = mqtt3.NewClient(opts)
	tok := vc.c.Connect()
	if !tok.WaitTimeout(waitTimeout) {
		t.Fatalf("v3 connect %s: timeout", id)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("v3 connect %s: %v", id, err)
	}
	vc.sessionPresent = tok.(*mqtt3.ConnectToken).SessionPresent()
	t.Cleanup(func() {
		if vc.c.IsConnectionOpen() {
			vc.c.Disconnect(100)
		}
	})
	return vc
}

func (vc *v3Client) deliver(m mqtt3.Message) {
	select {
	case vc.msgs <- v3Msg{topic: m.Topic(), payload: string(m.Payload()), qos: m.Qos(), retained: m.Retained()}:
	default:
		vc.t.Errorf("v3 client %s: message buffer full", vc.id)
	}
}

func (vc *v3Client) subscribe(filter string, qos byte) {
	vc.t.Helper()
	tok := vc.c.Subscribe(filter, qos, func(_ mqtt3.Client, m mqtt3.Message) { vc.deliver(m) })
	if !tok.WaitTimeout(waitTimeout) {
		vc.t.Fatalf("v3 subscribe %s: timeout", filter)
	}
	if err := tok.Error(); err != nil {
		vc.t.Fatalf("v3 subscribe %s: %v", filter, err)
	}
	st := tok.(*mqtt3.SubscribeToken)
	for f, granted := range st.Result() {
		if granted >= 0x80 {
			vc.t.Fatalf("v3 subscribe %s: refused (0x%02x)", f, granted)
		}
	}
}

func (vc *v3Client) pub(topic string, qos byte, retain bool, payload string) {
	vc.t.Helper()
	tok := vc.c.Publish(topic, qos, retain, []byte(payload))
	if !tok.WaitTimeout(waitTimeout) {
		vc.t.Fatalf("v3 publish %s: timeout", topic)
	}
	if err := tok.Error(); err != nil {
		vc.t.Fatalf("v3 publish %s: %v", topic, err)
	}
}

func (vc *v3Client) recv() v3Msg {
	vc.t.Helper()
	select {
	case m := <-vc.msgs:
		return m
	case <-time.After(waitTimeout):
		vc.t.Fatalf("v3 client %s: no message within %v", vc.id, waitTimeout)
		return v3Msg{}
	}
}

// kill closes the network connection without DISCONNECT.
func (vc *v3Client) kill() {
	vc.t.Helper()
	vc.mu.Lock()
	c := vc.conn
	vc.mu.Unlock()
	c.kill()
	vc.waitLost()
}

func (vc *v3Client) waitLost() {
	vc.t.Helper()
	select {
	case <-vc.lost:
	case <-time.After(waitTimeout):
		vc.t.Fatalf("v3 client %s: connection not lost within %v", vc.id, waitTimeout)
	}
}

func (vc *v3Client) disconnect() {
	vc.c.Disconnect(250)
}

// ---------------------------------------------------------------------------
// Raw packets, written byte by byte.

// vbi encodes a variable byte integer.
func vbi(n int) []byte {
	var out []byte
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			return out
		}
	}
}

// mstr encodes a UTF-8 string (or binary data) with its two-byte length.
func mstr(s string) []byte {
	return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...)
}

func u16b(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// pkt builds a packet from its first byte and its body.
func pkt(first byte, body ...[]byte) []byte {
	b := cat(body...)
	return cat([]byte{first}, vbi(len(b)), b)
}

// props encodes an MQTT 5 property block.
func props(p ...[]byte) []byte {
	b := cat(p...)
	return cat(vbi(len(b)), b)
}

// MQTT 5 property identifiers used by raw tests.
const (
	propPayloadFormat = 0x01
	propTopicAlias    = 0x23
)

func rawConnectV5(clientID string, p ...[]byte) []byte {
	return rawConnectLevel("MQTT", 5, clientID, props(p...))
}

func rawConnectV311(clientID string) []byte {
	return rawConnectLevel("MQTT", 4, clientID, nil)
}

// rawConnectLevel builds a CONNECT with clean start and keep alive 60;
// propBlock is inserted after the keep alive (nil for 3.1.1).
func rawConnectLevel(name string, level byte, clientID string, propBlock []byte) []byte {
	return pkt(0x10, mstr(name), []byte{level, 0x02}, u16b(60), propBlock, mstr(clientID))
}

// rawPacket is one control packet read from the wire.
type rawPacket struct {
	first byte
	body  []byte
}

func (p rawPacket) typ() byte { return p.first >> 4 }

func (p rawPacket) String() string {
	return fmt.Sprintf("{type %d flags %x body % x}", p.typ(), p.first&0x0f, p.body)
}

// rawClient speaks MQTT byte by byte.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	buf  []byte
}

func dialRaw(t testing.TB, b *testBroker) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", b.Addr, waitTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", b.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c}
}

func (rc *rawClient) write(b ...[]byte) error {
	_ = rc.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	_, err := rc.conn.Write(cat(b...))
	return err
}

func (rc *rawClient) mustWrite(b ...[]byte) {
	rc.t.Helper()
	if err := rc.write(b...); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// errClosed is returned by read when the peer closed the connection.
var errClosed = errors.New("connection closed by peer")

// read returns the next packet, errClosed on EOF or reset, or a timeout
// error when nothing arrives before the deadline.
func (rc *rawClient) read(timeout time.Duration) (rawPacket, error) {
	deadline := time.Now().Add(timeout)
	_ = rc.conn.SetReadDeadline(deadline)
	tmp := make([]byte, 4096)
	for {
		if p, n, ok := parseRaw(rc.buf); ok {
			rc.buf = rc.buf[n:]
			return p, nil
		}
		n, err := rc.conn.Read(tmp)
		rc.buf = append(rc.buf, tmp[:n]...)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return rawPacket{}, err
			}
			if _, _, ok := parseRaw(rc.buf); ok {
				continue
			}
			return rawPacket{}, fmt.Errorf("%w: %v", errClosed, err)
		}
	}
}

func parseRaw(b []byte) (rawPacket, int, bool) {
	if len(b) < 2 {
		return rawPacket{}, 0, false
	}
	n, mult, i := 0, 1, 1
	for ; ; i++ {
		if i >= len(b) || i > 4 {
			return rawPacket{}, 0, false
		}
		n += int(b[i]&0x7f) * mult
		mult *= 128
		if b[i]&0x80 == 0 {
			break
		}
	}
	end := i + 1 + n
	if len(b) < end {
		return rawPacket{}, 0, false
	}
	return rawPacket{first: b[0], body: append([]byte(nil), b[i+1:end]...)}, end, true
}

// mustRead reads one packet of the given type.
func (rc *rawClient) mustRead(typ byte) rawPacket {
	rc.t.Helper()
	p, err := rc.read(waitTimeout)
	if err != nil {
		rc.t.Fatalf("read packet type %d: %v", typ, err)
	}
	if p.typ() != typ {
		rc.t.Fatalf("got packet %v, want type %d", p, typ)
	}
	return p
}

// connackInfo extracts the reason code and, for MQTT 5, a few properties.
type connackInfo struct {
	reason            byte
	receiveMaximum    int // 65535 when absent
	topicAliasMaximum int // 0 when absent
	maxPacketSize     int // 0 when absent
}

func parseConnackV5(t testing.TB, p rawPacket) connackInfo {
	t.Helper()
	if p.typ() != 2 || len(p.body) < 3 {
		t.Fatalf("not an MQTT 5 CONNACK: %v", p)
	}
	ci := connackInfo{reason: p.body[1], receiveMaximum: 65535}
	rest := p.body[2:]
	plen, used := readVBI(rest)
	if used == 0 || used+plen > len(rest) {
		t.Fatalf("CONNACK properties: bad length in %v", p)
	}
	pr := rest[used : used+plen]
	take := func(n int) []byte {
		if len(pr) < n {
			t.Fatalf("CONNACK properties: truncated in %v", p)
		}
		v := pr[:n]
		pr = pr[n:]
		return v
	}
	str := func() { l := take(2); take(int(l[0])<<8 | int(l[1])) }
	for len(pr) > 0 {
		switch id := take(1)[0]; id {
		case 0x11: // session expiry interval
			take(4)
		case 0x27: // maximum packet size
			v := take(4)
			ci.maxPacketSize = int(v[0])<<24 | int(v[1])<<16 | int(v[2])<<8 | int(v[3])
		case 0x13: // server keep alive
			take(2)
		case 0x21: // receive maximum
			v := take(2)
			ci.receiveMaximum = int(v[0])<<8 | int(v[1])
		case 0x22: // topic alias maximum
			v := take(2)
			ci.topicAliasMaximum = int(v[0])<<8 | int(v[1])
		case 0x24, 0x25, 0x28, 0x29, 0x2a: // one-byte flags
			take(1)
		case 0x12, 0x15, 0x16, 0x1a, 0x1c, 0x1f: // strings, binary data
			str()
		case 0x26: // user property
			str()
			str()
		default:
			t.Fatalf("CONNACK: unexpected property 0x%02x in %v", id, p)
		}
	}
	return ci
}

func readVBI(b []byte) (int, int) {
	n, mult := 0, 1
	for i := 0; i < len(b) && i < 4; i++ {
		n += int(b[i]&0x7f) * mult
		mult *= 128
		if b[i]&0x80 == 0 {
			return n, i + 1
		}
	}
	return 0, 0
}

// connectRawV5 opens a raw connection and completes an MQTT 5 CONNECT.
func connectRawV5(t testing.TB, b *testBroker, clientID string, p ...[]byte) (*rawClient, connackInfo) {
	t.Helper()
	rc := dialRaw(t, b)
	rc.mustWrite(rawConnectV5(clientID, p...))
	ci := parseConnackV5(t, rc.mustRead(2))
	if ci.reason != 0 {
		t.Fatalf("CONNACK reason 0x%02x", ci.reason)
	}
	return rc, ci
}

// connectRawV311 opens a raw connection and completes a 3.1.1 CONNECT.
func connectRawV311(t testing.TB, b *testBroker, clientID string) *rawClient {
	t.Helper()
	rc := dialRaw(t, b)
	rc.mustWrite(rawConnectV311(clientID))
	p := rc.mustRead(2)
	if len(p.body) != 2 || p.body[1] != 0 {
		t.Fatalf("3.1.1 CONNACK: %v", p)
	}
	return rc
}

// ---------------------------------------------------------------------------
// Broker health

// assertServing proves the broker still serves: a fresh MQTT 5 client
// connects and does a QoS 1 round trip through a subscription.
func assertServing(t testing.TB, b *testBroker) {
	t.Helper()
	topic := uniqueTopic("alive")
	c := connectV5(t, b, &paho.Connect{ClientID: uniqueID("alive"), CleanStart: true})
	c.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
	c.pub(topic, 1, false, "still serving")
	m := c.recvPayload(topic, "still serving")
	if m.QoS != 1 {
		t.Fatalf("health check: QoS %d, want 1", m.QoS)
	}
	c.disconnect()
}
