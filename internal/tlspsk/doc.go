// Package tlspsk owns moat's TLS-PSK transport: a narrow server and client
// for pre-shared-key TLS, built on Go's primitives (crypto/ecdh, AES-GCM,
// x/crypto/chacha20poly1305, HKDF, HMAC) because crypto/tls has no external
// PSK support. A *Conn is a net.Conn.
//
// What it speaks:
//
//   - TLS 1.3 with an external PSK in psk_dhe_ke mode only (RFC 8446):
//     X25519 or P-256 key shares, HelloRetryRequest when the client's shares
//     do not fit, TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256 and,
//     for SHA-384 PSKs (see KeyHashStore), TLS_AES_256_GCM_SHA384. KeyUpdate
//     in both directions; middlebox-compatibility change_cipher_spec.
//   - TLS 1.2 PSK with AEAD suites only: ECDHE-PSK-CHACHA20-POLY1305
//     (RFC 5489, 7905), PSK-AES128/256-GCM (RFC 5487), PSK-CHACHA20-POLY1305,
//     and, when configured, PSK-AES128-CCM and -CCM8 (RFC 6655). The extended
//     master secret (RFC 7627) is required unless AllowLegacyMasterSecret is
//     set. Renegotiation is always refused (RFC 5746).
//
// What it does not do, by design: certificates on the server side, session
// tickets or resumption for PSK connections, 0-RTT (early data is refused
// and skipped), compression, non-AEAD suites, versions below TLS 1.2,
// ALPN/SNI handling on the server side.
//
// Certificate mode (Config.CertificateMode) is a lean TLS 1.3 client for
// certificate servers, written for moat's load generator, whose crypto/tls
// client cost as much CPU per handshake as the server it measured: the
// server is authenticated by Config.VerifyServer (required; see
// VerifyServerX509) and its Finished; no client certificate; SNI and ALPN;
// session tickets stored in a SessionCache and offered with psk_dhe_ke
// (RFC 8446 §4.6.1); StaticKeyShares saves the client's key generation.
// The server's side of these handshakes is a normal full or resumed TLS
// 1.3 handshake.
//
// Identities cannot be probed: an unknown identity is given a random key
// and fails exactly like a wrong key (decrypt_error, RFC 4279 §2); only the
// local error differs (ErrUnknownIdentity vs ErrBadKey). A TLS 1.3 server
// looks up only one identity per ClientHello.
//
// Limits: records are at most 2^14 bytes of plaintext (with the RFC
// expansion limits on ciphertext), handshake messages at most 32 KiB, and a
// bounded number of empty or ignored records in a row.
//
// PeekClientHello lets one listener route a connection to crypto/tls or to
// this package; LoadPSKFile reads mosquitto's psk_file format, and
// FileStore.Watch reloads it on change.
package tlspsk
