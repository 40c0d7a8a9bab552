package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"moat/internal/config"
)

// Static authenticates usernames and passwords against a fixed list of
// users (the [[auth.users]] of the configuration). Build a new one on
// reload; it is safe for concurrent use.
//
// Rules, in order:
//   - no username and no password: the anonymous Principal if the
//     listener allows anonymous access, else ErrNotAuthorized;
//   - a username without a password, or a password without a username:
//     ErrBadCredentials, even where anonymous access is allowed (a claimed
//     identity must be proven; it does not fall back to anonymous);
//   - username and password: the password Principal (ID and Username are
//     the username) if the password matches the user's hash, else
//     ErrBadCredentials. Unknown users are verified against a dummy hash
//     of the same kind and cost as the users' hashes, so the time taken
//     does not reveal whether a user exists.
//
// Verification cache. argon2id at 64 MiB costs 50-100 ms of CPU and 64 MiB
// of memory; a fleet of devices reconnecting after a network blip would
// keep the broker busy for minutes. Static therefore remembers successful
// verifications for verifyCacheTTL (5 minutes), at most verifyCacheMax
// (10,000) of them, keyed by HMAC-SHA-256, under a random per-process key,
// of (username, stored hash, password). A device logging in again with the
// same password within the TTL costs one HMAC. The stored hash is part of
// the key, so a changed password or hash invalidates the entry. Failures
// are never cached, so guessing still costs a full verification per guess.
// Trade-off: for the TTL, the process memory holds a fast keyed hash of
// recently used passwords rather than only the slow argon2id hash; an
// attacker able to read broker memory (and so the HMAC key) could test
// guesses against it quickly. Someone who can read broker memory can also
// read passwords as they arrive, so we accept this.
//
// Concurrency limit. At most GOMAXPROCS (taken at program start) hash
// verifications run at once across all Static values; the others wait
// their turn, or give up when their context ends (Authenticate then returns
// the context's error, wrapped). This bounds CPU and memory (each argon2id
// verification holds its m KiB until done) during a reconnect storm or a
// password-guessing flood; cached logins do not wait for a slot.
type Static struct {
	users map[string]string // username -> hash
	cache *verifyCache

	// The dummy hash is made on first use: a broker without users never
	// pays for it, and start-up stays fast.
	dummyOnce sync.Once
	dummy     string // verified for unknown users
	dummyErr  error
	userList  []config.User
}

const (
	verifyCacheTTL = 5 * time.Minute
	verifyCacheMax = 10000
)

// verifySlots limits concurrent hash verifications process-wide.
var verifySlots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))

// NewStatic builds a Static authenticator. Every hash must be one
// VerifyPassword accepts and usernames must be unique and non-empty;
// internal/config has already checked this for a loaded configuration.
func NewStatic(users []config.User) (*Static, error) {
	s := &Static{
		users: make(map[string]string, len(users)),
		cache: newVerifyCache(verifyCacheMax, verifyCacheTTL),
	}
	for i, u := range users {
		if u.Username == "" {
			return nil, fmt.Errorf("auth: user %d has no username", i)
		}
		if _, dup := s.users[u.Username]; dup {
			return nil, fmt.Errorf("auth: user %q defined twice", u.Username)
		}
		if err := checkHash(u.PasswordHash); err != nil {
			return nil, fmt.Errorf("auth: user %q: %w", u.Username, err)
		}
		s.users[u.Username] = u.PasswordHash
	}
	s.userList = append([]config.User(nil), users...)
	return s, nil
}

// dummyHash makes a hash of a random password with the parameters most of
// the users' hashes have, so that verifying an unknown user costs what
// verifying a known one does.
func dummyHash(users []config.User) (string, error) {
	type kind struct {
		bcrypt int // cost, or 0 for argon2id
		argon  argon2Params
	}
	counts := make(map[kind]int)
	best, bestN := kind{argon: hashParams}, 0
	for _, u := range users {
		var k kind
		if isBcryptPrefix(u.PasswordHash) {
			k.bcrypt, _ = bcryptCost(u.PasswordHash)
		} else {
			k.argon, _, _, _ = parseArgon2id(u.PasswordHash)
		}
		counts[k]++
		if counts[k] > bestN {
			best, bestN = k, counts[k]
		}
	}
	pw := make([]byte, 32)
	if _, err := rand.Read(pw); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	if best.bcrypt > 0 {
		h, err := bcrypt.GenerateFromPassword(pw[:24], best.bcrypt)
		if err != nil {
			return "", fmt.Errorf("auth: dummy hash: %w", err)
		}
		return string(h), nil
	}
	return hashArgon2id(pw, best.argon)
}

