// Package registry owns the devices and their credentials: one record per
// device (id, status, metadata, ACL rules, credentials) in a bbolt file of
// its own (registry.db in the data directory), and an in-memory index that
// answers the broker's lookups during handshakes and CONNECT.
//
// # Credentials
//
// A device has one or more credentials, each with a random id:
//
//   - x509: a CA-issued client certificate, bound by its SHA-256
//     fingerprint, by issuer DN + serial number, or by a subject match
//     ("CN=sensor-17", "OU=plant-a", "san:dns=dev.example");
//   - psk: a TLS-PSK identity and a key (32 random bytes by default),
//     stored encrypted; or, with Derived, no stored key: the key is
//     HMAC-SHA256(fleet key, identity) (SetFleetKey, DerivePSK), so one
//     stored secret serves a whole fleet. A derived PSK is only accepted
//     for a registered, enabled device, although anyone holding the fleet
//     key can compute it;
//   - pinned-key: the SHA-256 of a SubjectPublicKeyInfo. The device presents
//     any certificate (typically self-signed) holding that key over TLS 1.3;
//     no CA is involved (see VerifyPeer);
//   - ecdh: the device's X25519 public key. The broker has one long-term
//     X25519 key (made on first use, stored encrypted); both sides derive
//     the device's PSK as HKDF-SHA256(X25519 shared secret, salt "moat ecdh
//     psk v1", info identity) (DeriveECDHPSK, DeviceECDHPSK). The broker
//     stores no device secret and the key never crosses the network;
//   - password: an argon2id hash (or an imported bcrypt hash); the MQTT
//     username is the device id.
//
// PSK identities (psk and ecdh), certificate bindings and pins are unique
// across the registry.
//
// # Secrets at rest
//
// PSK keys, the fleet key and the broker's ECDH private key are sealed by a
// KeyProtector before they reach the file; the registry's own is MasterKey
// (AES-256-GCM under a 32-byte key read from a 0600 file or an environment
// variable). Each sealed value is bound to the record it belongs to. A key
// check record makes Open with the wrong master key fail at once, naming
// the file. RotateMasterKey re-encrypts everything in one transaction and
// then compacts the file so no blob sealed under the old key survives in
// free pages.
//
// # Lookups and changes
//
// Lookups (LookupPSK, ByCertificate, ByPinnedKey, VerifyPassword, Device,
// List) read the in-memory index under a read lock; they never touch the
// file. A disabled device is refused by every lookup that grants access.
// Mutations (Add, Update, SetStatus, AddCredential, RemoveCredential,
// RotateCredential, Remove, SetFleetKey) are serialized, written to the file
// in one transaction each, then applied to the index. Changes that can
// withdraw access call the OnChange hooks so the broker can disconnect the
// device's live sessions.
//
// # Broker integration
//
// Authenticator turns transport identities and passwords into Principals
// for registered devices and hands everything else to the next
// authenticator; Authorizer applies per-device ACL rules and is meant to be
// combined with the configuration's ACL through auth.AllOf (deny wins).
// LookupPSK makes the Registry a tlspsk.KeyStore.
package registry
