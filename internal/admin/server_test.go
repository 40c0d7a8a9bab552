package admin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"moat/internal/registry"
)

func TestAuthenticationRefusals(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name   string
		cert   *testCert
		header string // Authorization
		want   int
	}{
		{"no credentials", nil, "", http.StatusUnauthorized},
		{"wrong token", nil, "Bearer moat_wrong", http.StatusUnauthorized},
		{"token of the right length but wrong", nil, "Bearer " + strings.Repeat("x", len(e.token)), http.StatusUnauthorized},
		{"basic auth", nil, "Basic YWRtaW46YWRtaW4=", http.StatusUnauthorized},
		{"empty bearer", nil, "Bearer ", http.StatusUnauthorized},
		{"verified certificate not on the list", &e.userCert, "", http.StatusForbidden},
		{"wrong token with an admin certificate", &e.adminCert, "Bearer moat_wrong", http.StatusUnauthorized},
		{"token", nil, "Bearer " + e.token, http.StatusOK},
		{"token, lower-case scheme", nil, "bearer " + e.token, http.StatusOK},
		{"admin certificate by name", &e.adminCert, "", http.StatusOK},
		{"admin certificate by fingerprint", &e.fpCert, "", http.StatusOK},
		{"token with a certificate not on the list", &e.userCert, "Bearer " + e.token, http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := map[string]string{}
			if c.header != "" {
				hdr["Authorization"] = c.header
			}
			r, err := e.try(e.client(c.cert), "GET", "/v1/devices", "", "", hdr)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != c.want {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, c.want)
			}
			if c.want == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("401 without a Bearer challenge: %v", r.header)
			}
			if c.want >= 400 {
				if m := r.json(t); m["error"] == "" || m["devices"] != nil {
					t.Fatalf("refused request answered %s", r.body)
				}
			}
		})
	}
	// A certificate from an unknown CA fails the handshake.
	if _, err := e.try(e.client(&e.foreign), "GET", "/v1/devices", "", "", nil); err == nil {
		t.Fatal("certificate from an unknown CA accepted")
	}
	// Unknown paths are not revealed before authentication.
	if r := e.do(e.client(nil), "GET", "/v1/nothing-here", "", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("unauthenticated unknown path: %d", r.status)
	}
	// Refusals are audited, naming the certificate where there is one.
	var denied []AuditRecord
	for _, rec := range e.audit.records(t) {
		if rec.Result == "denied" {
			denied = append(denied, rec)
		}
	}
	if !slices.ContainsFunc(denied, func(r AuditRecord) bool { return r.Who == "cert:intruder" && r.Status == 403 }) ||
		!slices.ContainsFunc(denied, func(r AuditRecord) bool { return r.Who == "anonymous" && r.Status == 401 }) {
		t.Fatalf("denied records: %+v", denied)
	}
	for _, rec := range e.audit.records(t) {
		if rec.Result == "ok" && rec.Who != "token:ops" && rec.Who != "cert:admin" && rec.Who != "cert:robot" {
			t.Fatalf("accepted request by %q", rec.Who)
		}
	}
}

