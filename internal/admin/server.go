package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"moat/internal/registry"
)

// DefaultAddr is where the admin API listens unless configured otherwise.
const DefaultAddr = "127.0.0.1:9883"

// DefaultMaxBodyBytes limits request bodies.
const DefaultMaxBodyBytes = 64 << 10

// ClientInfo describes a connected client. Its fields are those of the
// broker's ClientInfo, so a broker.ClientInfo converts with
// admin.ClientInfo(ci).
type ClientInfo struct {
	ClientID        string    `json:"client_id"`
	Principal       string    `json:"principal"`
	PrincipalID     string    `json:"principal_id"`
	Method          string    `json:"method"`
	Remote          string    `json:"remote"`
	Listener        string    `json:"listener"`
	ProtocolVersion byte      `json:"protocol_version"`
	TLSVersion      string    `json:"tls_version,omitempty"`
	CipherSuite     string    `json:"cipher_suite,omitempty"`
	ConnectedAt     time.Time `json:"connected_at"`
}

// ClientManager is what the broker offers the API: the connected clients,
// and disconnecting one (an MQTT 5 client should be told 0x98
// Administrative action). Disconnect reports whether the client was
// connected. Both must be safe for concurrent use.
type ClientManager interface {
	Clients() []ClientInfo
	Disconnect(clientID string) bool
}

// Options configure New.
type Options struct {
	// Registry is the device registry (required).
	Registry *registry.Registry
	// Clients is the broker; nil makes the /v1/clients endpoints answer
	// 503 (e.g. when the CLI serves a data directory without a broker).
	Clients ClientManager
	// TLSConfig is the server's TLS configuration (required; it must
	// carry a certificate). For client-certificate authentication it
	// must verify client certificates (ClientAuth VerifyClientCertIfGiven
	// or RequireAndVerifyClientCert, with ClientCAs). New works on a
	// clone.
	TLSConfig *tls.Config
	// Tokens are the accepted bearer tokens.
	Tokens []Token
	// AdminCertNames and AdminCertFingerprints (hex SHA-256 of the
	// certificate DER, colons allowed) allow verified client
	// certificates by subject CN or by fingerprint.
	AdminCertNames        []string
	AdminCertFingerprints []string
	// Audit receives one JSON line per request; nil discards (and New
	// logs a warning).
	Audit io.Writer
	// Log is for operational messages; nil discards.
	Log *slog.Logger
	// MaxBodyBytes limits request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Metrics, when set, is served at GET /metrics (Prometheus text
	// format), behind the same authentication as the API.
	Metrics http.Handler
}

// Server is the admin API server.
type Server struct {
	reg      *registry.Registry
	clients  ClientManager
	tokens   []storedToken
	certCN   map[string]bool
	certFP   map[[32]byte]bool
	log      *slog.Logger
	maxBody  int64
	handler  http.Handler
	metrics  http.Handler
	srv      *http.Server
	now      func() time.Time
	auditMu  sync.Mutex // guards audit
	audit    io.Writer
	auditEnc *json.Encoder
}

type storedToken struct {
	name string
	hash [32]byte
}

