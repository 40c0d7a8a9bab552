package auth

import (
	"os"
	"testing"
)

// testArgon2 keeps hashing fast in tests; production parameters are tested
// once explicitly (TestHashPasswordDefaults).
var testArgon2 = argon2Params{memory: 64, time: 1, threads: 1, saltLen: 16, keyLen: 32}

func TestMain(m *testing.M) {
	hashParams = testArgon2
	os.Exit(m.Run())
}
