package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	argonHash  = "$argon2id$v=19$m=65536,t=3,p=2$P2VsW5mz0/xNYTpQTKFL5A$eF05pkkumzzJ37qaco9RKRIuu00KGjHF1rKMlQFiKN8"
	bcryptHash = "$2a$12$HRxnPxoLbL99nqyE/rwXzuHHTx4u6OVtkVFiytwHl4kNocuSH/KVi"
)

// minimal is the smallest valid file; cases append to it. Its listener
// table is at line 1.
const minimal = "[[listener]]\ntype = \"tcp\"\n"

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		line int    // expected line of the first error
		want string // substring of the error text
		kind error  // sentinel
	}{
		{"syntax", minimal + "data_dir = \n", 3, "", ErrSyntax},
		{"unknown top-level key", "\ndatadir = \"x\"\n" + minimal, 2, `datadir: unknown key (did you mean "data_dir"?)`, ErrUnknownKey},
		{"unknown table", minimal + "[mqt]\nmax_qos = 1\n", 3, `mqt: unknown key (did you mean "mqtt"?)`, ErrUnknownKey},
		{"unknown key in listener", minimal + "adress = \"127.0.0.1:1\"\n", 3, `listener[0].adress: unknown key (did you mean "address"?)`, ErrUnknownKey},
		{"unknown key second listener", minimal + "[[listener]]\ntype = \"ws\"\npth = \"/x\"\n", 5, `listener[1].pth: unknown key (did you mean "path"?)`, ErrUnknownKey},
		{"unknown key in users", minimal + "[[auth.users]]\nusername = \"a\"\npassword = \"x\"\n", 5, "auth.users[0].password: unknown key", ErrUnknownKey},
		{"unknown key inline", minimal + "[auth]\nusers = [\n  {username = \"a\",\n   passwd = \"x\"},\n]\n", 6, "auth.users[0].passwd: unknown key", ErrUnknownKey},
		{"wrong type", minimal + "[mqtt]\nmax_qos = \"2\"\n", 4, "mqtt.max_qos: expected an integer, got a string", ErrType},
		{"wrong type bool", minimal + "allow_anonymous = 1\n", 3, "listener[0].allow_anonymous: expected a boolean", ErrType},
		{"wrong type duration", minimal + "[sys]\ninterval = 10\n", 4, `sys.interval: expected a duration string such as "10s"`, ErrType},
		{"duration without unit", minimal + "[sys]\ninterval = \"10\"\n", 4, `sys.interval: duration "10" needs a unit, e.g. "10s"`, ErrInvalid},
		{"bad duration", minimal + "[mqtt]\nmax_session_expiry = \"1 week\"\n", 4, "mqtt.max_session_expiry: invalid duration", ErrInvalid},
		{"negative duration", minimal + "[mqtt]\nmax_will_delay = \"-1s\"\n", 4, "must not be negative", ErrInvalid},
		{"uint16 overflow", minimal + "[mqtt]\nreceive_maximum = 70000\n", 4, "mqtt.receive_maximum", ErrInvalid},
		{"negative uint", minimal + "[mqtt]\nmax_packet_size = -1\n", 4, "mqtt.max_packet_size", ErrInvalid},
		{"no listener", "data_dir = \"x\"\n", 0, "no [[listener]] defined", ErrRequired},
		{"empty data_dir", "data_dir = \"\"\n" + minimal, 1, "data_dir: must not be empty", ErrRequired},
		{"log level", "\n[log]\nlevel = \"verbose\"\n" + minimal, 3, `log.level: "verbose" is not allowed; use "debug", "info", "warn" or "error"`, ErrInvalid},
		{"log format", "[log]\nformat = \"xml\"\n" + minimal, 2, `log.format: "xml" is not allowed`, ErrInvalid},
		{"listener type missing", "[[listener]]\naddress = \"127.0.0.1:1\"\n", 1, "listener[0].type: type is required", ErrRequired},
		{"listener type bad", "[[listener]]\ntype = \"udp\"\n", 2, `listener[0].type: "udp" is not a listener type`, ErrInvalid},
		{"tls listener without tls table", "[[listener]]\ntype = \"tls\"\n", 1, `needs a [listener.tls] table`, ErrRequired},
		{"wss listener without tls table", minimal + "[[listener]]\ntype = \"wss\"\n", 3, `"wss" listener needs a [listener.tls] table`, ErrRequired},
		{"tls below 1.2", "[[listener]]\ntype = \"tls\"\n[listener.tls]\ncert = \"c.pem\"\nmin_version = \"1.1\"\n", 5, `versions below TLS 1.2 are not supported`, ErrInvalid},
		{"mtls without ca", "[[listener]]\ntype = \"tls\"\n[listener.tls]\ncert = \"c.pem\"\nclient_auth = \"required\"\n", 3, `needs at least one CA bundle`, ErrRequired},
		{"tls table on tcp", "[[listener]]\ntype = \"tcp\"\n[listener.tls]\ncert = \"c.pem\"\n", 3, `does not use TLS`, ErrInvalid},
		{"address not host:port", minimal + "address = \"localhost\"\n", 3, `listener[0].address: "localhost" is not host:port`, ErrInvalid},
		{"address bad port", minimal + "address = \"127.0.0.1:99999\"\n", 3, "must be a number from 0 to 65535", ErrInvalid},
		{"address named port", minimal + "address = \"127.0.0.1:mqtt\"\n", 3, "must be a number", ErrInvalid},
		{"explicit empty address", minimal + "address = \"\"\n", 3, "listener[0].address", ErrInvalid},
		{"duplicate default address", minimal + "\n[[listener]]\ntype = \"tcp\"\n", 4, `listener[1].address: address "127.0.0.1:1883" conflicts with listener[0].address (line 1)`, ErrDuplicate},
		{"duplicate address", minimal + "address = \"127.0.0.1:2000\"\n[[listener]]\ntype = \"ws\"\naddress = \"127.0.0.1:2000\"\n", 6, "listener[1].address", ErrDuplicate},
		{"wildcard conflicts", minimal + "[[listener]]\ntype = \"ws\"\naddress = \":1883\"\n", 5, `conflicts with listener[0].address`, ErrDuplicate},
		{"ipv6 wildcard conflicts", minimal + "address = \"[::]:1\"\n[[listener]]\ntype = \"ws\"\naddress = \"[::1]:1\"\n", 6, "conflicts", ErrDuplicate},
		{"duplicate name", minimal + "name = \"a\"\n[[listener]]\ntype = \"ws\"\nname = \"a\"\n", 6, `listener[1].name: listener name "a" is also used by listener[0] (line 1)`, ErrDuplicate},
		{"duplicate name vs default", minimal + "[[listener]]\ntype = \"ws\"\nname = \"tcp-0\"\n", 5, `listener name "tcp-0"`, ErrDuplicate},
		{"empty name", minimal + "name = \"\"\n", 3, "listener[0].name: must not be empty", ErrRequired},
		{"ws path", minimal + "[[listener]]\ntype = \"ws\"\npath = \"mqtt\"\n", 5, `listener[1].path: websocket path "mqtt" must start with '/'`, ErrInvalid},
		{"path on tcp", minimal + "path = \"/mqtt\"\n", 3, "only used by \"ws\" listeners", ErrInvalid},
		{"negative max_connections", minimal + "max_connections = -1\n", 3, "listener[0].max_connections: must not be negative", ErrInvalid},
		{"plaintext password", minimal + "[[auth.users]]\nusername = \"a\"\npassword_hash = \"hunter2\"\n", 5, "auth.users[0].password_hash: password_hash must be an argon2id or bcrypt hash; run `moat passwd`", ErrPlaintextPassword},
		{"plaintext password inline", minimal + "[auth]\nusers = [\n  { username = \"a\", password_hash = \"hunter2\" },\n]\n", 5, "auth.users[0].password_hash: password_hash must be", ErrPlaintextPassword},
		{"hostile argon2 memory", minimal + "[[auth.users]]\nusername = \"a\"\npassword_hash = \"$argon2id$v=19$m=4194304,t=3,p=2$P2VsW5mz0/xNYTpQTKFL5A$eF05pkkumzzJ37qaco9RKRIuu00KGjHF1rKMlQFiKN8\"\n", 5, "argon2id memory", ErrInvalid},
		{"argon2i", minimal + "[[auth.users]]\nusername = \"a\"\npassword_hash = \"$argon2i$v=19$m=65536,t=3,p=2$P2VsW5mz0/xNYTpQTKFL5A$eF05pkkumzzJ37qaco9RKRIuu00KGjHF1rKMlQFiKN8\"\n", 5, "only argon2id", ErrInvalid},
		{"bcrypt cost", minimal + "[[auth.users]]\nusername = \"a\"\npassword_hash = \"$2a$20$HRxnPxoLbL99nqyE/rwXzuHHTx4u6OVtkVFiytwHl4kNocuSH/KVi\"\n", 5, "bcrypt cost 20", ErrInvalid},
		{"missing hash", minimal + "[[auth.users]]\nusername = \"a\"\n", 3, "auth.users[0].password_hash: password_hash is required", ErrRequired},
		{"missing username", minimal + "[[auth.users]]\npassword_hash = \"" + argonHash + "\"\n", 3, "auth.users[0].username: username is required", ErrRequired},
		{"duplicate user", minimal + "[[auth.users]]\nusername = \"a\"\npassword_hash = \"" + argonHash + "\"\n[[auth.users]]\nusername = \"a\"\npassword_hash = \"" + bcryptHash + "\"\n", 7, `user "a" is also defined by auth.users[0] (line 3)`, ErrDuplicate},
		{"acl_default", minimal + "[auth]\nacl_default = \"maybe\"\n", 4, `auth.acl_default: "maybe" is not allowed; use "allow" or "deny"`, ErrInvalid},
		{"acl permission missing", minimal + "[[acl]]\ntopic = \"a\"\n", 3, "acl[0].permission: permission is required", ErrRequired},
		{"acl permission bad", minimal + "[[acl]]\npermission = \"permit\"\ntopic = \"a\"\n", 4, `acl[0].permission: "permit" is not allowed`, ErrInvalid},
		{"acl action bad", minimal + "[[acl]]\npermission = \"allow\"\naction = \"read\"\ntopic = \"a\"\n", 5, `acl[0].action: "read" is not allowed; use "publish", "subscribe" or "all"`, ErrInvalid},
		{"acl topic missing", minimal + "[[acl]]\npermission = \"allow\"\n", 3, "acl[0].topic: topic is required", ErrRequired},
		{"acl topic bad hash", minimal + "[[acl]]\npermission = \"allow\"\ntopic = \"a/#/b\"\n", 5, "'#' must be a whole level", ErrInvalid},
		{"acl topic bad plus", minimal + "[[acl]]\npermission = \"allow\"\ntopic = \"a/b+\"\n", 5, "'+' must be a whole level", ErrInvalid},
		{"acl topic shared", minimal + "[[acl]]\npermission = \"allow\"\ntopic = \"$share/g/a\"\n", 5, "shared subscription", ErrInvalid},
		{"acl method", minimal + "[[acl]]\npermission = \"allow\"\ntopic = \"a\"\nmethod = \"kerberos\"\n", 6, `acl[0].method: "kerberos" is not allowed`, ErrInvalid},
		{"acl empty username", minimal + "[[acl]]\npermission = \"allow\"\ntopic = \"a\"\nusername = \"\"\n", 6, "acl[0].username: must not be empty", ErrInvalid},
		{"second acl", minimal + "[[acl]]\npermission = \"allow\"\ntopic = \"a\"\n\n[[acl]]\npermission = \"deny\"\ntopic = \"\"\n", 9, "acl[1].topic: topic is required", ErrRequired},
		{"max_packet_size zero", minimal + "[mqtt]\nmax_packet_size = 0\n", 4, "mqtt.max_packet_size: must be between 1 and 268435460 (got 0)", ErrInvalid},
		{"max_packet_size big", minimal + "[mqtt]\nmax_packet_size = 268435461\n", 4, "mqtt.max_packet_size", ErrInvalid},
		{"receive_maximum zero", minimal + "[mqtt]\nreceive_maximum = 0\n", 4, "mqtt.receive_maximum: must be at least 1", ErrInvalid},
		{"max_inflight zero", minimal + "[mqtt]\nmax_inflight = 0\n", 4, "mqtt.max_inflight", ErrInvalid},
		{"max_queued negative", minimal + "[mqtt]\nmax_queued_messages = -5\n", 4, "mqtt.max_queued_messages: must be at least 1 (got -5)", ErrInvalid},
		{"max_queued_bytes zero", minimal + "[mqtt]\nmax_queued_bytes = 0\n", 4, "mqtt.max_queued_bytes", ErrInvalid},
		{"max_qos", minimal + "[mqtt]\nmax_qos = 3\n", 4, "mqtt.max_qos: must be 0, 1 or 2 (got 3)", ErrInvalid},
		{"max_qos negative", minimal + "[mqtt]\nmax_qos = -1\n", 4, "mqtt.max_qos", ErrInvalid},
		{"client id length", minimal + "[mqtt]\nmax_client_id_length = 10\n", 4, "mqtt.max_client_id_length: must be between 23 and 65535", ErrInvalid},
		{"topic length", minimal + "[mqtt]\nmax_topic_length = 70000\n", 4, "mqtt.max_topic_length", ErrInvalid},
		{"session expiry too long", minimal + "[mqtt]\nmax_session_expiry = \"100000d\"\n", 4, "longer than MQTT can express", ErrInvalid},
		{"memory trim too often", "memory_trim_interval = \"100ms\"\n" + minimal, 1, "memory_trim_interval: must be 0s (never) or at least 1s (got 100ms)", ErrInvalid},
		{"sys interval", minimal + "[sys]\ninterval = \"500ms\"\n", 4, "sys.interval: must be at least 1s (got 500ms)", ErrInvalid},
		{"sys interval zero", minimal + "[sys]\ninterval = \"0s\"\n", 4, "sys.interval", ErrInvalid},
		{"dotted key in wrong table", minimal + "mqtt.max_qos = 7\n", 3, "listener[0].mqtt.max_qos: unknown key", ErrUnknownKey},
		{"dotted top-level key", "mqtt.max_qos = 7\n" + minimal, 1, "mqtt.max_qos: must be 0, 1 or 2", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "moat.toml")
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tt.doc)
			}
			t.Log(err)
			msg := err.Error()
			first := strings.SplitN(msg, "\n", 2)[0]
			if !strings.HasPrefix(first, "moat.toml") {
				t.Errorf("error does not name the file: %q", first)
			}
			if tt.line > 0 {
				if p := "moat.toml:" + strconv.Itoa(tt.line) + ":"; !strings.HasPrefix(first, p) {
					t.Errorf("error %q: want line %d", first, tt.line)
				}
			}
			if !strings.Contains(first, tt.want) {
				t.Errorf("error %q: want it to contain %q", first, tt.want)
			}
			if tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Errorf("error %q: want errors.Is %v", msg, tt.kind)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error %q is not a *config.Error", msg)
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("error %q echoes the plaintext password", msg)
			}
		})
	}
}

