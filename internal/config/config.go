// Package config owns moat's configuration: the typed Config, the defaults,
// and loading one TOML file strictly (an unknown key is an error, never
// ignored) and validating it completely before anything binds a port.
//
// Every problem is reported as an *Error naming the file, the line, the
// column and the key path ("moat.toml:12:3: listener[1].address: ..."),
// wrapping one of the sentinels in errors.go. All problems of a file are
// reported at once (up to a limit), one per line.
//
// Defaults: a key absent from the file takes its default; a key present in
// the file is kept as written and validated, so `max_packet_size = 0` is an
// error rather than silently becoming 1 MiB, and `topic_alias_maximum = 0`
// disables topic aliases. For a Config built in code, ApplyDefaults treats
// zero values as "not set".
package config

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Config is the whole configuration of a broker.
type Config struct {
	DataDir       string     `toml:"data_dir"`             // default "./moat-data"
	MasterKeyFile string     `toml:"master_key_file"`      // unlocks the CA keys and device secrets; default data_dir/master.key; or $MOAT_MASTER_KEY
	Store         string     `toml:"store"`                // "bolt" (default: a file in data_dir) | "memory" (nothing survives a restart)
	Sync          string     `toml:"sync"`                 // "always" | "batch" (default) | "periodic"; see package store
	SyncInterval  Duration   `toml:"sync_interval"`        // fsync interval for sync = "periodic"; default 1s
	MemoryTrim    Duration   `toml:"memory_trim_interval"` // how often to look for free memory to return once quiet; default 10s; "0s" never
	Log           Log        `toml:"log"`                  // [log]
	Listeners     []Listener `toml:"listener"`             // [[listener]] tables; at least one
	Auth          Auth       `toml:"auth"`                 // [auth]
	ACL           []ACLRule  `toml:"acl"`                  // [[acl]] tables
	MQTT          MQTT       `toml:"mqtt"`                 // [mqtt]
	Sys           Sys        `toml:"sys"`                  // [sys]
	PKI           PKI        `toml:"pki"`                  // [pki]
	Devices       Devices    `toml:"devices"`              // [devices]
	Admin         Admin      `toml:"admin"`                // [admin]
	Alarms        Alarms     `toml:"alarms"`               // [alarms]

	// src is where the configuration came from (nil when built in code):
	// positions for error messages, and which keys were written.
	src *source
}

// Log configures logging.
type Log struct {
	Level  string `toml:"level"`  // debug | info | warn | error; default info
	Format string `toml:"format"` // text | json; default text
}

// Store kinds, sync policies and queue overflow policies.
const (
	StoreBolt          = "bolt"
	StoreMemory        = "memory"
	SyncAlways         = "always"
	SyncBatch          = "batch"
	SyncPeriodic       = "periodic"
	OverflowDropOldest = "drop_oldest"
	OverflowDropNew    = "drop_new"
	OverflowDisconnect = "disconnect"
)

// Listener types.
const (
	ListenerTCP = "tcp"
	ListenerWS  = "ws"
	ListenerTLS = "tls"
	ListenerWSS = "wss"
)

// Listener is one address the broker accepts connections on.
type Listener struct {
	Name           string `toml:"name"`            // default: Type + "-" + index in the list; unique
	Type           string `toml:"type"`            // "tcp" | "ws" | "tls" | "wss"
	Address        string `toml:"address"`         // host:port; default tcp 127.0.0.1:1883, ws 127.0.0.1:8083
	Path           string `toml:"path"`            // ws only; default "/mqtt"
	AllowAnonymous *bool  `toml:"allow_anonymous"` // nil = inherit Auth.AllowAnonymous
	MaxConnections int    `toml:"max_connections"` // 0 = unlimited

	// TLS is required for "tls" and "wss" listeners and refused for the
	// plain-text types.
	TLS *TLS `toml:"tls"` // [listener.tls]

	// Proxy enables the PROXY protocol (v1/v2) from trusted load
	// balancers on "tcp", "tls" and "ws" listeners.
	Proxy *Proxy `toml:"proxy"` // [listener.proxy]

	// Limits on connection attempts, for every listener type.
	HandshakeTimeout Duration `toml:"handshake_timeout"` // TLS handshake + CONNECT; default 10s
	MaxHandshakes    int      `toml:"max_handshakes"`    // concurrent handshakes; default 512
	ConnRatePerIP    float64  `toml:"conn_rate_per_ip"`  // new connections per second per source IP; default 50; 0 = from the file means unlimited
	ConnBurstPerIP   int      `toml:"conn_burst_per_ip"` // burst above the rate; default 100
}

