package tlspsk

import (
	"crypto/ecdh"
	"fmt"
	"io"
	"slices"
)

func curveFor(id CurveID) ecdh.Curve {
	switch id {
	case X25519:
		return ecdh.X25519()
	case P256:
		return ecdh.P256()
	}
	return nil
}

func generateKey(id CurveID, rand io.Reader) (*ecdh.PrivateKey, error) {
	curve := curveFor(id)
	if curve == nil {
		return nil, &handshakeError{alertInternalError, fmt.Errorf("%w: group %d", ErrNegotiation, id)}
	}
	k, err := curve.GenerateKey(rand)
	if err != nil {
		return nil, &handshakeError{alertInternalError, fmt.Errorf("tlspsk: key generation: %w", err)}
	}
	return k, nil
}

// sharedSecret runs ECDH with a peer's public value; a bad point (or a
// low-order X25519 point) is the peer's fault: illegal_parameter.
func sharedSecret(priv *ecdh.PrivateKey, peer []byte) ([]byte, error) {
	pub, err := priv.Curve().NewPublicKey(peer)
	if err != nil {
		return nil, protoErr(alertIllegalParameter, "bad key share")
	}
	z, err := priv.ECDH(pub)
	if err != nil {
		return nil, protoErr(alertIllegalParameter, "bad key share")
	}
	return z, nil
}

func randomBytes(r io.Reader, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, &handshakeError{alertInternalError, fmt.Errorf("tlspsk: reading random: %w", err)}
	}
	return b, nil
}

func hasSuite(list []uint16, id uint16) bool { return slices.Contains(list, id) }
