package loadgen

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// Usage is the help text of `moat bench`.
const Usage = `moat bench — an MQTT load generator for any broker, over every TLS mode

Usage:
  moat bench conn   [flags]   connection rate: TCP + TLS handshake + CONNECT/CONNACK
                              (--resume: TLS session resumption; --hold D: keep the
                              connections open and idle for D, for broker memory)
  moat bench pub    [flags]   publishers only (QoS > 0: acknowledgement latency)
  moat bench sub    [flags]   subscribers only (latency from payload timestamps)
  moat bench pubsub [flags]   publishers and subscribers: throughput, end-to-end latency

Target (loopback only unless --allow-remote):
  --host H                127.0.0.1
  -p, --port N            1883 tcp, 8883 tls and tls-psk, 8083 ws, 8084 wss
  --transport T           tcp | tls | tls-psk | ws | wss (default tcp)
  --ws-path P             /mqtt
  --allow-remote          allow a target that is not a loopback address
TLS:
  --cafile F              CA bundle that verifies the broker
  --cert F --key F        client certificate (mutual TLS)
  --insecure              do not verify the broker's certificate
  --servername N          SNI and verified name (default --host)
  --tls-version V         1.2 or 1.3 (default: both)
  --curves L              x25519,p256,p384,p521,x25519mlkem768 (default Go's)
  --alpn L                protocols offered with ALPN (default none)
  --resume                resume TLS sessions (session tickets)
  --tls-client C          tls: auto | go | lean (default auto). go is crypto/tls;
                          lean is moat's own TLS 1.3 client (x25519/p256, no --cert),
                          built so that conn measures the broker, not the generator:
                          one key share per group reused by every connection (the
                          broker's work is unchanged), the chain verified once
                          (--cafile), no signature check at all with --insecure.
                          auto: lean with --tls-version 1.3, --curves limited to
                          x25519,p256 and no --cert; go otherwise
  --psk HEX --psk-identity ID   TLS-PSK key and identity (--transport tls-psk)
MQTT:
  -V 4|5                  protocol version, 3.1.1 or 5 (default 5)
  -q 0|1|2                QoS of publishes and subscriptions (default 0)
  -k, --keepalive D       keep alive, e.g. 60 or 60s (default 60s)
  -u USER -P PASSWORD     credentials
  --prefix S              client id prefix (default bench-XXXX-)
  --session-expiry D      sessions outlive their connections by D (3.1.1: clean
                          session 0): the broker keeps, or persists, QoS 1/2 messages
Load:
  -c N                    conn: connections; pub: publishers; sub: subscribers (default 1)
  --pubs N --subs M       pubsub: publishers and subscribers (default -c each)
  --concurrency N         connection attempts in flight (default 16)
  -s N                    payload bytes (default 64; at least 12 for latency)
  -t TOPIC                publish topic; %i = client index, %c = client id (default bench/%i)
  --sub-topic FILTER      subscription filter (default -t); wildcards allowed
  --rate R                messages/s per publisher; 0 = as fast as flow control allows
  --inflight N            QoS > 0: unacknowledged messages per publisher (default 64)
  -d D                    duration (default 10s; conn --hold: 5m to connect; at most 1h)
  -n N                    pub, pubsub: messages in all; sub: messages to receive
  --hold D                conn: hold the connections open and idle for D (at most 1h)
  --drain D               wait at most D for in-flight messages after the window (5s)
  --timeout D             per connection set-up (10s)
  --source-ips N          spread connections over 127.0.0.1..N (default: as needed
                          for the ephemeral ports, about 25k connections per address)
Output:
  --broker-pid PID        report the broker's CPU and memory (Linux /proc)
  --json                  print the result as JSON instead of a table
  --quiet                 no progress lines on stderr
  --cpuprofile F          write the generator's own CPU profile to F
`

// Command runs `moat bench` with args (the scenario first) and returns the
// exit status: 0 on success, 1 when the run failed, 2 on a usage error.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, asJSON, quiet, err := ParseArgs(args, stderr)
	if err == nil && cfg.CPUProfile != "" {
		f, ferr := os.Create(cfg.CPUProfile)
		if ferr != nil {
			fmt.Fprintln(stderr, "moat bench:", ferr)
			return 1
		}
		defer f.Close()
		if ferr := pprof.StartCPUProfile(f); ferr != nil {
			fmt.Fprintln(stderr, "moat bench:", ferr)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if errors.Is(err, flag.ErrHelp) {
		_, _ = io.WriteString(stdout, Usage)
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "moat bench:", err)
		return 2
	}
	if os.Getenv("GOGC") == "" {
		// The generator allocates little once running; a larger heap
		// goal saves the GC work of connection set-up.
		debug.SetGCPercent(400)
	}
	var progress io.Writer = stderr
	if quiet {
		progress = nil
	}
	res, err := Run(ctx, cfg, progress)
	if res != nil {
		if asJSON {
			_ = res.WriteJSON(stdout)
		} else {
			_ = res.WriteTable(stdout)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "moat bench:", err)
		if errors.Is(err, ErrConfig) {
			return 2
		}
		return 1
	}
	return 0
}

// seconds is a duration flag that also takes a bare number of seconds.
type seconds time.Duration

func (s *seconds) String() string { return time.Duration(*s).String() }

