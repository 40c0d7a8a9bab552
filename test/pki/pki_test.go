// Package pki drives the built-in CA end to end: the `moat pki` commands,
// certificates checked by openssl and used by mosquitto clients, live
// revocation, the served CRL, server certificate renewal and the first run.
package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

const waitTimeout = 20 * time.Second

var moatBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "moat-pki-test")
	if err != nil {
		panic(err)
	}
	moatBin = filepath.Join(dir, "moat")
	if out, err := exec.Command("go", "build", "-o", moatBin, "moat/cmd/moat").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building moat: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func need(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not found: install mosquitto-clients and openssl (scripts/test.sh does)", b)
		}
	}
}

// run runs a command in dir and returns its combined output.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func tryRun(dir string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// broker is a moat process.
type broker struct {
	cmd *exec.Cmd
	out *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startMoat starts `moat serve args...` in dir and waits until addr accepts
// connections.
func startMoat(t *testing.T, dir, addr string, args ...string) *broker {
	t.Helper()
	b := &broker{out: &syncBuffer{}}
	b.cmd = exec.Command(moatBin, append([]string{"serve"}, args...)...)
	b.cmd.Dir = dir
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.stop()
		if t.Failed() {
			t.Logf("broker output:\n%s", b.out.String())
		}
	})
	deadline := time.Now().Add(waitTimeout)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker not listening on %s:\n%s", addr, b.out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling a child process's port
	}
}

func (b *broker) stop() {
	if b.cmd.ProcessState == nil {
		b.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { b.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			b.cmd.Process.Kill()
			<-done
		}
	}
}

// setupCA makes a CA with the CLI, a server certificate and clients.
func setupCA(t *testing.T, dir, crlURL string, clients ...string) {
	t.Helper()
	run(t, dir, moatBin, "pki", "init", "--data-dir", "data", "--crl-url", crlURL)
	run(t, dir, moatBin, "pki", "issue", "server", "--data-dir", "data", "--dns", "localhost", "--ip", "127.0.0.1", "--out", ".")
	for _, c := range clients {
		run(t, dir, moatBin, "pki", "issue", "client", c, "--data-dir", "data", "--out", ".")
	}
}

