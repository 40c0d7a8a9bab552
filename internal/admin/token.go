package admin

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// TokenPrefix starts every token GenerateToken makes, so a leaked token is
// easy to recognize (and to scan for).
const TokenPrefix = "moat_"

// Token is an API bearer token as the server stores it: a name (for the
// audit log) and the SHA-256 of the token, hex. Tokens are 256-bit random
// values, so a fast hash is enough: there is nothing to guess.
type Token struct {
	Name   string
	SHA256 string
}

// GenerateToken returns a new random token ("moat_" and 43 base64url
// characters: 256 bits) and its Token record for name. Show the token once;
// store only the record.
func GenerateToken(name string) (token string, rec Token) {
	var b [32]byte
	rand.Read(b[:])
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, Token{Name: name, SHA256: HashToken(token)}
}

// HashToken returns the hex SHA-256 of a token.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}
