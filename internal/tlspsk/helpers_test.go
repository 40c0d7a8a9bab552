package tlspsk

import (
	"crypto"
	"encoding/hex"
)

type cryptoHash = crypto.Hash

const sha384 = crypto.SHA384

func hexOf(b []byte) string { return hex.EncodeToString(b) }
