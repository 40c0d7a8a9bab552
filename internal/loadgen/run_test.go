package loadgen

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"moat/internal/brokertest"
	"moat/internal/config"
	"moat/internal/testpki"
)

// quick returns a config for a short run against addr (host:port).
func quick(t *testing.T, scenario, addr string) Config {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Defaults()
	cfg.Scenario = scenario
	cfg.Host = host
	cfg.Port, _ = strconv.Atoi(port)
	cfg.Duration = 500 * time.Millisecond
	cfg.Drain = 2 * time.Second
	cfg.Timeout = 5 * time.Second
	return cfg
}

func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var out bytes.Buffer
	if err := res.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	if len(res.Errors) > 0 {
		t.Errorf("errors: %v", res.Errors)
	}
	return res
}

func TestPubSubTCP(t *testing.T) {
	b := brokertest.Start(t)
	for _, tc := range []struct {
		name    string
		version byte
		qos     byte
		pubs    int
		subs    int
		topic   string
		filter  string
		rate    float64
		n       int64
	}{
		{"v5 qos0 1to1", 5, 0, 1, 1, "b/%i", "", 0, 20000},
		{"v311 qos1 2to2", 4, 1, 2, 2, "b/%i", "", 0, 20000},
		{"v5 qos2 fan-in wildcard", 5, 2, 3, 1, "b/%i", "b/+", 0, 3000},
		{"v5 qos1 fan-out", 5, 1, 1, 3, "b/all", "", 0, 5000},
		{"v311 qos0 rate", 4, 0, 2, 1, "r/%i", "r/#", 2000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := quick(t, ScenarioPubSub, b.Addr)
			cfg.Version, cfg.QoS = tc.version, tc.qos
			cfg.Pubs, cfg.Subs = tc.pubs, tc.subs
			cfg.Topic, cfg.SubTopic = tc.topic, tc.filter
			cfg.Rate, cfg.Count = tc.rate, tc.n
			cfg.Duration = 2 * time.Second
			if tc.rate > 0 {
				cfg.Duration = 500 * time.Millisecond
			}
			res := run(t, cfg)
			if res.Connect.OK != int64(tc.pubs+tc.subs) {
				t.Fatalf("connected %d", res.Connect.OK)
			}
			if tc.n > 0 && res.Published != tc.n {
				t.Errorf("published %d, want %d", res.Published, tc.n)
			}
			if res.Expected == 0 || res.Received != res.Expected {
				t.Errorf("received %d, expected %d", res.Received, res.Expected)
			}
			if res.Latency == nil || res.Latency.Count != uint64(res.Received) || res.Latency.P99 <= 0 {
				t.Errorf("latency %+v", res.Latency)
			}
			if tc.qos > 0 && (res.Acked != res.Published || res.AckLatency == nil) {
				t.Errorf("acked %d of %d, ack latency %+v", res.Acked, res.Published, res.AckLatency)
			}
			if tc.rate > 0 {
				// 2 publishers at 2000/s for 0.5 s.
				if want := 2 * tc.rate * res.Window; float64(res.Published) < want*0.7 || float64(res.Published) > want*1.1+10 {
					t.Errorf("published %d at --rate %v in %.2fs, want about %.0f", res.Published, tc.rate, res.Window, want)
				}
			}
			if res.Generator == nil || res.Generator.CPUSeconds <= 0 {
				t.Errorf("generator stats %+v", res.Generator)
			}
		})
	}
}

// TestPubThenSub runs sub and pub as separate runs, as two processes would.
func TestPubThenSub(t *testing.T) {
	b := brokertest.Start(t)
	sub := quick(t, ScenarioSub, b.Addr)
	sub.Clients, sub.SubTopic, sub.Count, sub.Duration = 2, "x/#", 2000, 10*time.Second
	sub.Topic = "x/%i"
	type out struct {
		res *Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := Run(context.Background(), sub, nil)
		done <- out{res, err}
	}()
	time.Sleep(time.Second) // both subscriptions in place
	pub := quick(t, ScenarioPub, b.Addr)
	pub.Clients, pub.Topic, pub.Count, pub.QoS, pub.Duration = 1, "x/%i", 1000, 1, 5*time.Second
	pr := run(t, pub)
	if pr.Published != 1000 || pr.Acked != 1000 || pr.AckLatency == nil {
		t.Errorf("pub: published %d acked %d ack latency %v", pr.Published, pr.Acked, pr.AckLatency)
	}
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	if o.res.Received != 2000 || o.res.Latency == nil || o.res.Latency.Count != 2000 {
		t.Errorf("sub: received %d, latency %+v", o.res.Received, o.res.Latency)
	}
}