func writeConfig(t *testing.T, dir, tlsAddr, crlAddr, pkiExtra string) string {
	t.Helper()
	p := filepath.Join(dir, "moat.toml")
	cfg := fmt.Sprintf(`data_dir = "data"

[[listener]]
type = "tls"
address = %q
[listener.tls]
cert = "server.chain.pem"
key = "server.key"
client_auth = "required"
client_ca = ["data/pki/root.pem"]

[pki]
crl_address = %q
revocation_interval = "200ms"
%s

[log]
level = "debug"
`, tlsAddr, crlAddr, pkiExtra)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// serialOf returns the serial `moat pki list` prints for a subject.
func serialOf(t *testing.T, dir, cn string) string {
	out := run(t, dir, moatBin, "pki", "list", "--data-dir", "data")
	for _, l := range strings.Split(out, "\n") {
		if strings.HasSuffix(l, "CN="+cn) {
			return strings.Fields(l)[0]
		}
	}
	t.Fatalf("no certificate for %s in:\n%s", cn, out)
	return ""
}

func TestIssuedCertificates(t *testing.T) {
	need(t, "openssl", "mosquitto_pub", "mosquitto_sub")
	dir := t.TempDir()
	tlsAddr, crlAddr := freeAddr(t), freeAddr(t)
	setupCA(t, dir, "http://"+crlAddr+"/pki/crl", "dev-1")

	// openssl accepts the chains and shows the expected extensions.
	run(t, dir, "openssl", "verify", "-CAfile", "data/pki/root.pem", "server.chain.pem")
	run(t, dir, "openssl", "verify", "-CAfile", "data/pki/root.pem", "-purpose", "sslclient", "dev-1.chain.pem")
	srv := run(t, dir, "openssl", "x509", "-in", "server.pem", "-noout", "-text")
	cli := run(t, dir, "openssl", "x509", "-in", "dev-1.pem", "-noout", "-text")
	for _, want := range []string{"TLS Web Server Authentication", "Digital Signature", "DNS:localhost", "IP Address:127.0.0.1", "URI:http://" + crlAddr + "/pki/crl", "CA:FALSE"} {
		if !strings.Contains(srv, want) {
			t.Errorf("server certificate lacks %q:\n%s", want, srv)
		}
	}
	for _, want := range []string{"TLS Web Client Authentication", "Digital Signature", "CN = dev-1", "URI:http://" + crlAddr + "/pki/crl"} {
		if !strings.Contains(cli, want) {
			t.Errorf("client certificate lacks %q:\n%s", want, cli)
		}
	}

	// A device that makes its own key: a CSR from openssl req.
	run(t, dir, "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-subj", "/CN=dev-9", "-keyout", "dev-9.key", "-out", "dev-9.csr")
	run(t, dir, moatBin, "pki", "sign", "dev-9.csr", "--data-dir", "data", "--cn", "dev-9", "--out", "dev-9.pem")
	run(t, dir, "openssl", "verify", "-CAfile", "data/pki/root.pem", "-purpose", "sslclient", "dev-9.pem")

	cfg := writeConfig(t, dir, tlsAddr, crlAddr, "")
	startMoat(t, dir, tlsAddr, "--config", cfg)
	host, port, _ := net.SplitHostPort(tlsAddr)
	for _, dev := range []struct{ cert, key string }{{"dev-1.chain.pem", "dev-1.key"}, {"dev-9.pem", "dev-9.key"}} {
		tls := []string{"-h", host, "-p", port, "--cafile", "data/pki/root.pem", "--cert", dev.cert, "--key", dev.key}
		topic := "devices/" + dev.key
		run(t, dir, "mosquitto_pub", append(tls, "-t", topic, "-m", "hello", "-q", "1", "-r")...)
		if out := run(t, dir, "mosquitto_sub", append(tls, "-t", topic, "-C", "1", "-W", "10")...); strings.TrimSpace(out) != "hello" {
			t.Fatalf("%s: mosquitto_sub got %q", dev.cert, out)
		}
	}
	// Without a client certificate: refused on this "required" listener.
	if out, err := tryRun(dir, "mosquitto_pub", "-h", host, "-p", port, "--cafile", "data/pki/root.pem", "-t", "x", "-m", "x"); err == nil {
		t.Fatalf("a client without a certificate got in:\n%s", out)
	}
}

func TestRevocationEndToEnd(t *testing.T) {
	need(t, "openssl", "mosquitto_pub")
	dir := t.TempDir()
	tlsAddr, crlAddr := freeAddr(t), freeAddr(t)
	setupCA(t, dir, "http://"+crlAddr+"/pki/crl", "dev-1", "dev-2")
	cfg := writeConfig(t, dir, tlsAddr, crlAddr, "")
	startMoat(t, dir, tlsAddr, "--config", cfg)

	// dev-2 holds a live MQTT 5 session.
	pool := x509.NewCertPool()
	root, _ := os.ReadFile(filepath.Join(dir, "data/pki/root.pem"))
	pool.AppendCertsFromPEM(root)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "dev-2.chain.pem"), filepath.Join(dir, "dev-2.key"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gone := make(chan byte, 1)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnServerDisconnect: func(d *paho.Disconnect) { gone <- d.ReasonCode }})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "dev-2", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}

	serial := serialOf(t, dir, "dev-2")
	start := time.Now()
	run(t, dir, moatBin, "pki", "revoke", serial, "--reason", "keyCompromise", "--data-dir", "data")
	select {
	case code := <-gone:
		if code != 0x98 {
			t.Fatalf("DISCONNECT reason 0x%02x, want 0x98", code)
		}
		if el := time.Since(start); el > time.Second {
			t.Fatalf("revoked session closed after %v, want within a second", el)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the live session of the revoked certificate was not closed")
	}

	// It cannot come back; dev-1 still can.
	host, port, _ := net.SplitHostPort(tlsAddr)
	args := func(dev string) []string {
		return []string{"-h", host, "-p", port, "--cafile", "data/pki/root.pem", "--cert", dev + ".chain.pem", "--key", dev + ".key", "-t", "x", "-m", "x", "-V", "mqttv5"}
	}
	if out, err := tryRun(dir, "mosquitto_pub", args("dev-2")...); err == nil {
		t.Fatalf("revoked certificate reconnected:\n%s", out)
	}
	run(t, dir, "mosquitto_pub", args("dev-1")...)

	// The CRL served at the distribution point lists it.
	resp, err := http.Get("http://" + crlAddr + "/pki/crl")
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("CRL: HTTP %d", resp.StatusCode)
	}
	crlFile := filepath.Join(dir, "fetched.crl")
	os.WriteFile(crlFile, der, 0o644)
	text := run(t, dir, "openssl", "crl", "-inform", "DER", "-in", crlFile, "-noout", "-text")
	if !strings.Contains(strings.ToUpper(text), strings.ReplaceAll(serial, ":", "")) || !strings.Contains(text, "Key Compromise") {
		t.Fatalf("served CRL does not list %s (keyCompromise):\n%s", serial, text)
	}
}