// Plain HTTP to the TLS port is refused by net/http before any handler.
func TestPlainHTTPRefused(t *testing.T) {
	e := newEnv(t)
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	tok := e.token
	if _, err := conn.Write([]byte("GET /v1/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body.String(), "HTTPS") {
		t.Fatalf("plain HTTP: %d %q", resp.StatusCode, body.String())
	}
	// An http:// client gets the same.
	c := &http.Client{Timeout: 5 * time.Second}
	req, _ := http.NewRequest("GET", "http://"+e.addr+"/v1/devices", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	r2, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusBadRequest {
		t.Fatalf("http:// client: %d", r2.StatusCode)
	}
	for _, rec := range e.audit.records(t) {
		if rec.Result == "ok" {
			t.Fatalf("a plain-HTTP request reached a handler: %+v", rec)
		}
	}
}

// The handler itself refuses requests that did not come over TLS (defense
// in depth, should it ever be mounted elsewhere).
func TestHandlerRequiresTLS(t *testing.T) {
	e := newEnv(t)
	req := httptest.NewRequest("GET", "/v1/devices", nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	w := httptest.NewRecorder()
	e.srv.handler.ServeHTTP(w, req)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "HTTPS required") {
		t.Fatalf("non-TLS request: %d %s", w.Code, w.Body)
	}
}

func TestDeviceRoundTrip(t *testing.T) {
	e := newEnv(t)
	var changes []string
	e.reg.OnChange(func(id string) { changes = append(changes, id) })

	// Create with a generated PSK, an ACL and metadata.
	r := e.api("POST", "/v1/devices", `{"id":"sensor-17","metadata":{"site":"plant-a"},
		"acl":[{"permission":"allow","action":"publish","topic":"sensors/%i/#"}],
		"credentials":[{"kind":"psk"}]}`, http.StatusCreated)
	var created createdDevice
	json.Unmarshal(r.body, &created)
	if created.Device == nil || created.Device.ID != "sensor-17" || len(created.Secrets) != 1 || len(created.Secrets[0].Key) != 64 {
		t.Fatalf("create: %s", r.body)
	}
	key, _ := hex.DecodeString(created.Secrets[0].Key)
	if k, ok := e.reg.LookupPSK("sensor-17"); !ok || !bytes.Equal(k, key) {
		t.Fatal("the returned key is not the registered one")
	}
	pskID := created.Secrets[0].CredentialID
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Fatalf("secret response Cache-Control %q", got)
	}

	e.api("POST", "/v1/devices", `{"id":"sensor-17"}`, http.StatusConflict)
	e.api("POST", "/v1/devices", `{"id":"bad/id"}`, http.StatusBadRequest)
	e.api("POST", "/v1/devices", `{"id":"x","status":"sleeping"}`, http.StatusBadRequest)

	// List and show.
	r = e.api("GET", "/v1/devices", "", http.StatusOK)
	var list struct{ Devices []registry.Device }
	json.Unmarshal(r.body, &list)
	if len(list.Devices) != 1 || list.Devices[0].Metadata["site"] != "plant-a" {
		t.Fatalf("list: %s", r.body)
	}
	r = e.api("GET", "/v1/devices/sensor-17", "", http.StatusOK)
	if strings.Contains(string(r.body), created.Secrets[0].Key) || strings.Contains(string(r.body), "sealed") {
		t.Fatalf("show leaks the key: %s", r.body)
	}
	e.api("GET", "/v1/devices/nobody", "", http.StatusNotFound)

	// Update ACL and metadata.
	r = e.api("PATCH", "/v1/devices/sensor-17", `{"acl":[{"permission":"deny","topic":"#"}],"metadata":{"site":"plant-b"}}`, http.StatusOK)
	var d registry.Device
	json.Unmarshal(r.body, &d)
	if len(d.ACL) != 1 || d.ACL[0].Permission != "deny" || d.Metadata["site"] != "plant-b" {
		t.Fatalf("patch: %s", r.body)
	}
	e.api("PATCH", "/v1/devices/sensor-17", `{}`, http.StatusBadRequest)
	e.api("PATCH", "/v1/devices/sensor-17", `{"acl":[{"permission":"deny","topic":"a/#/b"}]}`, http.StatusBadRequest)
	e.api("PATCH", "/v1/devices/nobody", `{"metadata":{}}`, http.StatusNotFound)

	// Disable, enable.
	r = e.api("POST", "/v1/devices/sensor-17/disable", "", http.StatusOK)
	if json.Unmarshal(r.body, &d); d.Status != registry.StatusDisabled {
		t.Fatalf("disable: %s", r.body)
	}
	if _, ok := e.reg.LookupPSK("sensor-17"); ok {
		t.Fatal("disabled device still found")
	}
	e.api("POST", "/v1/devices/sensor-17/enable", "{}", http.StatusOK)
	if _, ok := e.reg.LookupPSK("sensor-17"); !ok {
		t.Fatal("enabled device not found")
	}
	e.api("POST", "/v1/devices/nobody/disable", "", http.StatusNotFound)
	e.api("POST", "/v1/devices/sensor-17/disable", `{"force":true}`, http.StatusBadRequest)

	// Credentials: a given PSK (nothing returned), a password (generated),
	// a pinned key from a certificate, an ecdh key.
	r = e.api("POST", "/v1/devices/sensor-17/credentials", `{"kind":"psk","identity":"s17-b","key":"`+strings.Repeat("ab", 32)+`"}`, http.StatusCreated)
	var cc createdCredential
	json.Unmarshal(r.body, &cc)
	if cc.Credential == nil || cc.Secret != nil {
		t.Fatalf("given psk: %s", r.body)
	}
	givenID := cc.Credential.ID
	r = e.api("POST", "/v1/devices/sensor-17/credentials", `{"kind":"password"}`, http.StatusCreated)
	cc = createdCredential{}
	json.Unmarshal(r.body, &cc)
	if cc.Secret == nil || len(cc.Secret.Password) < 32 {
		t.Fatalf("generated password: %s", r.body)
	}
	pwID := cc.Credential.ID
	pemCert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.userCert.cert.Raw}))
	body, _ := json.Marshal(map[string]string{"kind": "pinned-key", "certificate": pemCert})
	r = e.api("POST", "/v1/devices/sensor-17/credentials", string(body), http.StatusCreated)
	pin := registry.SPKISHA256(e.userCert.cert)
	if dev, ok := e.reg.ByPinnedKey(pin[:]); !ok || dev.ID != "sensor-17" {
		t.Fatal("pinned key from PEM not registered")
	}
	e.api("POST", "/v1/devices/sensor-17/credentials", string(body), http.StatusConflict)
	e.api("POST", "/v1/devices/sensor-17/credentials", `{"kind":"pinned-key","certificate":"not pem"}`, http.StatusBadRequest)
	e.api("POST", "/v1/devices/sensor-17/credentials", `{"kind":"psk","key":"zz"}`, http.StatusBadRequest)
	e.api("POST", "/v1/devices/sensor-17/credentials", `{"kind":"magic"}`, http.StatusBadRequest)
	e.api("POST", "/v1/devices/nobody/credentials", `{"kind":"psk"}`, http.StatusNotFound)

	// ECDH: the broker key, a device key, and both sides agree.
	r = e.api("GET", "/v1/ecdh/public-key", "", http.StatusOK)
	brokerPub, _ := hex.DecodeString(r.json(t)["public_key"].(string))
	devPriv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	e.api("POST", "/v1/devices/sensor-17/credentials", `{"kind":"ecdh","identity":"s17-ecdh","public_key":"`+hex.EncodeToString(devPriv.PublicKey().Bytes())+`"}`, http.StatusCreated)
	want, _ := registry.DeviceECDHPSK(devPriv, brokerPub, "s17-ecdh")
	if k, ok := e.reg.LookupPSK("s17-ecdh"); !ok || !bytes.Equal(k, want) {
		t.Fatal("ecdh psk differs between broker and device")
	}

	// Rotate: the new secret once; the old one fails.
	changes = nil
	r = e.api("POST", "/v1/devices/sensor-17/credentials/"+pskID+"/rotate", "", http.StatusOK)
	var sec secretJSON
	json.Unmarshal(r.body, &sec)
	newKey, _ := hex.DecodeString(sec.Key)
	if sec.CredentialID != pskID || len(newKey) != 32 || bytes.Equal(newKey, key) {
		t.Fatalf("rotate: %s", r.body)
	}
	if k, _ := e.reg.LookupPSK("sensor-17"); !bytes.Equal(k, newKey) {
		t.Fatal("rotation not applied")
	}
	r = e.api("POST", "/v1/devices/sensor-17/credentials/"+pwID+"/rotate", "", http.StatusOK)
	sec = secretJSON{}
	json.Unmarshal(r.body, &sec)
	if _, ok := e.reg.VerifyPassword("sensor-17", []byte(sec.Password)); !ok || sec.Password == "" {
		t.Fatal("rotated password refused")
	}
	if !slices.Equal(changes, []string{"sensor-17", "sensor-17"}) {
		t.Fatalf("OnChange after rotations: %v", changes)
	}
	pinnedID := ""
	d, _ = func() (registry.Device, bool) { x, ok := e.reg.Device("sensor-17"); return *x, ok }()
	for _, c := range d.Credentials {
		if c.Kind == registry.KindPinnedKey {
			pinnedID = c.ID
		}
	}
	e.api("POST", "/v1/devices/sensor-17/credentials/"+pinnedID+"/rotate", "", http.StatusConflict)
	e.api("POST", "/v1/devices/sensor-17/credentials/nope/rotate", "", http.StatusNotFound)

	// Delete a credential, then the device.
	e.api("DELETE", "/v1/devices/sensor-17/credentials/"+givenID, "", http.StatusNoContent)
	if _, ok := e.reg.LookupPSK("s17-b"); ok {
		t.Fatal("deleted credential still found")
	}
	e.api("DELETE", "/v1/devices/sensor-17/credentials/"+givenID, "", http.StatusNotFound)
	e.api("DELETE", "/v1/devices/sensor-17", "", http.StatusNoContent)
	e.api("DELETE", "/v1/devices/sensor-17", "", http.StatusNotFound)
	if e.reg.Len() != 0 {
		t.Fatal("device not deleted")
	}

	// Fleet key and derivation.
	e.api("POST", "/v1/fleet/derive", `{"identity":"f1"}`, http.StatusConflict) // no fleet key yet
	r = e.api("POST", "/v1/fleet/key", "", http.StatusOK)
	fleetKey := r.json(t)["key"].(string)
	if len(fleetKey) != 64 {
		t.Fatalf("generated fleet key: %s", r.body)
	}
	e.api("POST", "/v1/fleet/key", "", http.StatusConflict) // already set
	e.api("POST", "/v1/fleet/key", `{"key":"`+strings.Repeat("01", 32)+`","replace":true}`, http.StatusOK)
	r = e.api("POST", "/v1/fleet/derive", `{"identity":"f1"}`, http.StatusOK)
	derived := r.json(t)["key"].(string)
	want, _ = e.reg.DerivePSK("f1")
	if derived != hex.EncodeToString(want) {
		t.Fatal("derive endpoint disagrees with the registry")
	}
	e.api("POST", "/v1/devices", `{"id":"f1","credentials":[{"kind":"psk","derived":true}]}`, http.StatusCreated)
	if k, ok := e.reg.LookupPSK("f1"); !ok || hex.EncodeToString(k) != derived {
		t.Fatal("derived device not found")
	}
}

