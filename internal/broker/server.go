// Package broker owns the MQTT broker core: connection lifecycle, the
// CONNECT steps, sessions, QoS flows, routing, retained messages, wills and
// the $SYS topics. Transports come from package listener, identities from
// package auth.
//
// Lock order: Server.mu, then session.mu, then conn.wmu, then the
// subscription trie's own lock. Nothing called under the trie's lock takes
// another lock (the shared-subscription preference reads Server.index).
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"moat/internal/admin"
	"moat/internal/auth"
	"moat/internal/config"
	"moat/internal/listener"
	"moat/internal/packet"
	"moat/internal/pki"
	"moat/internal/registry"
	"moat/internal/revocation"
	"moat/internal/store"
	"moat/internal/tlspolicy"
	"moat/internal/tlspsk"
	"moat/internal/topic"
)

// Options are what New needs besides the configuration.
type Options struct {
	Config        *config.Config
	Log           *slog.Logger
	Authenticator auth.Authenticator // nil: built from the config's users
	Authorizer    auth.Authorizer    // nil: built from the config's ACL rules
	Version       string             // reported on $SYS/broker/version
	Store         store.Store        // nil: opened from the configuration
}

// Server is an MQTT broker.
type Server struct {
	cfg      *config.Config
	log      *slog.Logger
	authn    auth.Authenticator
	authz    auth.Authorizer
	version  string
	trie     *topic.Trie
	retained *topic.Retained[*Message]
	started  time.Time
	st       store.Store
	memStore bool          // st keeps nothing: skip the write path
	applied  atomic.Uint64 // store writes submitted so far

	limits limits
	stats  stats

	// mu guards the following fields.
	mu        sync.RWMutex
	sessions  map[string]*session
	conns     map[*conn]struct{}
	listeners []*boundListener
	closing   bool

	index sync.Map // client id -> *session: lock-free mirror of sessions

	wg   sync.WaitGroup // every goroutine the server starts
	done chan struct{}
	// handshakers start TLS connections on reused goroutines.
	handshakers *handshakers
	// ctx ends at Shutdown; background watchers run under it.
	ctx     context.Context
	cancel  context.CancelFunc
	recheck chan struct{} // new revocation data: check live certificates

	ca        *pki.CA            // the built-in CA, or nil
	reg       *registry.Registry // the device registry, or nil
	admin     *admin.Server
	adminAddr net.Addr
	adminLn   net.Listener
	auditFile *os.File
	crlSrv    *http.Server
	crlAddr   net.Addr
}

type boundListener struct {
	cfg        *config.Listener
	ln         net.Listener
	gate       *listener.HandshakeGate
	guard      *listener.GuardedListener
	pinned     bool                // certificateless (pinned-key) clients accepted
	revocation *revocation.Checker // CRL/OCSP checks of client certificates, or nil
	policy     *tlspolicy.Policy   // nil for plain-text listeners
	psk        *tlspsk.Config      // TLS-PSK on a "tls" listener, or nil
	pskStore   *tlspsk.FileStore
	n          atomic.Int64 // open connections
}

// limits are the configuration values the hot path reads.
type limits struct {
	maxPacket      uint32
	recvMax        uint16
	maxInflight    uint16
	maxQueued      int
	maxQueuedBytes int64
	aliasMax       uint16
	maxKeepAlive   uint16
	maxSessionExp  uint32
	maxWillDelay   uint32
	retain         bool
	maxQoS         byte
	maxClientIDLen int
	maxTopicLen    int
	connectTimeout time.Duration
	writeTimeout   time.Duration
	maxPending     int
	overflow       string
}

type stats struct {
	msgsRecv   atomic.Int64
	msgsSent   atomic.Int64
	bytesRecv  atomic.Int64
	bytesSent  atomic.Int64
	connected  atomic.Int64
	totalConn  atomic.Int64
	dropped    atomic.Int64
	pubDropped atomic.Int64
	authOK     atomic.Int64
	authFailed atomic.Int64
}

