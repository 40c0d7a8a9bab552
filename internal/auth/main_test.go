package auth

import (
	"os"
	"testing"
)

// testArgon2 keeps hashing fast in tests; production parameters are tested
// once explicitly (TestHashPasswordDefaults).
var testArgon2 = argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestMain(m *testing.M) {
	hashParams = testArgon2
	os.Exit(m.Run())
}