// TLS is the TLS policy of a "tls" or "wss" listener.
type TLS struct {
	Cert            string    `toml:"cert"`              // PEM chain, leaf first (required)
	Key             string    `toml:"key"`               // PEM key: PKCS#1, SEC1, PKCS#8 or encrypted PKCS#8; default: in cert
	KeyPasswordFile string    `toml:"key_password_file"` // password of an encrypted key, from a file ...
	KeyPasswordEnv  string    `toml:"key_password_env"`  // ... or an environment variable (never in this file)
	SNI             []SNICert `toml:"sni"`               // [[listener.tls.sni]]: more certificates chosen by SNI
	MinVersion      string    `toml:"min_version"`       // "1.2" (default) | "1.3"; lower is refused
	CipherSuites    []string  `toml:"cipher_suites"`     // TLS 1.2 suites; only ECDHE + AEAD allowed; default all of those
	ALPN            []string  `toml:"alpn"`              // default ["mqtt"]

	ClientAuth       string   `toml:"client_auth"`        // "none" (default) | "optional" | "required"
	ClientCA         []string `toml:"client_ca"`          // CA bundles for client certificates
	MaxChainDepth    int      `toml:"max_chain_depth"`    // intermediates allowed; default 4
	Identity         string   `toml:"identity"`           // certificate field that becomes the identity: cn (default), dn, subject:OU, subject:<oid>, san:dns, san:email, san:uri, san:ip, fingerprint
	BindClientID     *bool    `toml:"bind_client_id"`     // client id must match the certificate; default true when client_auth is not "none"
	ClientIDTemplate string   `toml:"client_id_template"` // what the client id must equal, e.g. "{cn}" or "dev-{subject:UID}"; default "{<identity>}"
	ReloadInterval   Duration `toml:"reload_interval"`    // how often cert/key/CA files are checked for changes; default 10s

	CRLFiles         []string `toml:"crl_files"`         // CRLs (DER or PEM), reloaded when they change
	FetchCRLDP       *bool    `toml:"fetch_crl_dp"`      // fetch the CRLs named in certificates' distribution points; default true
	OCSP             bool     `toml:"ocsp"`              // ask the OCSP responder about client certificates
	OCSPResponder    string   `toml:"ocsp_responder"`    // default: the certificate's AIA
	RevocationPolicy string   `toml:"revocation_policy"` // "fail_open" (default) | "fail_closed": when revocation data is unavailable or stale

	PSKFile         string   `toml:"psk_file"`          // TLS-PSK keys, mosquitto format identity:hexkey
	PSKIdentityHint string   `toml:"psk_identity_hint"` // TLS 1.2 identity hint
	PSKCipherSuites []string `toml:"psk_cipher_suites"` // TLS 1.2 PSK suites; default the AEAD ones
}

// Proxy is the PROXY protocol setting of a listener.
type Proxy struct {
	Trusted          []string `toml:"trusted"`            // CIDRs (or addresses) of the balancers whose headers are believed (required)
	Required         bool     `toml:"required"`           // only trusted balancers, always with a header, may connect
	HeaderTimeout    Duration `toml:"header_timeout"`     // default 5s
	CertTLV          int      `toml:"cert_tlv"`           // TLV type carrying the client certificate (DER, base64 or hex); default 0xE0
	Identity         string   `toml:"identity"`           // identity from the forwarded client certificate, as [listener.tls] identity; default "cn" (the only one available when the balancer forwards just the CN)
	BindClientID     *bool    `toml:"bind_client_id"`     // client id must match the certificate; default true
	ClientIDTemplate string   `toml:"client_id_template"` // default "{<identity>}"
}

// SNICert is an additional certificate of a TLS listener.
type SNICert struct {
	Cert            string   `toml:"cert"`
	Key             string   `toml:"key"`
	KeyPasswordFile string   `toml:"key_password_file"`
	KeyPasswordEnv  string   `toml:"key_password_env"`
	Names           []string `toml:"names"` // default: the certificate's DNS names
}