func TestClientsEndpoints(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC().Truncate(time.Second)
	e.clients.clients = []ClientInfo{
		{ClientID: "a/b", Principal: "psk:sensor-17", PrincipalID: "sensor-17", Method: "psk", Remote: "127.0.0.1:5000", Listener: "tls", ProtocolVersion: 5, TLSVersion: "TLS 1.3", CipherSuite: "TLS_AES_128_GCM_SHA256", ConnectedAt: now},
		{ClientID: "c2", Principal: "cert:cam-3", PrincipalID: "cam-3", Method: "cert", ConnectedAt: now},
	}
	r := e.api("GET", "/v1/clients", "", http.StatusOK)
	var got struct{ Clients []ClientInfo }
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Clients) != 2 || got.Clients[0] != e.clients.clients[0] {
		t.Fatalf("clients: %s", r.body)
	}
	// A client id with '/' is percent-encoded in the path.
	e.api("POST", "/v1/clients/"+url.PathEscape("a/b")+"/disconnect", "", http.StatusOK)
	e.api("POST", "/v1/clients/"+url.PathEscape("a/b")+"/disconnect", "", http.StatusNotFound)
	if !slices.Equal(e.clients.kicked, []string{"a/b"}) {
		t.Fatalf("kicked %v", e.clients.kicked)
	}
	recs := e.audit.records(t)
	if !slices.ContainsFunc(recs, func(r AuditRecord) bool {
		return r.Action == "client.disconnect" && r.Target == "client:a/b" && r.Result == "ok" && r.Who == "token:ops"
	}) {
		t.Fatalf("disconnect not audited: %+v", recs)
	}

	// Without a broker the endpoints say so.
	e.srv.clients = nil
	e.api("GET", "/v1/clients", "", http.StatusServiceUnavailable)
	e.api("POST", "/v1/clients/c2/disconnect", "", http.StatusServiceUnavailable)
}

