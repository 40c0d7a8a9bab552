package proxyproto

// Interoperability with a real HAProxy (Debian package "haproxy"): TCP
// pass-through with send-proxy (v1) and send-proxy-v2, and TLS terminated
// at HAProxy with client certificates and send-proxy-v2-ssl-cn, in front
// of a Go backend that uses Listen. Skipped when haproxy is not installed,
// unless MOAT_REQUIRE_HAPROXY=1.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// haproxyBinary returns the haproxy executable and its version.
func haproxyBinary(t *testing.T) (path string, major, minor int, version string) {
	t.Helper()
	path, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("MOAT_REQUIRE_HAPROXY") == "1" {
			t.Fatal("haproxy not installed (apt-get install haproxy)")
		}
		t.Skip("haproxy not installed (apt-get install haproxy)")
	}
	out, err := exec.Command(path, "-v").Output()
	if err != nil {
		t.Fatalf("haproxy -v: %v", err)
	}
	m := regexp.MustCompile(`version (\d+)\.(\d+)(\S*)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("haproxy -v: %q", out)
	}
	major, _ = strconv.Atoi(string(m[1]))
	minor, _ = strconv.Atoi(string(m[2]))
	return path, major, minor, string(m[1]) + "." + string(m[2]) + string(m[3])
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects haproxy's output for failure messages.
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

// startHAProxy runs haproxy in the foreground with the configuration
// mkcfg makes for n free loopback ports, and waits until all of them
// accept connections. A port taken by someone else between freePort and
// haproxy's bind makes haproxy exit; then it starts again on other ports.
// It is killed at cleanup. It returns the ports and the configuration.
func startHAProxy(t *testing.T, bin string, n int, mkcfg func(ports []int) string) ([]int, string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ports := make([]int, n)
		for i := range ports {
			ports[i] = freePort(t)
		}
		cfg := mkcfg(ports)
		file := filepath.Join(t.TempDir(), "haproxy.cfg")
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		out := &syncBuffer{}
		cmd := exec.Command(bin, "-f", file, "-db")
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			cmd.Process.Kill()
			<-exited
		}
		if ready(t, exited, ports) {
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					t.Logf("haproxy output:\n%s", out)
				}
			})
			return ports, cfg
		}
		stop()
		if attempt == 3 || !strings.Contains(out.String(), "cannot bind") {
			t.Fatalf("haproxy did not start:\n%s\n%s", out, cfg)
		}
		t.Logf("haproxy could not bind, retrying on other ports:\n%s", out)
	}
}

// ready polls the ports until they all accept connections and haproxy is
// still running; false when haproxy exited.
func ready(t *testing.T, exited chan struct{}, ports []int) bool {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range ports {
		for {
			select {
			case <-exited:
				return false
			default:
			}
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("haproxy frontend %d not ready: %v", p, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// haproxy binds all its frontends before it serves any: if it is
	// still up now, the ports answering are its own.
	select {
	case <-exited:
		return false
	case <-time.After(50 * time.Millisecond):
		return true
	}
}

// backend is the Go server behind HAProxy: per connection it reads the
// header, then a token line, and records what it saw under the token.
// Connections without a line (HAProxy's readiness probes and health
// checks) are recorded by header only.
type backend struct {
	addr string
	tls  *tls.Config // moat terminates TLS (HAProxy passes TCP through)
	mu   sync.Mutex
	seen map[string]served
	cond chan struct{} // signalled on every record
	hdrs chan *Header  // every header, probes included
}

func startBackend(t *testing.T, opts Options, tlsConf *tls.Config) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pl := Listen(ln, opts)
	t.Cleanup(func() { pl.Close() })
	b := &backend{addr: ln.Addr().String(), tls: tlsConf, seen: map[string]served{}, cond: make(chan struct{}, 1), hdrs: make(chan *Header, 64)}
	go func() {
		for {
			c, err := pl.Accept()
			if err != nil {
				return
			}
			go b.serve(c.(*Conn))
		}
	}()
	return b
}

func (b *backend) serve(c *Conn) {
	defer c.Close()
	hdr, err := c.Header(context.Background())
	if err == nil {
		select {
		case b.hdrs <- hdr:
		default:
		}
	}
	s := served{hdr: hdr, err: err, remote: c.RemoteAddr(), proxy: c.ProxyAddr(), ssl: c.SSL()}
	if err != nil {
		return
	}
	var rw net.Conn = c
	if b.tls != nil {
		tc := tls.Server(c, b.tls)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			return
		}
		if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
			s.peerCN = st.PeerCertificates[0].Subject.CommonName
		}
		s.remote = tc.RemoteAddr() // through tls.Conn: the header's source too
		rw = tc
	}
	rw.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(rw).ReadString('\n')
	if err != nil {
		return
	}
	s.line = strings.TrimSpace(line)
	fmt.Fprintf(rw, "ok %s\n", rw.RemoteAddr())
	b.mu.Lock()
	b.seen[s.line] = s
	b.mu.Unlock()
	select {
	case b.cond <- struct{}{}:
	default:
	}
}

func (b *backend) wait(t *testing.T, token string) served {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		b.mu.Lock()
		s, ok := b.seen[token]
		b.mu.Unlock()
		if ok {
			return s
		}
		select {
		case <-b.cond:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("backend never saw %q", token)
		}
	}
}

// talk sends a token over c and reads the backend's answer.
func talk(t *testing.T, c net.Conn, token string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, token+"\n"); err != nil {
		t.Fatal(err)
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the backend's answer: %v", err)
	}
	return strings.TrimSpace(reply)
}

// dialAs connects to 127.0.0.1:port from 127.0.0.2, so the backend can
// tell the client's address from HAProxy's (127.0.0.1).
func dialAs(t *testing.T, port int) *net.TCPConn {
	t.Helper()
	return dialFrom(t, fmt.Sprintf("127.0.0.1:%d", port), fromUntrusted)
}

func TestHAProxy(t *testing.T) {
	bin, major, minor, version := haproxyBinary(t)
	t.Logf("HAProxy %s", version)
	hasTLVFmt := major > 2 || major == 2 && minor >= 9 // set-proxy-v2-tlv-fmt

	dir := t.TempDir()
	ca := newTestCA(t, "moat devices CA")
	rogue := newTestCA(t, "someone else's CA")
	srvDER, srvKey := ca.issue(t, "localhost", true)
	write := func(name string, data ...[]byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Join(data, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	serverPEM := write("server.pem", pemCert(srvDER), pemKey(t, srvKey))
	caPEM := write("ca.pem", pemCert(ca.cert.Raw))
	goodCert, goodDER := ca.tlsCert(t, "sensor-17")
	rogueCert, rogueDER := rogue.tlsCert(t, "sensor-17")

	be := startBackend(t, Options{Trusted: trustedLoopback, Required: true, HeaderTimeout: 5 * time.Second}, nil)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	// moat terminating mutual TLS itself, behind HAProxy in TCP mode.
	beTLS := startBackend(t, Options{Trusted: trustedLoopback, Required: true}, &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	})

	sslServer := "send-proxy-v2-ssl-cn proxy-v2-options ssl-cipher,cert-sig,cert-key,crc32c,authority,unique-id"
	if hasTLVFmt {
		sslServer += " set-proxy-v2-tlv-fmt(0xE0) %[ssl_c_der,base64]"
	}
	bind := "ssl crt " + serverPEM + " ca-file " + caPEM
	ports, cfg := startHAProxy(t, bin, 8, func(p []int) string {
		pV1, pV2, pReq, pOpt, pIgn, pChk, pTLS1, pTLS2 := p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
		return strings.Join([]string{
			"global",
			"    nbthread 1",
			"defaults",
			"    mode tcp",
			"    timeout connect 5s",
			"    timeout client 30s",
			"    timeout server 30s",
			"frontend pass_v1",
			fmt.Sprintf("    bind 127.0.0.1:%d", pV1),
			"    default_backend moat_v1",
			"backend moat_v1",
			"    server moat " + be.addr + " send-proxy",
			"frontend pass_v2",
			fmt.Sprintf("    bind 127.0.0.1:%d", pV2),
			"    default_backend moat_v2",
			"backend moat_v2",
			"    server moat " + be.addr + " send-proxy-v2",
			"frontend tls_required",
			fmt.Sprintf("    bind 127.0.0.1:%d %s verify required", pReq, bind),
			"    unique-id-format %[ssl_c_der,sha2(256),hex]",
			"    default_backend moat_ssl",
			"frontend tls_optional",
			fmt.Sprintf("    bind 127.0.0.1:%d %s verify optional", pOpt, bind),
			"    default_backend moat_ssl",
			"frontend tls_ignore_errors",
			fmt.Sprintf("    bind 127.0.0.1:%d %s verify optional ca-ignore-err all crt-ignore-err all", pIgn, bind),
			"    default_backend moat_ssl",
			"backend moat_ssl",
			"    server moat " + be.addr + " " + sslServer,
			"frontend pass_tls_v1",
			fmt.Sprintf("    bind 127.0.0.1:%d", pTLS1),
			"    default_backend moat_tls_v1",
			"backend moat_tls_v1",
			"    server moat " + beTLS.addr + " send-proxy",
			"frontend pass_tls_v2",
			fmt.Sprintf("    bind 127.0.0.1:%d", pTLS2),
			"    default_backend moat_tls_v2",
			"backend moat_tls_v2",
			"    server moat " + beTLS.addr + " send-proxy-v2",
			"frontend health_checked",
			fmt.Sprintf("    bind 127.0.0.1:%d", pChk),
			"    default_backend moat_checked",
			"backend moat_checked",
			"    server moat " + be.addr + " send-proxy-v2 check inter 200ms",
			"",
		}, "\n")
	})
	pV1, pV2, pReq, pOpt, pIgn, pTLS1, pTLS2 := ports[0], ports[1], ports[2], ports[3], ports[4], ports[6], ports[7]
	t.Logf("haproxy.cfg:\n%s", cfg)

	tlsDial := func(t *testing.T, port int, cert *tls.Certificate) *tls.Conn {
		t.Helper()
		conf := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
		if cert != nil {
			// Always send it, even when HAProxy's list of acceptable CAs
			// does not name its issuer.
			conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		tc := tls.Client(dialAs(t, port), conf)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake with HAProxy: %v", err)
		}
		return tc
	}

	for _, pt := range []struct {
		name    string
		port    int
		version int
	}{{"pass-through send-proxy (v1)", pV1, 1}, {"pass-through send-proxy-v2", pV2, 2}} {
		t.Run(pt.name, func(t *testing.T) {
			c := dialAs(t, pt.port)
			token := fmt.Sprintf("v%d-%d", pt.version, time.Now().UnixNano())
			reply := talk(t, c, token)
			s := be.wait(t, token)
			if s.hdr == nil || s.hdr.Version != pt.version || s.hdr.Command != Proxy {
				t.Fatalf("header %+v", s.hdr)
			}
			client := c.LocalAddr().String() // 127.0.0.2:port
			if s.remote.String() != client || reply != "ok "+client {
				t.Fatalf("backend saw %v (reply %q), want the client %v", s.remote, reply, client)
			}
			if s.proxy == nil || !strings.HasPrefix(s.proxy.String(), "127.0.0.1:") {
				t.Fatalf("ProxyAddr %v", s.proxy)
			}
			if want := fmt.Sprintf("127.0.0.1:%d", pt.port); s.hdr.Destination.String() != want {
				t.Fatalf("Destination %v, want %v", s.hdr.Destination, want)
			}
			if s.ssl != nil {
				t.Fatalf("SSL info without TLS: %+v", s.ssl)
			}
		})
	}

	for _, pt := range []struct {
		name    string
		port    int
		version int
	}{{"pass-through to moat's mTLS, send-proxy (v1)", pTLS1, 1}, {"pass-through to moat's mTLS, send-proxy-v2", pTLS2, 2}} {
		t.Run(pt.name, func(t *testing.T) {
			tc := tlsDial(t, pt.port, &goodCert)
			token := fmt.Sprintf("tls-v%d-%d", pt.version, time.Now().UnixNano())
			reply := talk(t, tc, token)
			s := beTLS.wait(t, token)
			client := tc.LocalAddr().String()
			if s.hdr == nil || s.hdr.Version != pt.version || s.remote.String() != client || reply != "ok "+client {
				t.Fatalf("header %+v, RemoteAddr %v (reply %q), want the client %v", s.hdr, s.remote, reply, client)
			}
			if s.peerCN != "sensor-17" || s.ssl != nil {
				t.Fatalf("peer CN %q, SSL %+v", s.peerCN, s.ssl)
			}
		})
	}

	t.Run("TLS at HAProxy, verify required, good client certificate", func(t *testing.T) {
		tc := tlsDial(t, pReq, &goodCert)
		token := fmt.Sprintf("good-%d", time.Now().UnixNano())
		talk(t, tc, token)
		s := be.wait(t, token)
		if s.remote.String() != tc.LocalAddr().String() {
			t.Fatalf("RemoteAddr %v, want %v", s.remote, tc.LocalAddr())
		}
		ssl := s.ssl
		if ssl == nil {
			t.Fatal("no SSL info")
		}
		t.Logf("SSL TLV: client=%#x verify=%d version=%q cn=%q cipher=%q sig_alg=%q key_alg=%q cert=%d bytes",
			ssl.Client, ssl.Verify, ssl.Version, ssl.CN, ssl.Cipher, ssl.SigAlg, ssl.KeyAlg, len(ssl.ClientCert))
		if !ssl.Verified() || ssl.CN != "sensor-17" || ssl.Client&ClientCertConn == 0 {
			t.Fatalf("SSL %+v", ssl)
		}
		if ssl.Version == "" || ssl.Cipher == "" || ssl.SigAlg == "" || ssl.KeyAlg == "" {
			t.Fatalf("SSL strings missing: %+v", ssl)
		}
		if _, ok := s.hdr.TLV(TypeCRC32C); !ok {
			t.Fatal("no CRC32C TLV (proxy-v2-options crc32c)")
		}
		if v, _ := s.hdr.TLV(TypeAuthority); string(v) != "localhost" {
			t.Fatalf("AUTHORITY %q, want the SNI", v)
		}
		// unique-id-format %[ssl_c_der,sha2(256),hex]: the certificate's
		// fingerprint, the one way HAProxy < 2.9 can identify the exact
		// certificate.
		fp := sha256.Sum256(goodDER)
		if v, _ := s.hdr.TLV(TypeUniqueID); !strings.EqualFold(string(v), hex.EncodeToString(fp[:])) {
			t.Fatalf("UNIQUE_ID %q, want the SHA-256 of the client certificate", v)
		}
		if hasTLVFmt {
			cert, err := ssl.Certificate()
			if err != nil || !bytes.Equal(cert.Raw, goodDER) {
				t.Fatalf("forwarded certificate: %v", err)
			}
		} else if ssl.ClientCert != nil {
			t.Fatal("a certificate from an HAProxy without set-proxy-v2-tlv-fmt?")
		}
	})

	t.Run("TLS at HAProxy, verify required, certificate from another CA", func(t *testing.T) {
		conf := &tls.Config{RootCAs: pool, ServerName: "localhost",
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &rogueCert, nil }}
		tc := tls.Client(dialAs(t, pReq), conf)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		err := tc.Handshake()
		if err == nil {
			// TLS 1.3: the client learns of the refusal on its first read.
			io.WriteString(tc, "rogue\n")
			_, err = tc.Read(make([]byte, 1))
		}
		if err == nil {
			t.Fatal("HAProxy accepted a certificate from another CA")
		}
	})

	t.Run("TLS at HAProxy, verify optional, no client certificate", func(t *testing.T) {
		tc := tlsDial(t, pOpt, nil)
		token := fmt.Sprintf("nocert-%d", time.Now().UnixNano())
		talk(t, tc, token)
		s := be.wait(t, token)
		ssl := s.ssl
		if ssl == nil || !ssl.TLS() || ssl.HasClientCert() || ssl.Client&ClientCertConn != 0 || ssl.Verified() || ssl.CN != "" {
			t.Fatalf("SSL %+v", ssl)
		}
		if s.remote.String() != tc.LocalAddr().String() {
			t.Fatalf("RemoteAddr %v", s.remote)
		}
	})

	t.Run("TLS at HAProxy, errors ignored, certificate from another CA", func(t *testing.T) {
		tc := tlsDial(t, pIgn, &rogueCert)
		token := fmt.Sprintf("rogue-%d", time.Now().UnixNano())
		talk(t, tc, token)
		s := be.wait(t, token)
		ssl := s.ssl
		if ssl == nil || !ssl.HasClientCert() || ssl.Verify == 0 || ssl.Verified() {
			t.Fatalf("SSL %+v: a failed verification must show", ssl)
		}
		t.Logf("verify result for an unknown CA: %d", ssl.Verify)
		if hasTLVFmt && !bytes.Equal(ssl.ClientCert, rogueDER) {
			t.Fatal("forwarded certificate")
		}
	})

	t.Run("openssl s_client through HAProxy", func(t *testing.T) {
		openssl, err := exec.LookPath("openssl")
		if err != nil {
			t.Skip("openssl not installed")
		}
		certFile := write("client.crt", pemCert(goodDER))
		keyFile := write("client.key", pemKey(t, goodCert.PrivateKey.(*ecdsa.PrivateKey)))
		token := fmt.Sprintf("openssl-%d", time.Now().UnixNano())
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		// -quiet implies -ign_eof: s_client runs until the backend closes
		// after its answer.
		cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", fmt.Sprintf("127.0.0.1:%d", pReq),
			"-servername", "localhost", "-CAfile", caPEM, "-cert", certFile, "-key", keyFile, "-quiet")
		cmd.Stdin = strings.NewReader(token + "\n")
		out, err := cmd.CombinedOutput()
		s := be.wait(t, token)
		if !strings.Contains(string(out), "ok "+s.remote.String()) {
			t.Fatalf("s_client: %v\n%s", err, out)
		}
		if !s.ssl.Verified() || s.ssl.CN != "sensor-17" || s.remote.String() == s.proxy.String() {
			t.Fatalf("SSL %+v, remote %v, proxy %v", s.ssl, s.remote, s.proxy)
		}
	})

	t.Run("health checks send LOCAL", func(t *testing.T) {
		deadline := time.After(10 * time.Second)
		for {
			select {
			case h := <-be.hdrs:
				if h != nil && h.Version == 2 && h.Command == Local {
					return
				}
			case <-deadline:
				t.Fatal("no LOCAL header from HAProxy's health checks")
			}
		}
	})

	t.Run("PROXY header straight from an untrusted address", func(t *testing.T) {
		c := dialFrom(t, be.addr, fromUntrusted)
		io.WriteString(c, "PROXY TCP4 203.0.113.9 127.0.0.1 4242 1883\r\nspoof\n")
		if !closedByPeer(t, c) {
			t.Fatal("backend did not close the connection")
		}
	})
}