// IsTLS reports whether the listener encrypts.
func (l *Listener) IsTLS() bool { return l.Type == ListenerTLS || l.Type == ListenerWSS }

// BindsClientID reports whether client ids on this listener must match the
// client certificate.
func (t *TLS) BindsClientID() bool {
	if t == nil || t.ClientAuth == "" || t.ClientAuth == "none" {
		return false
	}
	return t.BindClientID == nil || *t.BindClientID
}

// Auth configures authentication.
type Auth struct {
	AllowAnonymous bool   `toml:"allow_anonymous"` // default false
	Users          []User `toml:"users"`           // [[auth.users]]
	ACLDefault     string `toml:"acl_default"`     // "allow" | "deny"; default "allow" without [[acl]] rules, else "deny"
}

// User is a username with its password hash (argon2id PHC string or
// bcrypt). A plaintext password is refused at load time.
type User struct {
	Username     string `toml:"username"`
	PasswordHash string `toml:"password_hash"`
}

// ACL permissions, actions and defaults.
const (
	PermissionAllow = "allow"
	PermissionDeny  = "deny"
	ActionPublish   = "publish"
	ActionSubscribe = "subscribe"
	ActionAll       = "all"
)

// ACLRule is one access rule; see package auth for the semantics.
type ACLRule struct {
	Permission string `toml:"permission"` // "allow" | "deny" (required)
	Action     string `toml:"action"`     // "publish" | "subscribe" | "all" (default "all")
	Topic      string `toml:"topic"`      // topic filter; may contain %u %c %i templates (required)
	Username   string `toml:"username"`   // optional: only for this username / principal id
	ClientID   string `toml:"client_id"`  // optional: only for this client id
	Method     string `toml:"method"`     // optional: only for principals authenticated by this method
}

// methods are the authentication methods an ACL rule may select (the
// values of auth.Method).
var methods = []string{"anonymous", "password", "cert", "psk", "pinned-key", "proxy-tls"}

// MQTT holds protocol limits.
type MQTT struct {
	MaxPacketSize     uint32   `toml:"max_packet_size"`      // default 1048576 (1 MiB); 1..268435460
	ReceiveMaximum    uint16   `toml:"receive_maximum"`      // inbound QoS>0 inflight; default 1024; >= 1
	MaxInflight       uint16   `toml:"max_inflight"`         // outbound QoS>0 inflight per client; default 128; >= 1
	MaxQueued         int      `toml:"max_queued_messages"`  // per session; default 10000; >= 1
	MaxQueuedBytes    int64    `toml:"max_queued_bytes"`     // per session; default 64 MiB; >= 1
	TopicAliasMaximum uint16   `toml:"topic_alias_maximum"`  // default 64; 0 in the file disables aliases
	MaxKeepAlive      uint16   `toml:"max_keepalive"`        // seconds; 0 = accept the client's value
	MaxSessionExpiry  Duration `toml:"max_session_expiry"`   // 0 = no cap beyond the protocol's
	RetainAvailable   *bool    `toml:"retain_available"`     // default true
	MaxQoS            *int     `toml:"max_qos"`              // default 2; 0..2
	MaxClientIDLength int      `toml:"max_client_id_length"` // default 256; 23..65535
	MaxTopicLength    int      `toml:"max_topic_length"`     // default 65535; 1..65535
	WillDelayMax      Duration `toml:"max_will_delay"`       // 0 = no cap
	QueueOverflow     string   `toml:"queue_overflow"`       // "drop_oldest" (default) | "drop_new" | "disconnect"
	CleanupInterval   Duration `toml:"cleanup_interval"`     // sweep of expired queued messages; default 1m
}

// PKI configures the broker's use of the built-in certificate authority in
// data_dir/pki (made by `moat pki init` or the first run).
type PKI struct {
	Enabled         *bool    `toml:"enabled"`             // default: true when data_dir/pki holds a CA
	CRLAddress      string   `toml:"crl_address"`         // serve the CRL over HTTP at /pki/crl; "" = not served
	RevocationCheck Duration `toml:"revocation_interval"` // how often revocations are applied to live connections; default 1s
	RenewBefore     Duration `toml:"renew_before"`        // renew the CA's server certificates this long before expiry; default 30d
	RenewCheck      Duration `toml:"renew_interval"`      // how often server certificates are checked; default 1h
}

