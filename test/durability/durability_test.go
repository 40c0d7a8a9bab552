// Package durability proves that state survives a broker crash: a real moat
// process is killed with SIGKILL mid-flow and restarted on the same data
// directory.
package durability

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

const waitTimeout = 20 * time.Second

var moatBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "moat-durability")
	if err != nil {
		panic(err)
	}
	moatBin = filepath.Join(dir, "moat")
	out, err := exec.Command("go", "build", "-o", moatBin, "moat/cmd/moat").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building moat: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// broker is a moat process on a data directory that outlives it.
type broker struct {
	t       *testing.T
	dataDir string
	cfg     string
	addr    string
	cmd     *exec.Cmd
	log     *bytes.Buffer
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func newBroker(t *testing.T, extra string) *broker {
	dir := t.TempDir()
	port := freePort(t)
	cfg := filepath.Join(dir, "moat.toml")
	text := fmt.Sprintf(`data_dir = %q
%s
[auth]
allow_anonymous = true

[[listener]]
type = "tcp"
address = "127.0.0.1:%d"

[log]
level = "debug"
`, filepath.Join(dir, "data"), extra, port)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &broker{t: t, dataDir: filepath.Join(dir, "data"), cfg: cfg, addr: "127.0.0.1:" + strconv.Itoa(port)}
	t.Cleanup(func() {
		if b.cmd != nil && b.cmd.ProcessState == nil {
			b.cmd.Process.Kill()
			b.cmd.Wait()
		}
		if t.Failed() && b.log != nil {
			t.Logf("broker log:\n%s", b.log.String())
		}
	})
	return b
}

// start runs the broker and waits until it accepts connections.
func (b *broker) start() {
	b.t.Helper()
	b.log = &bytes.Buffer{}
	b.cmd = exec.Command(moatBin, "serve", "--config", b.cfg)
	b.cmd.Stdout = b.log
	b.cmd.Stderr = b.log
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		// Only reports; Wait is called by kill/cleanup.
		for b.cmd.ProcessState == nil {
			select {
			case <-exited:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if c, err := net.DialTimeout("tcp", b.addr, time.Second); err == nil {
				c.Close()
				close(exited)
				return
			}
		}
	}()
	select {
	case <-exited:
	case <-time.After(waitTimeout):
		b.t.Fatalf("broker did not start listening on %s", b.addr)
	}
}

// kill sends SIGKILL and waits for the process to end.
func (b *broker) kill() {
	b.t.Helper()
	if err := b.cmd.Process.Kill(); err != nil {
		b.t.Fatal(err)
	}
	b.cmd.Wait()
}

// client is a paho.golang MQTT 5 client whose received messages land on a
// channel.
type client struct {
	c    *paho.Client
	msgs chan *paho.Publish
	conn net.Conn
}

func connect(t *testing.T, addr, id string, clean bool, expiry uint32, will *paho.WillMessage, willProps *paho.WillProperties) (*client, *paho.Connack) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	cl := &client{msgs: make(chan *paho.Publish, 10000), conn: conn}
	cl.c = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				cl.msgs <- pr.Packet
				return true, nil
			},
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ca, err := cl.c.Connect(ctx, &paho.Connect{
		ClientID:       id,
		CleanStart:     clean,
		KeepAlive:      60,
		Properties:     &paho.ConnectProperties{SessionExpiryInterval: &expiry, ReceiveMaximum: u16(1000)},
		WillMessage:    will,
		WillProperties: willProps,
	})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { conn.Close() })
	return cl, ca
}

func u16(v uint16) *uint16 { return &v }
func u32(v uint32) *uint32 { return &v }

func (cl *client) subscribe(t *testing.T, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	sa, err := cl.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil || sa.Reasons[0] >= 0x80 {
		t.Fatalf("subscribe %s: %v %v", filter, err, sa)
	}
}

func (cl *client) disconnect() {
	cl.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
}

// publishAll publishes n messages numbered 0..n-1 at qos from 8 goroutines
// and returns once every one is acknowledged.
func publishAll(t *testing.T, cl *client, topic string, qos byte, n int) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				r, err := cl.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(strconv.FormatInt(i, 10))})
				cancel()
				if err == nil && r != nil && r.ReasonCode >= 0x80 {
					err = fmt.Errorf("reason 0x%02x", r.ReasonCode)
				}
				if err != nil {
					errs <- fmt.Errorf("publish %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// collect receives until every number 0..n-1 has arrived and returns how
// many times each arrived; it fails on a timeout.
func collect(t *testing.T, cl *client, n int) map[int]int {
	t.Helper()
	seen := make(map[int]int, n)
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for len(seen) < n {
		select {
		case m := <-cl.msgs:
			i, err := strconv.Atoi(string(m.Payload))
			if err != nil {
				t.Fatalf("unexpected payload %q", m.Payload)
			}
			seen[i]++
		case <-timeout.C:
			t.Fatalf("received %d of %d distinct messages", len(seen), n)
		}
	}
	return seen
}

// noMore asserts nothing else arrives once the broker has answered a ping
// round trip on a fresh publish (an event, not a sleep).
func noMore(t *testing.T, sub *client, pub *client, topic string, seen map[int]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := pub.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("end")}); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case m := <-sub.msgs:
			if string(m.Payload) == "end" {
				return
			}
			i, _ := strconv.Atoi(string(m.Payload))
			seen[i]++
		case <-time.After(waitTimeout):
			t.Fatal("end marker not received")
		}
	}
}