// New builds a server from a validated configuration. It binds nothing;
// call Listen.
func New(opts Options) (*Server, error) {
	cfg := opts.Config
	if cfg == nil {
		cfg = config.Default()
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:      cfg,
		log:      log,
		authn:    opts.Authenticator,
		authz:    opts.Authorizer,
		version:  opts.Version,
		trie:     topic.NewTrie(),
		retained: topic.NewRetained[*Message](),
		sessions: make(map[string]*session),
		conns:    make(map[*conn]struct{}),
		done:     make(chan struct{}),
	}
	s.handshakers = newHandshakers(s)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.recheck = make(chan struct{}, 1)
	if s.version == "" {
		s.version = "dev"
	}
	ca, err := openCA(cfg)
	if err != nil {
		return nil, err
	}
	s.ca = ca
	s.st = opts.Store
	if s.st == nil {
		st, err := OpenStore(cfg, log)
		if err != nil {
			return nil, err
		}
		s.st = st
	}
	_, s.memStore = s.st.(*store.Memory)
	if s.authn == nil {
		st, err := auth.NewStatic(cfg.Auth.Users)
		if err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
		s.authn = &auth.Transport{Next: st}
	}
	if s.authz == nil {
		defAllow := cfg.Auth.ACLDefault == "allow" || (cfg.Auth.ACLDefault == "" && len(cfg.ACL) == 0)
		acl, err := auth.NewACL(cfg.ACL, defAllow)
		if err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
		s.authz = acl
	}
	if err := s.openDevices(); err != nil {
		s.st.Close()
		return nil, err
	}
	m := cfg.MQTT
	s.limits = limits{
		maxPacket:      m.MaxPacketSize,
		recvMax:        m.ReceiveMaximum,
		maxInflight:    m.MaxInflight,
		maxQueued:      m.MaxQueued,
		maxQueuedBytes: m.MaxQueuedBytes,
		aliasMax:       m.TopicAliasMaximum,
		maxKeepAlive:   m.MaxKeepAlive,
		maxSessionExp:  uint32(m.MaxSessionExpiry.Duration / time.Second),
		maxWillDelay:   uint32(m.WillDelayMax.Duration / time.Second),
		retain:         m.RetainAvailable == nil || *m.RetainAvailable,
		maxQoS:         2,
		maxClientIDLen: m.MaxClientIDLength,
		maxTopicLen:    m.MaxTopicLength,
		connectTimeout: 10 * time.Second,
		writeTimeout:   30 * time.Second,
	}
	if m.MaxQoS != nil {
		s.limits.maxQoS = byte(*m.MaxQoS)
	}
	if s.limits.maxPacket == 0 {
		s.limits.maxPacket = 1 << 20
	}
	if s.limits.recvMax == 0 {
		s.limits.recvMax = 1024
	}
	if s.limits.maxInflight == 0 {
		s.limits.maxInflight = 128
	}
	if s.limits.maxClientIDLen == 0 {
		s.limits.maxClientIDLen = 256
	}
	if s.limits.maxTopicLen == 0 {
		s.limits.maxTopicLen = 65535
	}
	// A subscriber that does not read is cut off once this much is
	// waiting for it; QoS 0 messages are dropped well before that.
	s.limits.maxPending = int(s.limits.maxPacket)*2 + 4<<20
	s.limits.overflow = m.QueueOverflow
	if s.limits.overflow == "" {
		s.limits.overflow = config.OverflowDropOldest
	}
	s.mu.Lock()
	err = s.restore()
	s.mu.Unlock()
	if err != nil {
		s.st.Close()
		return nil, err
	}
	return s, nil
}

// OpenStore opens the store the configuration names: the bbolt file
// data_dir/moat.db, or the memory store.
func OpenStore(cfg *config.Config, log *slog.Logger) (store.Store, error) {
	if cfg.Store == config.StoreMemory {
		return store.NewMemory(), nil
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("broker: data directory: %w", err)
	}
	return store.OpenBolt(filepath.Join(cfg.DataDir, "moat.db"), store.BoltOptions{
		Policy:   store.Policy(cfg.Sync),
		Interval: cfg.SyncInterval.Duration,
		Log:      log,
	})
}

