// Package proxyproto owns the PROXY protocol (v1 text and v2 binary, as
// specified in HAProxy's doc/proxy-protocol.txt) in front of moat's
// listeners: a strict, fuzzed header parser (Parse) and a net.Listener
// wrapper (Listen) that decides whose headers to believe. With it, a load
// balancer (HAProxy, AWS NLB, F5) can pass TCP through or terminate TLS and
// still tell the broker the real client address and, for mutual TLS at the
// balancer, the client certificate's identity and verification result.
//
// # Trust rules
//
// Only the proxies listed in Options.Trusted are believed:
//
//   - a PROXY header from any other address closes the connection
//     (ErrUntrustedProxy, logged at Warn, rate-limited);
//   - a trusted proxy may send a header; with Options.Required it must
//     (ErrMissingHeader), and the listener is PROXY-only: connections from
//     untrusted addresses are closed in Accept (ErrUntrustedSource);
//   - without Required, a connection that sends no header is a direct
//     connection, from a trusted address or not. This is what lets one
//     listener serve both the balancer and direct clients. It is safe
//     because a direct client cannot smuggle a header in: its first bytes
//     are checked against both signatures (one byte decides for MQTT, TLS
//     and HTTP, which start with neither 'P' nor '\r').
//
// The specification warns against guessing whether a header is present;
// guessing is limited to the mixed case above, and a header is believed
// only from a trusted address.
//
// # How the broker uses it
//
// Wrap the TCP listener, then put TLS (if moat terminates it), the
// WebSocket server or nothing on top, as without PROXY protocol:
//
//	tcp, _ := listener.TCP(addr)
//	ln := proxyproto.Listen(tcp, proxyproto.Options{
//		Trusted:  cfg.TrustedProxies, // []netip.Prefix
//		Required: true,               // a listener only the balancer reaches
//		Log:      log,
//	})
//	// tls: tls.NewListener(ln, conf) or the handshake gate's TLSListener;
//	// the PROXY header comes before the ClientHello.
//
// Accept never reads. In the connection's own goroutine, before anything
// else, read the header, then take the client address:
//
//	pc := nc.(*proxyproto.Conn) // for TLS: tlsConn.NetConn().(*proxyproto.Conn)
//	if _, err := pc.Header(ctx); err != nil {
//		return // refused; pc is closed
//	}
//	remote := pc.RemoteAddr() // the real client: per-IP limits, logs, client list
//
// RemoteAddr does not block, so before Header (or the first Read) it is the
// proxy's address: the broker must not capture it in the accept loop (take
// it after Header), and a per-IP rate limit below Listen (listener.Guard)
// sees only the balancer, so must not throttle the trusted proxies. For
// WebSocket, net/http takes r.RemoteAddr before reading anything; put the
// *Conn in the request context with http.Server.ConnContext and ask its
// RemoteAddr in the handler, when the request (so the header) has been read.
//
// # Principal method "proxy-tls"
//
// When the balancer terminates TLS, the transport identity comes from the
// PP2_TYPE_SSL TLV, only ever present on connections whose header a trusted
// proxy sent:
//
//	ssl := pc.SSL()
//	switch {
//	case !ssl.TLS():
//		// no TLS at the balancer: no transport identity (credentials only)
//	case !ssl.HasClientCert():
//		// TLS without a client certificate: no transport identity
//	case !ssl.Verified():
//		// the balancer reports a failed verification (Verify != 0): refuse
//	default:
//		if cert, err := ssl.Certificate(); err == nil {
//			// the forwarded leaf: same identity mapping, client-id binding,
//			// ACLs and revocation checks as a direct mTLS client
//		} else if errors.Is(err, proxyproto.ErrNoClientCert) && ssl.CN != "" {
//			// only the CN was forwarded (HAProxy < 2.9): map the CN as the
//			// "cn" identity mapping does; moat cannot check revocation, so
//			// the balancer must (crl-file)
//		} else {
//			// no usable identity: refuse
//		}
//	}
//
// The client certificate arrives in the PP2_SUBTYPE_SSL_CLIENT_CERT
// sub-TLV (newer HAProxy, ghostunnel) or in a custom TLV (Options.CertTLV,
// default 0xE0, as DER, hex or base64); see DefaultCertTLV.
//
// # HAProxy configuration
//
// TLS at HAProxy, moat's listener a plain "tcp" one with PROXY required
// (HAProxy 2.6 and later):
//
//	frontend mqtts
//	    mode tcp
//	    bind :8883 ssl crt /etc/haproxy/server.pem ca-file /etc/haproxy/clients-ca.pem verify required
//	    default_backend moat
//	backend moat
//	    mode tcp
//	    server moat1 10.0.0.5:1883 send-proxy-v2-ssl-cn
//
// and on HAProxy 2.9 or later add the certificate to the server line:
//
//	set-proxy-v2-tlv-fmt(0xE0) %[ssl_c_der,base64]
//
// Before 2.9, HAProxy cannot send the certificate, but it can send its
// SHA-256 fingerprint as PP2_TYPE_UNIQUE_ID (Header.TLV(TypeUniqueID), 64
// hex digits; empty without a client certificate), which pins the exact
// certificate rather than just its CN:
//
//	frontend mqtts
//	    unique-id-format %[ssl_c_der,sha2(256),hex]
//	backend moat
//	    server moat1 10.0.0.5:1883 send-proxy-v2-ssl-cn proxy-v2-options unique-id
//
// TLS passed through to moat: "server moat1 10.0.0.5:8883 send-proxy" (v1)
// or "send-proxy-v2". The package's HAProxy test runs these setups (with
// HAProxy 2.6.12, Debian 12).
package proxyproto