func TestConnHoldTCP(t *testing.T) {
	b := brokertest.Start(t)
	cfg := quick(t, ScenarioConn, b.Addr)
	cfg.Clients, cfg.Concurrency, cfg.Hold, cfg.Duration = 50, 8, 300*time.Millisecond, 10*time.Second
	cfg.BrokerPID = os.Getpid() // the broker runs in this process
	cfg.Version = 4
	res := run(t, cfg)
	if res.Connect.OK != 50 || res.Held != 50 || res.Connect.Rate <= 0 || res.Connect.Latency == nil {
		t.Errorf("ok %d held %d rate %v latency %v", res.Connect.OK, res.Held, res.Connect.Rate, res.Connect.Latency)
	}
	if res.Broker == nil || res.Broker.RSSHeldKB <= 0 || res.Broker.RSSBeforeKB <= 0 {
		t.Errorf("broker stats %+v", res.Broker)
	}
}

func TestWebSocket(t *testing.T) {
	b := brokertest.Start(t)
	u := strings.TrimPrefix(b.WSURL, "ws://")
	host, path, _ := strings.Cut(u, "/")
	cfg := quick(t, ScenarioPubSub, host)
	cfg.Transport, cfg.WSPath = TransportWS, "/"+path
	cfg.Pubs, cfg.Subs, cfg.Count, cfg.QoS, cfg.Duration = 1, 1, 2000, 1, 5*time.Second
	res := run(t, cfg)
	if res.Received != 2000 || res.Acked != 2000 {
		t.Errorf("received %d acked %d", res.Received, res.Acked)
	}
}