func TestRequestBodies(t *testing.T) {
	e := newEnv(t)
	c := e.client(nil)
	big := `{"id":"x","metadata":{"k":"` + strings.Repeat("a", DefaultMaxBodyBytes) + `"}}`
	cases := []struct {
		name, body, ctype string
		want              int
	}{
		{"unknown field", `{"id":"x","colour":"red"}`, "application/json", http.StatusBadRequest},
		{"unknown nested field", `{"id":"x","credentials":[{"kind":"psk","secret":"x"}]}`, "application/json", http.StatusBadRequest},
		{"unknown rule field", `{"id":"x","acl":[{"permission":"allow","topic":"a","qos":1}]}`, "application/json", http.StatusBadRequest},
		{"too large", big, "application/json", http.StatusRequestEntityTooLarge},
		{"not JSON", `id=x`, "application/json", http.StatusBadRequest},
		{"two values", `{"id":"x"}{"id":"y"}`, "application/json", http.StatusBadRequest},
		{"wrong type", `{"id":5}`, "application/json", http.StatusBadRequest},
		{"truncated", `{"id":"x"`, "application/json", http.StatusBadRequest},
		{"empty", ``, "application/json", http.StatusBadRequest},
		{"form content type", `{"id":"x"}`, "application/x-www-form-urlencoded", http.StatusUnsupportedMediaType},
		{"JSON with charset", `{"id":"ok-1"}`, "application/json; charset=utf-8", http.StatusCreated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", e.url+"/v1/devices", strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+e.token)
			req.Header.Set("Content-Type", tc.ctype)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var eb errorBody
			json.NewDecoder(resp.Body).Decode(&eb)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, eb.Error, tc.want)
			}
			if tc.want >= 400 && eb.Error == "" {
				t.Fatal("no JSON error")
			}
		})
	}
	if e.reg.Len() != 1 {
		t.Fatalf("%d devices after refused bodies", e.reg.Len())
	}
}

