package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// argon2Params are the parameters of one argon2id hash.
type argon2Params struct {
	memory  uint32 // KiB
	time    uint32 // passes
	threads uint8  // lanes
	saltLen uint32 // bytes
	keyLen  uint32 // bytes
}

// defaultArgon2 are the parameters HashPassword uses.
//
// RFC 9106 §4 recommends argon2id with t=1, p=4, m=2 GiB, or, where that
// much memory is not available, t=3, p=4, m=64 MiB, with a 128-bit salt and
// a 256-bit tag. A broker checks passwords at connect time, often many at
// once, so 2 GiB is out; we take the second option's memory and passes
// (64 MiB, 3 passes; about 50-100 ms on one current core), which is well
// above the OWASP Password Storage Cheat Sheet's minimum (m=19 MiB, t=2,
// p=1). We use 2 lanes rather than 4: lanes only split the same work over
// goroutines, the memory-hardness comes from m and t, and a broker
// verifying several logins concurrently gains little from wider lanes.
var defaultArgon2 = argon2Params{memory: 64 * 1024, time: 3, threads: 2, saltLen: 16, keyLen: 32}

// hashParams is what HashPassword uses; tests lower it to stay fast.
var hashParams = defaultArgon2

// Limits on hash parameters accepted for verification. A hash comes from
// the configuration or the device registry and decides what each login
// costs; absurd values (m=4 GiB, bcrypt cost 31) would turn every login
// into a denial of service, so they are refused. internal/config applies
// the same limits at load time (tests check both agree).
const (
	maxArgon2Memory  = 256 * 1024 // KiB: 256 MiB per verification
	maxArgon2Time    = 16
	maxArgon2Threads = 16
	minArgon2SaltLen = 8
	maxArgon2SaltLen = 64
	minArgon2KeyLen  = 16
	maxArgon2KeyLen  = 128
	minBcryptCost    = 4
	maxBcryptCost    = 15 // about 3 s per login on current hardware
	maxBcryptPass    = 72 // bcrypt ignores bytes beyond 72
	argon2Prefix     = "$argon2id$"
	argon2Version    = "v=19" // argon2.Version, 0x13
)

// HashPassword hashes password with argon2id and a fresh 16-byte random
// salt, as a PHC string:
//
//	$argon2id$v=19$m=65536,t=3,p=2$<base64 salt>$<base64 hash>
//
// (unpadded standard base64, the format of the reference implementation).
func HashPassword(password []byte) (string, error) {
	return hashArgon2id(password, hashParams)
}

func hashArgon2id(password []byte, p argon2Params) (string, error) {
	salt := make([]byte, p.saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: reading random salt: %w", err)
	}
	key := argon2.IDKey(password, salt, p.time, p.memory, p.threads, p.keyLen)
	return formatArgon2id(p, salt, key), nil
}