// New checks opts and builds a server. Nothing listens until Serve.
func New(opts Options) (*Server, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrOptions, fmt.Sprintf(format, a...))
	}
	if opts.Registry == nil {
		return nil, bad("no registry")
	}
	tc := opts.TLSConfig
	if tc == nil {
		return nil, bad("no TLS configuration: the admin API is HTTPS only")
	}
	if len(tc.Certificates) == 0 && tc.GetCertificate == nil && tc.GetConfigForClient == nil {
		return nil, bad("TLS configuration has no server certificate")
	}
	if len(opts.Tokens) == 0 && len(opts.AdminCertNames) == 0 && len(opts.AdminCertFingerprints) == 0 {
		return nil, bad("no way to authenticate: configure a token or an admin certificate")
	}
	if len(opts.AdminCertNames)+len(opts.AdminCertFingerprints) > 0 && tc.GetConfigForClient == nil {
		if tc.ClientAuth != tls.VerifyClientCertIfGiven && tc.ClientAuth != tls.RequireAndVerifyClientCert {
			return nil, bad("admin certificates are configured but the TLS configuration does not verify client certificates (ClientAuth %v)", tc.ClientAuth)
		}
		if tc.ClientCAs == nil {
			return nil, bad("admin certificates are configured but no client CA is")
		}
	}
	s := &Server{
		reg:     opts.Registry,
		clients: opts.Clients,
		certCN:  map[string]bool{},
		certFP:  map[[32]byte]bool{},
		log:     opts.Log,
		maxBody: opts.MaxBodyBytes,
		now:     time.Now,
		audit:   opts.Audit,
		metrics: opts.Metrics,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	if s.audit == nil {
		s.log.Warn("admin API audit log is not configured; admin actions are not recorded")
		s.audit = io.Discard
	}
	s.auditEnc = json.NewEncoder(s.audit)
	names := map[string]bool{}
	for i, t := range opts.Tokens {
		if t.Name == "" || names[t.Name] {
			return nil, bad("token %d: name missing or repeated", i)
		}
		names[t.Name] = true
		h, err := hex.DecodeString(t.SHA256)
		if err != nil || len(h) != sha256.Size {
			return nil, bad("token %q: SHA256 must be 64 hex digits", t.Name)
		}
		st := storedToken{name: t.Name}
		copy(st.hash[:], h)
		s.tokens = append(s.tokens, st)
	}
	for _, n := range opts.AdminCertNames {
		if n == "" {
			return nil, bad("empty admin certificate name")
		}
		s.certCN[n] = true
	}
	for _, f := range opts.AdminCertFingerprints {
		h, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(f), ":", ""))
		if err != nil || len(h) != sha256.Size {
			return nil, bad("admin certificate fingerprint %q: want SHA-256 hex", f)
		}
		s.certFP[[32]byte(h)] = true
	}

	cfg := tc.Clone()
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	s.handler = s.routes()
	s.srv = &http.Server{
		Handler:           s.handler,
		TLSConfig:         cfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Listen listens on addr (DefaultAddr when empty). Unless allowRemote, the
// address must be a loopback one (127.0.0.0/8, ::1 or localhost).
func Listen(addr string, allowRemote bool) (net.Listener, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen address %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	loopback := host == "localhost" || ip != nil && ip.IsLoopback()
	if !loopback && !allowRemote {
		return nil, fmt.Errorf("%w: %q (allow remote access explicitly to listen there)", ErrNotLoopback, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if !allowRemote {
		if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
			ln.Close()
			return nil, fmt.Errorf("%w: %q resolved to %v", ErrNotLoopback, addr, ln.Addr())
		}
	}
	return ln, nil
}

// Serve serves HTTPS on ln until Shutdown or Close; it returns nil then.
func (s *Server) Serve(ln net.Listener) error {
	s.log.Info("admin API listening", "addr", ln.Addr().String())
	err := s.srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits for requests in flight, until ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Close stops the server at once.
func (s *Server) Close() error { return s.srv.Close() }

// caller is who made a request.
type caller struct {
	who string // "token:<name>", "cert:<CN>", or a description of a refused caller
}

type callerKey struct{}

// authenticate decides who a request comes from; it returns a status
// (401, 403) and message when the request is refused.
func (s *Server) authenticate(r *http.Request) (who string, status int, msg string) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || len(tok) > 512 {
			return "anonymous", http.StatusUnauthorized, "malformed Authorization header (want Bearer <token>)"
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		name := ""
		for i := range s.tokens {
			// Compare with every token, without an early exit.
			if subtle.ConstantTimeCompare(sum[:], s.tokens[i].hash[:]) == 1 {
				name = s.tokens[i].name
			}
		}
		if name == "" {
			return "anonymous", http.StatusUnauthorized, "invalid token"
		}
		return "token:" + name, 0, ""
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 {
		leaf := r.TLS.PeerCertificates[0]
		who := "cert:" + leaf.Subject.CommonName
		if s.certCN[leaf.Subject.CommonName] || s.certFP[sha256.Sum256(leaf.Raw)] {
			return who, 0, ""
		}
		return who, http.StatusForbidden, "client certificate is not an admin certificate"
	}
	return "anonymous", http.StatusUnauthorized, "authentication required (bearer token or admin client certificate)"
}

// guard wraps every request: TLS required, authentication, then
// cross-origin protection.
func (s *Server) guard(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, callerOf(r), "request", r.URL.Path, http.StatusForbidden, "cross-origin request refused")
	}))
	protected := cop.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.TLS == nil {
			s.fail(w, r, "anonymous", "request", "", http.StatusBadRequest, "HTTPS required")
			return
		}
		who, status, msg := s.authenticate(r)
		if status != 0 {
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="moat admin"`)
			}
			s.fail(w, r, who, "authenticate", "", status, msg)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), callerKey{}, caller{who: who}))
		protected.ServeHTTP(w, r)
	})
}

func callerOf(r *http.Request) string {
	if c, ok := r.Context().Value(callerKey{}).(caller); ok {
		return c.who
	}
	return "anonymous"
}

// AuditRecord is one line of the audit log.
type AuditRecord struct {
	Time   time.Time `json:"time"`
	Who    string    `json:"who"`
	Action string    `json:"action"`
	Target string    `json:"target,omitempty"`
	Result string    `json:"result"` // ok | denied | error
	Status int       `json:"status"`
	Error  string    `json:"error,omitempty"`
	Remote string    `json:"remote"`
}

func (s *Server) record(rec AuditRecord) {
	rec.Time = s.now().UTC()
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	if err := s.auditEnc.Encode(&rec); err != nil {
		s.log.Error("writing the admin audit log failed", "err", err)
	}
}

// fail answers an error and records it.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, who, action, target string, status int, msg string) {
	result := "error"
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		result = "denied"
	}
	s.record(AuditRecord{Who: who, Action: action, Target: target, Result: result, Status: status, Error: msg, Remote: r.RemoteAddr})
	writeJSON(w, status, errorBody{Error: msg})
}

// rawJSON is a response body written as is.
type rawJSON []byte

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusNoContent || body == nil {
		w.WriteHeader(status)
		return
	}
	if raw, ok := body.(rawJSON); ok {
		w.WriteHeader(status)
		w.Write(raw)
		return
	}
	b, err := json.Marshal(body)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `{"error":"internal error"}`)
		return
	}
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// apiError is an error with an HTTP status.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errStatus(status int, format string, a ...any) error {
	return &apiError{status: status, msg: fmt.Sprintf(format, a...)}
}

// statusOf maps an error to a status and a message for the client.
func (s *Server) statusOf(err error) (int, string) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.msg
	case errors.Is(err, registry.ErrNotFound):
		return http.StatusNotFound, trimPrefix(err)
	case errors.Is(err, registry.ErrExists), errors.Is(err, registry.ErrNotRotatable), errors.Is(err, registry.ErrNoFleetKey):
		return http.StatusConflict, trimPrefix(err)
	case errors.Is(err, registry.ErrInvalid):
		return http.StatusBadRequest, trimPrefix(err)
	case errors.Is(err, registry.ErrClosed):
		return http.StatusServiceUnavailable, trimPrefix(err)
	}
	s.log.Error("admin API request failed", "err", err)
	return http.StatusInternalServerError, "internal error"
}

func trimPrefix(err error) string { return strings.TrimPrefix(err.Error(), "registry: ") }

// route is one endpoint.
type route struct {
	method  string
	path    string // ServeMux pattern path
	action  string // audit action
	handler func(s *Server, w http.ResponseWriter, r *http.Request) (int, any, error)
}

// routes builds the handler: the guard, then a mux with every route, JSON
// 405 answers for known paths with other methods, and JSON 404 answers for
// the rest.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	methods := map[string][]string{}
	for _, rt := range apiRoutes {
		mux.Handle(rt.method+" "+rt.path, s.endpoint(rt))
		methods[rt.path] = append(methods[rt.path], rt.method)
	}
	for path, ms := range methods {
		sort.Strings(ms)
		allow := strings.Join(ms, ", ")
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			s.fail(w, r, callerOf(r), "request", r.URL.Path, http.StatusMethodNotAllowed, "method not allowed (allowed: "+allow+")")
		})
	}
	if s.metrics != nil {
		mux.Handle("GET /metrics", s.metrics)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, callerOf(r), "request", r.URL.Path, http.StatusNotFound, "no such endpoint")
	})
	return s.guard(mux)
}

// endpoint runs a route's handler, answers and records it.
func (s *Server) endpoint(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &reqState{target: targetOf(r)}
		r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
		status, body, err := rt.handler(s, w, r)
		who, target := callerOf(r), st.target
		if err != nil {
			st, msg := s.statusOf(err)
			s.fail(w, r, who, rt.action, target, st, msg)
			return
		}
		s.record(AuditRecord{Who: who, Action: rt.action, Target: target, Result: "ok", Status: status, Remote: r.RemoteAddr})
		writeJSON(w, status, body)
	})
}

type stateKey struct{}

// reqState is per-request state handlers may change.
type reqState struct {
	target string // audit target
}

// setTarget names the audit target when the path does not.
func setTarget(r *http.Request, target string) {
	if st, ok := r.Context().Value(stateKey{}).(*reqState); ok {
		st.target = target
	}
}

// targetOf names what a request acts on, for the audit log.
func targetOf(r *http.Request) string {
	var parts []string
	if strings.HasPrefix(r.Pattern, "POST /v1/clients/") {
		return "client:" + r.PathValue("id")
	}
	if id := r.PathValue("id"); id != "" {
		parts = append(parts, "device:"+id)
	}
	if cid := r.PathValue("cid"); cid != "" {
		parts = append(parts, "credential:"+cid)
	}
	return strings.Join(parts, "/")
}