func TestMethodAndPathErrors(t *testing.T) {
	e := newEnv(t)
	r := e.api("PUT", "/v1/devices", `{}`, http.StatusMethodNotAllowed)
	if r.header.Get("Allow") != "GET, POST" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	e.api("GET", "/v1/devices/x/disable", "", http.StatusMethodNotAllowed)
	e.api("GET", "/v1/nothing", "", http.StatusNotFound)
	e.api("GET", "/", "", http.StatusNotFound)
}

func TestCrossOriginRefused(t *testing.T) {
	e := newEnv(t)
	r, err := e.try(e.client(&e.adminCert), "POST", "/v1/devices", "", `{"id":"csrf"}`,
		map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
	if err != nil {
		t.Fatal(err)
	}
	if r.status != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d", r.status)
	}
	if _, ok := e.reg.Device("csrf"); ok {
		t.Fatal("cross-site request created a device")
	}
	// Safe methods and same-origin requests pass.
	if r, _ := e.try(e.client(&e.adminCert), "GET", "/v1/devices", "", "", map[string]string{"Sec-Fetch-Site": "cross-site"}); r.status != http.StatusOK {
		t.Fatalf("cross-site GET: %d", r.status)
	}
	if r, _ := e.try(e.client(&e.adminCert), "POST", "/v1/devices", "", `{"id":"same"}`, map[string]string{"Sec-Fetch-Site": "same-origin"}); r.status != http.StatusCreated {
		t.Fatalf("same-origin POST: %d", r.status)
	}
}

