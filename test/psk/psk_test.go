// Package psk drives the broker's TLS-PSK listener with clients we did not
// write: mosquitto_pub/mosquitto_sub and openssl s_client.
package psk

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
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
)

const (
	identity = "sensor-17"
	keyHex   = "4f2b8c1d9e0a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c"
)

func need(t *testing.T, bins ...string) {
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not found: install mosquitto-clients and openssl (scripts/test.sh does)", b)
		}
	}
}

// startPSK starts a broker with a "tls" listener serving TLS-PSK from a
// psk_file and, when cert is set, certificates on the same port.
func startPSK(t *testing.T, withCert bool, suites ...string) (*brokertest.Broker, string, string) {
	dir := t.TempDir()
	pskFile := filepath.Join(dir, "psk.txt")
	if err := os.WriteFile(pskFile, []byte("# devices\n"+identity+":"+keyHex+"\nother:00112233445566778899aabbccddeeff\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsCfg := &config.TLS{PSKFile: pskFile, PSKIdentityHint: "moat", PSKCipherSuites: suites}
	caFile := ""
	if withCert {
		tlsCfg.Cert, tlsCfg.Key, caFile = selfSigned(t, dir)
	}
	b := brokertest.Start(t, func(c *config.Config) {
		c.Auth.AllowAnonymous = false
		c.Listeners = append(c.Listeners, config.Listener{Name: "psk", Type: "tls", Address: "127.0.0.1:0", TLS: tlsCfg})
	})
	return b, b.Server.Addr("psk").String(), caFile
}

// selfSigned writes an ECDSA P-256 server certificate for 127.0.0.1 that is
// its own CA.
func selfSigned(t *testing.T, dir string) (cert, key, ca string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	return cert, key, cert
}

func hostPort(addr string) (string, string) {
	h, p, _ := net.SplitHostPort(addr)
	return h, p
}

// pubThenSub publishes a retained message with mosquitto_pub, then reads
// it back with mosquitto_sub: both clients must get through the TLS-PSK
// handshake and the broker in between (retained delivery needs no
// readiness handshake between the two processes).
func pubThenSub(t *testing.T, addr, topic, payload string, pubArgs, subArgs []string) {
	t.Helper()
	h, p := hostPort(addr)
	pub := exec.Command("mosquitto_pub", append([]string{"-h", h, "-p", p, "-t", topic, "-m", payload, "-q", "1", "-r"}, pubArgs...)...)
	if out, err := pub.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	sub := exec.Command("mosquitto_sub", append([]string{"-h", h, "-p", p, "-t", topic, "-q", "1", "-C", "1", "-W", "15"}, subArgs...)...)
	out, err := sub.Output()
	if err != nil {
		t.Fatalf("mosquitto_sub: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != payload {
		t.Fatalf("mosquitto_sub got %q, want %q", got, payload)
	}
}

func TestMosquittoClientsPSK(t *testing.T) {
	need(t, "mosquitto_pub", "mosquitto_sub")
	_, addr, _ := startPSK(t, false)
	h, p := hostPort(addr)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"default-v311", []string{"-V", "mqttv311"}},
		{"default-v5", []string{"-V", "mqttv5"}},
		{"tls1.2-v311", []string{"-V", "mqttv311", "--tls-version", "tlsv1.2"}},
		{"tls1.2-v5", []string{"-V", "mqttv5", "--tls-version", "tlsv1.2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			psk := []string{"--psk", keyHex, "--psk-identity", identity}
			args := append(psk, tc.args...)
			pubThenSub(t, addr, "psk/"+tc.name, "hello "+tc.name, append([]string{"-i", "pub-" + tc.name}, args...), append([]string{"-i", "sub-" + tc.name}, args...))
		})
	}
	t.Run("wrong-key", func(t *testing.T) {
		pub := exec.Command("mosquitto_pub", "-h", h, "-p", p, "-t", "psk/x", "-m", "x", "--psk", "00112233445566778899aabbccddeeff", "--psk-identity", identity)
		if out, err := pub.CombinedOutput(); err == nil {
			t.Fatalf("a wrong key was accepted:\n%s", out)
		}
	})
	t.Run("unknown-identity", func(t *testing.T) {
		pub := exec.Command("mosquitto_pub", "-h", h, "-p", p, "-t", "psk/x", "-m", "x", "--psk", keyHex, "--psk-identity", "nobody")
		if out, err := pub.CombinedOutput(); err == nil {
			t.Fatalf("an unknown identity was accepted:\n%s", out)
		}
	})
}

// sClient runs openssl s_client with a PSK, sends an MQTT 3.1.1 CONNECT
// and reports whether a CONNACK came back.
func sClient(t *testing.T, addr, key string, args ...string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	full := append([]string{"s_client", "-connect", addr, "-psk_identity", identity, "-psk", key, "-quiet", "-ign_eof"}, args...)
	cmd := exec.CommandContext(ctx, "openssl", full...)
	// CONNECT, client id "s", clean session, keep alive 10.
	connect := []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 10, 0, 1, 's'}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdin.Write(connect)
	buf := make([]byte, 4)
	_, err := io.ReadFull(stdout, buf)
	stdin.Close()
	cmd.Process.Kill()
	cmd.Wait()
	return stderr.String(), err == nil && buf[0] == 0x20 && buf[3] == 0
}

