package broker

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"moat/internal/topic"
)

var (
	descClients        = prometheus.NewDesc("moat_clients_connected", "Connected MQTT clients.", nil, nil)
	descMsgsRecv       = prometheus.NewDesc("moat_messages_received_total", "PUBLISH packets received.", nil, nil)
	descMsgsSent       = prometheus.NewDesc("moat_messages_sent_total", "PUBLISH packets sent.", nil, nil)
	descDropped        = prometheus.NewDesc("moat_messages_dropped_total", "Messages dropped (queue limits, offline QoS 0, too large for the client).", nil, nil)
	descAuth           = prometheus.NewDesc("moat_auth_total", "CONNECT authentication results.", []string{"result"}, nil)
	descHandshakes     = prometheus.NewDesc("moat_tls_handshakes_total", "Successful TLS handshakes.", []string{"listener"}, nil)
	descHandshakeFails = prometheus.NewDesc("moat_tls_handshake_failures_total", "Failed TLS handshakes by reason.", []string{"listener", "reason"}, nil)
	descCertNotAfter   = prometheus.NewDesc("moat_certificate_not_after_seconds", "Expiry (Unix time) of each server certificate and the earliest of each CA bundle a listener uses.", []string{"listener", "file"}, nil)
	descCANotAfter     = prometheus.NewDesc("moat_builtin_ca_not_after_seconds", "Expiry (Unix time) of the built-in CA's certificates.", []string{"cert"}, nil)
	descCRLNextUpdate  = prometheus.NewDesc("moat_crl_next_update_seconds", "nextUpdate (Unix time) of each CRL in use.", []string{"listener", "source"}, nil)
	descClientExpiring = prometheus.NewDesc("moat_client_certificates_expiring", "Connected clients whose certificate expires within the window.", []string{"within"}, nil)
	descAlarms         = prometheus.NewDesc("moat_alarms", "Active alarms (certificate expiry, stale revocation data).", nil, nil)
)

// collector exposes the broker's state to Prometheus at scrape time.
type collector struct{ s *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	gauge(descClients, float64(s.stats.connected.Load()))
	counter(descMsgsRecv, float64(s.stats.msgsRecv.Load()))
	counter(descMsgsSent, float64(s.stats.msgsSent.Load()))
	counter(descDropped, float64(s.stats.dropped.Load()))
	counter(descAuth, float64(s.stats.authOK.Load()), "success")
	counter(descAuth, float64(s.stats.authFailed.Load()), "failure")
	s.mu.RLock()
	ls := s.listeners
	s.mu.RUnlock()
	for _, bl := range ls {
		name := bl.cfg.Name
		if bl.policy != nil {
			st := bl.policy.Stats()
			counter(descHandshakes, float64(st.Succeeded()), name)
			for reason, n := range st.Snapshot() {
				counter(descHandshakeFails, float64(n), name, reason)
			}
			for file, t := range bl.policy.Status().NotAfter {
				gauge(descCertNotAfter, float64(t.Unix()), name, file)
			}
		}
		if bl.revocation != nil {
			for _, src := range bl.revocation.Status() {
				if !src.NextUpdate.IsZero() {
					gauge(descCRLNextUpdate, float64(src.NextUpdate.Unix()), name, src.Source)
				}
			}
		}
	}
	if s.ca != nil {
		gauge(descCANotAfter, float64(s.ca.Root().NotAfter.Unix()), "root")
		if s.ca.TwoTier() {
			gauge(descCANotAfter, float64(s.ca.Issuer().NotAfter.Unix()), "intermediate")
		}
	}
	now := time.Now()
	leaves := s.clientLeaves()
	for _, w := range []struct {
		label string
		d     time.Duration
	}{{"30d", 30 * 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}, {"1d", 24 * time.Hour}} {
		n := 0
		for _, l := range leaves {
			if l.NotAfter.Sub(now) < w.d {
				n++
			}
		}
		gauge(descClientExpiring, float64(n), w.label)
	}
	gauge(descAlarms, float64(len(s.Alarms())))
}