// Devices configures the device registry (data_dir/registry.db): a
// dedicated credential per device, sealed with the master key.
type Devices struct {
	Enabled *bool `toml:"enabled"` // default: true when the master key is available
}

// Admin configures the HTTPS admin API.
type Admin struct {
	Enabled     *bool    `toml:"enabled"`      // default: true when the device registry is on and a certificate is available (configured, or from the built-in CA)
	Address     string   `toml:"address"`      // default "127.0.0.1:9883"
	AllowRemote bool     `toml:"allow_remote"` // allow an address beyond loopback
	Cert        string   `toml:"cert"`         // server certificate; default: issued by the built-in CA into data_dir/admin/
	Key         string   `toml:"key"`
	ClientCA    []string `toml:"client_ca"`   // CAs of admin client certificates
	CertNames   []string `toml:"cert_names"`  // admin client certificates allowed by CN
	TokensFile  string   `toml:"tokens_file"` // bearer tokens, hashed: name:sha256hex per line; default data_dir/admin/tokens
	AuditLog    string   `toml:"audit_log"`   // JSON lines of every admin action; default data_dir/admin/audit.log
}

// Alarms configures certificate expiry alarms.
type Alarms struct {
	ExpiryDays []int `toml:"expiry_days"` // default [30, 7, 1]
}

// Sys configures the $SYS topics.
type Sys struct {
	Enabled  *bool    `toml:"enabled"`  // default true
	Interval Duration `toml:"interval"` // default 10s; >= 1s
}

// Defaults.
const (
	DefaultDataDir           = "./moat-data"
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "text"
	DefaultTCPAddress        = "127.0.0.1:1883"
	DefaultWSAddress         = "127.0.0.1:8083"
	DefaultWSPath            = "/mqtt"
	DefaultTLSAddress        = "0.0.0.0:8883"
	DefaultWSSAddress        = "0.0.0.0:8084"
	DefaultMaxPacketSize     = 1 << 20
	MaxPacketSizeLimit       = 268435460 // 256 MiB of remaining length + 5 bytes of fixed header
	DefaultReceiveMaximum    = 1024
	DefaultMaxInflight       = 128
	DefaultMaxQueued         = 10000
	DefaultMaxQueuedBytes    = 64 << 20
	DefaultTopicAliasMaximum = 64
	DefaultMaxQoS            = 2
	DefaultMaxClientIDLength = 256
	DefaultMaxTopicLength    = 65535
	DefaultSysInterval       = 10 * time.Second
	// MaxExpiry is the largest session expiry or will delay MQTT can carry
	// (a four-byte number of seconds).
	MaxExpiry = time.Duration(1<<32-1) * time.Second
)

// Load reads, strictly decodes, completes with defaults and validates the
// configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// Parse is Load for a document already in memory; name is used in error
// messages (usually the file name).
func Parse(data []byte, name string) (*Config, error) {
	src := newSource(name, data)
	if err := src.checkTypes(); err != nil {
		return nil, err
	}
	c := &Config{}
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, src.decodeError(err)
	}
	c.src = src
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Default is the configuration `moat serve` uses without a file: data in
// ./moat-data and one plain TCP listener on 127.0.0.1:1883 that allows
// anonymous clients (loopback only), everything else at its default.
func Default() *Config {
	anon := true
	c := &Config{
		Listeners: []Listener{{Type: ListenerTCP, Address: DefaultTCPAddress, AllowAnonymous: &anon}},
	}
	c.ApplyDefaults()
	return c
}

// unset reports whether a field should take its default: its value is the
// zero value and, for a configuration read from a file, the key was not
// written there (a written zero is kept, then validated).
func (c *Config) unset(path string, zero bool) bool {
	return zero && !c.src.has(path)
}