func TestParseReportsAllProblemsInFileOrder(t *testing.T) {
	doc := `[[listener]]
type = "ws"
path = "x"

[mqtt]
max_qos = 9

[log]
level = "loud"
`
	_, err := Parse([]byte(doc), "m.toml")
	if err == nil {
		t.Fatal("accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{"m.toml:3:", "m.toml:6:", "m.toml:9:"}
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

func TestUnknownKeysAllReported(t *testing.T) {
	_, err := Parse([]byte(minimal+"foo = 1\n[mqtt]\nbar = 2\n"), "m.toml")
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{"m.toml:3:1: listener[0].foo: unknown key", "m.toml:5:1: mqtt.bar: unknown key"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%v\nwant %q", err, w)
		}
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal+"[[listener]]\ntype = \"ws\"\n"), "m.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "./moat-data" || c.Log.Level != "info" || c.Log.Format != "text" {
		t.Errorf("top-level defaults: %+v %+v", c.DataDir, c.Log)
	}
	tcp, ws := c.Listeners[0], c.Listeners[1]
	if tcp.Name != "tcp-0" || tcp.Address != "127.0.0.1:1883" || tcp.Path != "" || tcp.AllowAnonymous != nil {
		t.Errorf("tcp listener: %+v", tcp)
	}
	if ws.Name != "ws-1" || ws.Address != "127.0.0.1:8083" || ws.Path != "/mqtt" {
		t.Errorf("ws listener: %+v", ws)
	}
	if c.Auth.AllowAnonymous || c.Auth.ACLDefault != "allow" {
		t.Errorf("auth: %+v", c.Auth)
	}
	if c.AnonymousAllowed(&c.Listeners[0]) {
		t.Error("anonymous allowed by default")
	}
	m := c.MQTT
	if m.MaxPacketSize != 1<<20 || m.ReceiveMaximum != 1024 || m.MaxInflight != 128 ||
		m.MaxQueued != 10000 || m.MaxQueuedBytes != 64<<20 || m.TopicAliasMaximum != 64 ||
		m.MaxKeepAlive != 0 || m.MaxSessionExpiry.Duration != 0 || !*m.RetainAvailable ||
		*m.MaxQoS != 2 || m.MaxClientIDLength != 256 || m.MaxTopicLength != 65535 || m.WillDelayMax.Duration != 0 {
		t.Errorf("mqtt defaults: %+v", m)
	}
	if !*c.Sys.Enabled || c.Sys.Interval.Duration != 10*time.Second {
		t.Errorf("sys: %+v", c.Sys)
	}
}

func TestACLDefaultDependsOnRules(t *testing.T) {
	c, err := Parse([]byte(minimal+"[[acl]]\npermission = \"allow\"\ntopic = \"a/#\"\n"), "m.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.ACLDefault != "deny" || c.ACL[0].Action != "all" {
		t.Errorf("acl_default %q, action %q", c.Auth.ACLDefault, c.ACL[0].Action)
	}
	c, err = Parse([]byte(minimal+"[auth]\nacl_default = \"allow\"\n[[acl]]\npermission = \"deny\"\ntopic = \"a/#\"\n"), "m.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.ACLDefault != "allow" {
		t.Errorf("explicit acl_default lost: %q", c.Auth.ACLDefault)
	}
}

func TestExplicitValuesKept(t *testing.T) {
	doc := minimal + `allow_anonymous = false
[auth]
allow_anonymous = true
[mqtt]
topic_alias_maximum = 0
retain_available = false
max_qos = 0
max_keepalive = 60
[sys]
enabled = false
`
	c, err := Parse([]byte(doc), "m.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.MQTT.TopicAliasMaximum != 0 {
		t.Errorf("topic_alias_maximum = 0 became %d", c.MQTT.TopicAliasMaximum)
	}
	if *c.MQTT.RetainAvailable || *c.MQTT.MaxQoS != 0 || c.MQTT.MaxKeepAlive != 60 || *c.Sys.Enabled {
		t.Errorf("explicit values lost: %+v %+v", c.MQTT, c.Sys)
	}
	if c.AnonymousAllowed(&c.Listeners[0]) {
		t.Error("listener allow_anonymous = false must override [auth]")
	}
	c.ApplyDefaults() // idempotent, keeps explicit zero
	if c.MQTT.TopicAliasMaximum != 0 {
		t.Error("ApplyDefaults overwrote an explicit 0")
	}
}

func TestAnonymousAllowed(t *testing.T) {
	yes, no := true, false
	c := &Config{Auth: Auth{AllowAnonymous: true}}
	for _, tt := range []struct {
		l    *bool
		auth bool
		want bool
	}{{nil, false, false}, {nil, true, true}, {&yes, false, true}, {&no, true, false}} {
		c.Auth.AllowAnonymous = tt.auth
		if got := c.AnonymousAllowed(&Listener{AllowAnonymous: tt.l}); got != tt.want {
			t.Errorf("listener %v, auth %v: got %v", tt.l, tt.auth, got)
		}
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Listeners) != 1 {
		t.Fatalf("listeners: %+v", c.Listeners)
	}
	l := &c.Listeners[0]
	if l.Type != "tcp" || l.Address != "127.0.0.1:1883" || !l.IsLoopback() || !c.AnonymousAllowed(l) {
		t.Errorf("default listener: %+v", l)
	}
	if c.DataDir != "./moat-data" || c.Auth.AllowAnonymous || c.Auth.ACLDefault != "allow" || c.MQTT.MaxPacketSize != 1<<20 {
		t.Errorf("default config: %+v", c)
	}
	c.ApplyDefaults()
	if c.MQTT.TopicAliasMaximum != 64 {
		t.Error("ApplyDefaults not idempotent")
	}
}

func TestValidateWithoutSource(t *testing.T) {
	c := Default()
	c.MQTT.MaxPacketSize = 0
	err := c.Validate()
	if err == nil || !strings.HasPrefix(err.Error(), "config: mqtt.max_packet_size:") {
		t.Fatalf("got %v", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:1883":       true,
		"127.1.2.3:1883":       true,
		"[::1]:1883":           true,
		"localhost:1883":       true,
		"LOCALHOST:1":          true,
		"[::ffff:127.0.0.1]:1": true,
		":1883":                false,
		"0.0.0.0:1883":         false,
		"[::]:1883":            false,
		"192.168.1.10:1883":    false,
		"example.com:1883":     false,
		"localhost.evil.com:1": false,
		"127.0.0.1":            false,
		"":                     false,
	} {
		if got := (&Listener{Address: addr}).IsLoopback(); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestPortZeroNeverConflicts(t *testing.T) {
	doc := minimal + "address = \"127.0.0.1:0\"\n[[listener]]\ntype = \"ws\"\naddress = \"127.0.0.1:0\"\n"
	if _, err := Parse([]byte(doc), "m.toml"); err != nil {
		t.Fatal(err)
	}
}

func TestGoodConfigs(t *testing.T) {
	for name, doc := range map[string]string{
		"minimal":      minimal,
		"inline users": minimal + "[auth]\nusers = [{ username = \"a\", password_hash = \"" + argonHash + "\" }, { username = \"b\", password_hash = \"" + bcryptHash + "\" }]\n",
		"inline acl":   "acl = []\n" + minimal,
		"templates":    minimal + "[[acl]]\npermission = \"allow\"\ntopic = \"d/%u/%c/%i/#\"\n",
		"ipv6":         "[[listener]]\ntype = \"tcp\"\naddress = \"[::1]:1883\"\n[[listener]]\ntype = \"tcp\"\naddress = \"127.0.0.1:1883\"\n",
		"methods":      minimal + "[[acl]]\npermission = \"deny\"\ntopic = \"#\"\nmethod = \"pinned-key\"\n",
		"days":         minimal + "[mqtt]\nmax_session_expiry = \"1d12h\"\n",
		"crlf":         strings.ReplaceAll(minimal+"[mqtt]\nmax_qos = 1\n", "\n", "\r\n"),
	} {
		if _, err := Parse([]byte(doc), "m.toml"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestExampleFile(t *testing.T) {
	path := filepath.Join("testdata", "example.toml")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// The example writes every option: check that every key of every
	// struct appears in it, so the documentation cannot fall behind.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range allKeys() {
		if !strings.Contains(string(data), "\n"+key+" = ") && !strings.Contains(string(data), "\n# "+key) {
			t.Errorf("example.toml does not document %q", key)
		}
	}
	if c.DataDir != "/var/lib/moat" || len(c.Listeners) != 4 || len(c.Auth.Users) != 2 || len(c.ACL) != 8 {
		t.Errorf("unexpected example: %+v", c)
	}
	if c.Listeners[1].Path != "/mqtt" || c.MQTT.MaxSessionExpiry.Duration != 7*24*time.Hour || c.MQTT.WillDelayMax.Duration != time.Hour {
		t.Errorf("unexpected example values: %+v", c)
	}
}

// allKeys lists the leaf keys of Config by their TOML names.
func allKeys() []string {
	var keys []string
	durationType := reflect.TypeFor[Duration]()
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := tagName(f)
			if name == "" {
				continue
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != durationType {
				walk(ft)
				continue
			}
			keys = append(keys, name)
		}
	}
	walk(reflect.TypeFor[Config]())
	return keys
}

func TestDuration(t *testing.T) {
	good := map[string]time.Duration{
		"0":      0,
		"0s":     0,
		"10s":    10 * time.Second,
		"500ms":  500 * time.Millisecond,
		"1h30m":  90 * time.Minute,
		"7d":     7 * 24 * time.Hour,
		"1d12h":  36 * time.Hour,
		"0d":     0,
		"2d0h1s": 48*time.Hour + time.Second,
		" 24h ":  24 * time.Hour,
		"1.5h":   90 * time.Minute,
	}
	for in, want := range good {
		var d Duration
		if err := d.UnmarshalText([]byte(in)); err != nil || d.Duration != want {
			t.Errorf("%q: got %v, %v; want %v", in, d.Duration, err, want)
		}
	}
	for _, in := range []string{"", "10", "-1s", "1w", "d", "1.5d", "-1d", "1d-1h", "1dd", "abc", "99999999999999d", "106751d23h47m16.854775808s"} {
		var d Duration
		if err := d.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q: accepted as %v", in, d.Duration)
		}
	}
	for _, d := range []time.Duration{0, time.Second, 90 * time.Minute, 24 * time.Hour, 7 * 24 * time.Hour, 36*time.Hour + 500*time.Millisecond} {
		b, err := Duration{d}.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Duration
		if err := back.UnmarshalText(b); err != nil || back.Duration != d {
			t.Errorf("round trip %v -> %q -> %v, %v", d, b, back.Duration, err)
		}
	}
	if b, _ := (Duration{7 * 24 * time.Hour}).MarshalText(); string(b) != "7d" {
		t.Errorf("7 days marshal as %q", b)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{File: "f.toml", Line: 3, Column: 7, Key: "a.b", Msg: "bad"}, "f.toml:3:7: a.b: bad"},
		{Error{File: "f.toml", Line: 3, Msg: "bad"}, "f.toml:3: bad"},
		{Error{File: "f.toml", Key: "k", Msg: "bad"}, "f.toml: k: bad"},
		{Error{Key: "k", Msg: "bad"}, "config: k: bad"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestTooManyProblemsSummarised(t *testing.T) {
	var b strings.Builder
	for i := range 30 {
		b.WriteString("[[listener]]\ntype = \"tcp\"\nname = \"x\"\naddress = \"127.0.0.1:" + strconv.Itoa(i+1) + "\"\n")
	}
	_, err := Parse([]byte(b.String()), "m.toml")
	if err == nil || !strings.Contains(err.Error(), "9 more problems not shown") {
		t.Fatalf("got %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if err == nil || !strings.Contains(err.Error(), "nope.toml") {
		t.Fatalf("got %v", err)
	}
}

func TestExampleTLS(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Listeners[3]
	if !l.IsTLS() || l.TLS == nil || l.TLS.ClientAuth != "optional" || !l.TLS.BindsClientID() || l.TLS.ClientIDTemplate != "{cn}" || len(l.TLS.SNI) != 1 {
		t.Errorf("unexpected tls listener: %+v %+v", l, l.TLS)
	}
}

func TestExampleProxy(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	px := c.Listeners[2].Proxy
	if px == nil || !px.Required || px.CertTLV != 0xE0 || len(px.Trusted) != 1 || px.Identity != "cn" {
		t.Errorf("unexpected proxy listener: %+v", px)
	}
	for _, bad := range []string{
		"[[listener]]\ntype = \"tcp\"\n[listener.proxy]\nrequired = true\n",
		"[[listener]]\ntype = \"tcp\"\n[listener.proxy]\ntrusted = [\"nope\"]\n",
		"[[listener]]\ntype = \"tcp\"\n[listener.proxy]\ntrusted = [\"10.0.0.0/8\"]\ncert_tlv = 5\n",
	} {
		if _, err := Parse([]byte(bad), "m.toml"); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
}
