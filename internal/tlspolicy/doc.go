// Package tlspolicy owns every *tls.Config that moat uses for certificate
// based TLS: protocol versions, cipher suites, key exchange groups, server
// certificates chosen by SNI, mutual TLS (client CA bundles, clientAuth EKU,
// chain depth), ALPN, session tickets, and hot reload of all certificate,
// key and CA files. Nothing else in moat sets TLS fields.
//
// It also maps a verified client certificate to an identity string
// ([Identity], [ExpandClientIDTemplate]) and classifies handshake failures
// for logs and counters ([ClassifyHandshakeError], [HandshakeStats]).
//
// # Using a Policy
//
//	p, err := tlspolicy.New(opts, log) // loads and checks every file, or fails
//	ln := tls.NewListener(tcpLn, p.TLSConfig())
//	go p.Watch(ctx, 2*time.Second)     // reload when files change
//	// on SIGHUP: p.Reload()
//
// The *tls.Config returned by [Policy.TLSConfig] is a shell whose
// GetConfigForClient callback hands every new handshake the material that
// is current at that moment (an atomic pointer swap on reload), so a reload
// never touches established connections and never drops one.
//
// # Secure defaults
//
//   - TLS 1.3 preferred (Go always negotiates the highest common version);
//     TLS 1.2 minimum; anything lower is refused by [New].
//   - TLS 1.2 cipher suites limited to ECDHE key exchange with an AEAD
//     (AES-GCM, ChaCha20-Poly1305). TLS 1.3 suites are all AEAD and are not
//     configurable in Go. Go picks the suite itself (it prefers AES-GCM when
//     both ends have AES hardware, ChaCha20-Poly1305 otherwise); the order
//     of [Options.CipherSuites] is not a preference order.
//   - Key exchange groups: the hybrid post-quantum X25519MLKEM768 (and the
//     Go 1.26 SecP256r1MLKEM768 / SecP384r1MLKEM1024 hybrids), X25519, P-256
//     and P-384.
//   - Session tickets on, for both TLS 1.2 and TLS 1.3 resumption. The ticket
//     keys are never configured, so crypto/tls manages them itself: a fresh
//     random key every 24 hours, old keys accepted for 7 days, kept in memory
//     only (a restart invalidates every ticket). TLS 1.3 resumption in Go is
//     always psk_dhe_ke, so resumed sessions keep forward secrecy. Tickets
//     carry a tag of the client-CA material; after a reload that changes the
//     client CAs, older tickets are ignored and the client does a full
//     handshake against the new CAs.
//   - Renegotiation is never offered or accepted (crypto/tls servers do not
//     renegotiate; the client-side field is set to RenegotiateNever anyway).
//   - Client certificates (when requested) must chain to a configured CA,
//     must explicitly carry the clientAuth extended key usage (a certificate
//     without an EKU extension is refused, although crypto/tls alone would
//     accept it) and must not have more intermediates than the chain depth
//     limit.
package tlspolicy
