package registry

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
)

// ECDHSalt is the HKDF salt of ECDH-derived PSKs.
const ECDHSalt = "moat ecdh psk v1"

// DeriveECDHPSK derives the 32-byte PSK of an ecdh credential from the
// X25519 shared secret of the broker's and the device's keys and the PSK
// identity: HKDF-SHA256(secret = shared, salt = "moat ecdh psk v1",
// info = identity). Broker and device compute the same key; the key itself
// never crosses the network and the broker stores no device secret.
func DeriveECDHPSK(shared []byte, identity string) []byte {
	k, err := hkdf.Key(sha256.New, shared, []byte(ECDHSalt), identity, 32)
	if err != nil {
		// Only possible for absurd lengths (or a FIPS-mode key too short),
		// neither of which applies to 32 bytes from a 32-byte secret.
		panic("registry: hkdf: " + err.Error())
	}
	return k
}

// DeviceECDHPSK is the device side of an ecdh credential: the PSK the
// device with private key devicePriv uses for identity, given the broker's
// public key (BrokerECDHPublicKey; 32 bytes).
func DeviceECDHPSK(devicePriv *ecdh.PrivateKey, brokerPub []byte, identity string) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(brokerPub)
	if err != nil {
		return nil, fmt.Errorf("registry: %w: broker public key: not an X25519 public key", ErrInvalid)
	}
	shared, err := devicePriv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("registry: %w: broker public key: %v", ErrInvalid, err)
	}
	defer clear(shared)
	return DeriveECDHPSK(shared, identity), nil
}
