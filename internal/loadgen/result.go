package loadgen

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"moat/internal/tlspsk"
)

// Result is what a run measured. Rates are per second over Window, the
// measurement window (conn: the connect phase; pub, sub, pubsub: from the
// first publish to the end of the duration, or with -n until everything
// published was acknowledged and delivered). Deliveries after a window
// that ended with the duration (the drain) count in Received, not in the
// rates.
type Result struct {
	Scenario    string    `json:"scenario"`
	Transport   string    `json:"transport"`
	TLSClient   string    `json:"tls_client,omitempty"` // tls, wss: "go" (crypto/tls) or "lean" (tlspsk certificate mode)
	Target      string    `json:"target"`
	MQTTVersion int       `json:"mqtt_version"`
	QoS         int       `json:"qos"`
	PayloadSize int       `json:"payload_size"`
	Rate        float64   `json:"rate_per_publisher,omitempty"`
	Clients     int       `json:"clients,omitempty"`
	Publishers  int       `json:"publishers,omitempty"`
	Subscribers int       `json:"subscribers,omitempty"`
	Topic       string    `json:"topic,omitempty"`
	SubTopic    string    `json:"sub_topic,omitempty"`
	SourceIPs   int       `json:"source_ips"`
	Start       time.Time `json:"start"`
	Window      float64   `json:"window_seconds"`

	Connect ConnectStats `json:"connect"`

	Published   int64         `json:"published,omitempty"`
	Acked       int64         `json:"acked,omitempty"`
	Received    int64         `json:"received,omitempty"`
	Expected    int64         `json:"expected,omitempty"` // deliveries the subscriptions should get; 0 when unknown
	PublishRate float64       `json:"publish_rate,omitempty"`
	AckRate     float64       `json:"ack_rate,omitempty"`
	ReceiveRate float64       `json:"receive_rate,omitempty"` // deliveries in the window per second
	Latency     *LatencyStats `json:"latency,omitempty"`      // end to end, publish to delivery
	AckLatency  *LatencyStats `json:"ack_latency,omitempty"`  // publish to PUBACK / PUBCOMP

	Held        int     `json:"held,omitempty"`
	HoldSeconds float64 `json:"hold_seconds,omitempty"`

	ConnectionsLost int64             `json:"connections_lost,omitempty"`
	Broker          *ProcStats        `json:"broker,omitempty"`
	Generator       *ProcStats        `json:"generator,omitempty"`
	Errors          map[string]int64  `json:"errors,omitempty"`
	ErrorExamples   map[string]string `json:"error_examples,omitempty"` // the first full error of each kind
	Warnings        []string          `json:"warnings,omitempty"`
}

// ConnectStats covers connection set-up: dial, transport handshake,
// CONNECT/CONNACK (and nothing else).
type ConnectStats struct {
	OK          int64         `json:"ok"`
	Failed      int64         `json:"failed"`
	Resumed     int64         `json:"tls_resumed,omitempty"`
	Rate        float64       `json:"rate,omitempty"` // conn: successful connections per second
	Latency     *LatencyStats `json:"latency,omitempty"`
	TLSVersion  string        `json:"tls_version,omitempty"`
	CipherSuite string        `json:"cipher_suite,omitempty"`
}

// LatencyStats are in milliseconds.
type LatencyStats struct {
	Count uint64  `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// ProcStats is a process's CPU over the window and its resident memory.
type ProcStats struct {
	PID         int     `json:"pid"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	CPUCores    float64 `json:"cpu_cores"` // CPU seconds per second of window
	RSSKB       int64   `json:"rss_kb"`    // at the end of the window
	RSSBeforeKB int64   `json:"rss_before_kb,omitempty"`
	RSSHeldKB   int64   `json:"rss_held_kb,omitempty"` // conn --hold: at the end of the hold
	PerConnKB   float64 `json:"per_conn_kb,omitempty"` // conn --hold: (held - before) / connections
}

