// Package passhash parses and checks the password hashes moat accepts:
// argon2id PHC strings and bcrypt hashes, with limits on their parameters.
//
// A hash in the configuration or the device registry decides how much
// memory and CPU every login costs, so absurd values (m=4 GiB, bcrypt cost
// 31) are refused: the configuration at load time, package auth when it
// verifies, both through this package. Errors never contain the hash.
package passhash

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limits on hash parameters.
const (
	MaxArgon2Memory  = 256 * 1024 // KiB: 256 MiB per verification
	MaxArgon2Time    = 16
	MaxArgon2Threads = 16
	MinArgon2SaltLen = 8
	MaxArgon2SaltLen = 64
	MinArgon2KeyLen  = 16
	MaxArgon2KeyLen  = 128
	MinBcryptCost    = 4
	MaxBcryptCost    = 15 // about 3 s per login on current hardware
)

// Argon2Params are the parameters of one argon2id hash.
type Argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8  // lanes
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// ErrNotAHash is Check's error for a string that is neither an argon2id
// nor a bcrypt hash.
var ErrNotAHash = errors.New("not a password hash")

// Check accepts an argon2id PHC string or a bcrypt hash with parameters
// within the limits.
func Check(s string) error {
	switch {
	case strings.HasPrefix(s, "$argon2id$"):
		_, _, _, err := ParseArgon2id(s)
		return err
	case strings.HasPrefix(s, "$argon2i$"), strings.HasPrefix(s, "$argon2d$"):
		return errors.New("only argon2id hashes are supported (not argon2i or argon2d); run `moat passwd`")
	case IsBcrypt(s):
		_, err := BcryptCost(s)
		return err
	}
	return ErrNotAHash
}

var errArgon2Params = errors.New("malformed argon2id parameters: want m=<KiB>,t=<iterations>,p=<parallelism>")

// ParseArgon2id parses $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>
// (unpadded standard base64 salt and key) and enforces the limits.
func ParseArgon2id(s string) (p Argon2Params, salt, key []byte, err error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errors.New("malformed argon2id hash: want $argon2id$v=19$m=...,t=...,p=...$salt$hash")
	}
	if parts[2] != "v=19" {
		return p, nil, nil, errors.New("unsupported argon2id version: want v=19")
	}
	var m, t, l uint64
	seen := 0
	for kv := range strings.SplitSeq(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, perr := strconv.ParseUint(v, 10, 32)
		if !ok || perr != nil {
			return p, nil, nil, errArgon2Params
		}
		switch k {
		case "m":
			m, seen = n, seen|1
		case "t":
			t, seen = n, seen|2
		case "p":
			l, seen = n, seen|4
		default:
			return p, nil, nil, errArgon2Params
		}
	}
	switch {
	case seen != 7:
		return p, nil, nil, errArgon2Params
	case l < 1 || l > MaxArgon2Threads:
		return p, nil, nil, fmt.Errorf("argon2id parallelism p=%d out of range 1..%d", l, MaxArgon2Threads)
	case t < 1 || t > MaxArgon2Time:
		return p, nil, nil, fmt.Errorf("argon2id iterations t=%d out of range 1..%d", t, MaxArgon2Time)
	case m < 8*l || m > MaxArgon2Memory:
		return p, nil, nil, fmt.Errorf("argon2id memory m=%d KiB out of range %d..%d", m, 8*l, MaxArgon2Memory)
	}
	salt, err = base64.RawStdEncoding.Strict().DecodeString(parts[4])
	if err != nil || len(salt) < MinArgon2SaltLen || len(salt) > MaxArgon2SaltLen {
		return p, nil, nil, fmt.Errorf("malformed argon2id salt: want %d to %d bytes in unpadded base64", MinArgon2SaltLen, MaxArgon2SaltLen)
	}
	key, err = base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if err != nil || len(key) < MinArgon2KeyLen || len(key) > MaxArgon2KeyLen {
		return p, nil, nil, fmt.Errorf("malformed argon2id hash value: want %d to %d bytes in unpadded base64", MinArgon2KeyLen, MaxArgon2KeyLen)
	}
	p = Argon2Params{Memory: uint32(m), Time: uint32(t), Threads: uint8(l), SaltLen: uint32(len(salt)), KeyLen: uint32(len(key))}
	return p, salt, key, nil
}

// IsBcrypt reports whether s starts like a bcrypt hash.
func IsBcrypt(s string) bool {
	return strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
}

// BcryptCost checks the shape of a bcrypt hash ($2b$<cost>$<53 characters>)
// and returns its cost, refusing costs outside the limits.
func BcryptCost(s string) (int, error) {
	if len(s) != 60 || s[6] != '$' {
		return 0, errors.New("malformed bcrypt hash: want 60 characters like $2b$12$...")
	}
	cost, err := strconv.Atoi(s[4:6])
	if err != nil {
		return 0, errors.New("malformed bcrypt hash: cost must be two digits")
	}
	if cost < MinBcryptCost || cost > MaxBcryptCost {
		return 0, fmt.Errorf("bcrypt cost %d out of range %d..%d", cost, MinBcryptCost, MaxBcryptCost)
	}
	for i := 7; i < len(s); i++ {
		c := s[i]
		if !(c == '.' || c == '/' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return 0, errors.New("malformed bcrypt hash: unexpected character")
		}
	}
	return cost, nil
}