// TestServerCertificateRenewal: a server certificate from the built-in CA
// that is about to expire is renewed and reloaded while clients keep
// connecting.
func TestServerCertificateRenewal(t *testing.T) {
	dir := t.TempDir()
	tlsAddr, crlAddr := freeAddr(t), freeAddr(t)
	run(t, dir, moatBin, "pki", "init", "--data-dir", "data", "--crl-url", "http://"+crlAddr+"/pki/crl")
	run(t, dir, moatBin, "pki", "issue", "server", "--data-dir", "data", "--dns", "localhost", "--validity", "8s", "--out", ".")
	run(t, dir, moatBin, "pki", "issue", "client", "dev-1", "--data-dir", "data", "--out", ".")
	cfg := writeConfig(t, dir, tlsAddr, crlAddr, "renew_before = \"5s\"\nrenew_interval = \"1s\"")
	startMoat(t, dir, tlsAddr, "--config", cfg)

	pool := x509.NewCertPool()
	root, _ := os.ReadFile(filepath.Join(dir, "data/pki/root.pem"))
	pool.AppendCertsFromPEM(root)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "dev-1.chain.pem"), filepath.Join(dir, "dev-1.key"))
	if err != nil {
		t.Fatal(err)
	}
	serials := map[string]bool{}
	deadline := time.Now().Add(12 * time.Second)
	for time.Now().Before(deadline) {
		conn, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "localhost"})
		if err != nil {
			t.Fatalf("handshake failed across renewal (serials seen %v): %v", serials, err)
		}
		leaf := conn.ConnectionState().PeerCertificates[0]
		serials[leaf.SerialNumber.String()] = true
		c := paho.NewClient(paho.ClientConfig{Conn: conn})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = c.Connect(ctx, &paho.Connect{ClientID: "dev-1", CleanStart: true, KeepAlive: 30})
		cancel()
		if err != nil {
			t.Fatalf("CONNECT failed across renewal: %v", err)
		}
		c.Disconnect(&paho.Disconnect{})
		conn.Close()
		if len(serials) >= 2 && time.Until(leaf.NotAfter) > time.Hour {
			return // renewed, and the new certificate is being served
		}
		time.Sleep(250 * time.Millisecond) // pacing of the client loop
	}
	t.Fatalf("server certificate not renewed (serials seen: %d)", len(serials))
}

// TestFirstRun: with an empty data directory, `moat serve` sets up TLS and
// prints commands that work as printed; a second run reuses what the first
// made.
func TestFirstRun(t *testing.T) {
	need(t, "mosquitto_pub", "mosquitto_sub")
	dir := t.TempDir()
	tlsAddr, plainAddr, crlAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	args := []string{"--data-dir", "fresh", "--tls-address", tlsAddr, "--plain-address", plainAddr, "--crl-address", crlAddr, "--admin-address", freeAddr(t)}
	b := startMoat(t, dir, tlsAddr, args...)
	out := b.out.String()
	if !strings.Contains(out, "First run") {
		t.Fatalf("no first-run report:\n%s", out)
	}
	var cmds [][]string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "moat device ") || strings.HasPrefix(l, "mosquitto_") {
			cmds = append(cmds, shellSplit(l))
		}
	}
	if len(cmds) != 4 {
		t.Fatalf("expected 4 commands, got %d:\n%s", len(cmds), out)
	}
	// 1, 2: add the devices.
	run(t, dir, moatBin, cmds[0][1:]...)
	run(t, dir, moatBin, cmds[1][1:]...)
	cmds = cmds[1:]
	// 3: the subscriber, in the background; 4: the publisher, repeated
	// until the subscriber has its message (it may not be subscribed yet).
	sub := exec.Command(cmds[1][0], cmds[1][1:]...)
	sub.Dir = dir
	subOut := &syncBuffer{}
	sub.Stdout, sub.Stderr = subOut, subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	subDone := make(chan error, 1)
	go func() { subDone <- sub.Wait() }()
	deadline := time.After(waitTimeout)
	for got := false; !got; {
		run(t, dir, cmds[2][0], cmds[2][1:]...)
		select {
		case err := <-subDone:
			if err != nil {
				t.Fatalf("mosquitto_sub: %v\n%s", err, subOut.String())
			}
			got = true
		case <-time.After(300 * time.Millisecond):
		case <-deadline:
			sub.Process.Kill()
			t.Fatalf("mosquitto_sub got nothing:\n%s", subOut.String())
		}
	}
	if !strings.Contains(subOut.String(), "devices/dev-1/hello hello") {
		t.Fatalf("mosquitto_sub printed %q", subOut.String())
	}
	// Anonymous clients: refused over TLS, allowed on the loopback port.
	th, tp, _ := net.SplitHostPort(tlsAddr)
	if o, err := tryRun(dir, "mosquitto_pub", "-h", th, "-p", tp, "--cafile", "fresh/pki/root.pem", "-t", "x", "-m", "x"); err == nil {
		t.Fatalf("anonymous client accepted over TLS:\n%s", o)
	}
	ph, pp, _ := net.SplitHostPort(plainAddr)
	run(t, dir, "mosquitto_pub", "-h", ph, "-p", pp, "-t", "x", "-m", "x")

	rootBefore, _ := os.ReadFile(filepath.Join(dir, "fresh/pki/root.pem"))
	b.stop()
	b2 := startMoat(t, dir, tlsAddr, args...)
	if strings.Contains(b2.out.String(), "First run") {
		t.Fatal("second run created things again")
	}
	rootAfter, _ := os.ReadFile(filepath.Join(dir, "fresh/pki/root.pem"))
	if !bytes.Equal(rootBefore, rootAfter) {
		t.Fatal("second run replaced the CA")
	}
	run(t, dir, cmds[2][0], cmds[2][1:]...) // the device certificate still works
}

var shellWord = regexp.MustCompile(`'[^']*'|\S+`)

// shellSplit splits a printed command line (single quotes only).
func shellSplit(s string) []string {
	var out []string
	for _, w := range shellWord.FindAllString(s, -1) {
		out = append(out, strings.Trim(w, "'"))
	}
	return out
}