func latencyStats(h *Histogram) *LatencyStats {
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	return &LatencyStats{
		Count: h.Count(),
		Min:   ms(h.Min()),
		Mean:  h.Mean() / 1e6,
		P50:   ms(h.Quantile(0.50)),
		P90:   ms(h.Quantile(0.90)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(h.Max()),
	}
}

// WriteJSON writes r as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes a human summary.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	mqtt := map[int]string{4: "3.1.1", 5: "5"}[r.MQTTVersion]
	row("scenario", "%s over %s to %s, MQTT %s, QoS %d", r.Scenario, r.Transport, r.Target, mqtt, r.QoS)
	switch r.Scenario {
	case ScenarioConn:
		row("clients", "%s", commas(int64(r.Clients)))
	default:
		s := fmt.Sprintf("%d publishers, %d subscribers; %d-byte payloads", r.Publishers, r.Subscribers, r.PayloadSize)
		if r.Publishers > 0 {
			s += ", topic " + r.Topic
		}
		if r.Subscribers > 0 {
			s += ", filter " + r.SubTopic
		}
		if r.Rate > 0 {
			s += fmt.Sprintf(", %s msg/s per publisher", fmtFloat(r.Rate))
		}
		row("clients", "%s", s)
	}
	switch r.TLSClient {
	case TLSClientLean:
		row("tls client", "lean (moat/internal/tlspsk certificate mode; select with --tls-client)")
	case TLSClientGo:
		row("tls client", "go (crypto/tls)")
	}
	if r.SourceIPs > 1 {
		row("sources", "127.0.0.1 to 127.0.0.%d", r.SourceIPs)
	}
	row("window", "%.2f s", r.Window)
	c := r.Connect
	conn := fmt.Sprintf("%s ok, %s failed", commas(c.OK), commas(c.Failed))
	if c.Rate > 0 {
		conn += fmt.Sprintf(", %s conn/s", fmtFloat(c.Rate))
	}
	if c.TLSVersion != "" {
		conn += fmt.Sprintf("; %s %s", c.TLSVersion, c.CipherSuite)
		if r.Transport == TransportTLS || r.Transport == TransportWSS {
			conn += fmt.Sprintf(", %s resumed", commas(c.Resumed))
		}
	}
	row("connections", "%s", conn)
	if c.Latency != nil {
		row("connect time", "%s", c.Latency.String())
	}
	if r.Scenario != ScenarioConn {
		if r.Publishers > 0 {
			row("published", "%s (%s msg/s)", commas(r.Published), fmtFloat(r.PublishRate))
		}
		if r.QoS > 0 && r.Publishers > 0 {
			row("acknowledged", "%s (%s/s)", commas(r.Acked), fmtFloat(r.AckRate))
		}
		if r.AckLatency != nil {
			row("ack latency", "%s", r.AckLatency.String())
		}
		if r.Subscribers > 0 {
			s := fmt.Sprintf("%s (%s msg/s)", commas(r.Received), fmtFloat(r.ReceiveRate))
			if r.Expected > 0 {
				s += fmt.Sprintf(", %.2f%% of %s expected", 100*float64(r.Received)/float64(r.Expected), commas(r.Expected))
			}
			row("received", "%s", s)
		}
		if r.Latency != nil {
			row("latency", "%s", r.Latency.String())
		}
	}
	if r.Held > 0 {
		row("held", "%s idle connections for %s", commas(int64(r.Held)), time.Duration(r.HoldSeconds*float64(time.Second)))
	}
	if b := r.Broker; b != nil {
		s := fmt.Sprintf("pid %d: CPU %.2f cores (%.2f s), RSS %s", b.PID, b.CPUCores, b.CPUSeconds, kb(b.RSSKB))
		if b.RSSHeldKB > 0 {
			s += fmt.Sprintf("; held %s, before %s: %.1f KB per connection", kb(b.RSSHeldKB), kb(b.RSSBeforeKB), b.PerConnKB)
		}
		row("broker", "%s", s)
	}
	if g := r.Generator; g != nil {
		row("generator", "CPU %.2f cores (%.2f s), RSS %s", g.CPUCores, g.CPUSeconds, kb(g.RSSKB))
	}
	if r.ConnectionsLost > 0 {
		row("lost", "%d connections ended early", r.ConnectionsLost)
	}
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return r.Errors[keys[i]] > r.Errors[keys[j]] })
	for _, k := range keys {
		e := fmt.Sprintf("%s x %s", commas(r.Errors[k]), k)
		if ex := r.ErrorExamples[k]; ex != "" && ex != k {
			e += " (first: " + ex + ")"
		}
		row("error", "%s", e)
	}
	for _, wn := range r.Warnings {
		row("warning", "%s", wn)
	}
	return tw.Flush()
}

func (l *LatencyStats) String() string {
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%s samples)",
		fmtMS(l.P50), fmtMS(l.P90), fmtMS(l.P99), fmtMS(l.P999), fmtMS(l.Max), commas(int64(l.Count)))
}

func fmtMS(ms float64) string {
	switch {
	case ms < 1:
		return strconv.FormatFloat(ms*1000, 'f', 0, 64) + " µs"
	case ms < 100:
		return strconv.FormatFloat(ms, 'f', 2, 64) + " ms"
	}
	return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
}

func kb(v int64) string {
	if v < 0 {
		return "?"
	}
	if v >= 10*1024 {
		return fmt.Sprintf("%.1f MB", float64(v)/1024)
	}
	return fmt.Sprintf("%d KB", v)
}

func fmtFloat(v float64) string {
	if v >= 100 {
		return commas(int64(v + 0.5))
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// commas formats n with thousands separators.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func tlsVersionName(v uint16) string {
	switch v {
	case 0:
		return ""
	case tls.VersionTLS12:
		return "TLS 1.2"
	case tls.VersionTLS13:
		return "TLS 1.3"
	}
	return tls.VersionName(v)
}

func cipherSuiteName(id uint16) string {
	if n := tlspsk.CipherSuiteName(id); !strings.HasPrefix(n, "0x") {
		return n
	}
	return tls.CipherSuiteName(id)
}
