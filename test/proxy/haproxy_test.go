// Package proxy runs moat behind a real HAProxy: TLS terminated at the
// balancer with client certificates forwarded through PROXY v2, and TCP
// pass-through with PROXY v1 and v2.
package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"moat/internal/brokertest"
	"moat/internal/config"
	"moat/internal/testpki"
)

const waitTimeout = 15 * time.Second

func need(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not found: install haproxy and mosquitto-clients (scripts/test.sh does)", b)
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}

// startHAProxy runs haproxy with cfg and waits until every frontend port
// accepts connections.
func startHAProxy(t *testing.T, dir, cfg string, ports ...string) {
	t.Helper()
	p := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command("haproxy", "-f", p, "-db")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(waitTimeout)
	for _, port := range ports {
		for {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("haproxy not listening on %s:\n%s", port, out.String())
			}
			time.Sleep(20 * time.Millisecond) // polling a child process's port
		}
	}
}

// dialFrom dials addr from a given loopback source address.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: waitTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func connect(t *testing.T, conn net.Conn, id string) (*paho.Client, *paho.Connack, error) {
	t.Helper()
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
	return c, ca, err
}

// clientInfo finds a connected client in the broker's client list.
func clientRemote(b *brokertest.Broker, id string) (remote, principal string) {
	for _, ci := range b.Server.Clients() {
		if ci.ClientID == id {
			return ci.Remote, ci.Principal
		}
	}
	return "", ""
}

