package devices

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"moat/internal/admin"
	"moat/internal/registry"
)

// TestAdminAPI drives the HTTPS admin API of a running broker: refusals
// without a valid token and over plain HTTP, devices and connected clients
// with a token (a TLS-PSK client shows its Principal and TLS version and
// suite), disconnecting a client and rotating its credential through the
// API (DISCONNECT 0x98 both times), and an audit log that records every
// request and holds neither the PSKs nor the token.
func TestAdminAPI(t *testing.T) {
	t.Parallel()
	e := start(t)
	if e.admin == "" {
		t.Fatal("the admin API did not start (registry on, certificate and token configured)")
	}
	if host, _, _ := net.SplitHostPort(e.admin); !net.ParseIP(host).IsLoopback() {
		t.Fatalf("admin API on %s, want loopback", e.admin)
	}

	t.Run("refused", func(t *testing.T) {
		e := e.in(t)
		other, _ := admin.GenerateToken("ops")
		for _, tc := range []struct{ name, auth string }{
			{"no credentials", ""},
			{"wrong token", "Bearer " + other},
			{"token with a typo", "Bearer " + e.token[:len(e.token)-1] + flip(e.token[len(e.token)-1])},
			{"token hash instead of token", "Bearer " + admin.HashToken(e.token)},
			{"not a bearer token", "Basic " + b64std([]byte("ops:"+e.token))},
			{"empty bearer", "Bearer "},
		} {
			for _, path := range []string{"/v1/devices", "/v1/clients"} {
				st, body := e.call("GET", path, tc.auth, nil)
				if st != http.StatusUnauthorized {
					t.Errorf("%s: GET %s: %d, want 401: %s", tc.name, path, st, body)
				}
			}
		}
		// A refused request changes nothing.
		st, _ := e.call("POST", "/v1/devices", "Bearer "+other, map[string]any{"id": "sneaky"})
		if st != http.StatusUnauthorized {
			t.Errorf("POST /v1/devices with a wrong token: %d, want 401", st)
		}
		if _, ok := e.reg.Device("sneaky"); ok {
			t.Error("a request with a wrong token created a device")
		}
		// Plain HTTP to the HTTPS port.
		resp, err := (&http.Client{Timeout: waitTimeout}).Get("http://" + e.admin + "/v1/devices")
		if err != nil {
			t.Fatalf("plain HTTP: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP: %d, want 400: %s", resp.StatusCode, b)
		}
		if bytes.Contains(b, []byte(`"devices"`)) {
			t.Errorf("plain HTTP got data: %s", b)
		}
	})

	// Create a PSK device through the API; the key is in the answer, once.
	var created struct {
		Device  registry.Device `json:"device"`
		Secrets []struct {
			CredentialID string `json:"credential_id"`
			Kind         string `json:"kind"`
			Identity     string `json:"identity"`
			Key          string `json:"key"`
		} `json:"secrets"`
	}
	e.api("POST", "/v1/devices", map[string]any{
		"id":          "api-dev",
		"metadata":    map[string]string{"site": "plant-a"},
		"acl":         []registry.Rule{ownTopicRule},
		"credentials": []map[string]any{{"kind": "psk", "identity": "api-dev-id"}},
	}, http.StatusCreated, &created)
	if len(created.Secrets) != 1 || created.Secrets[0].Identity != "api-dev-id" || len(created.Secrets[0].Key) != 64 {
		t.Fatalf("created: %+v", created)
	}
	key, _ := hex.DecodeString(created.Secrets[0].Key)
	credID := created.Secrets[0].CredentialID
	secrets := [][]byte{key}

	// The device list and a device read back hold no secret.
	var list struct {
		Devices []json.RawMessage `json:"devices"`
	}
	e.api("GET", "/v1/devices", nil, http.StatusOK, &list)
	if len(list.Devices) != 1 || !strings.Contains(string(list.Devices[0]), `"api-dev"`) || !strings.Contains(string(list.Devices[0]), `"api-dev-id"`) {
		t.Fatalf("device list: %s", list.Devices)
	}
	if f := findSecret(list.Devices[0], key); f != "" {
		t.Fatalf("the device list shows the PSK (%s)", f)
	}

	// A TLS-PSK client of that device.
	conn, err := dialPSK(t, e.tls, "api-dev-id", key, 0)
	if err != nil {
		t.Fatalf("TLS-PSK with the key from the API: %v", err)
	}
	c := mustConnect(t, conn, &paho.Connect{ClientID: "api-client"})
	var clients struct {
		Clients []admin.ClientInfo `json:"clients"`
	}
	e.api("GET", "/v1/clients", nil, http.StatusOK, &clients)
	var ci *admin.ClientInfo
	for i := range clients.Clients {
		if clients.Clients[i].ClientID == "api-client" {
			ci = &clients.Clients[i]
		}
	}
	switch {
	case ci == nil:
		t.Fatalf("api-client not in the client list: %+v", clients.Clients)
	case ci.PrincipalID != "api-dev" || ci.Method != "psk" || ci.Principal != "psk:api-dev":
		t.Fatalf("api-client's principal: %+v, want the device api-dev over psk", ci)
	case ci.TLSVersion != "TLS 1.3" || !strings.HasPrefix(ci.CipherSuite, "TLS_"):
		t.Fatalf("api-client's TLS: version %q suite %q, want TLS 1.3 and a suite", ci.TLSVersion, ci.CipherSuite)
	case ci.Listener != "tls" || ci.ProtocolVersion != 5:
		t.Fatalf("api-client: %+v", ci)
	}

	// Disconnect it through the API.
	t0 := time.Now()
	e.api("POST", "/v1/clients/api-client/disconnect", nil, http.StatusOK, nil)
	c.expectKicked(t0, "POST /v1/clients/{id}/disconnect")
	st, _ := e.call("POST", "/v1/clients/api-client/disconnect", "Bearer "+e.token, nil)
	if st != http.StatusNotFound {
		t.Fatalf("disconnecting a client that is gone: %d, want 404", st)
	}

	// Rotate its credential through the API: the live session ends, the
	// old key fails, the new one works.
	conn, err = dialPSK(t, e.tls, "api-dev-id", key, 0)
	if err != nil {
		t.Fatal(err)
	}
	c = mustConnect(t, conn, &paho.Connect{ClientID: "api-client"})
	var rotated struct {
		Key string `json:"key"`
	}
	t0 = time.Now()
	e.api("POST", "/v1/devices/api-dev/credentials/"+credID+"/rotate", nil, http.StatusOK, &rotated)
	c.expectKicked(t0, "rotate through the API")
	newKey, _ := hex.DecodeString(rotated.Key)
	if len(newKey) != len(key) || bytes.Equal(newKey, key) {
		t.Fatalf("rotated key %q", rotated.Key)
	}
	secrets = append(secrets, newKey)
	if conn, err := dialPSK(t, e.tls, "api-dev-id", key, 0); err == nil {
		conn.Close()
		t.Fatal("the old key still works after rotation")
	}
	conn, err = dialPSK(t, e.tls, "api-dev-id", newKey, 0)
	if err != nil {
		t.Fatalf("the new key: %v", err)
	}
	mustConnect(t, conn, &paho.Connect{ClientID: "api-client"}).close()

	// Fleet key and derived PSK through the API: secrets in the answers,
	// never in the audit log.
	var fleet struct {
		Set bool   `json:"fleet_key_set"`
		Key string `json:"key"`
	}
	e.api("POST", "/v1/fleet/key", nil, http.StatusOK, &fleet)
	fleetKey, _ := hex.DecodeString(fleet.Key)
	if !fleet.Set || len(fleetKey) != 32 {
		t.Fatalf("fleet key: %+v", fleet)
	}
	secrets = append(secrets, fleetKey)
	var derived struct {
		Key string `json:"key"`
	}
	e.api("POST", "/v1/fleet/derive", map[string]string{"identity": "fleet-7"}, http.StatusOK, &derived)
	dk, _ := hex.DecodeString(derived.Key)
	if want, _ := e.reg.DerivePSK("fleet-7"); !bytes.Equal(dk, want) || len(dk) != 32 {
		t.Fatalf("derived key %q", derived.Key)
	}
	secrets = append(secrets, dk)

	// The OpenAPI description.
	var doc map[string]any
	e.api("GET", "/v1/openapi.json", nil, http.StatusOK, &doc)
	if _, ok := doc["openapi"]; !ok || doc["paths"] == nil {
		t.Fatalf("openapi.json: %v", doc)
	}

	// Disable through the API (no live session now), then delete.
	e.api("POST", "/v1/devices/api-dev/disable", nil, http.StatusOK, nil)
	if conn, err := dialPSK(t, e.tls, "api-dev-id", newKey, 0); err == nil {
		conn.Close()
		t.Fatal("a device disabled through the API still connects")
	}
	e.api("DELETE", "/v1/devices/api-dev", nil, http.StatusNoContent, nil)

	// The audit log: one JSON line per request, who/what/when/result,
	// never a secret.
	raw, err := os.ReadFile(e.cfg.Admin.AuditLog)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	if fi, err := os.Stat(e.cfg.Admin.AuditLog); err == nil && fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("audit log mode %v: readable by group or others", fi.Mode().Perm())
	}
	for _, s := range secrets {
		if f := findSecret(raw, s); f != "" {
			t.Errorf("the audit log holds a PSK (%s)", f)
		}
	}
	if strings.Contains(string(raw), e.token) || strings.Contains(string(raw), strings.TrimPrefix(e.token, admin.TokenPrefix)) {
		t.Error("the audit log holds the admin token")
	}
	var recs []admin.AuditRecord
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var r admin.AuditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	want := []struct{ who, action, target, result string }{
		{"anonymous", "authenticate", "", "denied"},
		{"token:ops", "device.create", "device:api-dev", "ok"},
		{"token:ops", "client.list", "", "ok"},
		{"token:ops", "client.disconnect", "client:api-client", "ok"},
		{"token:ops", "client.disconnect", "client:api-client", "error"},
		{"token:ops", "credential.rotate", "device:api-dev/credential:" + credID, "ok"},
		{"token:ops", "fleet.set-key", "", "ok"},
		{"token:ops", "fleet.derive", "identity:fleet-7", "ok"},
		{"token:ops", "device.disable", "device:api-dev", "ok"},
		{"token:ops", "device.delete", "device:api-dev", "ok"},
	}
	for _, w := range want {
		found := false
		for _, r := range recs {
			if r.Who == w.who && r.Action == w.action && r.Target == w.target && r.Result == w.result && !r.Time.IsZero() {
				found = true
			}
		}
		if !found {
			t.Errorf("no audit record %+v in:\n%s", w, raw)
		}
	}
	if n := len(recs); n < 20 {
		t.Errorf("%d audit records, want one per request (at least 20)", n)
	}
}

// flip changes one base64url character into another.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}
