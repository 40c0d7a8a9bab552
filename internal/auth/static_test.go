package auth

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"moat/internal/config"
)

const (
	alicePW = "alice-Pa55word-7f3a"
	bobPW   = "bob-Pa55word-91c2"
)

func newTestStatic(t *testing.T) *Static {
	t.Helper()
	ah, err := HashPassword([]byte(alicePW))
	if err != nil {
		t.Fatal(err)
	}
	bh, err := bcrypt.GenerateFromPassword([]byte(bobPW), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStatic([]config.User{{Username: "alice", PasswordHash: ah}, {Username: "bob", PasswordHash: string(bh)}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func creds(user, pw string) *Request {
	return &Request{Listener: "tcp-0", ClientID: "c", Username: user, HasUsername: true, Password: []byte(pw), HasPassword: true}
}

func TestStatic(t *testing.T) {
	s := newTestStatic(t)
	ctx := context.Background()
	tests := []struct {
		name string
		r    *Request
		want *Principal
		err  error
	}{
		{"alice", creds("alice", alicePW), &Principal{ID: "alice", Method: MethodPassword, Username: "alice"}, nil},
		{"bob bcrypt", creds("bob", bobPW), &Principal{ID: "bob", Method: MethodPassword, Username: "bob"}, nil},
		{"wrong password", creds("alice", bobPW), nil, ErrBadCredentials},
		{"empty password", creds("alice", ""), nil, ErrBadCredentials},
		{"unknown user", creds("mallory", alicePW), nil, ErrBadCredentials},
		{"empty username", creds("", alicePW), nil, ErrBadCredentials},
		{"anonymous allowed", &Request{AllowAnonymous: true}, &Principal{Method: MethodAnonymous}, nil},
		{"anonymous refused", &Request{}, nil, ErrNotAuthorized},
		{"username without password", &Request{Username: "alice", HasUsername: true}, nil, ErrBadCredentials},
		{"username without password, anonymous allowed", &Request{Username: "alice", HasUsername: true, AllowAnonymous: true}, nil, ErrBadCredentials},
		{"password without username", &Request{Password: []byte(alicePW), HasPassword: true, AllowAnonymous: true}, nil, ErrBadCredentials},
		{"unknown user, anonymous allowed", func() *Request { r := creds("mallory", "x"); r.AllowAnonymous = true; return r }(), nil, ErrBadCredentials},
		{"wrong password, anonymous allowed", func() *Request { r := creds("alice", "x"); r.AllowAnonymous = true; return r }(), nil, ErrBadCredentials},
		{"nil request", nil, nil, ErrNotAuthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // the second time may be served by the cache
				p, err := s.Authenticate(ctx, tt.r)
				if tt.err != nil {
					if !errors.Is(err, tt.err) || p != nil {
						t.Fatalf("got %v, %v; want %v", p, err, tt.err)
					}
					if !strings.HasPrefix(err.Error(), "auth: ") {
						t.Errorf("error %q lacks the auth: prefix", err)
					}
					continue
				}
				if err != nil || p.ID != tt.want.ID || p.Method != tt.want.Method || p.Username != tt.want.Username {
					t.Fatalf("got %+v, %v; want %+v", p, err, tt.want)
				}
			}
		})
	}
}

// TestErrorsNeverContainPassword runs every failure path with a
// recognisable password and checks it never shows in an error.
func TestErrorsNeverContainPassword(t *testing.T) {
	s := newTestStatic(t)
	const secret = "S3CRET-do-not-leak"
	reqs := []*Request{
		creds("alice", secret),
		creds("bob", secret),
		creds("nobody", secret),
		creds(secret, secret),
		{Password: []byte(secret), HasPassword: true},
	}
	for _, r := range reqs {
		_, err := s.Authenticate(context.Background(), r)
		if err == nil {
			t.Fatalf("authenticated with %+v", r)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q contains the password", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fill(t)
	defer drain()
	if _, err := s.Authenticate(ctx, creds("alice", secret)); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("cancelled: %v", err)
	}
	for _, h := range []string{secret, "$argon2id$" + secret, "$2b$" + secret} {
		if _, err := VerifyPassword(h, []byte(secret)); err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("VerifyPassword(%q): %v", h, err)
		}
		if _, err := NewStatic([]config.User{{Username: "u", PasswordHash: h}}); err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("NewStatic(%q): %v", h, err)
		}
	}
}

// fill takes every verification slot; drain gives them back.
func fill(t *testing.T) {
	t.Helper()
	for range cap(verifySlots) {
		verifySlots <- struct{}{}
	}
}

func drain() {
	for range cap(verifySlots) {
		<-verifySlots
	}
}

func TestSlotsLimitAndContext(t *testing.T) {
	s := newTestStatic(t)
	fill(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := s.Authenticate(ctx, creds("alice", alicePW))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("with all slots taken: got %v, want deadline exceeded", err)
	}
	// Anonymous access and refusals that need no hashing do not wait.
	if _, err := s.Authenticate(ctx, &Request{AllowAnonymous: true}); err != nil {
		t.Error(err)
	}
	drain()
	if _, err := s.Authenticate(context.Background(), creds("alice", alicePW)); err != nil {
		t.Fatal(err)
	}
	// Now cached: succeeds without a slot.
	fill(t)
	defer drain()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := s.Authenticate(ctx2, creds("alice", alicePW)); err != nil {
		t.Errorf("cached login waited for a slot: %v", err)
	}
	// A wrong password is never served by the cache.
	if _, err := s.Authenticate(ctx2, creds("alice", alicePW+"x")); err == nil {
		t.Error("wrong password accepted")
	}
}

func TestVerifyCache(t *testing.T) {
	c := newVerifyCache(3, time.Minute)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	k := func(u, pw string) [32]byte { return c.key(u, "hash", []byte(pw)) }
	if k("a", "b") == k("a", "c") || k("ab", "") == k("a", "b") || c.key("a", "h1", nil) == c.key("a", "h2", nil) {
		t.Fatal("cache keys collide")
	}
	if other := newVerifyCache(3, time.Minute); other.key("a", "hash", []byte("b")) == k("a", "b") {
		t.Error("cache key not keyed per cache")
	}
	c.add(k("a", "1"))
	if !c.hit(k("a", "1")) || c.hit(k("a", "2")) {
		t.Fatal("hit/miss wrong")
	}
	now = now.Add(time.Minute)
	if c.hit(k("a", "1")) {
		t.Fatal("expired entry hit")
	}
	if c.len() != 0 {
		t.Fatal("expired entry kept")
	}
	for i := range 10 {
		c.add(k("u", string(rune('a'+i))))
		if c.len() > 3 {
			t.Fatalf("cache grew to %d", c.len())
		}
	}
	if !c.hit(k("u", "j")) {
		t.Error("latest entry evicted")
	}
}

func TestStaticCacheKeyedByHash(t *testing.T) {
	// Same user and password, new hash (a reload with a new password):
	// the old cache entry must not apply.
	h1, _ := HashPassword([]byte("old"))
	s1, err := NewStatic([]config.User{{Username: "u", PasswordHash: h1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Authenticate(context.Background(), creds("u", "old")); err != nil {
		t.Fatal(err)
	}
	h2, _ := HashPassword([]byte("new"))
	s1.users["u"] = h2 // simulate a changed hash with the same cache
	if _, err := s1.Authenticate(context.Background(), creds("u", "old")); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("old password after hash change: %v", err)
	}
}

func TestNewStaticErrors(t *testing.T) {
	h, _ := HashPassword([]byte("x"))
	for _, users := range [][]config.User{
		{{Username: "", PasswordHash: h}},
		{{Username: "a", PasswordHash: h}, {Username: "a", PasswordHash: h}},
		{{Username: "a", PasswordHash: "plaintext"}},
	} {
		if _, err := NewStatic(users); err == nil {
			t.Errorf("NewStatic(%+v) accepted", users)
		}
	}
	if _, err := NewStatic(nil); err != nil {
		t.Errorf("no users: %v", err)
	}
}

func TestDummyHashFollowsUsers(t *testing.T) {
	b1, _ := bcrypt.GenerateFromPassword([]byte("x"), 5)
	b2, _ := bcrypt.GenerateFromPassword([]byte("y"), 5)
	h, _ := HashPassword([]byte("z"))
	s, err := NewStatic([]config.User{{Username: "a", PasswordHash: string(b1)}, {Username: "b", PasswordHash: string(b2)}, {Username: "c", PasswordHash: h}})
	if err != nil {
		t.Fatal(err)
	}
	if s.dummy != "" {
		t.Error("dummy hash made before it was needed")
	}
	ctx := context.Background()
	if _, err := s.Authenticate(ctx, &Request{Username: "nobody", HasUsername: true, Password: []byte("p"), HasPassword: true}); err == nil {
		t.Fatal("unknown user accepted")
	}
	if c, err := bcryptCost(s.dummy); err != nil || c != 5 {
		t.Errorf("dummy %q: cost %d %v; want bcrypt cost 5 like most users", s.dummy, c, err)
	}
	s, _ = NewStatic(nil)
	s.Authenticate(ctx, &Request{Username: "nobody", HasUsername: true, Password: []byte("p"), HasPassword: true})
	if p, _, _, err := parseArgon2id(s.dummy); err != nil || p != hashParams {
		t.Errorf("dummy without users: %+v %v", p, err)
	}
}

func TestStaticConcurrent(t *testing.T) {
	s := newTestStatic(t)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			pw := alicePW
			if i%3 == 0 {
				pw = "wrong"
			}
			_, err := s.Authenticate(context.Background(), creds("alice", pw))
			if (err == nil) == (i%3 == 0) {
				t.Errorf("attempt %d: %v", i, err)
			}
		})
	}
	wg.Wait()
}
