package auth

import (
	"context"
	"net"
	"strconv"
	"strings"
	"unicode"
)

// Method is how a Principal proved its identity.
type Method string

// Authentication methods.
const (
	MethodAnonymous Method = "anonymous"
	MethodPassword  Method = "password"
	MethodCert      Method = "cert"
	MethodPSK       Method = "psk"
	MethodPinnedKey Method = "pinned-key"
	MethodProxyTLS  Method = "proxy-tls"
)

// Valid reports whether m is one of the methods above.
func (m Method) Valid() bool {
	switch m {
	case MethodAnonymous, MethodPassword, MethodCert, MethodPSK, MethodPinnedKey, MethodProxyTLS:
		return true
	}
	return false
}

// Principal is the one answer to "who is this connection". Everything
// after authentication (ACL, client id binding, metrics, audit) reads the
// Principal, never the raw transport. A Principal is not modified after
// authentication; share it freely.
type Principal struct {
	ID       string            // identity: username for password auth, device id later; "" for anonymous
	Method   Method            // how the identity was proven
	Username string            // MQTT username presented (if any)
	Attrs    map[string]string // extra attributes for ACLs (cert fields later)
}

// String is a short form for logs: "anonymous" or "<method>:<id>", with
// the id quoted when it holds spaces, quotes or unprintable characters.
func (p *Principal) String() string {
	if p == nil {
		return "<nil>"
	}
	if p.ID == "" {
		if p.Method == "" {
			return string(MethodAnonymous)
		}
		return string(p.Method)
	}
	id := p.ID
	if strings.IndexFunc(id, func(r rune) bool { return r == ' ' || r == '"' || !unicode.IsPrint(r) }) >= 0 {
		id = strconv.Quote(id)
	}
	return string(p.Method) + ":" + id
}

// Equal reports whether p and o are the same identity: same ID and Method
// (the presented username and attributes do not matter).
func (p *Principal) Equal(o *Principal) bool {
	if p == nil || o == nil {
		return p == o
	}
	return p.ID == o.ID && p.Method == o.Method
}

// Request is what an Authenticator gets from a CONNECT and its transport.
type Request struct {
	Listener       string
	RemoteAddr     net.Addr
	ClientID       string
	Username       string
	HasUsername    bool
	Password       []byte // never logged
	HasPassword    bool
	AllowAnonymous bool // the listener's setting

	// Transport is what the transport proved before CONNECT: a verified
	// client certificate or a TLS-PSK identity. nil on plain-text
	// connections.
	Transport *TransportIdentity
}

// TransportIdentity is an identity proven by the transport layer.
type TransportIdentity struct {
	Method Method // MethodCert, MethodPSK, MethodPinnedKey or MethodProxyTLS
	ID     string // the mapped identity (certificate field, PSK identity)
	// Attrs are extra facts for ACLs and logs: for certificates "cn",
	// "dn", "fingerprint", "issuer", "serial"; for TLS "tls_version" and
	// "tls_cipher".
	Attrs map[string]string
}

// Authenticator decides who a connection is.
type Authenticator interface {
	// Authenticate returns the Principal or ErrBadCredentials /
	// ErrNotAuthorized (wrapped). It must not log or return secrets.
	Authenticate(ctx context.Context, r *Request) (*Principal, error)
}