func testCrash(t *testing.T, qos byte) {
	const n = 2000
	b := newBroker(t, "")
	b.start()
	topic := fmt.Sprintf("crash/q%d", qos)

	sub, _ := connect(t, b.addr, "sub", true, 3600, nil, nil)
	sub.subscribe(t, topic, qos)
	sub.disconnect()

	pub, _ := connect(t, b.addr, "pub", true, 0, nil, nil)
	publishAll(t, pub, topic, qos, n)
	// A retained message must survive too.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := pub.c.Publish(ctx, &paho.Publish{Topic: "crash/retained", QoS: 1, Retain: true, Payload: []byte("kept")}); err != nil {
		t.Fatal(err)
	}

	b.kill()
	b.start()

	sub, ca := connect(t, b.addr, "sub", false, 3600, nil, nil)
	if !ca.SessionPresent {
		t.Fatal("session not present after restart")
	}
	seen := collect(t, sub, n)
	pub, _ = connect(t, b.addr, "pub", true, 0, nil, nil)
	// The subscription survived: a new message arrives without
	// subscribing again.
	noMore(t, sub, pub, topic, seen)
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	if qos == 2 && dups > 0 {
		t.Fatalf("QoS 2: %d duplicates after restart", dups)
	}
	t.Logf("QoS %d: %d messages, %d duplicates after SIGKILL and restart", qos, n, dups)

	late, _ := connect(t, b.addr, "late", true, 0, nil, nil)
	late.subscribe(t, "crash/retained", 1)
	select {
	case m := <-late.msgs:
		if string(m.Payload) != "kept" || !m.Retain {
			t.Fatalf("retained after restart: %q retain=%v", m.Payload, m.Retain)
		}
	case <-time.After(waitTimeout):
		t.Fatal("retained message lost in the crash")
	}
}

func TestCrashQoS1(t *testing.T) { testCrash(t, 1) }
func TestCrashQoS2(t *testing.T) { testCrash(t, 2) }

// TestWillDelayAfterRestart: a client connected when the broker is killed
// counts as disconnected at the restart; its will, with a delay, fires
// after that delay because it does not come back.
func TestWillDelayAfterRestart(t *testing.T) {
	b := newBroker(t, "")
	b.start()
	watcher, _ := connect(t, b.addr, "watcher", false, 3600, nil, nil)
	watcher.subscribe(t, "wills/#", 1)

	delay := uint32(2)
	_, _ = connect(t, b.addr, "dev", false, 3600,
		&paho.WillMessage{Topic: "wills/dev", QoS: 1, Payload: []byte("gone")},
		&paho.WillProperties{WillDelayInterval: &delay})
	b.kill() // dev was connected: after the restart it counts as disconnected
	start := time.Now()
	b.start()
	watcher, _ = connect(t, b.addr, "watcher", false, 3600, nil, nil)
	select {
	case m := <-watcher.msgs:
		if string(m.Payload) != "gone" {
			t.Fatalf("unexpected %q", m.Payload)
		}
		if el := time.Since(start); el < time.Second {
			t.Fatalf("will fired after %v, before its delay", el)
		}
	case <-time.After(waitTimeout):
		t.Fatal("delayed will did not fire after restart")
	}
}

func TestCorruptStoreRefused(t *testing.T) {
	b := newBroker(t, "")
	if err := os.MkdirAll(b.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(b.dataDir, "moat.db")
	garbage := bytes.Repeat([]byte("not a database "), 1000)
	if err := os.WriteFile(db, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(moatBin, "serve", "--config", b.cfg).CombinedOutput()
	if err == nil {
		t.Fatal("broker started on a corrupt store")
	}
	if !bytes.Contains(out, []byte(db)) {
		t.Fatalf("error does not name the file:\n%s", out)
	}
	after, _ := os.ReadFile(db)
	if !bytes.Equal(after, garbage) {
		t.Fatal("corrupt store file was modified")
	}
}
