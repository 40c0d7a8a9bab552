// Package pki is moat's built-in certificate authority: creating a CA in
// a directory (one-tier, or an off-line root signing an online
// intermediate), keeping its private keys sealed at rest under a master
// key, issuing server and client certificates (or signing CSRs) with the
// right key usages, EKUs, SANs and CRL distribution point, recording
// revocations and signing CRLs, writing PEM and PKCS#12 output, and
// renewing the broker's own server certificate before it expires.
//
// It owns the files in the CA directory (see CA) and nothing else: the
// CLI (cmd/moat) maps commands onto it, the broker serves CRLHandler at
// the CRL URL and points its TLS reloader at the files RenewServer
// replaces.
//
// Private keys of the CA never touch the disk in the clear unless the
// operator chose PlainProtector: they are PKCS#8 sealed by a KeyProtector
// (MasterKey: AES-256-GCM) and armored as "MOAT SEALED PRIVATE KEY".
// Leaf keys written by WritePEM and RenewServer are plain PKCS#8 with mode
// 0600, as every TLS server and device needs them.
//
// Two-tier operation: Init with TwoTier writes the root key to
// InitOptions.RootKeyFile (default dir/root.key). Open never reads it, so
// the operator moves it off the machine right after Init (for example to
// an encrypted USB stick or an HSM-backed vault) and keeps the master key
// with it. The rare root operations (revoking the intermediate, re-signing
// the root CRL before its nextUpdate, 180 days by default) run off-line
// with OpenRoot / RootCRL on a copy of the CA directory plus the root key;
// the resulting root.crl is copied back into the broker's CA directory,
// where RootCRLHandler serves it.
package pki
