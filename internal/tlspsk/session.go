package tlspsk

import (
	"sync"
	"time"
)

// maxTicketLifetime is the longest ticket lifetime a server may announce
// (RFC 8446 §4.6.1: seven days).
const maxTicketLifetime = 7 * 24 * time.Hour

// session is a TLS 1.3 resumption ticket and the PSK derived for it
// (RFC 8446 §4.6.1). It is immutable once stored.
type session struct {
	suite    *cipherSuite // the PSK is bound to its hash
	ticket   []byte
	psk      []byte
	ageAdd   uint32
	received time.Time
	lifetime time.Duration
}

// obfuscatedAge is the ticket age in milliseconds plus ticket_age_add,
// modulo 2^32.
func (s *session) obfuscatedAge(now time.Time) uint32 {
	return uint32(now.Sub(s.received).Milliseconds()) + s.ageAdd
}

// SessionCache stores session tickets for certificate-mode clients (see
// Config.SessionCache): the latest ticket per server name (or address),
// offered by every later connection until it expires, as crypto/tls's
// client cache does. It is safe for concurrent use.
type SessionCache struct {
	max int

	// mu guards the following fields.
	mu sync.Mutex
	m  map[string]*session
}

// NewSessionCache returns a cache for up to capacity servers (at least 1;
// 0 or less means 64).
func NewSessionCache(capacity int) *SessionCache {
	if capacity <= 0 {
		capacity = 64
	}
	return &SessionCache{max: capacity, m: make(map[string]*session)}
}

// get returns the ticket for key if it is still valid at now.
func (c *SessionCache) get(key string, now time.Time) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.m[key]
	if s != nil && !now.Before(s.received.Add(s.lifetime)) {
		delete(c.m, key)
		return nil
	}
	return s
}

// put stores s as the ticket for key; a full cache drops another entry.
func (c *SessionCache) put(key string, s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[key] = s
}