// Authenticate implements Authenticator; see Static for the rules.
func (s *Static) Authenticate(ctx context.Context, r *Request) (*Principal, error) {
	if r == nil {
		return nil, fmt.Errorf("auth: no request: %w", ErrNotAuthorized)
	}
	switch {
	case !r.HasUsername && !r.HasPassword:
		if r.AllowAnonymous {
			return &Principal{Method: MethodAnonymous}, nil
		}
		return nil, fmt.Errorf("auth: anonymous access is not allowed on this listener: %w", ErrNotAuthorized)
	case !r.HasUsername:
		return nil, fmt.Errorf("auth: password without a username: %w", ErrBadCredentials)
	case !r.HasPassword:
		return nil, fmt.Errorf("auth: username without a password: %w", ErrBadCredentials)
	}
	hash, known := s.users[r.Username]
	if !known {
		s.dummyOnce.Do(func() { s.dummy, s.dummyErr = dummyHash(s.userList) })
		if s.dummyErr != nil {
			return nil, s.dummyErr
		}
		hash = s.dummy
	}
	key := s.cache.key(r.Username, hash, r.Password)
	if known && s.cache.hit(key) {
		return passwordPrincipal(r.Username), nil
	}
	ok, err := verifyLimited(ctx, hash, r.Password)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("auth: password check abandoned: %w", ctx.Err())
		}
		// NewStatic checked every hash, so this is unexpected; do not
		// say more than the caller needs.
		return nil, fmt.Errorf("auth: unusable password hash: %w", ErrBadCredentials)
	}
	if !ok || !known {
		return nil, fmt.Errorf("auth: unknown user or wrong password: %w", ErrBadCredentials)
	}
	s.cache.add(key)
	return passwordPrincipal(r.Username), nil
}

func passwordPrincipal(username string) *Principal {
	return &Principal{ID: username, Method: MethodPassword, Username: username}
}

// verifyLimited runs VerifyPassword within the process-wide slot limit.
func verifyLimited(ctx context.Context, hash string, password []byte) (bool, error) {
	select {
	case verifySlots <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-verifySlots }()
	return VerifyPassword(hash, password)
}

// verifyCache remembers successful verifications; see Static.
type verifyCache struct {
	mac [32]byte // HMAC key, random per cache
	max int
	ttl time.Duration
	now func() time.Time

	// mu guards the following fields.
	mu      sync.Mutex
	entries map[[32]byte]time.Time // key -> expiry
}

func newVerifyCache(maxEntries int, ttl time.Duration) *verifyCache {
	c := &verifyCache{max: maxEntries, ttl: ttl, now: time.Now, entries: make(map[[32]byte]time.Time)}
	if _, err := rand.Read(c.mac[:]); err != nil {
		panic("auth: crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	return c
}

// key derives the cache key of (username, hash, password). Each part is
// length-prefixed, so different triples never share an encoding.
func (c *verifyCache) key(username, hash string, password []byte) [32]byte {
	m := hmac.New(sha256.New, c.mac[:])
	var n [binary.MaxVarintLen64]byte
	for _, part := range [][]byte{[]byte(username), []byte(hash), password} {
		m.Write(n[:binary.PutUvarint(n[:], uint64(len(part)))])
		m.Write(part)
	}
	var k [32]byte
	m.Sum(k[:0])
	return k
}

func (c *verifyCache) hit(k [32]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.entries[k]
	if !ok {
		return false
	}
	if !c.now().Before(exp) {
		delete(c.entries, k)
		return false
	}
	return true
}

func (c *verifyCache) add(k [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		// Full: drop expired entries, and if none, an arbitrary one
		// (map iteration order is random), keeping the bound.
		now := c.now()
		for ek, exp := range c.entries {
			if !now.Before(exp) {
				delete(c.entries, ek)
			}
		}
		for ek := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, ek)
		}
	}
	c.entries[k] = c.now().Add(c.ttl)
}

func (c *verifyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