// The audit log records who did what to what, and never a secret.
func TestAuditNeverHoldsSecrets(t *testing.T) {
	e := newEnv(t)
	var secrets []string
	given := strings.Repeat("5a", 32)
	secrets = append(secrets, given)
	r := e.api("POST", "/v1/devices", `{"id":"d1","credentials":[{"kind":"psk"},{"kind":"psk","identity":"given","key":"`+given+`"}]}`, http.StatusCreated)
	var created createdDevice
	json.Unmarshal(r.body, &created)
	for _, s := range created.Secrets {
		secrets = append(secrets, s.Key)
	}
	r = e.api("POST", "/v1/devices/d1/credentials", `{"kind":"password"}`, http.StatusCreated)
	var cc createdCredential
	json.Unmarshal(r.body, &cc)
	secrets = append(secrets, cc.Secret.Password)
	r = e.api("POST", "/v1/devices/d1/credentials/"+created.Secrets[0].CredentialID+"/rotate", "", http.StatusOK)
	secrets = append(secrets, r.json(t)["key"].(string))
	// A bad key in a request (the error must not echo it).
	e.api("POST", "/v1/devices/d1/credentials", `{"kind":"psk","identity":"bad","key":"secretnothex"}`, http.StatusBadRequest)
	secrets = append(secrets, "secretnothex")
	r = e.api("POST", "/v1/fleet/key", "", http.StatusOK)
	secrets = append(secrets, r.json(t)["key"].(string))
	r = e.api("POST", "/v1/fleet/derive", `{"identity":"d1-fleet"}`, http.StatusOK)
	secrets = append(secrets, r.json(t)["key"].(string))
	// A failed login with a would-be token.
	e.try(e.client(nil), "GET", "/v1/devices", "", "", map[string]string{"Authorization": "Bearer moat_guessedtokenvalue"})
	secrets = append(secrets, "moat_guessedtokenvalue", e.token)

	log := e.audit.String()
	for _, s := range secrets {
		forms := []string{s}
		if b, err := hex.DecodeString(s); err == nil {
			forms = append(forms, base64.StdEncoding.EncodeToString(b), strings.ToUpper(s))
		}
		for _, f := range forms {
			if f != "" && strings.Contains(log, f) {
				t.Fatalf("audit log contains a secret %q:\n%s", f, log)
			}
		}
	}
	recs := e.audit.records(t)
	find := func(action, target string) AuditRecord {
		t.Helper()
		for _, r := range recs {
			if r.Action == action && r.Target == target {
				return r
			}
		}
		t.Fatalf("no audit record %s %s in %+v", action, target, recs)
		return AuditRecord{}
	}
	if c := find("device.create", "device:d1"); c.Who != "token:ops" || c.Result != "ok" || c.Status != 201 || c.Time.IsZero() || c.Remote == "" {
		t.Fatalf("create record %+v", c)
	}
	find("credential.rotate", "device:d1/credential:"+created.Secrets[0].CredentialID)
	find("fleet.derive", "identity:d1-fleet")
	find("credential.create", "device:d1")
	failed := slices.ContainsFunc(recs, func(r AuditRecord) bool {
		return r.Action == "credential.create" && r.Result == "error" && r.Status == 400 && r.Error != ""
	})
	if !failed {
		t.Fatal("failed request not audited as an error")
	}
}

// The OpenAPI document is valid JSON, describes exactly the routes the
// server serves, and every route it lists is served.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	e := newEnv(t)
	r := e.api("GET", "/v1/openapi.json", "", http.StatusOK)
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	if !bytes.Equal(bytes.TrimSpace(r.body), bytes.TrimSpace(openAPIDoc)) {
		t.Fatal("served document differs from the embedded one")
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for m := range ops {
			if m == "parameters" {
				continue
			}
			documented[strings.ToUpper(m)+" "+path] = true
		}
	}
	served := map[string]bool{}
	for _, rt := range apiRoutes {
		served[rt.method+" "+rt.path] = true
		if !documented[rt.method+" "+rt.path] {
			t.Errorf("route %s %s is not in the OpenAPI document", rt.method, rt.path)
		}
	}
	for k := range documented {
		if !served[k] {
			t.Errorf("the OpenAPI document lists %s, which is not served", k)
		}
	}
	// Every documented route reaches its handler: the answer is JSON
	// and not the mux's 404/405.
	param := regexp.MustCompile(`\{[a-z]+\}`)
	for k := range documented {
		method, path, _ := strings.Cut(k, " ")
		p := param.ReplaceAllString(path, "probe")
		body := ""
		if method == "POST" || method == "PATCH" {
			body = "{}"
		}
		resp := e.do(e.client(nil), method, p, e.token, body)
		if resp.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: content type %q", method, p, resp.header.Get("Content-Type"))
		}
		if resp.status == http.StatusMethodNotAllowed || strings.Contains(string(resp.body), "no such endpoint") {
			t.Errorf("%s %s is not served: %d %s", method, p, resp.status, resp.body)
		}
	}
	// Every documented operation has an operationId and responses.
	var full map[string]any
	json.Unmarshal(r.body, &full)
	for path, ops := range full["paths"].(map[string]any) {
		for m, op := range ops.(map[string]any) {
			if m == "parameters" {
				continue
			}
			o := op.(map[string]any)
			if o["operationId"] == nil || o["responses"] == nil {
				t.Errorf("%s %s: no operationId or responses", m, path)
			}
		}
	}
}

