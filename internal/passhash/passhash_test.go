package passhash

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	const salt, key = "c29tZXNhbHQ", "CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	good := []string{
		"$argon2id$v=19$m=262144,t=16,p=16$" + salt + "$" + key,
		"$argon2id$v=19$m=8,t=1,p=1$" + salt + "$" + key,
		"$2b$15$HRxnPxoLbL99nqyE/rwXzuHHTx4u6OVtkVFiytwHl4kNocuSH/KVi",
		"$2a$04$HRxnPxoLbL99nqyE/rwXzuHHTx4u6OVtkVFiytwHl4kNocuSH/KVi",
	}
	for _, h := range good {
		if err := Check(h); err != nil {
			t.Errorf("Check(%q) = %v", h, err)
		}
	}
	bad := []struct{ hash, want string }{
		{"$argon2id$v=19$m=262145,t=16,p=16$" + salt + "$" + key, "memory m=262145 KiB out of range"},
		{"$argon2id$v=19$m=65536,t=17,p=1$" + salt + "$" + key, "iterations t=17 out of range"},
		{"$argon2id$v=19$m=65536,t=1,p=17$" + salt + "$" + key, "parallelism p=17 out of range"},
		{"$argon2id$v=19$m=65536,t=1,p=1$c29tZXNhbA$" + key, "malformed argon2id salt"},
		{"$argon2id$v=19$m=65536,t=1,p=1$" + salt + "$c2hvcnQ", "malformed argon2id hash value"},
		{"$argon2id$v=16$m=65536,t=1,p=1$" + salt + "$" + key, "unsupported argon2id version"},
		{"$argon2id$v=19$m=65536,t=1$" + salt + "$" + key, "malformed argon2id parameters"},
		{"$argon2i$v=19$m=65536,t=1,p=1$" + salt + "$" + key, "only argon2id"},
		{"$2b$16$HRxnPxoLbL99nqyE/rwXzuHHTx4u6OVtkVFiytwHl4kNocuSH/KVi", "bcrypt cost 16 out of range"},
		{"$2b$03$HRxnPxoLbL99nqyE/rwXzuHHTx4u6OVtkVFiytwHl4kNocuSH/KVi", "bcrypt cost 3 out of range"},
		{"$2b$12$HRxnPxoLbL99nqyE/rwXzuHHTx4u6OVtkVFiytwHl4kNocuSH/KV!", "unexpected character"},
		{"$2b$12$short", "want 60 characters"},
	}
	for _, c := range bad {
		err := Check(c.hash)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check(%q) = %v, want %q", c.hash, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), c.hash) || strings.Contains(err.Error(), key) {
			t.Errorf("error quotes the hash: %v", err)
		}
	}
	if err := Check("plaintext"); !errors.Is(err, ErrNotAHash) {
		t.Errorf("Check(plaintext) = %v, want ErrNotAHash", err)
	}
	p, s, k, err := ParseArgon2id("$argon2id$v=19$m=64,t=2,p=1$" + salt + "$" + key)
	if err != nil || p != (Argon2Params{Memory: 64, Time: 2, Threads: 1, SaltLen: 8, KeyLen: 32}) || len(s) != 8 || len(k) != 32 {
		t.Errorf("ParseArgon2id = %+v %d %d %v", p, len(s), len(k), err)
	}
	if c, err := BcryptCost("$2y$10$HRxnPxoLbL99nqyE/rwXzuHHTx4u6OVtkVFiytwHl4kNocuSH/KVi"); err != nil || c != 10 {
		t.Errorf("BcryptCost = %d %v", c, err)
	}
}
