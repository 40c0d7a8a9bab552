package loadgen

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Scenarios.
const (
	ScenarioConn   = "conn"   // connection rate; with Hold, idle connections held open
	ScenarioPub    = "pub"    // publishers only
	ScenarioSub    = "sub"    // subscribers only (messages from another process)
	ScenarioPubSub = "pubsub" // publishers and subscribers in this process
)

// Transports.
const (
	TransportTCP    = "tcp"
	TransportTLS    = "tls"
	TransportTLSPSK = "tls-psk"
	TransportWS     = "ws"
	TransportWSS    = "wss"
)

// TLS clients for transport tls (Config.TLSClient).
const (
	TLSClientAuto = "auto" // lean when the flags pin what it speaks, go otherwise
	TLSClientGo   = "go"   // crypto/tls
	TLSClientLean = "lean" // moat/internal/tlspsk in certificate mode
)

// Hard caps: every run stops by itself.
const (
	MaxDuration    = time.Hour        // measurement window (-d)
	MaxHold        = time.Hour        // --hold
	MaxCount       = 10_000_000_000   // -n
	MaxClients     = 10_000_000       // -c for conn without --hold (connections made in turn)
	MaxConcurrency = 10_000           // --concurrency
	MaxPayload     = 256 << 20        // -s
	MaxInflight    = 65535 / 2        // --inflight
	maxSetupTime   = 10 * time.Minute // connecting and subscribing, before the window
)

// Config describes one run. Zero values take the defaults of Defaults.
type Config struct {
	Scenario string

	// Target.
	Host        string
	Port        int    // 0: 1883 (tcp), 8883 (tls, tls-psk), 8083 (ws), 8084 (wss)
	Transport   string // tcp | tls | tls-psk | ws | wss
	WSPath      string // default "/mqtt"
	AllowRemote bool   // allow a non-loopback target

	// TLS (tls, wss).
	CAFile     string
	CertFile   string // client certificate (mutual TLS)
	KeyFile    string
	Insecure   bool   // skip server certificate verification
	ServerName string // SNI and verification name; default Host
	TLSVersion string // "" (1.2 and 1.3), "1.2" or "1.3"
	Curves     string // comma list: x25519, p256, p384, x25519mlkem768; "" = Go's default
	ALPN       string // comma list offered with ALPN; "" = none
	Resume     bool   // TLS session resumption (tls.ClientSessionCache, or the lean client's cache)
	// TLSClient picks the TLS client of transport tls: "go" (crypto/tls),
	// "lean" (tlspsk's certificate mode: TLS 1.3, X25519/P-256, no client
	// certificate, a fraction of crypto/tls's CPU per handshake) or "auto"
	// ("" too): lean when --tls-version 1.3 and --curves name only x25519
	// and p256 and there is no client certificate, go otherwise.
	TLSClient string

	// TLS-PSK.
	PSKIdentity string
	PSKKey      []byte

	// MQTT.
	Version      byte // 4 (3.1.1) or 5
	QoS          byte
	KeepAlive    time.Duration
	Username     string
	Password     string
	ClientPrefix string // client ids are prefix + role + index
	// SessionExpiry > 0 asks for a session that outlives the connection
	// (MQTT 5 Session Expiry Interval; in 3.1.1, Clean Session 0), which
	// makes a broker keep, and with a durable store persist, its
	// subscriptions and QoS 1/2 messages.
	SessionExpiry time.Duration

	// Load.
	Clients     int // conn: connections to make; pub: publishers; sub: subscribers
	Pubs, Subs  int // pubsub
	Concurrency int // connection attempts in flight
	PayloadSize int
	Topic       string  // publish topic; %i = client index, %c = client id
	SubTopic    string  // subscription filter; default Topic
	Rate        float64 // messages per second per publisher; 0 = as fast as flow control allows
	Inflight    int     // QoS > 0: unacknowledged publishes per publisher
	Duration    time.Duration
	Count       int64         // pub, pubsub: messages published in all; sub: received; 0 = until Duration
	Hold        time.Duration // conn: keep the connections open, idle, this long
	Drain       time.Duration // after the window, wait this long at most for in-flight messages
	Timeout     time.Duration // per connection: dial, handshake, CONNECT, SUBSCRIBE
	SourceIPs   int           // spread over 127.0.0.1..N; 0 = as needed for the ports
	BrokerPID   int           // sample this process's CPU and memory (Linux /proc)
	ReadBuffer  int           // bufio sizes per connection
	WriteBuffer int
	CPUProfile  string // Command only: write the generator's CPU profile here
}

