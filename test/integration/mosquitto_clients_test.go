package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// The mosquitto_pub / mosquitto_sub command line clients (Debian package
// mosquitto-clients) against the broker, in MQTT 3.1.1 and 5.

var cliVersions = []string{"mqttv311", "mqttv5"}

func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (%v): install the mosquitto-clients package (apt-get install mosquitto-clients)", name, err)
	}
	return p
}

func hostPort(t *testing.T, b *testBroker) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// cliMsg is one message printed by mosquitto_sub with cliFormat.
type cliMsg struct {
	topic, qos, retain, payload string
}

const cliFormat = "MSG|%t|%q|%r|%p"

func parseCLIMsg(line string) (cliMsg, bool) {
	rest, ok := strings.CutPrefix(line, "MSG|")
	if !ok {
		return cliMsg{}, false
	}
	f := strings.SplitN(rest, "|", 4)
	if len(f) != 4 {
		return cliMsg{}, false
	}
	return cliMsg{topic: f[0], qos: f[1], retain: f[2], payload: f[3]}, true
}

// cliSub is a running mosquitto_sub whose printed messages arrive on msgs.
type cliSub struct {
	t      *testing.T
	cmd    *exec.Cmd
	msgs   chan cliMsg
	done   chan struct{}
	stderr bytes.Buffer
	mu     sync.Mutex
	all    []cliMsg
}

// startSub runs mosquitto_sub with args plus connection and format flags.
// mosquitto_sub flushes stdout after each message (and only then), so a
// test learns that it is subscribed from a message: see readyTopic.
func startSub(t *testing.T, b *testBroker, version string, args ...string) *cliSub {
	t.Helper()
	bin := requireTool(t, "mosquitto_sub")
	host, port := hostPort(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	t.Cleanup(cancel)
	full := append([]string{"-h", host, "-p", port, "-V", version, "-F", cliFormat, "-W", "10"}, args...)
	s := &cliSub{t: t, msgs: make(chan cliMsg, 100), done: make(chan struct{})}
	s.cmd = exec.CommandContext(ctx, bin, full...)
	s.cmd.Stderr = &s.stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("mosquitto_sub: %v", err)
	}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m, ok := parseCLIMsg(sc.Text()); ok {
				s.mu.Lock()
				s.all = append(s.all, m)
				s.mu.Unlock()
				s.msgs <- m
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
		_ = s.cmd.Wait()
	})
	return s
}

// next waits for the next printed message.
func (s *cliSub) next() cliMsg {
	s.t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-s.done:
		select {
		case m := <-s.msgs:
			return m
		default:
		}
		s.t.Fatalf("mosquitto_sub exited without the expected message; stderr: %s", s.stderr.String())
	case <-time.After(waitTimeout):
		s.t.Fatal("mosquitto_sub printed no message in time")
	}
	return cliMsg{}
}

// wait waits for mosquitto_sub to exit (after -C messages) and checks
// that it exited cleanly.
func (s *cliSub) wait() {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(2 * waitTimeout):
		s.t.Fatal("mosquitto_sub did not exit")
	}
	if err := s.cmd.Wait(); err != nil {
		s.t.Fatalf("mosquitto_sub: %v; stderr: %s", err, s.stderr.String())
	}
}

// runCLI runs mosquitto_pub or mosquitto_sub to completion.
func runCLI(t *testing.T, b *testBroker, tool, version string, stdin string, args ...string) string {
	t.Helper()
	bin := requireTool(t, tool)
	host, port := hostPort(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	full := append([]string{"-h", host, "-p", port, "-V", version}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(full, " "), err, out)
	}
	return string(out)
}

// readyTopic publishes a retained marker on a fresh topic. A mosquitto_sub
// that subscribes to its real topics first and to this one last prints the
// marker once its subscriptions are in place.
func readyTopic(t *testing.T, b *testBroker, version string) string {
	t.Helper()
	topic := uniqueTopic("ready")
	runCLI(t, b, "mosquitto_pub", version, "", "-t", topic, "-m", "ready", "-q", "1", "-r")
	return topic
}

func (s *cliSub) waitReady(topic string) {
	s.t.Helper()
	if m := s.next(); m.topic != topic || m.payload != "ready" {
		s.t.Fatalf("mosquitto_sub: first message %+v, want the ready marker", m)
	}
}