// ApplyDefaults fills every field that is not set with its default (see
// the package comment for what "not set" means). It is idempotent.
func (c *Config) ApplyDefaults() {
	if c.unset("data_dir", c.DataDir == "") {
		c.DataDir = DefaultDataDir
	}
	if c.unset("store", c.Store == "") {
		c.Store = StoreBolt
	}
	if c.unset("sync", c.Sync == "") {
		c.Sync = SyncBatch
	}
	if c.unset("sync_interval", c.SyncInterval.Duration == 0) {
		c.SyncInterval.Duration = time.Second
	}
	if c.unset("memory_trim_interval", c.MemoryTrim.Duration == 0) {
		c.MemoryTrim.Duration = 10 * time.Second
	}
	if c.unset("mqtt.queue_overflow", c.MQTT.QueueOverflow == "") {
		c.MQTT.QueueOverflow = OverflowDropOldest
	}
	if c.unset("mqtt.cleanup_interval", c.MQTT.CleanupInterval.Duration == 0) {
		c.MQTT.CleanupInterval.Duration = time.Minute
	}
	if c.unset("master_key_file", c.MasterKeyFile == "") && c.DataDir != "" {
		c.MasterKeyFile = filepath.Join(c.DataDir, "master.key")
	}
	if c.unset("admin.address", c.Admin.Address == "") {
		c.Admin.Address = "127.0.0.1:9883"
	}
	if c.unset("admin.tokens_file", c.Admin.TokensFile == "") && c.DataDir != "" {
		c.Admin.TokensFile = filepath.Join(c.DataDir, "admin", "tokens")
	}
	if c.unset("admin.audit_log", c.Admin.AuditLog == "") && c.DataDir != "" {
		c.Admin.AuditLog = filepath.Join(c.DataDir, "admin", "audit.log")
	}
	if c.unset("pki.revocation_interval", c.PKI.RevocationCheck.Duration == 0) {
		c.PKI.RevocationCheck.Duration = time.Second
	}
	if c.unset("pki.renew_before", c.PKI.RenewBefore.Duration == 0) {
		c.PKI.RenewBefore.Duration = 30 * 24 * time.Hour
	}
	if c.unset("pki.renew_interval", c.PKI.RenewCheck.Duration == 0) {
		c.PKI.RenewCheck.Duration = time.Hour
	}
	if c.unset("alarms.expiry_days", len(c.Alarms.ExpiryDays) == 0) {
		c.Alarms.ExpiryDays = []int{30, 7, 1}
	}
	if c.unset("log.level", c.Log.Level == "") {
		c.Log.Level = DefaultLogLevel
	}
	if c.unset("log.format", c.Log.Format == "") {
		c.Log.Format = DefaultLogFormat
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		p := "listener[" + strconv.Itoa(i) + "]."
		if c.unset(p+"name", l.Name == "") && l.Type != "" {
			l.Name = l.Type + "-" + strconv.Itoa(i)
		}
		if c.unset(p+"address", l.Address == "") {
			switch l.Type {
			case ListenerTCP:
				l.Address = DefaultTCPAddress
			case ListenerWS:
				l.Address = DefaultWSAddress
			}
		}
		if c.unset(p+"address", l.Address == "") {
			switch l.Type {
			case ListenerTLS:
				l.Address = DefaultTLSAddress
			case ListenerWSS:
				l.Address = DefaultWSSAddress
			}
		}
		if (l.Type == ListenerWS || l.Type == ListenerWSS) && c.unset(p+"path", l.Path == "") {
			l.Path = DefaultWSPath
		}
		if c.unset(p+"handshake_timeout", l.HandshakeTimeout.Duration == 0) {
			l.HandshakeTimeout.Duration = 10 * time.Second
		}
		if c.unset(p+"max_handshakes", l.MaxHandshakes == 0) {
			l.MaxHandshakes = 512
		}
		if c.unset(p+"conn_rate_per_ip", l.ConnRatePerIP == 0) {
			l.ConnRatePerIP = 50
		}
		if c.unset(p+"conn_burst_per_ip", l.ConnBurstPerIP == 0) {
			l.ConnBurstPerIP = 100
		}
		if px := l.Proxy; px != nil {
			if c.unset(p+"proxy.header_timeout", px.HeaderTimeout.Duration == 0) {
				px.HeaderTimeout.Duration = 5 * time.Second
			}
			if c.unset(p+"proxy.cert_tlv", px.CertTLV == 0) {
				px.CertTLV = 0xE0
			}
			if c.unset(p+"proxy.identity", px.Identity == "") {
				px.Identity = "cn"
			}
			if c.unset(p+"proxy.client_id_template", px.ClientIDTemplate == "") {
				px.ClientIDTemplate = "{" + px.Identity + "}"
			}
		}
		if t := l.TLS; t != nil {
			if c.unset(p+"tls.min_version", t.MinVersion == "") {
				t.MinVersion = "1.2"
			}
			if c.unset(p+"tls.client_auth", t.ClientAuth == "") {
				t.ClientAuth = "none"
			}
			if c.unset(p+"tls.identity", t.Identity == "") {
				t.Identity = "cn"
			}
			if c.unset(p+"tls.client_id_template", t.ClientIDTemplate == "") {
				t.ClientIDTemplate = "{" + t.Identity + "}"
			}
			if c.unset(p+"tls.reload_interval", t.ReloadInterval.Duration == 0) {
				t.ReloadInterval.Duration = 10 * time.Second
			}
		}
	}
	for i := range c.ACL {
		r := &c.ACL[i]
		if c.unset("acl["+strconv.Itoa(i)+"].action", r.Action == "") {
			r.Action = ActionAll
		}
	}
	if c.unset("auth.acl_default", c.Auth.ACLDefault == "") {
		if len(c.ACL) == 0 {
			c.Auth.ACLDefault = PermissionAllow
		} else {
			c.Auth.ACLDefault = PermissionDeny
		}
	}
	m := &c.MQTT
	if c.unset("mqtt.max_packet_size", m.MaxPacketSize == 0) {
		m.MaxPacketSize = DefaultMaxPacketSize
	}
	if c.unset("mqtt.receive_maximum", m.ReceiveMaximum == 0) {
		m.ReceiveMaximum = DefaultReceiveMaximum
	}
	if c.unset("mqtt.max_inflight", m.MaxInflight == 0) {
		m.MaxInflight = DefaultMaxInflight
	}
	if c.unset("mqtt.max_queued_messages", m.MaxQueued == 0) {
		m.MaxQueued = DefaultMaxQueued
	}
	if c.unset("mqtt.max_queued_bytes", m.MaxQueuedBytes == 0) {
		m.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if c.unset("mqtt.topic_alias_maximum", m.TopicAliasMaximum == 0) {
		m.TopicAliasMaximum = DefaultTopicAliasMaximum
	}
	if m.RetainAvailable == nil {
		t := true
		m.RetainAvailable = &t
	}
	if m.MaxQoS == nil {
		q := DefaultMaxQoS
		m.MaxQoS = &q
	}
	if c.unset("mqtt.max_client_id_length", m.MaxClientIDLength == 0) {
		m.MaxClientIDLength = DefaultMaxClientIDLength
	}
	if c.unset("mqtt.max_topic_length", m.MaxTopicLength == 0) {
		m.MaxTopicLength = DefaultMaxTopicLength
	}
	if c.Sys.Enabled == nil {
		t := true
		c.Sys.Enabled = &t
	}
	if c.unset("sys.interval", c.Sys.Interval.Duration == 0) {
		c.Sys.Interval.Duration = DefaultSysInterval
	}
}

// AnonymousAllowed reports whether clients without credentials may connect
// on l: the listener's own setting if it has one, else [auth]'s.
func (c *Config) AnonymousAllowed(l *Listener) bool {
	if l != nil && l.AllowAnonymous != nil {
		return *l.AllowAnonymous
	}
	return c.Auth.AllowAnonymous
}

// IsLoopback reports whether the listener binds only to a loopback address
// (127.0.0.0/8, ::1 or "localhost"). The broker warns when a plain-text
// listener is not loopback. An empty host (all interfaces), another host
// name or an unparsable address is not loopback.
func (l *Listener) IsLoopback() bool {
	host, _, err := net.SplitHostPort(l.Address)
	if err != nil || host == "" {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// SetDataDir moves the data directory. Paths that were derived from it and
// still have their default value (master_key_file, admin.tokens_file,
// admin.audit_log) move with it.
func (c *Config) SetDataDir(dir string) {
	old := c.DataDir
	move := func(p *string, def string) {
		if *p == def {
			rel, _ := filepath.Rel(old, def)
			*p = filepath.Join(dir, rel)
		}
	}
	move(&c.MasterKeyFile, filepath.Join(old, "master.key"))
	move(&c.Admin.TokensFile, filepath.Join(old, "admin", "tokens"))
	move(&c.Admin.AuditLog, filepath.Join(old, "admin", "audit.log"))
	c.DataDir = dir
}
