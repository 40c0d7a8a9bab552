// Package metrics scrapes the broker's Prometheus endpoint over HTTPS and
// checks the expiry gauges and alarms against the certificates in use.
package metrics

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"moat/internal/admin"
	"moat/internal/brokertest"
	"moat/internal/config"
	"moat/internal/registry"
	"moat/internal/testpki"
)

func TestMetricsAndAlarms(t *testing.T) {
	dir := t.TempDir()
	set, err := testpki.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A server certificate that expires in five days: inside the 7-day
	// alarm threshold.
	spec := testpki.ServerSpec()
	spec.NotAfter = time.Now().Add(5 * 24 * time.Hour)
	soon, err := testpki.IssueFiles(set.Intermediate, spec, dir, "soon")
	if err != nil {
		t.Fatal(err)
	}
	mk := filepath.Join(dir, "master.key")
	if _, err := registry.WriteMasterKeyFile(mk); err != nil {
		t.Fatal(err)
	}
	tok, rec := admin.GenerateToken("prometheus")
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte(rec.Name+":"+rec.SHA256+"\n"), 0o600)
	b := brokertest.Start(t, func(c *config.Config) {
		c.MasterKeyFile = mk
		c.Admin.Address = "127.0.0.1:0"
		c.Admin.Cert, c.Admin.Key = set.Server.CertFile, set.Server.KeyFile
		c.Admin.TokensFile = tokens
		c.Listeners = append(c.Listeners, config.Listener{Name: "tls", Type: "tls", Address: "127.0.0.1:0",
			TLS: &config.TLS{Cert: soon.CertFile, Key: soon.KeyFile, ClientAuth: "required", ClientCA: []string{set.CAFile}}})
	})

	// One refused handshake: no client certificate on a "required" listener.
	if c, err := tls.Dial("tcp", b.Server.Addr("tls").String(), &tls.Config{RootCAs: testpki.Pool(set.Root), ServerName: "localhost"}); err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 1))
		c.Close()
	}

	scrape := func(token string) (int, map[string]*dto.MetricFamily) {
		req, _ := http.NewRequest("GET", "https://"+b.Server.AdminAddr().String()+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: testpki.Pool(set.Root), ServerName: "localhost"}}}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return resp.StatusCode, nil
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatalf("parsing metrics: %v", err)
		}
		return 200, fams
	}
	if code, _ := scrape(""); code != http.StatusUnauthorized {
		t.Fatalf("metrics without a token: HTTP %d", code)
	}
	_, fams := scrape(tok)
	labels := func(m *dto.Metric) map[string]string {
		out := map[string]string{}
		for _, l := range m.GetLabel() {
			out[l.GetName()] = l.GetValue()
		}
		return out
	}
	var gotCert, gotCA bool
	for _, m := range fams["moat_certificate_not_after_seconds"].GetMetric() {
		l := labels(m)
		if l["listener"] != "tls" {
			continue
		}
		switch l["file"] {
		case soon.CertFile:
			gotCert = int64(m.GetGauge().GetValue()) == soon.Cert.Cert.NotAfter.Unix()
		case set.CAFile:
			gotCA = int64(m.GetGauge().GetValue()) == set.Root.Root().NotAfter.Unix()
		}
	}
	if !gotCert || !gotCA {
		t.Fatalf("expiry gauges do not match the certificates: %v", fams["moat_certificate_not_after_seconds"])
	}
	var refused float64
	for _, m := range fams["moat_tls_handshake_failures_total"].GetMetric() {
		if l := labels(m); l["listener"] == "tls" && l["reason"] == "no_certificate" {
			refused = m.GetCounter().GetValue()
		}
	}
	if refused < 1 {
		t.Fatalf("handshake failure not counted: %v", fams["moat_tls_handshake_failures_total"])
	}
	if fams["moat_alarms"].GetMetric()[0].GetGauge().GetValue() < 1 {
		t.Fatal("no alarm for a certificate expiring in 5 days")
	}

	// The alarm is on $SYS, retained.
	var alarm string
	for _, a := range b.Server.Alarms() {
		if strings.HasPrefix(a.Name, "expiry/tls/") && strings.Contains(a.Message, "7 day") {
			alarm = a.Name
		}
	}
	if alarm == "" {
		t.Fatalf("alarms: %+v", b.Server.Alarms())
	}
	// And in the admin API.
	req, _ := http.NewRequest("GET", "https://"+b.Server.AdminAddr().String()+"/v1/alarms", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: testpki.Pool(set.Root), ServerName: "localhost"}}}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), alarm) {
		t.Fatalf("/v1/alarms: HTTP %d %s", resp.StatusCode, body)
	}

	conn, err := net.DialTimeout("tcp", b.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan *paho.Publish, 4)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { msgs <- pr.Packet; return true, nil },
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "ops", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$SYS/broker/alarms/" + alarm, QoS: 0}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		if !strings.Contains(string(m.Payload), "expires within 7 day") {
			t.Fatalf("alarm payload %q", m.Payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("alarm not published on $SYS")
	}
}
