package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"moat/internal/passhash"
)

// argon2Params are the parameters of one argon2id hash.
type argon2Params = passhash.Argon2Params

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
var defaultArgon2 = argon2Params{Memory: 64 * 1024, Time: 3, Threads: 2, SaltLen: 16, KeyLen: 32}

// hashParams is what HashPassword uses; tests lower it to stay fast.
var hashParams = defaultArgon2

// Hash parameters accepted for verification are limited (package
// passhash, which internal/config applies at load time too): a hash comes
// from the configuration or the device registry and decides what each
// login costs.
const (
	maxBcryptPass = 72 // bcrypt ignores bytes beyond 72
	argon2Prefix  = "$argon2id$"
	argon2Version = "v=19" // argon2.Version, 0x13
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
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: reading random salt: %w", err)
	}
	key := argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return formatArgon2id(p, salt, key), nil
}

func formatArgon2id(p argon2Params, salt, key []byte) string {
	return fmt.Sprintf("%s%s$m=%d,t=%d,p=%d$%s$%s", argon2Prefix, argon2Version,
		p.Memory, p.Time, p.Threads,
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
		got := argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, p.KeyLen)
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

// parseArgon2id parses an argon2id hash and enforces the limits. Errors
// never quote the hash.
func parseArgon2id(s string) (p argon2Params, salt, key []byte, err error) {
	p, salt, key, err = passhash.ParseArgon2id(s)
	if err != nil {
		return p, nil, nil, invalidHash(err.Error())
	}
	return p, salt, key, nil
}

func isBcryptPrefix(s string) bool { return passhash.IsBcrypt(s) }

// bcryptCost checks the shape of a bcrypt hash and returns its cost,
// refusing costs beyond the limit.
func bcryptCost(s string) (int, error) {
	cost, err := passhash.BcryptCost(s)
	if err != nil {
		return 0, invalidHash(err.Error())
	}
	return cost, nil
}
