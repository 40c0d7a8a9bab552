package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// validator collects problems, locating each key in the source if any.
type validator struct {
	c    *Config
	errs []*Error
}

func (v *validator) add(key string, kind error, format string, args ...any) {
	e := &Error{Key: key, Msg: fmt.Sprintf(format, args...), Err: kind}
	if s := v.c.src; s != nil {
		e.File = s.name
		p := s.locate(key)
		e.Line, e.Column = p.line, p.col
	}
	v.errs = append(v.errs, e)
}

// line describes where key is, for messages that point at a second place
// ("also used by listener[0] (line 3)").
func (v *validator) where(key string) string {
	if p := v.c.src.locate(key); p.line > 0 {
		return key + " (line " + strconv.Itoa(p.line) + ")"
	}
	return key
}

func oneOf(allowed ...string) string {
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = strconv.Quote(a)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

func (v *validator) enum(key, val string, allowed ...string) bool {
	if slices.Contains(allowed, val) {
		return true
	}
	v.add(key, ErrInvalid, "%q is not allowed; use %s", val, oneOf(allowed...))
	return false
}

// Validate checks the whole configuration (after ApplyDefaults) and returns
// every problem found, or nil. For a configuration loaded from a file, each
// problem names the file, the line and the key path.
func (c *Config) Validate() error {
	v := &validator{c: c}
	if c.DataDir == "" {
		v.add("data_dir", ErrRequired, "must not be empty")
	}
	v.enum("store", c.Store, StoreBolt, StoreMemory)
	v.enum("sync", c.Sync, SyncAlways, SyncBatch, SyncPeriodic)
	if c.SyncInterval.Duration < 10*time.Millisecond {
		v.add("sync_interval", ErrInvalid, "must be at least 10ms (got %s)", fmtDuration(c.SyncInterval.Duration))
	}
	if d := c.MemoryTrim.Duration; d != 0 && d < time.Second {
		v.add("memory_trim_interval", ErrInvalid, "must be 0s (never) or at least 1s (got %s)", fmtDuration(d))
	}
	v.enum("mqtt.queue_overflow", c.MQTT.QueueOverflow, OverflowDropOldest, OverflowDropNew, OverflowDisconnect)
	if c.MQTT.CleanupInterval.Duration < time.Second {
		v.add("mqtt.cleanup_interval", ErrInvalid, "must be at least 1s (got %s)", fmtDuration(c.MQTT.CleanupInterval.Duration))
	}
	v.enum("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.enum("log.format", c.Log.Format, "text", "json")
	v.listeners()
	v.auth()
	v.acl()
	v.mqtt()
	v.sys()
	for i, d := range c.Alarms.ExpiryDays {
		if d < 1 || d > 3650 {
			v.add("alarms.expiry_days["+strconv.Itoa(i)+"]", ErrInvalid, "must be between 1 and 3650 days (got %d)", d)
		}
	}
	if c.PKI.RevocationCheck.Duration < 100*time.Millisecond {
		v.add("pki.revocation_interval", ErrInvalid, "must be at least 100ms (got %s)", fmtDuration(c.PKI.RevocationCheck.Duration))
	}
	if c.PKI.RenewCheck.Duration < time.Second {
		v.add("pki.renew_interval", ErrInvalid, "must be at least 1s (got %s)", fmtDuration(c.PKI.RenewCheck.Duration))
	}
	if c.PKI.RenewBefore.Duration < 0 {
		v.add("pki.renew_before", ErrInvalid, "must not be negative")
	}
	if a := c.PKI.CRLAddress; a != "" {
		v.address("pki.crl_address", a)
	}
	// Report in file order; problems without a position keep check order
	// after them.
	slices.SortStableFunc(v.errs, func(a, b *Error) int {
		switch {
		case a.Line == b.Line:
			return 0
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return a.Line - b.Line
	})
	return joinErrors(v.errs)
}

func (v *validator) listeners() {
	c := v.c
	if len(c.Listeners) == 0 {
		v.add("listener", ErrRequired, "no [[listener]] defined; add at least one, e.g. [[listener]] type = \"tcp\" address = %q", DefaultTCPAddress)
		return
	}
	names := make(map[string]string)
	var bound []boundAddr
	for i := range c.Listeners {
		l := &c.Listeners[i]
		p := "listener[" + strconv.Itoa(i) + "]"
		switch l.Type {
		case ListenerTCP, ListenerWS, ListenerTLS, ListenerWSS:
		case "":
			v.add(p+".type", ErrRequired, "type is required: %s", oneOf(ListenerTCP, ListenerWS, ListenerTLS, ListenerWSS))
			continue
		default:
			v.add(p+".type", ErrInvalid, "%q is not a listener type; use %s", l.Type, oneOf(ListenerTCP, ListenerWS, ListenerTLS, ListenerWSS))
			continue
		}
		v.listenerTLS(p, l)
		v.listenerProxy(p, l)
		if l.Name == "" {
			v.add(p+".name", ErrRequired, "must not be empty")
		} else if prev, dup := names[l.Name]; dup {
			v.add(p+".name", ErrDuplicate, "listener name %q is also used by %s", l.Name, v.where(prev))
		} else {
			names[l.Name] = p
		}
		if host, port, ok := v.address(p+".address", l.Address); ok && port != "0" {
			// Port 0 picks a free port: never a conflict.
			if prev := conflict(bound, host, port); prev != nil {
				v.add(p+".address", ErrDuplicate, "address %q conflicts with %s (%q)", l.Address, v.where(prev.key+".address"), prev.addr)
			} else {
				bound = append(bound, boundAddr{host, port, l.Address, p})
			}
		}
		if l.Type == ListenerWS || l.Type == ListenerWSS {
			if !strings.HasPrefix(l.Path, "/") {
				v.add(p+".path", ErrInvalid, "websocket path %q must start with '/'", l.Path)
			}
		} else if l.Path != "" {
			v.add(p+".path", ErrInvalid, "path is only used by \"ws\" listeners")
		}
		if l.MaxConnections < 0 {
			v.add(p+".max_connections", ErrInvalid, "must not be negative (got %d; 0 means unlimited)", l.MaxConnections)
		}
	}
}

// address checks host:port and returns the normalized host and the port.
func (v *validator) address(key, addr string) (host, port string, ok bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(key, ErrInvalid, "%q is not host:port (write IPv6 addresses as \"[::1]:1883\")", addr)
		return "", "", false
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		v.add(key, ErrInvalid, "port %q in %q must be a number from 0 to 65535", port, addr)
		return "", "", false
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().String()
	} else if strings.ContainsAny(host, " /\\") {
		v.add(key, ErrInvalid, "host %q in %q is not an IP address or a host name", host, addr)
		return "", "", false
	} else {
		host = strings.ToLower(host)
	}
	return host, strconv.Itoa(mustAtoi(port)), true
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func isWildcard(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

type boundAddr struct{ host, port, addr, key string }

// conflict returns the earlier listener that cannot bind next to host:port:
// same host and port, or same port where either listens on all interfaces.
func conflict(bound []boundAddr, host, port string) *boundAddr {
	for i := range bound {
		b := &bound[i]
		if port != "0" && b.port == port && (b.host == host || isWildcard(b.host) || isWildcard(host)) {
			return b
		}
	}
	return nil
}

func (v *validator) auth() {
	a := &v.c.Auth
	v.enum("auth.acl_default", a.ACLDefault, PermissionAllow, PermissionDeny)
	seen := make(map[string]string)
	for i, u := range a.Users {
		p := "auth.users[" + strconv.Itoa(i) + "]"
		if u.Username == "" {
			v.add(p+".username", ErrRequired, "username is required")
		} else if prev, dup := seen[u.Username]; dup {
			v.add(p+".username", ErrDuplicate, "user %q is also defined by %s", u.Username, v.where(prev))
		} else {
			seen[u.Username] = p
		}
		if u.PasswordHash == "" {
			v.add(p+".password_hash", ErrRequired, "password_hash is required; run `moat passwd` to make one")
			continue
		}
		if err := checkPasswordHash(u.PasswordHash); err != nil {
			// Never echo the value: it may well be a plaintext password.
			if errors.Is(err, errNotAHash) {
				v.add(p+".password_hash", ErrPlaintextPassword, "password_hash must be an argon2id or bcrypt hash; run `moat passwd`")
			} else {
				v.add(p+".password_hash", ErrInvalid, "%v", err)
			}
		}
	}
}

func (v *validator) acl() {
	for i, r := range v.c.ACL {
		p := "acl[" + strconv.Itoa(i) + "]"
		switch r.Permission {
		case "":
			v.add(p+".permission", ErrRequired, "permission is required: %s", oneOf(PermissionAllow, PermissionDeny))
		default:
			v.enum(p+".permission", r.Permission, PermissionAllow, PermissionDeny)
		}
		v.enum(p+".action", r.Action, ActionPublish, ActionSubscribe, ActionAll)
		if r.Topic == "" {
			v.add(p+".topic", ErrRequired, "topic is required (a topic filter such as \"sensors/%%u/#\")")
		} else if err := checkACLFilter(r.Topic); err != nil {
			v.add(p+".topic", ErrInvalid, "%q: %v", r.Topic, err)
		}
		if r.Method != "" {
			v.enum(p+".method", r.Method, methods...)
		}
		if v.c.src.has(p+".username") && r.Username == "" {
			v.add(p+".username", ErrInvalid, "must not be empty; leave the key out to match every user")
		}
		if v.c.src.has(p+".client_id") && r.ClientID == "" {
			v.add(p+".client_id", ErrInvalid, "must not be empty; leave the key out to match every client")
		}
	}
}

func (v *validator) mqtt() {
	m := &v.c.MQTT
	if m.MaxPacketSize < 1 || m.MaxPacketSize > MaxPacketSizeLimit {
		v.add("mqtt.max_packet_size", ErrInvalid, "must be between 1 and %d (got %d)", MaxPacketSizeLimit, m.MaxPacketSize)
	}
	if m.ReceiveMaximum < 1 {
		v.add("mqtt.receive_maximum", ErrInvalid, "must be at least 1")
	}
	if m.MaxInflight < 1 {
		v.add("mqtt.max_inflight", ErrInvalid, "must be at least 1")
	}
	if m.MaxQueued < 1 {
		v.add("mqtt.max_queued_messages", ErrInvalid, "must be at least 1 (got %d)", m.MaxQueued)
	}
	if m.MaxQueuedBytes < 1 {
		v.add("mqtt.max_queued_bytes", ErrInvalid, "must be at least 1 (got %d)", m.MaxQueuedBytes)
	}
	v.maxDuration("mqtt.max_session_expiry", m.MaxSessionExpiry.Duration)
	v.maxDuration("mqtt.max_will_delay", m.WillDelayMax.Duration)
	if m.MaxQoS != nil && (*m.MaxQoS < 0 || *m.MaxQoS > 2) {
		v.add("mqtt.max_qos", ErrInvalid, "must be 0, 1 or 2 (got %d)", *m.MaxQoS)
	}
	// MQTT requires servers to accept client identifiers of 1 to 23 bytes.
	if m.MaxClientIDLength < 23 || m.MaxClientIDLength > 65535 {
		v.add("mqtt.max_client_id_length", ErrInvalid, "must be between 23 and 65535 (got %d; MQTT requires servers to accept 23)", m.MaxClientIDLength)
	}
	if m.MaxTopicLength < 1 || m.MaxTopicLength > 65535 {
		v.add("mqtt.max_topic_length", ErrInvalid, "must be between 1 and 65535 (got %d)", m.MaxTopicLength)
	}
}

func (v *validator) maxDuration(key string, d time.Duration) {
	if d < 0 {
		v.add(key, ErrInvalid, "must not be negative")
	} else if d > MaxExpiry {
		v.add(key, ErrInvalid, "%s is longer than MQTT can express (%s); use \"0s\" for no cap", fmtDuration(d), fmtDuration(MaxExpiry))
	}
}

func (v *validator) sys() {
	if d := v.c.Sys.Interval.Duration; d < time.Second {
		v.add("sys.interval", ErrInvalid, "must be at least 1s (got %s)", fmtDuration(d))
	}
}

func fmtDuration(d time.Duration) string {
	b, err := Duration{d}.MarshalText()
	if err != nil {
		return d.String()
	}
	return string(b)
}

// listenerTLS checks the [listener.tls] table against the listener type.
// The TLS material itself (files, suites, identity sources) is checked when
// the broker builds the TLS policy, before anything binds.
func (v *validator) listenerTLS(p string, l *Listener) {
	if l.HandshakeTimeout.Duration < 100*time.Millisecond {
		v.add(p+".handshake_timeout", ErrInvalid, "must be at least 100ms (got %s)", fmtDuration(l.HandshakeTimeout.Duration))
	}
	if l.MaxHandshakes < 1 {
		v.add(p+".max_handshakes", ErrInvalid, "must be at least 1 (got %d)", l.MaxHandshakes)
	}
	if l.ConnRatePerIP < 0 {
		v.add(p+".conn_rate_per_ip", ErrInvalid, "must not be negative")
	}
	if l.ConnBurstPerIP < 1 {
		v.add(p+".conn_burst_per_ip", ErrInvalid, "must be at least 1 (got %d)", l.ConnBurstPerIP)
	}
	t := l.TLS
	if !l.IsTLS() {
		if t != nil {
			v.add(p+".tls", ErrInvalid, "a %q listener does not use TLS; use type \"tls\" or \"wss\"", l.Type)
		}
		return
	}
	if t == nil {
		v.add(p+".tls", ErrRequired, "a %q listener needs a [listener.tls] table with cert and key", l.Type)
		return
	}
	if t.Cert == "" && (t.PSKFile == "" || l.Type != ListenerTLS || t.ClientAuth != "none") {
		v.add(p+".tls.cert", ErrRequired, "must name the server certificate chain (PEM); only a \"tls\" listener with psk_file and no client certificates may go without one")
	}
	if t.PSKFile != "" && l.Type != ListenerTLS {
		v.add(p+".tls.psk_file", ErrInvalid, "TLS-PSK is available on \"tls\" listeners only")
	}
	if t.KeyPasswordFile != "" && t.KeyPasswordEnv != "" {
		v.add(p+".tls.key_password_file", ErrInvalid, "set key_password_file or key_password_env, not both")
	}
	if t.MinVersion != "1.2" && t.MinVersion != "1.3" {
		v.add(p+".tls.min_version", ErrInvalid, "must be \"1.2\" or \"1.3\" (got %q); versions below TLS 1.2 are not supported", t.MinVersion)
	}
	if v.enum(p+".tls.client_auth", t.ClientAuth, "none", "optional", "required") {
		if t.ClientAuth != "none" && len(t.ClientCA) == 0 {
			v.add(p+".tls.client_ca", ErrRequired, "client_auth = %q needs at least one CA bundle", t.ClientAuth)
		}
		if t.ClientAuth == "none" && len(t.ClientCA) > 0 {
			v.add(p+".tls.client_ca", ErrInvalid, "client_ca is set but client_auth is \"none\": client certificates would not be asked for")
		}
	}
	if t.RevocationPolicy != "" {
		v.enum(p+".tls.revocation_policy", t.RevocationPolicy, "fail_open", "fail_closed")
	}
	if t.ReloadInterval.Duration < time.Second {
		v.add(p+".tls.reload_interval", ErrInvalid, "must be at least 1s (got %s)", fmtDuration(t.ReloadInterval.Duration))
	}
	for i, s := range t.SNI {
		if s.Cert == "" {
			v.add(p+".tls.sni["+strconv.Itoa(i)+"].cert", ErrRequired, "must name a certificate chain (PEM)")
		}
	}
}

// listenerProxy checks the [listener.proxy] table.
func (v *validator) listenerProxy(p string, l *Listener) {
	px := l.Proxy
	if px == nil {
		return
	}
	if l.Type == ListenerWSS {
		v.add(p+".proxy", ErrInvalid, "the PROXY protocol is available on \"tcp\", \"tls\" and \"ws\" listeners")
	}
	if len(px.Trusted) == 0 {
		v.add(p+".proxy.trusted", ErrRequired, "list the addresses (CIDRs) of the load balancers whose PROXY headers are believed")
	}
	for i, t := range px.Trusted {
		if _, err := netip.ParsePrefix(t); err != nil {
			if _, err := netip.ParseAddr(t); err != nil {
				v.add(p+".proxy.trusted["+strconv.Itoa(i)+"]", ErrInvalid, "%q is not a CIDR or an IP address", t)
			}
		}
	}
	if px.CertTLV < 0xE0 || px.CertTLV > 0xEF {
		v.add(p+".proxy.cert_tlv", ErrInvalid, "must be a custom TLV type, 0xE0..0xEF (got %#x)", px.CertTLV)
	}
	if px.HeaderTimeout.Duration < 100*time.Millisecond {
		v.add(p+".proxy.header_timeout", ErrInvalid, "must be at least 100ms (got %s)", fmtDuration(px.HeaderTimeout.Duration))
	}
}