func (s *seconds) Set(v string) error {
	if n, err := strconv.Atoi(v); err == nil {
		*s = seconds(time.Duration(n) * time.Second)
		return nil
	}
	d, err := time.ParseDuration(v)
	*s = seconds(d)
	return err
}

// ParseArgs turns command-line arguments into a Config (not yet
// validated). flag.ErrHelp asks for the usage.
func ParseArgs(args []string, stderr io.Writer) (cfg Config, asJSON, quiet bool, err error) {
	cfg = Defaults()
	if len(args) == 0 {
		return cfg, false, false, cfgErr("missing scenario (conn, pub, sub, pubsub); see moat bench --help")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		return cfg, false, false, flag.ErrHelp
	}
	if strings.HasPrefix(args[0], "-") {
		return cfg, false, false, cfgErr("the scenario comes first: moat bench conn|pub|sub|pubsub [flags]")
	}
	cfg.Scenario = args[0]
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	fs.StringVar(&cfg.Host, "host", cfg.Host, "")
	fs.IntVar(&cfg.Port, "p", 0, "")
	fs.IntVar(&cfg.Port, "port", 0, "")
	fs.StringVar(&cfg.Transport, "transport", cfg.Transport, "")
	fs.StringVar(&cfg.WSPath, "ws-path", cfg.WSPath, "")
	fs.BoolVar(&cfg.AllowRemote, "allow-remote", false, "")

	fs.StringVar(&cfg.CAFile, "cafile", "", "")
	fs.StringVar(&cfg.CertFile, "cert", "", "")
	fs.StringVar(&cfg.KeyFile, "key", "", "")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "")
	fs.StringVar(&cfg.ServerName, "servername", "", "")
	fs.StringVar(&cfg.TLSVersion, "tls-version", "", "")
	fs.StringVar(&cfg.Curves, "curves", "", "")
	fs.StringVar(&cfg.ALPN, "alpn", "", "")
	fs.BoolVar(&cfg.Resume, "resume", false, "")
	fs.StringVar(&cfg.TLSClient, "tls-client", TLSClientAuto, "")
	pskHex := fs.String("psk", "", "")
	fs.StringVar(&cfg.PSKIdentity, "psk-identity", "", "")

	version := fs.String("V", "5", "")
	qos := fs.Uint("q", 0, "")
	fs.Var((*seconds)(&cfg.KeepAlive), "k", "")
	fs.Var((*seconds)(&cfg.KeepAlive), "keepalive", "")
	fs.StringVar(&cfg.Username, "u", "", "")
	fs.StringVar(&cfg.Password, "P", "", "")
	fs.StringVar(&cfg.ClientPrefix, "prefix", "", "")
	fs.DurationVar(&cfg.SessionExpiry, "session-expiry", 0, "")

	fs.IntVar(&cfg.Clients, "c", cfg.Clients, "")
	fs.IntVar(&cfg.Pubs, "pubs", 0, "")
	fs.IntVar(&cfg.Subs, "subs", 0, "")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "")
	fs.IntVar(&cfg.PayloadSize, "s", cfg.PayloadSize, "")
	fs.StringVar(&cfg.Topic, "t", cfg.Topic, "")
	fs.StringVar(&cfg.SubTopic, "sub-topic", "", "")
	fs.Float64Var(&cfg.Rate, "rate", 0, "")
	fs.IntVar(&cfg.Inflight, "inflight", cfg.Inflight, "")
	fs.DurationVar(&cfg.Duration, "d", cfg.Duration, "")
	fs.Int64Var(&cfg.Count, "n", 0, "")
	fs.DurationVar(&cfg.Hold, "hold", 0, "")
	fs.DurationVar(&cfg.Drain, "drain", cfg.Drain, "")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "")
	fs.IntVar(&cfg.SourceIPs, "source-ips", 0, "")

	fs.IntVar(&cfg.BrokerPID, "broker-pid", 0, "")
	fs.BoolVar(&asJSON, "json", false, "")
	fs.BoolVar(&quiet, "quiet", false, "")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "")

	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, false, false, err
		}
		return cfg, false, false, cfgErr("%v", err)
	}
	if fs.NArg() > 0 {
		return cfg, false, false, cfgErr("unexpected argument %q", fs.Arg(0))
	}
	durationSet := false
	fs.Visit(func(f *flag.Flag) { durationSet = durationSet || f.Name == "d" })
	if cfg.Scenario == ScenarioConn && cfg.Hold > 0 && !durationSet {
		cfg.Duration = 5 * time.Minute // time to open every connection
	}
	switch *version {
	case "4", "3.1.1":
		cfg.Version = 4
	case "5", "5.0":
		cfg.Version = 5
	default:
		return cfg, false, false, cfgErr("-V %s: use 4 (3.1.1) or 5", *version)
	}
	if *qos > 2 {
		return cfg, false, false, cfgErr("-q %d: use 0, 1 or 2", *qos)
	}
	cfg.QoS = byte(*qos)
	if *pskHex != "" {
		k, err := hex.DecodeString(*pskHex)
		if err != nil || len(k) == 0 {
			return cfg, false, false, cfgErr("--psk: not a hex key")
		}
		cfg.PSKKey = k
	}
	if cfg.Scenario == ScenarioPubSub {
		if cfg.Pubs == 0 {
			cfg.Pubs = cfg.Clients
		}
		if cfg.Subs == 0 {
			cfg.Subs = cfg.Clients
		}
	}
	return cfg, asJSON, quiet, nil
}
