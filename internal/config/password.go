package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limits on password hash parameters. A hash in the configuration decides
// how much memory and CPU every login costs, so absurd values are refused
// at load time. package auth enforces the same limits when it verifies
// (its tests check that both packages agree).
const (
	maxArgon2MemoryKiB = 256 * 1024 // 256 MiB per verification
	maxArgon2Time      = 16
	maxArgon2Threads   = 16
	minArgon2SaltLen   = 8
	maxArgon2SaltLen   = 64
	minArgon2KeyLen    = 16
	maxArgon2KeyLen    = 128
	minBcryptCost      = 4
	maxBcryptCost      = 15 // about 3 s on current hardware per login
)

var errNotAHash = errors.New("not a password hash")

// checkPasswordHash accepts an argon2id PHC string or a bcrypt hash with
// parameters within the limits above. Its errors never contain s.
func checkPasswordHash(s string) error {
	switch {
	case strings.HasPrefix(s, "$argon2id$"):
		return checkArgon2id(s)
	case strings.HasPrefix(s, "$argon2i$"), strings.HasPrefix(s, "$argon2d$"):
		return errors.New("only argon2id hashes are supported (not argon2i or argon2d); run `moat passwd`")
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		return checkBcrypt(s)
	}
	return errNotAHash
}

// checkArgon2id parses $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>
// with unpadded standard base64 salt and hash.
func checkArgon2id(s string) error {
	parts := strings.Split(s, "$")
	if len(parts) != 6 {
		return errors.New("malformed argon2id hash: want $argon2id$v=19$m=...,t=...,p=...$salt$hash")
	}
	if parts[2] != "v=19" {
		return errors.New("unsupported argon2id version: want v=19")
	}
	var m, t, p uint64
	seen := 0
	for kv := range strings.SplitSeq(parts[3], ",") {
		k, val, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(val, 10, 32)
		if !ok || err != nil {
			return errors.New("malformed argon2id parameters: want m=<KiB>,t=<iterations>,p=<parallelism>")
		}
		switch k {
		case "m":
			m, seen = n, seen|1
		case "t":
			t, seen = n, seen|2
		case "p":
			p, seen = n, seen|4
		default:
			return errors.New("malformed argon2id parameters: want m=<KiB>,t=<iterations>,p=<parallelism>")
		}
	}
	if seen != 7 {
		return errors.New("malformed argon2id parameters: want m=<KiB>,t=<iterations>,p=<parallelism>")
	}
	switch {
	case p < 1 || p > maxArgon2Threads:
		return fmt.Errorf("argon2id parallelism p=%d out of range 1..%d", p, maxArgon2Threads)
	case t < 1 || t > maxArgon2Time:
		return fmt.Errorf("argon2id iterations t=%d out of range 1..%d", t, maxArgon2Time)
	case m < 8*p || m > maxArgon2MemoryKiB:
		return fmt.Errorf("argon2id memory m=%d KiB out of range %d..%d", m, 8*p, maxArgon2MemoryKiB)
	}
	salt, err := base64.RawStdEncoding.Strict().DecodeString(parts[4])
	if err != nil || len(salt) < minArgon2SaltLen || len(salt) > maxArgon2SaltLen {
		return fmt.Errorf("malformed argon2id salt: want %d to %d bytes in unpadded base64", minArgon2SaltLen, maxArgon2SaltLen)
	}
	key, err := base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if err != nil || len(key) < minArgon2KeyLen || len(key) > maxArgon2KeyLen {
		return fmt.Errorf("malformed argon2id hash value: want %d to %d bytes in unpadded base64", minArgon2KeyLen, maxArgon2KeyLen)
	}
	return nil
}

// checkBcrypt checks $2b$<cost>$<22 chars salt><31 chars hash>.
func checkBcrypt(s string) error {
	if len(s) != 60 || s[6] != '$' {
		return errors.New("malformed bcrypt hash: want 60 characters like $2b$12$...")
	}
	cost, err := strconv.Atoi(s[4:6])
	if err != nil {
		return errors.New("malformed bcrypt hash: cost must be two digits")
	}
	if cost < minBcryptCost || cost > maxBcryptCost {
		return fmt.Errorf("bcrypt cost %d out of range %d..%d", cost, minBcryptCost, maxBcryptCost)
	}
	for i := 7; i < len(s); i++ {
		c := s[i]
		if !(c == '.' || c == '/' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return errors.New("malformed bcrypt hash: unexpected character")
		}
	}
	return nil
}
