package config

import "moat/internal/passhash"

// errNotAHash: a password_hash that is not a hash at all.
var errNotAHash = passhash.ErrNotAHash

// checkPasswordHash accepts an argon2id PHC string or a bcrypt hash with
// parameters within the limits package auth enforces when it verifies.
// Its errors never contain s.
func checkPasswordHash(s string) error { return passhash.Check(s) }