// clientLeaves returns the client certificates of connected clients.
func (s *Server) clientLeaves() []*x509.Certificate {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*x509.Certificate
	for c := range s.conns {
		if c.connected.Load() && c.leaf != nil {
			out = append(out, c.leaf)
		}
	}
	return out
}

// MetricsHandler serves the broker's metrics in the Prometheus text
// format; the admin API serves it at /metrics.
func (s *Server) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{s})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// Alarm is a condition an operator must act on.
type Alarm struct {
	Name    string    `json:"name"`    // stable, usable in a topic: expiry/<listener>/<file base>, revocation/<listener>
	Message string    `json:"message"` // what is wrong
	Since   time.Time `json:"since"`
}

// Alarms lists the active alarms: certificates (server, CA bundles, the
// built-in CA) and CRLs that expire within the thresholds (30, 7 and 1
// days by default: [alarms] expiry_days), and revocation data that is
// unavailable or stale.
func (s *Server) Alarms() []Alarm {
	now := time.Now()
	var out []Alarm
	thresholds := slices.Sorted(slices.Values(s.cfg.Alarms.ExpiryDays))
	if len(thresholds) == 0 {
		thresholds = []int{1, 7, 30}
	}
	check := func(name, what string, t time.Time) {
		left := t.Sub(now)
		for _, d := range thresholds {
			if left < time.Duration(d)*24*time.Hour {
				msg := fmt.Sprintf("%s expires within %d day(s), at %s", what, d, t.UTC().Format(time.RFC3339))
				if left <= 0 {
					msg = fmt.Sprintf("%s expired at %s", what, t.UTC().Format(time.RFC3339))
				}
				out = append(out, Alarm{Name: name, Message: msg, Since: now})
				return
			}
		}
	}
	s.mu.RLock()
	ls := s.listeners
	s.mu.RUnlock()
	for _, bl := range ls {
		if bl.policy != nil {
			for file, t := range bl.policy.Status().NotAfter {
				check("expiry/"+bl.cfg.Name+"/"+topicSafe(file), "certificate "+file+" of listener "+bl.cfg.Name, t)
			}
		}
		if bl.revocation != nil {
			for _, a := range bl.revocation.Alarms() {
				out = append(out, Alarm{Name: "revocation/" + bl.cfg.Name + "/" + topicSafe(a.Source), Message: a.Message, Since: a.Since})
			}
		}
	}
	if s.ca != nil {
		check("expiry/ca/root", "the built-in CA's root", s.ca.Root().NotAfter)
		if s.ca.TwoTier() {
			check("expiry/ca/intermediate", "the built-in CA's intermediate", s.ca.Issuer().NotAfter)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// topicSafe makes a file name or URL usable as one topic level.
func topicSafe(s string) string {
	r := strings.NewReplacer("/", "_", "+", "_", "#", "_", "$", "_")
	return strings.Trim(r.Replace(s), "_")
}

// alarmLoop logs new alarms and publishes every alarm, retained, on
// $SYS/broker/alarms/<name>; a cleared alarm's topic is emptied.
func (s *Server) alarmLoop() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	active := map[string]string{}
	for {
		now := time.Now()
		seen := map[string]bool{}
		for _, a := range s.Alarms() {
			seen[a.Name] = true
			if active[a.Name] != a.Message {
				s.log.Warn("alarm", "name", a.Name, "message", a.Message)
				active[a.Name] = a.Message
				s.publish(&Message{Topic: "$SYS/broker/alarms/" + a.Name, Payload: []byte(a.Message), Retain: true, Created: now}, new([]topic.Subscription))
			}
		}
		for name := range active {
			if !seen[name] {
				s.log.Info("alarm cleared", "name", name)
				delete(active, name)
				s.retained.Delete("$SYS/broker/alarms/" + name)
			}
		}
		select {
		case <-t.C:
		case <-s.done:
			return
		}
	}
}