func formatArgon2id(p argon2Params, salt, key []byte) string {
	return fmt.Sprintf("%s%s$m=%d,t=%d,p=%d$%s$%s", argon2Prefix, argon2Version,
		p.memory, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// VerifyPassword reports whether password matches hash, an argon2id PHC
// string or a bcrypt hash ($2a$, $2b$, $2y$). A malformed or unsupported
// hash, or one whose parameters exceed the limits, is an error wrapping
// ErrInvalidHash; a mismatch is (false, nil). The comparison is constant
// time. It costs what the hash says (tens of milliseconds, by design): the
// static authenticator adds a cache and a concurrency limit on top.
func VerifyPassword(hash string, password []byte) (bool, error) {
	switch {
	case strings.HasPrefix(hash, argon2Prefix):
		p, salt, key, err := parseArgon2id(hash)
		if err != nil {
			return false, err
		}
		got := argon2.IDKey(password, salt, p.time, p.memory, p.threads, p.keyLen)
		return subtle.ConstantTimeCompare(got, key) == 1, nil
	case isBcryptPrefix(hash):
		if _, err := bcryptCost(hash); err != nil {
			return false, err
		}
		if len(password) > maxBcryptPass {
			// bcrypt would silently compare only the first 72 bytes;
			// no stored bcrypt password is longer (GenerateFromPassword
			// refuses it), so a longer candidate cannot be right.
			return false, nil
		}
		err := bcrypt.CompareHashAndPassword([]byte(hash), password)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
			return false, nil
		default:
			return false, fmt.Errorf("auth: %w: malformed bcrypt hash", ErrInvalidHash)
		}
	}
	return false, fmt.Errorf("auth: %w: not an argon2id or bcrypt hash", ErrInvalidHash)
}

// IsPasswordHash reports whether s is a hash VerifyPassword accepts
// (well-formed, supported, parameters within limits).
func IsPasswordHash(s string) bool {
	return checkHash(s) == nil
}

// checkHash is IsPasswordHash with the reason.
func checkHash(s string) error {
	switch {
	case strings.HasPrefix(s, argon2Prefix):
		_, _, _, err := parseArgon2id(s)
		return err
	case isBcryptPrefix(s):
		_, err := bcryptCost(s)
		return err
	}
	return fmt.Errorf("auth: %w: not an argon2id or bcrypt hash", ErrInvalidHash)
}

func invalidHash(reason string) error {
	return fmt.Errorf("auth: %w: %s", ErrInvalidHash, reason)
}

// parseArgon2id parses $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>
// and enforces the limits. Errors never quote the hash.
func parseArgon2id(s string) (p argon2Params, salt, key []byte, err error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, invalidHash("malformed argon2id hash")
	}
	if parts[2] != argon2Version {
		return p, nil, nil, invalidHash("unsupported argon2id version")
	}
	var m, t, l uint64
	seen := 0
	for kv := range strings.SplitSeq(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, perr := strconv.ParseUint(v, 10, 32)
		if !ok || perr != nil {
			return p, nil, nil, invalidHash("malformed argon2id parameters")
		}
		switch k {
		case "m":
			m, seen = n, seen|1
		case "t":
			t, seen = n, seen|2
		case "p":
			l, seen = n, seen|4
		default:
			return p, nil, nil, invalidHash("malformed argon2id parameters")
		}
	}
	switch {
	case seen != 7:
		return p, nil, nil, invalidHash("malformed argon2id parameters")
	case l < 1 || l > maxArgon2Threads:
		return p, nil, nil, invalidHash("argon2id parallelism out of range")
	case t < 1 || t > maxArgon2Time:
		return p, nil, nil, invalidHash("argon2id iterations out of range")
	case m < 8*l || m > maxArgon2Memory:
		return p, nil, nil, invalidHash("argon2id memory out of range")
	}
	salt, err = base64.RawStdEncoding.Strict().DecodeString(parts[4])
	if err != nil || len(salt) < minArgon2SaltLen || len(salt) > maxArgon2SaltLen {
		return p, nil, nil, invalidHash("malformed argon2id salt")
	}
	key, err = base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if err != nil || len(key) < minArgon2KeyLen || len(key) > maxArgon2KeyLen {
		return p, nil, nil, invalidHash("malformed argon2id hash value")
	}
	p = argon2Params{memory: uint32(m), time: uint32(t), threads: uint8(l), saltLen: uint32(len(salt)), keyLen: uint32(len(key))}
	return p, salt, key, nil
}

func isBcryptPrefix(s string) bool {
	return strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
}

// bcryptCost checks the shape of a bcrypt hash ($2b$<cost>$<53 chars>)
// and returns its cost, refusing costs beyond maxBcryptCost.
func bcryptCost(s string) (int, error) {
	if len(s) != 60 || s[6] != '$' {
		return 0, invalidHash("malformed bcrypt hash")
	}
	cost, err := strconv.Atoi(s[4:6])
	if err != nil {
		return 0, invalidHash("malformed bcrypt hash")
	}
	if cost < minBcryptCost || cost > maxBcryptCost {
		return 0, invalidHash("bcrypt cost out of range")
	}
	for i := 7; i < len(s); i++ {
		c := s[i]
		if !(c == '.' || c == '/' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return 0, invalidHash("malformed bcrypt hash")
		}
	}
	return cost, nil
}