// Defaults returns a Config with every default set: conn over tcp to
// 127.0.0.1:1883, MQTT 5, QoS 0, 64-byte payloads, 10 s.
func Defaults() Config {
	return Config{
		Scenario:    ScenarioPubSub,
		Host:        "127.0.0.1",
		Transport:   TransportTCP,
		WSPath:      "/mqtt",
		Version:     5,
		KeepAlive:   60 * time.Second,
		Clients:     1,
		Concurrency: 16,
		PayloadSize: 64,
		Topic:       "bench/%i",
		Inflight:    64,
		Duration:    10 * time.Second,
		Drain:       5 * time.Second,
		Timeout:     10 * time.Second,
		ReadBuffer:  16 << 10,
		WriteBuffer: 4 << 10,
	}
}

func cfgErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// Validate checks c and fills defaults that depend on other fields.
func (c *Config) Validate() error {
	switch c.Scenario {
	case ScenarioConn, ScenarioPub, ScenarioSub, ScenarioPubSub:
	default:
		return cfgErr("unknown scenario %q (conn, pub, sub, pubsub)", c.Scenario)
	}
	switch c.Transport {
	case TransportTCP, TransportTLS, TransportTLSPSK, TransportWS, TransportWSS:
	default:
		return cfgErr("unknown transport %q (tcp, tls, tls-psk, ws, wss)", c.Transport)
	}
	if c.Port == 0 {
		c.Port = map[string]int{TransportTCP: 1883, TransportTLS: 8883, TransportTLSPSK: 8883,
			TransportWS: 8083, TransportWSS: 8084}[c.Transport]
	}
	if c.Port < 1 || c.Port > 65535 {
		return cfgErr("port %d out of range", c.Port)
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Transport == TransportTLSPSK {
		if c.PSKIdentity == "" || len(c.PSKKey) == 0 {
			return cfgErr("tls-psk needs --psk HEX and --psk-identity ID")
		}
	} else if len(c.PSKKey) > 0 {
		return cfgErr("--psk needs --transport tls-psk")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return cfgErr("--cert and --key go together")
	}
	if _, _, err := c.tlsVersions(); err != nil {
		return err
	}
	if _, err := c.curveIDs(); err != nil {
		return err
	}
	if _, err := c.leanTLS(); err != nil {
		return err
	}
	if c.Version != 4 && c.Version != 5 {
		return cfgErr("MQTT version %d: use 4 (3.1.1) or 5", c.Version)
	}
	if c.QoS > 2 {
		return cfgErr("QoS %d: use 0, 1 or 2", c.QoS)
	}
	if c.KeepAlive < 0 || c.KeepAlive > 65535*time.Second {
		return cfgErr("keep alive %s out of range (0 to 65535s)", c.KeepAlive)
	}
	if c.SessionExpiry < 0 || c.SessionExpiry > time.Duration(1<<32-1)*time.Second {
		return cfgErr("--session-expiry %s out of range", c.SessionExpiry)
	}
	if c.ClientPrefix == "" {
		c.ClientPrefix = fmt.Sprintf("bench-%04x-", uint16(time.Now().UnixNano()))
	}
	switch c.Scenario {
	case ScenarioPubSub:
		if c.Pubs < 1 || c.Subs < 1 {
			return cfgErr("pubsub needs at least one publisher and one subscriber (--pubs, --subs)")
		}
	default:
		if c.Clients < 1 {
			return cfgErr("need at least one client (-c)")
		}
	}
	maxC := c.Clients
	if c.Scenario == ScenarioConn && c.Hold == 0 {
		if c.Clients > MaxClients {
			return cfgErr("-c %d above the cap of %d connections", c.Clients, MaxClients)
		}
		maxC = 0
	}
	if c.Scenario == ScenarioPubSub {
		maxC = c.Pubs + c.Subs
	}
	if maxC > 1_000_000 {
		return cfgErr("%d simultaneous connections is beyond what one process can hold", maxC)
	}
	if c.Concurrency < 1 || c.Concurrency > MaxConcurrency {
		return cfgErr("--concurrency %d out of range (1 to %d)", c.Concurrency, MaxConcurrency)
	}
	if c.PayloadSize < 0 || c.PayloadSize > MaxPayload {
		return cfgErr("payload size %d out of range (0 to %d)", c.PayloadSize, MaxPayload)
	}
	if c.Topic == "" {
		return cfgErr("empty topic")
	}
	if strings.ContainsAny(c.Topic, "+#") {
		return cfgErr("publish topic %q contains a wildcard (set the filter with --sub-topic)", c.Topic)
	}
	if c.SubTopic == "" {
		c.SubTopic = c.Topic
	}
	if c.Rate < 0 || c.Rate > 10_000_000 {
		return cfgErr("--rate %v out of range", c.Rate)
	}
	if c.Inflight < 1 || c.Inflight > MaxInflight {
		return cfgErr("--inflight %d out of range (1 to %d)", c.Inflight, MaxInflight)
	}
	if c.Duration <= 0 || c.Duration > MaxDuration {
		return cfgErr("duration %s out of range (above 0, at most %s)", c.Duration, MaxDuration)
	}
	if c.Count < 0 || c.Count > MaxCount {
		return cfgErr("-n %d out of range (0 to %d)", c.Count, int64(MaxCount))
	}
	if c.Hold < 0 || c.Hold > MaxHold {
		return cfgErr("--hold %s out of range (0 to %s)", c.Hold, MaxHold)
	}
	if c.Hold > 0 && c.Scenario != ScenarioConn {
		return cfgErr("--hold applies to the conn scenario")
	}
	if c.Drain < 0 || c.Drain > 10*time.Minute {
		return cfgErr("--drain %s out of range", c.Drain)
	}
	if c.Timeout <= 0 || c.Timeout > 5*time.Minute {
		return cfgErr("--timeout %s out of range", c.Timeout)
	}
	if c.SourceIPs < 0 || c.SourceIPs > 254 {
		return cfgErr("--source-ips %d out of range (0 to 254)", c.SourceIPs)
	}
	if c.ReadBuffer < 256 || c.WriteBuffer < 256 {
		return cfgErr("buffers must be at least 256 bytes")
	}
	if c.WSPath == "" {
		c.WSPath = "/mqtt"
	}
	return nil
}

// openConns is how many connections are open at once at most.
func (c *Config) openConns() int {
	switch {
	case c.Scenario == ScenarioPubSub:
		return c.Pubs + c.Subs
	case c.Scenario == ScenarioConn && c.Hold == 0:
		return min(c.Concurrency, c.Clients)
	}
	return c.Clients
}

// totalConns is how many connections the run makes.
func (c *Config) totalConns() int {
	if c.Scenario == ScenarioPubSub {
		return c.Pubs + c.Subs
	}
	return c.Clients
}

func (c *Config) isTLS() bool {
	return c.Transport == TransportTLS || c.Transport == TransportWSS
}

func (c *Config) tlsVersions() (lo, hi uint16, err error) {
	switch c.TLSVersion {
	case "":
		return tls.VersionTLS12, tls.VersionTLS13, nil
	case "1.2":
		return tls.VersionTLS12, tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, tls.VersionTLS13, nil
	}
	return 0, 0, cfgErr("--tls-version %q: use 1.2 or 1.3", c.TLSVersion)
}

var curveNames = map[string]tls.CurveID{
	"x25519":         tls.X25519,
	"p256":           tls.CurveP256,
	"p384":           tls.CurveP384,
	"p521":           tls.CurveP521,
	"x25519mlkem768": tls.X25519MLKEM768,
}

func (c *Config) curveIDs() ([]tls.CurveID, error) {
	if c.Curves == "" {
		return nil, nil
	}
	var ids []tls.CurveID
	for _, n := range strings.Split(c.Curves, ",") {
		id, ok := curveNames[strings.ToLower(strings.TrimSpace(n))]
		if !ok {
			return nil, cfgErr("unknown curve %q (x25519, p256, p384, p521, x25519mlkem768)", n)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// leanTLS decides whether transport tls uses the lean client. Auto picks
// it only when the handshake the broker sees is the one the flags ask
// for: TLS 1.3 only, and only groups the lean client speaks (Go's default
// groups include a post-quantum hybrid it does not).
func (c *Config) leanTLS() (bool, error) {
	switch c.TLSClient {
	case "", TLSClientAuto, TLSClientGo, TLSClientLean:
	default:
		return false, cfgErr("--tls-client %q: use auto, go or lean", c.TLSClient)
	}
	if c.Transport != TransportTLS {
		if c.TLSClient == TLSClientLean {
			return false, cfgErr("--tls-client lean needs --transport tls")
		}
		return false, nil
	}
	why := c.leanBlocker()
	switch c.TLSClient {
	case TLSClientGo:
		return false, nil
	case TLSClientLean:
		if why != "" {
			return false, cfgErr("--tls-client lean: %s", why)
		}
		return true, nil
	}
	return why == "" && c.TLSVersion == "1.3" && c.Curves != "", nil
}

// leanBlocker says why the lean client cannot serve this config ("" when
// it can).
func (c *Config) leanBlocker() string {
	if c.CertFile != "" {
		return "it has no client certificates (--cert)"
	}
	if c.TLSVersion == "1.2" {
		return "it speaks TLS 1.3 only"
	}
	ids, _ := c.curveIDs()
	for _, id := range ids {
		if id != tls.X25519 && id != tls.CurveP256 {
			return "it speaks x25519 and p256 only (--curves)"
		}
	}
	return ""
}

// addr is host:port.
func (c *Config) addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// expandTopic replaces %i with the index and %c with the client id.
func expandTopic(pattern string, i int, id string) string {
	if !strings.Contains(pattern, "%") {
		return pattern
	}
	r := strings.NewReplacer("%i", strconv.Itoa(i), "%c", id)
	return r.Replace(pattern)
}