// TestTLSOffloadWithClientCertificates: HAProxy terminates TLS and checks
// client certificates; moat gets PROXY v2 with the SSL TLVs on a plain tcp
// listener and authenticates the device named in the certificate.
func TestTLSOffloadWithClientCertificates(t *testing.T) {
	need(t, "haproxy", "mosquitto_pub", "mosquitto_sub")
	dir := t.TempDir()
	set, err := testpki.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	// HAProxy wants the certificate and its key in one file.
	srvPEM := filepath.Join(dir, "haproxy-server.pem")
	cert, _ := os.ReadFile(set.Server.CertFile)
	key, _ := os.ReadFile(set.Server.KeyFile)
	os.WriteFile(srvPEM, append(cert, key...), 0o600)

	b := brokertest.Start(t, func(c *config.Config) {
		c.Auth.AllowAnonymous = true
		c.Auth.ACLDefault = "deny"
		c.ACL = []config.ACLRule{
			{Permission: "allow", Action: "publish", Topic: "devices/%i/#", Method: "proxy-tls"},
			{Permission: "allow", Action: "subscribe", Topic: "devices/#", Method: "anonymous"},
		}
		c.Listeners = append(c.Listeners, config.Listener{Name: "lb", Type: "tcp", Address: "127.0.0.1:0",
			AllowAnonymous: new(bool),
			Proxy:          &config.Proxy{Trusted: []string{"127.0.0.1/32"}, Required: true}})
	})
	lb := b.Server.Addr("lb").String()
	front := freePort(t)
	startHAProxy(t, dir, fmt.Sprintf(`global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend mqtts
    bind 127.0.0.1:%s ssl crt %s ca-file %s verify required
    default_backend moat
backend moat
    server moat %s send-proxy-v2-ssl-cn
`, front, srvPEM, set.CAFile, lb), front)

	// An observer on the plain listener sees what the device publishes.
	obsConn, err := net.DialTimeout("tcp", b.Addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer obsConn.Close()
	msgs := make(chan *paho.Publish, 10)
	obs := paho.NewClient(paho.ClientConfig{Conn: obsConn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { msgs <- pr.Packet; return true, nil },
	}})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := obs.Connect(ctx, &paho.Connect{ClientID: "observer", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := obs.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	args := func(f *testpki.Files, topic string) []string {
		a := []string{"-h", "127.0.0.1", "-p", front, "--cafile", set.CAFile, "-t", topic, "-m", "via haproxy", "-q", "1", "-V", "mqttv5"}
		if f != nil {
			a = append(a, "--cert", f.CertFile, "--key", f.KeyFile)
		}
		return a
	}
	// device-1 publishes to its own topic: authenticated as device-1.
	if out, err := exec.Command("mosquitto_pub", args(set.Client, "devices/device-1/t")...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub through haproxy: %v\n%s", err, out)
	}
	select {
	case m := <-msgs:
		if m.Topic != "devices/device-1/t" || string(m.Payload) != "via haproxy" {
			t.Fatalf("got %s %q", m.Topic, m.Payload)
		}
	case <-time.After(waitTimeout):
		t.Fatal("device-1's message did not arrive: not authenticated as device-1?")
	}
	// Another device's topic is not device-1's: refused by the ACL. The
	// observer's next message is the sentinel that follows, not that one.
	exec.Command("mosquitto_pub", args(set.Client, "devices/device-2/t")...).Run()
	if out, err := exec.Command("mosquitto_pub", args(set.Client, "devices/device-1/end")...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	select {
	case m := <-msgs:
		if m.Topic != "devices/device-1/end" {
			t.Fatalf("device-1 published to %s", m.Topic)
		}
	case <-time.After(waitTimeout):
		t.Fatal("sentinel not received")
	}
	// No client certificate: HAProxy refuses the handshake.
	if out, err := exec.Command("mosquitto_pub", args(nil, "devices/x/t")...).CombinedOutput(); err == nil {
		t.Fatalf("a client without a certificate got through:\n%s", out)
	}
	// The principal in the client list, with a Go client from 127.0.0.3.
	raw := dialFrom(t, "127.0.0.3", "127.0.0.1:"+front)
	tc := tls.Client(raw, &tls.Config{RootCAs: testpki.Pool(set.Root), ServerName: "localhost", Certificates: []tls.Certificate{set.Client2.TLSCertificate()}})
	if _, ca, err := connect(t, tc, "device-2"); err != nil {
		t.Fatalf("device-2 through haproxy: %v %+v", err, ca)
	}
	remote, principal := clientRemote(b, "device-2")
	if principal != "proxy-tls:device-2" || !strings.HasPrefix(remote, "127.0.0.3:") {
		t.Fatalf("client list: remote %q principal %q, want 127.0.0.3 and proxy-tls:device-2", remote, principal)
	}
	// Client-id binding applies as for direct mTLS.
	raw = dialFrom(t, "127.0.0.3", "127.0.0.1:"+front)
	tc = tls.Client(raw, &tls.Config{RootCAs: testpki.Pool(set.Root), ServerName: "localhost", Certificates: []tls.Certificate{set.Client2.TLSCertificate()}})
	if _, ca, err := connect(t, tc, "device-1"); err == nil || ca == nil || ca.ReasonCode != 0x85 {
		t.Fatalf("device-2 used device-1's client id: err=%v connack=%+v", err, ca)
	}

	// A PROXY header sent directly from an untrusted address is refused.
	direct := dialFrom(t, "127.0.0.2", lb)
	direct.Write([]byte("PROXY TCP4 10.1.2.3 127.0.0.1 4000 1883\r\n"))
	direct.Write([]byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 30, 0, 0, 1, 'x'})
	direct.SetReadDeadline(time.Now().Add(waitTimeout))
	if n, err := direct.Read(make([]byte, 16)); err == nil {
		t.Fatalf("untrusted PROXY header answered with %d bytes", n)
	}
}

// TestPassThrough: HAProxy passes TCP through with PROXY v1 and v2; moat
// terminates TLS and sees the real client address.
func TestPassThrough(t *testing.T) {
	need(t, "haproxy")
	dir := t.TempDir()
	set, err := testpki.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := brokertest.Start(t, func(c *config.Config) {
		c.Auth.AllowAnonymous = true
		for _, v := range []string{"v1", "v2"} {
			c.Listeners = append(c.Listeners, config.Listener{Name: "tls-" + v, Type: "tls", Address: "127.0.0.1:0",
				TLS:   &config.TLS{Cert: set.Server.CertFile, Key: set.Server.KeyFile},
				Proxy: &config.Proxy{Trusted: []string{"127.0.0.1"}, Required: true}})
		}
	})
	f1, f2 := freePort(t), freePort(t)
	startHAProxy(t, dir, fmt.Sprintf(`defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend v1
    bind 127.0.0.1:%s
    default_backend v1
frontend v2
    bind 127.0.0.1:%s
    default_backend v2
backend v1
    server moat %s send-proxy
backend v2
    server moat %s send-proxy-v2
`, f1, f2, b.Server.Addr("tls-v1"), b.Server.Addr("tls-v2")), f1, f2)
	for _, tc := range []struct{ name, front, src string }{{"v1", f1, "127.0.0.4"}, {"v2", f2, "127.0.0.5"}} {
		t.Run(tc.name, func(t *testing.T) {
			raw := dialFrom(t, tc.src, "127.0.0.1:"+tc.front)
			conn := tls.Client(raw, &tls.Config{RootCAs: testpki.Pool(set.Root), ServerName: "localhost"})
			id := "pass-" + tc.name
			if _, ca, err := connect(t, conn, id); err != nil {
				t.Fatalf("connect through haproxy: %v %+v", err, ca)
			}
			remote, _ := clientRemote(b, id)
			if !strings.HasPrefix(remote, tc.src+":") {
				t.Fatalf("client list shows %q, want the real client %s", remote, tc.src)
			}
		})
	}
}

// TestRateLimitByRealAddress: behind the PROXY protocol, the per-IP
// connection rate applies to the real client addresses the balancer
// reports, not to the balancer.
func TestRateLimitByRealAddress(t *testing.T) {
	b := brokertest.Start(t, func(c *config.Config) {
		c.Listeners = append(c.Listeners, config.Listener{Name: "lb", Type: "tcp", Address: "127.0.0.1:0",
			ConnRatePerIP: 0.001, ConnBurstPerIP: 2,
			Proxy: &config.Proxy{Trusted: []string{"127.0.0.1/32"}, Required: true}})
	})
	lb := b.Server.Addr("lb").String()
	try := func(client string) bool {
		c, err := net.DialTimeout("tcp", lb, waitTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "PROXY TCP4 %s 127.0.0.1 4000 1883\r\n", client)
		c.Write([]byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 1, 'r'})
		c.SetReadDeadline(time.Now().Add(waitTimeout))
		buf := make([]byte, 4)
		n, _ := c.Read(buf)
		return n == 4 && buf[0] == 0x20 && buf[3] == 0
	}
	for i := 0; i < 2; i++ {
		if !try("10.9.9.1") {
			t.Fatalf("connection %d of the burst refused", i+1)
		}
	}
	if try("10.9.9.1") {
		t.Fatal("third connection from the same real address accepted over the rate")
	}
	if !try("10.9.9.2") {
		t.Fatal("another real address refused: the limit hit the balancer")
	}
}
