package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"moat/internal/config"
)

func TestHashAndVerifyArgon2id(t *testing.T) {
	h, err := HashPassword([]byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") || !IsPasswordHash(h) {
		t.Fatalf("unexpected hash %q", h)
	}
	h2, _ := HashPassword([]byte("correct horse"))
	if h == h2 {
		t.Error("two hashes of the same password are equal: salt not random")
	}
	for pw, want := range map[string]bool{"correct horse": true, "correct horsE": false, "": false, "correct horse ": false} {
		ok, err := VerifyPassword(h, []byte(pw))
		if err != nil || ok != want {
			t.Errorf("VerifyPassword(%q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
	// Empty password hashes and verifies like any other.
	he, _ := HashPassword(nil)
	if ok, err := VerifyPassword(he, []byte{}); !ok || err != nil {
		t.Errorf("empty password: %v %v", ok, err)
	}
}

// TestHashPasswordDefaults checks the production parameters once.
func TestHashPasswordDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB argon2id")
	}
	h, err := hashArgon2id([]byte("pw"), defaultArgon2)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != "v=19" || parts[3] != "m=65536,t=3,p=2" || len(parts[4]) != 22 || len(parts[5]) != 43 {
		t.Fatalf("unexpected format %q", h)
	}
	if ok, err := VerifyPassword(h, []byte("pw")); !ok || err != nil {
		t.Fatalf("verify: %v %v", ok, err)
	}
}

// A known vector: argon2id, password "password", salt "somesalt", t=2,
// m=65536, p=1, from the reference implementation's test suite (32-byte
// tag); checks our PHC parsing against an independent source.
func TestVerifyReferenceVector(t *testing.T) {
	const h = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	if ok, err := VerifyPassword(h, []byte("password")); !ok || err != nil {
		t.Fatalf("reference vector: %v %v", ok, err)
	}
	if ok, _ := VerifyPassword(h, []byte("passwore")); ok {
		t.Fatal("wrong password accepted")
	}
}

func TestVerifyBcrypt(t *testing.T) {
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		raw, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		h := prefix + string(raw[4:]) // same hash, other version letter
		if !IsPasswordHash(h) {
			t.Fatalf("%s: not recognised", prefix)
		}
		if ok, err := VerifyPassword(h, []byte("s3cret")); !ok || err != nil {
			t.Errorf("%s: right password: %v %v", prefix, ok, err)
		}
		if ok, err := VerifyPassword(h, []byte("s3cret!")); ok || err != nil {
			t.Errorf("%s: wrong password: %v %v", prefix, ok, err)
		}
	}
	// bcrypt compares only 72 bytes; a longer candidate must not pass.
	long := []byte(strings.Repeat("x", 72))
	raw, _ := bcrypt.GenerateFromPassword(long, bcrypt.MinCost)
	if ok, _ := VerifyPassword(string(raw), append(long, "extra"...)); ok {
		t.Error("bcrypt accepted a password with extra bytes beyond 72")
	}
	if ok, _ := VerifyPassword(string(raw), long); !ok {
		t.Error("bcrypt 72-byte password refused")
	}
}