// Listen binds every configured listener. Nothing is bound when one fails.
func (s *Server) Listen() error {
	if len(s.cfg.Listeners) == 0 {
		return ErrNoListeners
	}
	var bound []*boundListener
	for i := range s.cfg.Listeners {
		l := &s.cfg.Listeners[i]
		bl, err := s.bind(l)
		if err != nil {
			for _, b := range bound {
				b.ln.Close()
			}
			return err
		}
		if !l.IsTLS() && !l.IsLoopback() {
			s.log.Warn("plain-text listener reachable beyond loopback: credentials and messages cross the network unencrypted",
				"listener", l.Name, "address", bl.ln.Addr().String())
		}
		if s.cfg.AnonymousAllowed(l) {
			s.log.Info("anonymous clients allowed", "listener", l.Name)
		}
		s.log.Info("listening", "listener", l.Name, "type", l.Type, "address", bl.ln.Addr().String())
		bound = append(bound, bl)
	}
	s.mu.Lock()
	s.listeners = bound
	s.mu.Unlock()
	if err := s.startAdmin(); err != nil {
		for _, b := range bound {
			b.ln.Close()
		}
		return err
	}
	return nil
}

// Addr returns the bound address of the named listener, or nil.
func (s *Server) Addr(name string) net.Addr {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := range s.listeners {
		if s.listeners[i].cfg.Name == name {
			return s.listeners[i].ln.Addr()
		}
	}
	return nil
}

// Addrs returns the bound address of every listener by name.
func (s *Server) Addrs() map[string]net.Addr {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]net.Addr, len(s.listeners))
	for i := range s.listeners {
		out[s.listeners[i].cfg.Name] = s.listeners[i].ln.Addr()
	}
	return out
}

// Serve accepts connections on every bound listener until ctx is done or
// Shutdown is called, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context) error {
	s.started = time.Now()
	s.mu.RLock()
	n := len(s.listeners)
	s.mu.RUnlock()
	if n == 0 {
		return ErrNoListeners
	}
	for i := 0; i < n; i++ {
		bl := s.listeners[i]
		s.goFunc(func() { s.acceptLoop(bl) })
		if bl.policy != nil {
			s.goFunc(func() { bl.policy.Watch(s.ctx, bl.cfg.TLS.ReloadInterval.Duration) })
			s.goFunc(func() { bl.policy.Staple(s.ctx, nil) })
		}
		if bl.revocation != nil {
			s.goFunc(func() { bl.revocation.Watch(s.ctx, bl.cfg.TLS.ReloadInterval.Duration) })
		}
		if bl.pskStore != nil {
			s.goFunc(func() {
				bl.pskStore.Watch(s.ctx, bl.cfg.TLS.ReloadInterval.Duration, s.log.With("listener", bl.cfg.Name))
			})
		}
	}
	s.goFunc(s.sysLoop)
	s.goFunc(s.cleanupLoop)
	s.goFunc(s.certificateLoop)
	s.goFunc(s.alarmLoop)
	if err := s.startPKI(); err != nil {
		s.log.Error("built-in CA services not started", "err", err)
	}
	s.mu.RLock()
	adm, admLn := s.admin, s.adminLn
	s.mu.RUnlock()
	if adm != nil {
		s.goFunc(func() { _ = adm.Serve(admLn) })
	}
	select {
	case <-ctx.Done():
	case <-s.done:
		return ErrClosed
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Shutdown(sctx)
}