func TestOpenSSLPSK(t *testing.T) {
	need(t, "openssl")
	_, addr, _ := startPSK(t, false, "ECDHE-PSK-CHACHA20-POLY1305", "PSK-AES128-GCM-SHA256", "PSK-AES256-GCM-SHA384", "PSK-CHACHA20-POLY1305")
	t.Run("tls1.3", func(t *testing.T) {
		if log, ok := sClient(t, addr, keyHex, "-tls1_3"); !ok {
			t.Fatalf("TLS 1.3 PSK failed:\n%s", log)
		}
	})
	for _, suite := range []string{"ECDHE-PSK-CHACHA20-POLY1305", "PSK-AES128-GCM-SHA256", "PSK-AES256-GCM-SHA384", "PSK-CHACHA20-POLY1305"} {
		t.Run("tls1.2-"+suite, func(t *testing.T) {
			if log, ok := sClient(t, addr, keyHex, "-tls1_2", "-cipher", suite); !ok {
				t.Fatalf("TLS 1.2 %s failed:\n%s", suite, log)
			}
		})
	}
	t.Run("cbc-refused", func(t *testing.T) {
		if _, ok := sClient(t, addr, keyHex, "-tls1_2", "-cipher", "PSK-AES128-CBC-SHA256"); ok {
			t.Fatal("a CBC PSK suite was accepted")
		}
	})
	t.Run("wrong-key", func(t *testing.T) {
		if _, ok := sClient(t, addr, "00112233445566778899aabbccddeeff", "-tls1_3"); ok {
			t.Fatal("a wrong key was accepted over TLS 1.3")
		}
		if _, ok := sClient(t, addr, "00112233445566778899aabbccddeeff", "-tls1_2", "-cipher", "PSK-AES128-GCM-SHA256"); ok {
			t.Fatal("a wrong key was accepted over TLS 1.2")
		}
	})
}

// TestOnePortForCertificatesAndPSK: a certificate client and a PSK client
// use the same listener.
func TestOnePortForCertificatesAndPSK(t *testing.T) {
	need(t, "mosquitto_pub", "mosquitto_sub")
	_, addr, ca := startPSK(t, true)
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(ca)
	pool.AppendCertsFromPEM(pem)

	// The certificate client subscribes; it has no client certificate and
	// anonymous access is off, so it logs in as... nobody: use a PSK
	// subscriber instead and a certificate-verified TLS publisher that is
	// refused at CONNECT (proving it went through crypto/tls).
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatalf("certificate handshake on the PSK port: %v", err)
	}
	if st := conn.ConnectionState(); st.Version != tls.VersionTLS13 || len(st.PeerCertificates) == 0 {
		t.Fatalf("unexpected TLS state %+v", st)
	}
	// No client certificate and anonymous access off: the certificate path
	// works, and the client is refused at CONNECT as it should be.
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca2, err := c.Connect(ctx, &paho.Connect{ClientID: "cert-anon", CleanStart: true, KeepAlive: 10})
	if err == nil || ca2 == nil || ca2.ReasonCode != 0x87 {
		t.Fatalf("anonymous certificate-path client: err=%v connack=%+v (want 0x87)", err, ca2)
	}
	// mosquitto clients with --cafile: also the certificate path, and with
	// a PSK: the PSK path, on the same port.
	psk := []string{"--psk", keyHex, "--psk-identity", identity}
	pubThenSub(t, addr, "shared/port", "via psk", append([]string{"-i", "psk-pub"}, psk...), append([]string{"-i", "psk-sub"}, psk...))
}

// TestPSKIdentityIsThePrincipal: the PSK identity is who the client is,
// for ACLs (%i and %u) whatever username it sends.
func TestPSKIdentityIsThePrincipal(t *testing.T) {
	need(t, "mosquitto_pub", "mosquitto_sub")
	dir := t.TempDir()
	pskFile := filepath.Join(dir, "psk.txt")
	os.WriteFile(pskFile, []byte(identity+":"+keyHex+"\n"), 0o600)
	b := brokertest.Start(t, func(c *config.Config) {
		c.Auth.AllowAnonymous = false
		c.Auth.ACLDefault = "deny"
		c.ACL = []config.ACLRule{
			{Permission: "allow", Action: "all", Topic: "devices/%i/#", Method: "psk"},
			{Permission: "allow", Action: "all", Topic: "users/%u/#", Method: "psk"},
		}
		c.Listeners = append(c.Listeners, config.Listener{Name: "psk", Type: "tls", Address: "127.0.0.1:0", TLS: &config.TLS{PSKFile: pskFile}})
	})
	addr := b.Server.Addr("psk").String()
	psk := []string{"--psk", keyHex, "--psk-identity", identity, "-u", "someone-else"}
	pubThenSub(t, addr, "devices/"+identity+"/temp", "21.5", psk, psk)
	pubThenSub(t, addr, "users/"+identity+"/x", "ok", psk, psk)
	// Another device's topic: the subscription is refused.
	h, p := hostPort(addr)
	out, _ := exec.Command("mosquitto_sub", append([]string{"-h", h, "-p", p, "-t", "devices/other/temp", "-C", "1", "-W", "2", "-V", "mqttv5", "-d"}, psk...)...).CombinedOutput()
	// mosquitto_sub -d prints the granted QoS of each filter: 135 is 0x87,
	// Not authorized.
	if !strings.Contains(string(out), "Subscribed (mid: 1): 135") {
		t.Fatalf("subscription to another device's topic not refused:\n%s", out)
	}
}
