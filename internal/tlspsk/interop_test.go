package tlspsk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests drive programs we did not write: openssl s_client/s_server
// and mosquitto_pub. They are skipped when the programs are missing.

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed", name)
	}
	return p
}

// syncBuffer is a bytes.Buffer safe for a writer process and a reader test.
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

var opensslTLS12Suites = []struct {
	id   uint16
	name string
}{
	{TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256, "ECDHE-PSK-CHACHA20-POLY1305"},
	{TLS_PSK_WITH_AES_128_GCM_SHA256, "PSK-AES128-GCM-SHA256"},
	{TLS_PSK_WITH_AES_256_GCM_SHA384, "PSK-AES256-GCM-SHA384"},
	{TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, "PSK-CHACHA20-POLY1305"},
	{TLS_PSK_WITH_AES_128_CCM, "PSK-AES128-CCM"},
	{TLS_PSK_WITH_AES_128_CCM_8, "PSK-AES128-CCM8"},
}

// serveOnce accepts one connection on a loopback listener, runs the
// handshake and an echo of one line, and reports the result.
type serveResult struct {
	err    error
	state  State
	didHRR bool
}

func serveOnce(t *testing.T, cfg *Config) (addr string, result <-chan serveResult) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	res := make(chan serveResult, 1)
	go func() {
		var c *Conn
		var err error
		defer func() {
			r := serveResult{err: err}
			if c != nil {
				r.state, r.didHRR = c.ConnectionState(), c.didHRR
			}
			res <- r
		}()
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		c = Server(nc, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err = c.Handshake(ctx); err != nil {
			return
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		var line string
		if line, err = bufio.NewReader(c).ReadString('\n'); err != nil {
			err = fmt.Errorf("read: %w", err)
			return
		}
		if _, err = fmt.Fprintf(c, "echo %s", line); err != nil {
			err = fmt.Errorf("write: %w", err)
			return
		}
		err = c.Close()
	}()
	return ln.Addr().String(), res
}

func runSClient(t *testing.T, addr string, args ...string) (stdout string, err error) {
	openssl := needTool(t, "openssl")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	base := []string{"s_client", "-connect", addr, "-psk", hex.EncodeToString(testKey), "-psk_identity", testIdentity}
	cmd := exec.CommandContext(ctx, openssl, append(base, args...)...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "hello from openssl\n")
	err = cmd.Wait()
	stdin.Close()
	return out.String(), err
}

func TestInteropOpenSSLClient(t *testing.T) {
	needTool(t, "openssl")
	type tc struct {
		name  string
		args  []string
		suite uint16
		vers  uint16
	}
	cases := []tc{{"tls13", []string{"-tls1_3"}, TLS_AES_128_GCM_SHA256, VersionTLS13}}
	cases = append(cases, tc{"tls13-chacha", []string{"-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"}, TLS_CHACHA20_POLY1305_SHA256, VersionTLS13})
	cases = append(cases, tc{"tls13-hrr", []string{"-tls1_3", "-groups", "P-256:X25519"}, TLS_AES_128_GCM_SHA256, VersionTLS13})
	for _, s := range opensslTLS12Suites {
		cases = append(cases, tc{"tls12-" + s.name, []string{"-tls1_2", "-cipher", s.name}, s.id, VersionTLS12})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := &Config{Keys: testStore(), CipherSuites: allSuites()}
			if c.name == "tls13-hrr" {
				cfg.CurvePreferences = []CurveID{X25519} // the client's first share is P-256
			}
			addr, res := serveOnce(t, cfg)
			out, err := runSClient(t, addr, c.args...)
			r := <-res
			if r.err != nil {
				t.Fatalf("server: %v\nopenssl: %v\n%s", r.err, err, out)
			}
			if r.state.Version != c.vers || r.state.CipherSuite != c.suite || r.state.Identity != testIdentity {
				t.Fatalf("negotiated %+v, want version %x suite %s", r.state, c.vers, CipherSuiteName(c.suite))
			}
			if r.didHRR != (c.name == "tls13-hrr") {
				t.Fatalf("HelloRetryRequest sent: %v", r.didHRR)
			}
			if !strings.Contains(out, "echo hello from openssl") {
				t.Fatalf("no echo in s_client output (%v):\n%s", err, out)
			}
		})
	}
	t.Run("wrong-key", func(t *testing.T) {
		for _, args := range [][]string{{"-tls1_3"}, {"-tls1_2", "-cipher", "PSK-AES128-GCM-SHA256"}, {"-tls1_2", "-cipher", "ECDHE-PSK-CHACHA20-POLY1305"}} {
			addr, res := serveOnce(t, &Config{Keys: KeyStoreFunc(func(string) ([]byte, bool) { return []byte("other key"), true })})
			out, _ := runSClient(t, addr, args...)
			if r := <-res; !errors.Is(r.err, ErrBadKey) {
				t.Fatalf("%v: server error %v, want ErrBadKey\n%s", args, r.err, out)
			}
			if strings.Contains(out, "echo hello") {
				t.Fatalf("%v: data went through with a wrong key", args)
			}
		}
	})
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startSServer starts openssl s_server and waits for its ACCEPT line.
func startSServer(t *testing.T, args ...string) (addr string, stdin io.WriteCloser, out *syncBuffer, done <-chan error) {
	openssl := needTool(t, "openssl")
	addr = freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	base := []string{"s_server", "-accept", addr, "-naccept", "1", "-nocert",
		"-psk", hex.EncodeToString(testKey), "-psk_identity", testIdentity, "-psk_hint", "moat"}
	cmd := exec.CommandContext(ctx, openssl, append(base, args...)...)
	pr, pw := io.Pipe()
	out = &syncBuffer{}
	cmd.Stdout = io.MultiWriter(out, pw)
	cmd.Stderr = out
	stdin, _ = cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	d := make(chan error, 1)
	go func() { d <- cmd.Wait(); pw.Close() }()
	t.Cleanup(func() { cancel(); <-d })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		found := false
		for sc.Scan() {
			if !found && strings.Contains(sc.Text(), "ACCEPT") {
				found = true
				ready <- true
			}
		}
		if !found {
			ready <- false
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("s_server did not start:\n%s", out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("s_server not ready:\n%s", out.String())
	}
	return addr, stdin, out, d
}

func TestInteropOpenSSLServer(t *testing.T) {
	needTool(t, "openssl")
	type tc struct {
		name  string
		args  []string
		cfg   Config
		suite uint16
	}
	cases := []tc{
		{"tls13", []string{"-tls1_3"}, Config{}, TLS_AES_128_GCM_SHA256},
		{"tls13-hrr", []string{"-tls1_3", "-groups", "X25519"}, Config{CurvePreferences: []CurveID{P256, X25519}}, TLS_AES_128_GCM_SHA256},
	}
	for _, s := range opensslTLS12Suites {
		cases = append(cases, tc{"tls12-" + s.name, []string{"-tls1_2", "-cipher", s.name}, Config{MaxVersion: VersionTLS12, CipherSuites: []uint16{s.id}}, s.id})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr, stdin, out, _ := startSServer(t, c.args...)
			cfg := c.cfg
			cfg.Identity, cfg.Key = testIdentity, testKey
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conn := Client(nc, &cfg)
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := conn.Handshake(ctx); err != nil {
				t.Fatalf("handshake: %v\n%s", err, out.String())
			}
			if st := conn.ConnectionState(); st.CipherSuite != c.suite {
				t.Fatalf("suite %s, want %s", CipherSuiteName(st.CipherSuite), CipherSuiteName(c.suite))
			}
			if conn.didHRR != (c.name == "tls13-hrr") {
				t.Fatalf("HelloRetryRequest received: %v", conn.didHRR)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, "ping from moat\n"); err != nil {
				t.Fatal(err)
			}
			io.WriteString(stdin, "pong from openssl\n")
			line, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil || line != "pong from openssl\n" {
				t.Fatalf("read %q, %v\n%s", line, err, out.String())
			}
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(out.String(), "ping from moat") {
				if time.Now().After(deadline) {
					t.Fatalf("s_server did not print our data:\n%s", out.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	t.Run("wrong-key", func(t *testing.T) {
		for _, args := range [][]string{{"-tls1_3"}, {"-tls1_2", "-cipher", "PSK-AES128-GCM-SHA256"}} {
			addr, _, out, _ := startSServer(t, args...)
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			cfg := &Config{Identity: testIdentity, Key: []byte("wrong key")}
			if args[0] == "-tls1_2" {
				cfg.MaxVersion = VersionTLS12
			}
			conn := Client(nc, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = conn.Handshake(ctx)
			cancel()
			conn.Close()
			var ae *AlertError
			if err == nil || !errors.As(err, &ae) {
				t.Fatalf("%v: handshake with a wrong key: %v, want a remote alert\n%s", args, err, out.String())
			}
		}
	})
}