func TestNewRefusesUnsafeOptions(t *testing.T) {
	e := newEnv(t)
	_, tokRec := GenerateToken("x")
	cert := makeCert(t, nil, "srv", false, nil)
	withCert := &tls.Config{Certificates: []tls.Certificate{cert.tls()}}
	pool := x509.NewCertPool()
	cases := []struct {
		name string
		opts Options
	}{
		{"no registry", Options{TLSConfig: withCert, Tokens: []Token{tokRec}}},
		{"no TLS", Options{Registry: e.reg, Tokens: []Token{tokRec}}},
		{"TLS without certificate", Options{Registry: e.reg, TLSConfig: &tls.Config{}, Tokens: []Token{tokRec}}},
		{"no authentication", Options{Registry: e.reg, TLSConfig: withCert}},
		{"admin certs without verification", Options{Registry: e.reg, TLSConfig: &tls.Config{Certificates: withCert.Certificates, ClientAuth: tls.RequestClientCert, ClientCAs: pool}, AdminCertNames: []string{"a"}}},
		{"admin certs without CA", Options{Registry: e.reg, TLSConfig: &tls.Config{Certificates: withCert.Certificates, ClientAuth: tls.VerifyClientCertIfGiven}, AdminCertNames: []string{"a"}}},
		{"bad token hash", Options{Registry: e.reg, TLSConfig: withCert, Tokens: []Token{{Name: "a", SHA256: "abc"}}}},
		{"duplicate token name", Options{Registry: e.reg, TLSConfig: withCert, Tokens: []Token{tokRec, tokRec}}},
		{"bad fingerprint", Options{Registry: e.reg, TLSConfig: &tls.Config{Certificates: withCert.Certificates, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}, AdminCertFingerprints: []string{"xyz"}}},
	}
	for _, c := range cases {
		if _, err := New(c.opts); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: %v, want ErrOptions", c.name, err)
		}
	}
	s, err := New(Options{Registry: e.reg, TLSConfig: &tls.Config{Certificates: withCert.Certificates, MinVersion: tls.VersionTLS10}, Tokens: []Token{tokRec}})
	if err != nil {
		t.Fatal(err)
	}
	if s.srv.TLSConfig.MinVersion != tls.VersionTLS12 {
		t.Fatal("TLS minimum not raised to 1.2")
	}
}

func TestListenLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		if _, err := Listen(addr, false); !errors.Is(err, ErrNotLoopback) {
			t.Errorf("Listen(%q): %v, want ErrNotLoopback", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0"} {
		ln, err := Listen(addr, false)
		if err != nil {
			t.Errorf("Listen(%q): %v", addr, err)
			continue
		}
		ln.Close()
	}
	ln, err := Listen("0.0.0.0:0", true)
	if err != nil {
		t.Fatalf("remote allowed: %v", err)
	}
	ln.Close()
}

func TestTokens(t *testing.T) {
	tok, rec := GenerateToken("ci")
	tok2, _ := GenerateToken("ci")
	if !strings.HasPrefix(tok, TokenPrefix) || len(tok) != len(TokenPrefix)+43 || tok == tok2 {
		t.Fatalf("token %q", tok)
	}
	if rec.Name != "ci" || rec.SHA256 != HashToken(tok) || strings.Contains(rec.SHA256, tok) {
		t.Fatalf("record %+v", rec)
	}
}

func TestShutdown(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.try(e.client(nil), "GET", "/v1/devices", e.token, "", nil); err == nil {
		t.Fatal("served after Shutdown")
	}
}