// goFunc runs f on a goroutine that Shutdown waits for.
func (s *Server) goFunc(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

func (s *Server) acceptLoop(bl *boundListener) {
	var delay time.Duration
	for {
		nc, err := bl.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "listener", bl.cfg.Name, "err", err, "delay", delay)
				select {
				case <-time.After(delay):
				case <-s.done:
					return
				}
				continue
			}
			if errors.Is(err, net.ErrClosed) || errors.Is(err, listener.ErrClosed) {
				return
			}
			s.log.Error("accept failed; listener stopped", "listener", bl.cfg.Name, "err", err)
			return
		}
		delay = 0
		if max := bl.cfg.MaxConnections; max > 0 && bl.n.Load() >= int64(max) {
			s.log.Warn("connection refused: listener at max_connections", "listener", bl.cfg.Name, "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		c := newConn(s, nc, bl)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		bl.n.Add(1)
		if bl.cfg.Type == config.ListenerTLS {
			s.handshakers.run(c.serve) // it hands the connection to a goroutine of its own
		} else {
			s.goFunc(c.serve)
		}
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Shutdown stops accepting, tells MQTT 5 clients the server is shutting
// down (DISCONNECT 0x8B), closes every connection and waits for the
// server's goroutines, or until ctx ends. Wills without a delay are
// published as for any connection the client did not close itself;
// sessions are kept or ended by their expiry as usual.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.closing = true
	close(s.done)
	s.cancel()
	if s.crlSrv != nil {
		s.crlSrv.Close()
	}
	if s.admin != nil {
		s.admin.Close()
	}
	for i := range s.listeners {
		s.listeners[i].ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.kick(packet.ServerShuttingDown)
	}
	waited := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(waited)
	}()
	var err error
	select {
	case <-waited:
	case <-ctx.Done():
		for _, c := range conns {
			c.abort()
		}
		err = ctx.Err()
	}
	// Stop session timers so nothing fires after shutdown.
	s.mu.Lock()
	for _, ss := range s.sessions {
		ss.mu.Lock()
		ss.stopTimers()
		ss.mu.Unlock()
	}
	s.mu.Unlock()
	if cerr := s.st.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if s.reg != nil {
		s.reg.Close()
	}
	if s.auditFile != nil {
		s.auditFile.Close()
	}
	return err
}

// cleanupLoop sweeps expired messages out of the queues of offline
// sessions on the configured interval (expired sessions go by their own
// timers; expired messages of online sessions are dropped when sent).
func (s *Server) cleanupLoop() {
	iv := s.cfg.MQTT.CleanupInterval.Duration
	if iv <= 0 {
		iv = time.Minute
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.sweepExpired(time.Now())
		case <-s.done:
			return
		}
	}
}

// sweepExpired drops expired queued messages of every session.
func (s *Server) sweepExpired(now time.Time) int {
	s.mu.RLock()
	list := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		list = append(list, ss)
	}
	s.mu.RUnlock()
	n := 0
	for _, ss := range list {
		ss.mu.Lock()
		kept := ss.queue[:0]
		for i := ss.qhead; i < len(ss.queue); i++ {
			d := ss.queue[i]
			if d.msg != nil && d.msg.expired(now) {
				ss.qbytes -= d.msg.size()
				if ss.expiry > 0 {
					s.apply(deleteDelivery(ss.id, d.seq))
				}
				n++
				continue
			}
			kept = append(kept, d)
		}
		clear(ss.queue[len(kept):])
		ss.queue, ss.qhead = kept, 0
		ss.mu.Unlock()
	}
	return n
}

// isOnline reports whether a session has a live connection; used to prefer
// online members of shared subscription groups.
// It takes no lock: it runs under the trie's read lock.
func (s *Server) isOnline(clientID string) bool {
	v, ok := s.index.Load(clientID)
	return ok && v.(*session).online.Load()
}

// session returns the session of a client id, or nil.
func (s *Server) session(clientID string) *session {
	if v, ok := s.index.Load(clientID); ok {
		return v.(*session)
	}
	return nil
}

// ClientCount returns the number of connected clients.
func (s *Server) ClientCount() int { return int(s.stats.connected.Load()) }