// tlsFiles writes an ECDSA P-256 CA, a server certificate for 127.0.0.1
// and localhost, a client certificate (client.pem, client.key) and a PSK
// file.
func tlsFiles(t *testing.T) (dir, caFile, certFile, keyFile, pskFile string) {
	t.Helper()
	dir = t.TempDir()
	ca, err := testpki.NewRoot("bench CA")
	if err != nil {
		t.Fatal(err)
	}
	server, err := testpki.IssueFiles(ca, testpki.Spec{
		Subject: pkix.Name{CommonName: "localhost"},
		DNS:     []string{"localhost"},
		IPs:     []net.IP{net.IPv4(127, 0, 0, 1)},
		EKU:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testpki.IssueFiles(ca, testpki.Spec{
		Subject: pkix.Name{CommonName: "bench-device"},
		EKU:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, dir, "client"); err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	pskFile = filepath.Join(dir, "psk.txt")
	if err := os.WriteFile(pskFile, []byte("bench:"+testPSK+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, caFile, server.CertFile, server.KeyFile, pskFile
}

const testPSK = "00112233445566778899aabbccddeeff"

// clientDir holds the client certificate written by the last tlsBroker.
var clientDir string

// tlsBroker starts moat with tls and wss listeners (certificates and PSK)
// and an "mtls" listener that requires client certificates.
func tlsBroker(t *testing.T) (b *brokertest.Broker, tlsAddr, wssAddr, caFile string) {
	dir, caFile, certFile, keyFile, pskFile := tlsFiles(t)
	clientDir = dir
	b = brokertest.Start(t, func(c *config.Config) {
		no := false
		c.Listeners = append(c.Listeners, config.Listener{Name: "mtls", Type: "tls", Address: "127.0.0.1:0",
			TLS: &config.TLS{Cert: certFile, Key: keyFile, ClientAuth: "required", ClientCA: []string{caFile}, BindClientID: &no}})
		for _, typ := range []string{"tls", "wss"} {
			l := config.Listener{Name: typ, Type: typ, Address: "127.0.0.1:0", TLS: &config.TLS{Cert: certFile, Key: keyFile}}
			if typ == "tls" {
				l.TLS.PSKFile = pskFile
			}
			c.Listeners = append(c.Listeners, l)
		}
	})
	return b, b.Server.Addr("tls").String(), b.Server.Addr("wss").String(), caFile
}

func TestTLSModes(t *testing.T) {
	b, tlsAddr, wssAddr, caFile := tlsBroker(t)
	psk, _ := hex.DecodeString(testPSK)

	t.Run("conn full and resumed", func(t *testing.T) {
		for _, resume := range []bool{false, true} {
			cfg := quick(t, ScenarioConn, tlsAddr)
			cfg.Transport, cfg.CAFile, cfg.Resume, cfg.Curves = TransportTLS, caFile, resume, "x25519"
			cfg.Clients, cfg.Concurrency = 20, 4
			res := run(t, cfg)
			if res.Connect.OK != 20 || res.Connect.TLSVersion != "TLS 1.3" {
				t.Errorf("ok %d, %s", res.Connect.OK, res.Connect.TLSVersion)
			}
			if resume && res.Connect.Resumed < 10 {
				t.Errorf("resumed %d of 20", res.Connect.Resumed)
			}
			if !resume && res.Connect.Resumed != 0 {
				t.Errorf("resumed %d without --resume", res.Connect.Resumed)
			}
		}
	})
	t.Run("pubsub tls 1.2", func(t *testing.T) {
		cfg := quick(t, ScenarioPubSub, tlsAddr)
		cfg.Transport, cfg.CAFile, cfg.TLSVersion = TransportTLS, caFile, "1.2"
		cfg.Pubs, cfg.Subs, cfg.Count, cfg.Duration, cfg.Topic = 1, 2, 5000, 5*time.Second, "bench/all"
		res := run(t, cfg)
		if res.Connect.TLSVersion != "TLS 1.2" || res.Received != 10000 {
			t.Errorf("%s, received %d", res.Connect.TLSVersion, res.Received)
		}
	})
	t.Run("mutual TLS", func(t *testing.T) {
		cfg := quick(t, ScenarioConn, b.Server.Addr("mtls").String())
		cfg.Transport, cfg.CAFile, cfg.Clients = TransportTLS, caFile, 3
		cfg.CertFile, cfg.KeyFile = filepath.Join(clientDir, "client.pem"), filepath.Join(clientDir, "client.key")
		if res := run(t, cfg); res.Connect.OK != 3 {
			t.Errorf("with a client certificate: %d connected", res.Connect.OK)
		}
		cfg.CertFile, cfg.KeyFile = "", ""
		if _, err := Run(context.Background(), cfg, nil); !errors.Is(err, ErrNoConnections) {
			t.Errorf("without a client certificate: %v", err)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		cfg := quick(t, ScenarioConn, tlsAddr)
		cfg.Transport, cfg.Clients = TransportTLS, 1
		_, err := Run(context.Background(), cfg, nil)
		if !errors.Is(err, ErrNoConnections) {
			t.Errorf("err = %v, want ErrNoConnections", err)
		}
	})
	for _, v := range []string{"1.2", "1.3"} {
		t.Run("tls-psk "+v, func(t *testing.T) {
			cfg := quick(t, ScenarioPubSub, tlsAddr)
			cfg.Transport, cfg.PSKIdentity, cfg.PSKKey, cfg.TLSVersion = TransportTLSPSK, "bench", psk, v
			cfg.Pubs, cfg.Subs, cfg.Count, cfg.QoS, cfg.Duration = 1, 1, 3000, 1, 5*time.Second
			res := run(t, cfg)
			if res.Connect.TLSVersion != "TLS "+v || res.Received != 3000 {
				t.Errorf("%s %s, received %d", res.Connect.TLSVersion, res.Connect.CipherSuite, res.Received)
			}
		})
	}
	t.Run("wss", func(t *testing.T) {
		cfg := quick(t, ScenarioPubSub, wssAddr)
		cfg.Transport, cfg.Insecure = TransportWSS, true
		cfg.Pubs, cfg.Subs, cfg.Count, cfg.Duration = 1, 1, 2000, 5*time.Second
		res := run(t, cfg)
		if res.Received != 2000 || res.Connect.TLSVersion == "" {
			t.Errorf("received %d over %q", res.Received, res.Connect.TLSVersion)
		}
	})
}

// TestLeanTLSClient runs the conn scenario with the lean TLS client
// (tlspsk certificate mode) against moat's TLS listener: verified and
// --insecure, full and resumed handshakes; and pubsub data over it.
func TestLeanTLSClient(t *testing.T) {
	_, caFile, certFile, keyFile, pskFile := tlsFiles(t)
	b := brokertest.Start(t, func(c *config.Config) {
		// A PSK file too: the listener routes each ClientHello, and a
		// resumption ticket must not look like an external PSK.
		c.Listeners = append(c.Listeners, config.Listener{Name: "tls", Type: "tls", Address: "127.0.0.1:0",
			ConnRatePerIP: 1e6, ConnBurstPerIP: 1e6, TLS: &config.TLS{Cert: certFile, Key: keyFile, PSKFile: pskFile}})
	})
	tlsAddr := b.Server.Addr("tls").String()
	for _, tc := range []struct {
		name     string
		client   string
		insecure bool
		resume   bool
		curves   string
	}{
		{"auto, verified", "", false, false, "x25519"},
		{"lean, insecure, p256", TLSClientLean, true, false, "p256"},
		{"auto, verified, resumed", TLSClientAuto, false, true, "x25519,p256"},
		{"lean, insecure, resumed", TLSClientLean, true, true, "x25519"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := quick(t, ScenarioConn, tlsAddr)
			cfg.Transport, cfg.TLSVersion, cfg.Curves, cfg.TLSClient, cfg.Resume = TransportTLS, "1.3", tc.curves, tc.client, tc.resume
			cfg.Clients, cfg.Concurrency, cfg.ALPN = 40, 4, "mqtt"
			if tc.insecure {
				cfg.Insecure = true
			} else {
				cfg.CAFile = caFile
			}
			res := run(t, cfg)
			if res.TLSClient != TLSClientLean {
				t.Errorf("TLS client %q, want lean", res.TLSClient)
			}
			if res.Connect.OK != 40 || res.Connect.Failed != 0 || res.Connect.TLSVersion != "TLS 1.3" || res.Connect.CipherSuite == "" {
				t.Errorf("ok %d failed %d, %s %s", res.Connect.OK, res.Connect.Failed, res.Connect.TLSVersion, res.Connect.CipherSuite)
			}
			// The first connections, in flight together, cannot resume.
			if tc.resume && res.Connect.Resumed < 40-2*4 {
				t.Errorf("resumed %d of 40", res.Connect.Resumed)
			}
			if !tc.resume && res.Connect.Resumed != 0 {
				t.Errorf("resumed %d without --resume", res.Connect.Resumed)
			}
			var out bytes.Buffer
			res.WriteTable(&out)
			if !regexp.MustCompile(`(?m)^tls client +lean `).MatchString(out.String()) {
				t.Errorf("the summary does not name the lean client:\n%s", out.String())
			}
		})
	}
	t.Run("pubsub", func(t *testing.T) {
		cfg := quick(t, ScenarioPubSub, tlsAddr)
		cfg.Transport, cfg.CAFile, cfg.TLSClient = TransportTLS, caFile, TLSClientLean
		cfg.Pubs, cfg.Subs, cfg.Count, cfg.QoS, cfg.Duration = 1, 1, 3000, 1, 5*time.Second
		res := run(t, cfg)
		if res.TLSClient != TLSClientLean || res.Received != 3000 || res.Acked != 3000 {
			t.Errorf("%s client: received %d, acked %d", res.TLSClient, res.Received, res.Acked)
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		cfg := quick(t, ScenarioConn, tlsAddr)
		cfg.Transport, cfg.TLSClient, cfg.Clients = TransportTLS, TLSClientLean, 1
		res, err := Run(context.Background(), cfg, nil)
		if !errors.Is(err, ErrNoConnections) || res == nil || len(res.Errors) != 1 {
			t.Fatalf("err = %v, want ErrNoConnections", err)
		}
		for k := range res.Errors {
			t.Logf("error: %s", k)
			if !strings.Contains(k, "certificate") {
				t.Errorf("error %q", k)
			}
		}
	})
	t.Run("auto picks go", func(t *testing.T) {
		for _, mod := range []func(*Config){
			func(c *Config) { c.TLSVersion = "" },        // TLS 1.2 offered too
			func(c *Config) { c.Curves = "" },            // Go's default groups
			func(c *Config) { c.Curves = "x25519,p384" }, // a group the lean client lacks
		} {
			cfg := quick(t, ScenarioConn, tlsAddr)
			cfg.Transport, cfg.CAFile, cfg.TLSVersion, cfg.Curves, cfg.Clients = TransportTLS, caFile, "1.3", "x25519", 2
			mod(&cfg)
			if res := run(t, cfg); res.TLSClient != TLSClientGo || res.Connect.OK != 2 {
				t.Errorf("%+v: client %q, %d ok", cfg, res.TLSClient, res.Connect.OK)
			}
		}
	})
}

func TestRefusals(t *testing.T) {
	cfg := Defaults()
	cfg.Scenario, cfg.Host = ScenarioConn, "192.0.2.1"
	if _, err := Run(context.Background(), cfg, nil); !errors.Is(err, ErrRemote) {
		t.Errorf("remote target: %v", err)
	}
	soft, _, ok := fileLimit()
	if ok {
		cfg = Defaults()
		cfg.Scenario, cfg.Clients, cfg.Hold = ScenarioConn, int(soft), time.Second
		_, err := Run(context.Background(), cfg, nil)
		if !errors.Is(err, ErrFileLimit) || !strings.Contains(err.Error(), "RLIMIT_NOFILE") {
			t.Errorf("over the file limit: %v", err)
		}
	}
	for _, args := range [][]string{
		{}, {"-c", "1"}, {"nope"}, {"pub", "-q", "3"}, {"pub", "-V", "3"}, {"pub", "-d", "2h"},
		{"pub", "--transport", "quic"}, {"pub", "--transport", "tls-psk"}, {"pub", "-t", "a/+"},
		{"conn", "--tls-version", "1.1"}, {"pub", "--hold", "1s"}, {"pub", "--psk", "zz"},
		{"conn", "--transport", "tls", "--tls-client", "openssl"}, {"conn", "--tls-client", "lean"},
		{"conn", "--transport", "tls", "--tls-client", "lean", "--tls-version", "1.2"},
		{"conn", "--transport", "tls", "--tls-client", "lean", "--curves", "p384"},
		{"conn", "--transport", "tls", "--tls-client", "lean", "--cert", "c.pem", "--key", "k.pem"},
	} {
		cfg, _, _, err := ParseArgs(args, nil)
		if err == nil {
			err = cfg.Validate()
		}
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%q: err = %v, want ErrConfig", args, err)
		}
	}
	cfg, asJSON, quiet, err := ParseArgs([]string{"pubsub", "--pubs", "3", "-c", "2", "-q", "1", "-V", "3.1.1",
		"--transport", "tls-psk", "--psk", "0a0b", "--psk-identity", "id", "--json", "--quiet", "-t", "a/%i"}, nil)
	if err != nil || cfg.Validate() != nil {
		t.Fatal(err, cfg.Validate())
	}
	if !asJSON || !quiet || cfg.Pubs != 3 || cfg.Subs != 2 || cfg.QoS != 1 || cfg.Version != 4 || cfg.Port != 8883 ||
		!bytes.Equal(cfg.PSKKey, []byte{10, 11}) || cfg.SubTopic != "a/%i" {
		t.Errorf("parsed %+v", cfg)
	}
	cfg, _, _, err = ParseArgs([]string{"conn", "-c", "10", "--hold", "3s", "-k", "30"}, nil)
	if err != nil || cfg.KeepAlive != 30*time.Second || cfg.Duration != 5*time.Minute || cfg.Validate() != nil {
		t.Errorf("conn --hold: %v keepalive %s duration %s", err, cfg.KeepAlive, cfg.Duration)
	}
	cfg, _, _, err = ParseArgs([]string{"conn", "--hold", "3s", "-d", "20s", "-k", "45s"}, nil)
	if err != nil || cfg.KeepAlive != 45*time.Second || cfg.Duration != 20*time.Second {
		t.Errorf("conn --hold -d: %v keepalive %s duration %s", err, cfg.KeepAlive, cfg.Duration)
	}
}

func TestCommandJSON(t *testing.T) {
	b := brokertest.Start(t)
	var out, errOut bytes.Buffer
	host, port, _ := net.SplitHostPort(b.Addr)
	code := Command(context.Background(), []string{"pubsub", "--host", host, "-p", port, "-n", "100", "-d", "5s", "--json"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), `"received": 100`) {
		t.Errorf("JSON: %s", out.String())
	}
}

// TestBrokerGoesAway: subscribers lose their broker mid-run; the run ends
// early and says so.
func TestBrokerGoesAway(t *testing.T) {
	b := brokertest.Start(t)
	cfg := quick(t, ScenarioSub, b.Addr)
	cfg.Clients, cfg.Duration = 3, 20*time.Second
	go func() {
		time.Sleep(500 * time.Millisecond)
		b.Stop()
	}()
	start := time.Now()
	res, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("run took %s after its broker stopped", el)
	}
	if res.ConnectionsLost != 3 || len(res.Errors) == 0 {
		t.Errorf("lost %d connections, errors %v", res.ConnectionsLost, res.Errors)
	}
}
