// Package integration drives a real broker with MQTT clients that moat did
// not write: paho.golang (MQTT 5), paho.mqtt.golang (MQTT 3.1.1),
// mosquitto_pub / mosquitto_sub, and hand-written raw packets.
//
// By default the tests run against moat (internal/brokertest). With
// MOAT_TEST_BROKER=mosquitto they run against the mosquitto binary instead;
// that mode exists to prove that the expectations written here are correct
// MQTT behaviour, and the few places where mosquitto legitimately differs
// from what moat must do are skipped or relaxed there (see mosquittoMode).
package integration

import (
	"bytes"
	"flag"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/brokertest"
	"moat/internal/config"
)

// minParallel is the default -test.parallel of this package. Its tests
// spend their time waiting on the network and on protocol timers (will
// delay, message expiry, $SYS interval), not on the CPU, so running more
// of them at once than there are CPUs keeps the package fast.
const minParallel = 16

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if p := flag.Lookup("test.parallel"); !explicit && p != nil {
		if n, _ := strconv.Atoi(p.Value.String()); n < minParallel {
			_ = p.Value.Set(strconv.Itoa(minParallel))
		}
	}
	os.Exit(m.Run())
}

// testBroker is a running broker, moat or mosquitto.
type testBroker struct {
	Addr  string // host:port, MQTT over TCP
	WSURL string // ws://host:port/mqtt, MQTT over WebSocket

	stop func()
	once sync.Once
}

// Stop stops the broker. It is also called at test cleanup; calling it
// more than once is fine.
func (b *testBroker) Stop() { b.once.Do(b.stop) }

// mosquittoMode reports whether the suite runs against the mosquitto binary.
func mosquittoMode() bool { return os.Getenv("MOAT_TEST_BROKER") == "mosquitto" }

// skipOnMosquitto skips the test in mosquitto mode; reason says where
// mosquitto differs from what moat must do.
func skipOnMosquitto(t testing.TB, reason string) {
	t.Helper()
	if mosquittoMode() {
		t.Skip("mosquitto differs: " + reason)
	}
}

// startBroker starts a broker for one test and stops it at cleanup. Options
// configure moat; in mosquitto mode the ones mosquitto can express
// (MQTT.MaxPacketSize, MQTT.TopicAliasMaximum) are translated and any other
// option skips the test.
func startBroker(t *testing.T, opts ...brokertest.Option) *testBroker {
	t.Helper()
	if !mosquittoMode() {
		b := brokertest.Start(t, opts...)
		tb := &testBroker{Addr: b.Addr, WSURL: b.WSURL, stop: b.Stop}
		t.Cleanup(tb.Stop)
		return tb
	}
	extra := mosquittoOptions(t, opts)
	return startMosquitto(t, extra)
}

// withMaxPacketSize limits the size of packets the broker accepts.
func withMaxPacketSize(n uint32) brokertest.Option {
	return func(c *config.Config) { c.MQTT.MaxPacketSize = n }
}

// withTopicAliasMaximum sets the Topic Alias Maximum the broker grants.
func withTopicAliasMaximum(n uint16) brokertest.Option {
	return func(c *config.Config) { c.MQTT.TopicAliasMaximum = n }
}

// mosquittoOptions translates options into mosquitto.conf lines, skipping
// the test when an option has no mosquitto equivalent. Options are applied
// to a zero config.Config to see what they change, so an option must only
// set fields, not read moat's defaults.
func mosquittoOptions(t *testing.T, opts []brokertest.Option) []string {
	t.Helper()
	if len(opts) == 0 {
		return nil
	}
	var c config.Config
	for _, o := range opts {
		o(&c)
	}
	var lines []string
	if v := fmt.Sprint(c.MQTT.MaxPacketSize); v != "0" {
		lines = append(lines, "max_packet_size "+v)
		c.MQTT.MaxPacketSize = 0
	}
	if v := fmt.Sprint(c.MQTT.TopicAliasMaximum); v != "0" {
		lines = append(lines, "max_topic_alias "+v)
		c.MQTT.TopicAliasMaximum = 0
	}
	if !reflect.DeepEqual(c, config.Config{}) {
		t.Skip("mosquitto mode: broker options without a mosquitto equivalent")
	}
	return lines
}

// startMosquitto runs the mosquitto binary on free loopback ports.
func startMosquitto(t *testing.T, extra []string) *testBroker {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		// PATH of non-root users often lacks /usr/sbin.
		if _, serr := os.Stat("/usr/sbin/mosquitto"); serr != nil {
			t.Fatalf("MOAT_TEST_BROKER=mosquitto needs the mosquitto binary (apt-get install mosquitto): %v", err)
		}
		bin = "/usr/sbin/mosquitto"
	}
	// Free ports are found by binding :0 and releasing; another process may
	// grab one in between, so a start that fails is retried on new ports.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		b, err := tryStartMosquitto(t, bin, extra)
		if err == nil {
			return b
		}
		lastErr = err
	}
	t.Fatalf("mosquitto did not start: %v", lastErr)
	return nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func tryStartMosquitto(t *testing.T, bin string, extra []string) (*testBroker, error) {
	port, wsPort := freePort(t), freePort(t)
	conf := []string{
		fmt.Sprintf("listener %d 127.0.0.1", port),
		fmt.Sprintf("listener %d 127.0.0.1", wsPort),
		"protocol websockets",
		"allow_anonymous true",
		"persistence false",
		"set_tcp_nodelay true",
		// $SYS is refreshed every second (default 10s) so that tests
		// waiting for a periodic $SYS update stay short.
		"sys_interval 1",
		"log_dest stderr",
		"log_type error",
		"log_type warning",
		"log_type notice",
		"log_type information",
	}
	conf = append(conf, extra...)
	path := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out lockedBuffer
	cmd := exec.Command(bin, "-c", path)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	kill := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	wsAddr := fmt.Sprintf("127.0.0.1:%d", wsPort)
	// Ready when mosquitto has logged that it runs (all listeners bound;
	// a failed bind makes it exit instead) and both ports accept.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), " running") {
		select {
		case <-exited:
			return nil, fmt.Errorf("mosquitto exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			kill()
			return nil, fmt.Errorf("mosquitto not running after 10s:\n%s", out.String())
		}
		// Poll interval while a child process starts.
		time.Sleep(5 * time.Millisecond)
	}
	for _, a := range []string{addr, wsAddr} {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			kill()
			return nil, fmt.Errorf("mosquitto not accepting on %s: %v\n%s", a, err, out.String())
		}
		c.Close()
	}
	b := &testBroker{
		Addr:  addr,
		WSURL: fmt.Sprintf("ws://%s/mqtt", wsAddr),
		stop:  kill,
	}
	t.Cleanup(func() {
		b.Stop()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", out.String())
		}
	})
	return b, nil
}

// freePort returns a port that was free a moment ago, chosen below the
// usual ephemeral range (32768+) so that outgoing connections of parallel
// tests do not take it in the meantime.
func freePort(t *testing.T) int {
	t.Helper()
	for range 100 {
		port := 20000 + mathrand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatal("no free port found")
	return 0
}
