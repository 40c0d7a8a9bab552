package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// material is the TLS material shared by both brokers for a run.
type material struct {
	dir      string
	caFile   string
	certFile string
	keyFile  string
	pskFile  string
	pskID    string
	pskHex   string
}

// newMaterial writes an ECDSA P-256 CA, a server certificate for
// 127.0.0.1 and localhost signed by it, and a PSK file (mosquitto format).
func newMaterial(dir string) (*material, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "moat bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key) // SEC1: read by OpenSSL and by moat
	if err != nil {
		return nil, err
	}
	m := &material{dir: dir, pskID: "bench"}
	write := func(name string, data []byte) (string, error) {
		p := filepath.Join(dir, name)
		return p, os.WriteFile(p, data, 0o600)
	}
	if m.caFile, err = write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})); err != nil {
		return nil, err
	}
	if m.certFile, err = write("server.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		return nil, err
	}
	if m.keyFile, err = write("server.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})); err != nil {
		return nil, err
	}
	psk := make([]byte, 32)
	if _, err := rand.Read(psk); err != nil {
		return nil, err
	}
	m.pskHex = hex.EncodeToString(psk)
	if m.pskFile, err = write("psk.txt", []byte(m.pskID+":"+m.pskHex+"\n")); err != nil {
		return nil, err
	}
	return m, nil
}

// brokerSpec is what a run needs from a broker.
type brokerSpec struct {
	durable bool // QoS 1 scenario: moat with its default bolt store
}

// broker is a running broker process.
type broker struct {
	name    string
	cmd     *exec.Cmd
	tlsPort int
	pskPort int
	logFile string
	exited  chan error
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startMosquitto starts mosquitto with a TLS listener (the shared
// certificate, TLS 1.2+, anonymous) and a TLS-PSK listener.
func startMosquitto(ctx context.Context, bin string, m *material, runDir string) (*broker, error) {
	tlsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	pskPort, err := freePort()
	if err != nil {
		return nil, err
	}
	var conf strings.Builder
	if os.Geteuid() == 0 {
		conf.WriteString("user root\n") // keep access to the run's 0600 files
	}
	fmt.Fprintf(&conf, `per_listener_settings false
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
set_tcp_nodelay true
max_inflight_messages 1024
max_queued_messages 100000
max_connections -1
psk_file %s

listener %d 127.0.0.1
certfile %s
keyfile %s

listener %d 127.0.0.1
psk_hint moat
`, m.pskFile, tlsPort, m.certFile, m.keyFile, pskPort)
	confFile := filepath.Join(runDir, "mosquitto.conf")
	if err := os.WriteFile(confFile, []byte(conf.String()), 0o600); err != nil {
		return nil, err
	}
	b := &broker{name: "mosquitto", tlsPort: tlsPort, pskPort: pskPort, logFile: filepath.Join(runDir, "mosquitto.log")}
	return b, b.start(ctx, bin, []string{"-c", confFile})
}

// startMoat starts moat with one TLS listener serving the shared
// certificate and the PSK file: anonymous allowed, no per-IP connection
// rate limit (the generator is one source address), the in-memory store
// unless spec.durable (then the default bolt store and sync policy).
func startMoat(ctx context.Context, bin string, m *material, runDir string, spec brokerSpec) (*broker, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	store := `store = "memory"`
	if spec.durable {
		store = `# store = "bolt" and sync = "batch": the defaults`
	}
	conf := fmt.Sprintf(`data_dir = %q
%s

[log]
level = "warn"

[[listener]]
name = "tls"
type = "tls"
address = "127.0.0.1:%d"
allow_anonymous = true
conn_rate_per_ip = 0.0

[listener.tls]
cert = %q
key = %q
min_version = "1.2"
psk_file = %q
psk_identity_hint = "moat"

[auth]
allow_anonymous = true
`, filepath.Join(runDir, "moat-data"), store, port, m.certFile, m.keyFile, m.pskFile)
	confFile := filepath.Join(runDir, "moat.toml")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	b := &broker{name: "moat", tlsPort: port, pskPort: port, logFile: filepath.Join(runDir, "moat.log")}
	return b, b.start(ctx, bin, []string{"serve", "--config", confFile})
}

func (b *broker) start(ctx context.Context, bin string, args []string) error {
	logf, err := os.Create(b.logFile)
	if err != nil {
		return err
	}
	b.cmd = exec.Command(bin, args...)
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", b.name, err)
	}
	b.exited = make(chan error, 1)
	go func() { b.exited <- b.cmd.Wait(); logf.Close() }()
	// Ready when its TLS port accepts connections.
	deadline := time.Now().Add(15 * time.Second)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.tlsPort))
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-b.exited:
			b.exited <- err
			return fmt.Errorf("%s exited at start-up (%v): %s", b.name, err, tail(b.logFile))
		case <-ctx.Done():
			b.stop()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.stop()
			return fmt.Errorf("%s not listening on %s after 15s: %s", b.name, addr, tail(b.logFile))
		}
	}
}

func (b *broker) pid() int { return b.cmd.Process.Pid }

// stop sends SIGTERM, then SIGKILL after 5 s.
func (b *broker) stop() {
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-b.exited:
		b.exited <- err
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
		b.exited <- errors.New("killed")
	}
}

// tail returns the end of a log file for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if len(s) > 600 {
		s = "..." + s[len(s)-600:]
	}
	return s
}

// brokerVersion asks mosquitto its version ("mosquitto version 2.0.11").
func mosquittoVersion(bin string) string {
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}