// hostileHashes are refused by VerifyPassword, IsPasswordHash, NewStatic
// and internal/config alike.
var hostileHashes = map[string]string{
	"plaintext":          "hunter2",
	"empty":              "",
	"argon2i":            "$argon2i$v=19$m=65536,t=3,p=2$c29tZXNhbHRzYWx0$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"argon2d":            "$argon2d$v=19$m=65536,t=3,p=2$c29tZXNhbHRzYWx0$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"old version":        "$argon2id$v=16$m=65536,t=3,p=2$c29tZXNhbHRzYWx0$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"no version":         "$argon2id$m=65536,t=3,p=2$c29tZXNhbHRzYWx0$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"memory 4 GiB":       "$argon2id$v=19$m=4194304,t=3,p=2$c29tZXNhbHRzYWx0$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"memory overflow":    "$argon2id$v=19$m=99999999999,t=3,p=2$c29tZXNhbHRzYWx0$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"memory below 8p":    "$argon2id$v=19$m=8,t=3,p=2$c29tZXNhbHRzYWx0$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"time 1000":          "$argon2id$v=19$m=65536,t=1000,p=2$c29tZXNhbHRzYWx0$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"time 0":             "$argon2id$v=19$m=65536,t=0,p=2$c29tZXNhbHRzYWx0$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"threads 255":        "$argon2id$v=19$m=65536,t=3,p=255$c29tZXNhbHRzYWx0$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"threads 0":          "$argon2id$v=19$m=65536,t=3,p=0$c29tZXNhbHRzYWx0$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"negative":           "$argon2id$v=19$m=-1,t=3,p=2$c29tZXNhbHRzYWx0$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"missing param":      "$argon2id$v=19$m=65536,t=3$c29tZXNhbHRzYWx0$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"unknown param":      "$argon2id$v=19$m=65536,t=3,p=2,k=1$c29tZXNhbHRzYWx0$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"short salt":         "$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"bad salt b64":       "$argon2id$v=19$m=65536,t=3,p=2$c29tZX!hbHRzYWx0$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"padded salt":        "$argon2id$v=19$m=65536,t=3,p=2$c29tZXNhbHRzYWx0==$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	"short key":          "$argon2id$v=19$m=65536,t=3,p=2$c29tZXNhbHRzYWx0$CTFhFdXPJO1a",
	"huge key":           "$argon2id$v=19$m=65536,t=3,p=2$c29tZXNhbHRzYWx0$" + strings.Repeat("A", 400),
	"extra field":        "$argon2id$v=19$m=65536,t=3,p=2$c29tZXNhbHRzYWx0$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc$x",
	"bcrypt cost 31":     "$2b$31$HRxnPxoLbL99nqyE/rwXzuHHTx4u6OVtkVFiytwHl4kNocuSH/KVi",
	"bcrypt cost 16":     "$2b$16$HRxnPxoLbL99nqyE/rwXzuHHTx4u6OVtkVFiytwHl4kNocuSH/KVi",
	"bcrypt cost 3":      "$2b$03$HRxnPxoLbL99nqyE/rwXzuHHTx4u6OVtkVFiytwHl4kNocuSH/KVi",
	"bcrypt short":       "$2b$10$HRxnPxoLbL99nqyE/rwXzuHHTx4u6OVtkVFiytwHl4kNocuSH/KV",
	"bcrypt bad char":    "$2b$10$HRxnPxoLbL99nqyE/rwXzuHHTx4u6OVtkVFiytwHl4kNocuSH/KV!",
	"bcrypt 2x":          "$2x$10$HRxnPxoLbL99nqyE/rwXzuHHTx4u6OVtkVFiytwHl4kNocuSH/KVi",
	"bcrypt letter cost": "$2b$1a$HRxnPxoLbL99nqyE/rwXzuHHTx4u6OVtkVFiytwHl4kNocuSH/KVi",
}

func TestHostileHashesRefused(t *testing.T) {
	for name, h := range hostileHashes {
		if IsPasswordHash(h) {
			t.Errorf("%s: IsPasswordHash true", name)
		}
		ok, err := VerifyPassword(h, []byte("password"))
		if ok || !errors.Is(err, ErrInvalidHash) {
			t.Errorf("%s: VerifyPassword = %v, %v; want ErrInvalidHash", name, ok, err)
		}
		if err != nil && strings.Contains(err.Error(), "password") && !strings.Contains(err.Error(), "password hash") {
			t.Errorf("%s: error mentions the password: %v", name, err)
		}
		if _, err := NewStatic([]config.User{{Username: "u", PasswordHash: h}}); err == nil {
			t.Errorf("%s: NewStatic accepted", name)
		}
		doc := fmt.Sprintf("[[listener]]\ntype = \"tcp\"\n[[auth.users]]\nusername = \"u\"\npassword_hash = %q\n", h)
		if _, err := config.Parse([]byte(doc), "m.toml"); err == nil {
			t.Errorf("%s: config accepted", name)
		} else if !strings.Contains(err.Error(), "m.toml:5:") {
			t.Errorf("%s: config error without line: %v", name, err)
		}
	}
}

// TestConfigAcceptsWhatAuthAccepts: config (at load time) and auth (when it
// verifies) both apply package passhash; they agree at
// the boundaries.
func TestConfigAcceptsWhatAuthAccepts(t *testing.T) {
	raw, _ := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
	good := []string{
		"$argon2id$v=19$m=262144,t=16,p=16$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=65536,t=3,p=2$c29tZXNhbHRzb21lc2FsdHNvbWVzYWx0c29tZXNhbHRzb21lc2FsdHNvbWVzYWx0c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		string(raw),
		"$2b$15$HRxnPxoLbL99nqyE/rwXzuHHTx4u6OVtkVFiytwHl4kNocuSH/KVi",
	}
	for _, h := range good {
		if !IsPasswordHash(h) {
			t.Errorf("auth refuses %q", h)
		}
		doc := fmt.Sprintf("[[listener]]\ntype = \"tcp\"\n[[auth.users]]\nusername = \"u\"\npassword_hash = %q\n", h)
		if _, err := config.Parse([]byte(doc), "m.toml"); err != nil {
			t.Errorf("config refuses %q: %v", h, err)
		}
	}
	bad := []string{
		"$argon2id$v=19$m=262145,t=16,p=16$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=65536,t=17,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=65536,t=1,p=17$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=65536,t=1,p=1$c29tZXNhbA$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", // 7-byte salt
	}
	for _, h := range bad {
		if IsPasswordHash(h) {
			t.Errorf("auth accepts %q", h)
		}
		doc := fmt.Sprintf("[[listener]]\ntype = \"tcp\"\n[[auth.users]]\nusername = \"u\"\npassword_hash = %q\n", h)
		if _, err := config.Parse([]byte(doc), "m.toml"); err == nil {
			t.Errorf("config accepts %q", h)
		}
	}
}