func TestMosquittoClientsQoS(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	for _, v := range cliVersions {
		for _, qos := range []string{"0", "1", "2"} {
			t.Run(v+"_qos"+qos, func(t *testing.T) {
				t.Parallel()
				topic := uniqueTopic("cli")
				ready := readyTopic(t, b, v)
				sub := startSub(t, b, v, "-q", qos, "-t", topic, "-t", ready, "-C", "4")
				sub.waitReady(ready)
				runCLI(t, b, "mosquitto_pub", v, "", "-t", topic, "-q", qos, "-m", "hello "+v)
				runCLI(t, b, "mosquitto_pub", v, "line one\nline two\n", "-t", topic, "-q", qos, "-l")
				for _, want := range []string{"hello " + v, "line one", "line two"} {
					m := sub.next()
					if m != (cliMsg{topic: topic, qos: qos, retain: "0", payload: want}) {
						t.Fatalf("mosquitto_sub got %+v, want %q on %q at qos %s, not retained", m, want, topic, qos)
					}
				}
				sub.wait()
			})
		}
	}
}

func TestMosquittoClientsRetained(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	for _, v := range cliVersions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			topic := uniqueTopic("cliret")
			runCLI(t, b, "mosquitto_pub", v, "", "-t", topic, "-q", "1", "-r", "-m", "stored")

			// A new subscriber gets it at once, flagged retained.
			out := runCLI(t, b, "mosquitto_sub", v, "", "-t", topic, "-q", "1", "-C", "1", "-W", "10", "-F", cliFormat)
			m, ok := parseCLIMsg(strings.TrimSpace(out))
			if !ok || m != (cliMsg{topic: topic, qos: "1", retain: "1", payload: "stored"}) {
				t.Fatalf("retained on subscribe: %q", out)
			}

			// -r -n clears it: a new subscriber sees the live sentinel and
			// nothing before it.
			runCLI(t, b, "mosquitto_pub", v, "", "-t", topic, "-q", "1", "-r", "-n")
			ready := readyTopic(t, b, v)
			sub := startSub(t, b, v, "-q", "1", "-t", topic, "-t", ready, "-C", "2")
			sub.waitReady(ready)
			runCLI(t, b, "mosquitto_pub", v, "", "-t", topic, "-q", "1", "-m", "sentinel")
			if m := sub.next(); m != (cliMsg{topic: topic, qos: "1", retain: "0", payload: "sentinel"}) {
				t.Fatalf("after clearing the retained message, got %+v before the sentinel", m)
			}
			sub.wait()
		})
	}
}

func TestMosquittoClientsPersistentSession(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	for _, v := range cliVersions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			topic := uniqueTopic("clisess")
			id := uniqueID("clis")
			session := []string{"-c", "-i", id, "-q", "1", "-t", topic}
			if v == "mqttv5" {
				session = append(session, "-x", "300")
			}
			// Subscribe, then exit once the SUBACK is in.
			runCLI(t, b, "mosquitto_sub", v, "", append(session, "-E")...)
			// Publish while the client is offline.
			runCLI(t, b, "mosquitto_pub", v, "offline-1\noffline-2\noffline-3\n", "-t", topic, "-q", "1", "-l")
			out := runCLI(t, b, "mosquitto_sub", v, "", append(session, "-C", "3", "-W", "10", "-F", cliFormat)...)
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				m, ok := parseCLIMsg(l)
				if !ok {
					t.Fatalf("unexpected output line %q", l)
				}
				if m.topic != topic || m.qos != "1" {
					t.Errorf("queued message %+v, want topic %q qos 1", m, topic)
				}
				got = append(got, m.payload)
			}
			if want := "offline-1,offline-2,offline-3"; strings.Join(got, ",") != want {
				t.Fatalf("queued messages %v, want %s", got, want)
			}
		})
	}
}

// mosquitto_pub and a paho subscriber agree on QoS, flags and payload
// bytes.
func TestMosquittoPubToPaho(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	for _, v := range cliVersions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			topic := uniqueTopic("clipaho")
			sub := connectV3(t, b, uniqueID("sub"), v3Opts{clean: true})
			sub.subscribe(topic, 2)
			runCLI(t, b, "mosquitto_pub", v, "", "-t", topic, "-q", "2", "-m", fmt.Sprintf("from %s", v))
			if m := sub.recv(); m.topic != topic || m.payload != "from "+v || m.qos != 2 || m.retained {
				t.Fatalf("paho got %+v", m)
			}
		})
	}
}
