package tlspsk

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
)

// The certificate-mode client (Config.CertificateMode): TLS 1.3 with a
// server certificate and no PSK, or with a session ticket from an earlier
// connection. It shares the ServerHello, HelloRetryRequest, key schedule
// and Finished steps with the PSK client; only the ClientHello and the
// server's Certificate and CertificateVerify are its own.

// buildCertHello builds a TLS 1.3 ClientHello with a key share, signature
// algorithms, SNI, ALPN, psk_dhe_ke and, when the cache has one, a ticket.
func (hs *clientHandshake) buildCertHello() error {
	c, cfg := hs.c, hs.c.config
	hello := &clientHelloMsg{vers: VersionTLS12, compressionMethods: []uint8{0}, hasExtensions: true}
	for _, s := range cfg.suites(VersionTLS13) {
		hello.cipherSuites = append(hello.cipherSuites, s.id)
	}
	hs.offer13 = true
	var err error
	if hello.random, err = randomBytes(cfg.rand(), 32); err != nil {
		return err
	}
	if hello.sessionID, err = randomBytes(cfg.rand(), 32); err != nil {
		return err
	}
	hello.serverName = sniName(cfg.ServerName)
	hello.supportedGroups = cfg.curves()
	hello.signatureAlgorithms = supportedSignatureSchemes
	hello.alpnProtocols = cfg.NextProtos
	hello.supportedVersions = []uint16{VersionTLS13}
	hello.hasPSKModes = true
	hello.pskModes = []uint8{pskModeDHE}
	hs.group = hello.supportedGroups[0]
	if hs.key, err = hs.keyFor(hs.group); err != nil {
		return err
	}
	hello.hasKeyShares = true
	hello.keyShares = []keyShare{{group: hs.group, data: hs.key.PublicKey().Bytes()}}
	if cache := cfg.SessionCache; cache != nil {
		hs.cacheKey = cfg.ServerName
		if hs.cacheKey == "" {
			hs.cacheKey = c.conn.RemoteAddr().String()
		}
		now := cfg.now()
		if s := cache.get(hs.cacheKey, now); s != nil && hasSuite(hello.cipherSuites, s.suite.id) {
			hs.session = s
			hello.pskIdentities = []pskIdentity{{label: s.ticket, age: s.obfuscatedAge(now)}}
			hello.pskBinders = [][]byte{make([]byte, s.suite.hash.Size())}
		}
	}
	hs.hello = hello
	hs.marshalHello()
	return nil
}

// sniName is the server_name to send for name: none for an IP address
// (RFC 6066 §3), no trailing dot.
func sniName(name string) string {
	host := strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	if net.ParseIP(host) != nil {
		return ""
	}
	return strings.TrimSuffix(name, ".")
}

func (hs *clientHandshake) handshakeCert13() error {
	for _, step := range []func() error{
		hs.processServerHello13,
		hs.readEncryptedExtensions,
		hs.readServerCertificate, // not when resumed
		hs.readCertificateVerify, // not when resumed
		hs.readServerFinished13,
	} {
		if err := step(); err != nil {
			return err
		}
	}
	for _, s := range [][]byte{hs.hsSecret, hs.cHS, hs.sHS} {
		clear(s)
	}
	c := hs.c
	c.setState(VersionTLS13, hs.suite, "")
	c.stateMu.Lock()
	c.resumed, c.alpn = hs.resumed, hs.alpn
	c.stateMu.Unlock()
	return nil
}

// readServerCertificate reads the server's Certificate, after a
// CertificateRequest if the server sent one (answered, later, with an
// empty Certificate).
func (hs *clientHandshake) readServerCertificate() error {
	if hs.resumed {
		return nil
	}
	c := hs.c
	msg, err := c.readHandshake()
	if err != nil {
		return err
	}
	if msg[0] == typeCertificateRequest {
		cr := new(certificateRequestMsg)
		if err := cr.unmarshal(msg); err != nil {
			return protoErr(alertDecodeError, "CertificateRequest")
		}
		if len(cr.context) != 0 {
			return protoErr(alertIllegalParameter, "CertificateRequest with a context in the handshake")
		}
		hs.certRequest = cr
		hs.ts.Write(msg)
		if msg, err = c.readHandshake(); err != nil {
			return err
		}
	}
	if err := expectMessage(msg, typeCertificate, "Certificate"); err != nil {
		return err
	}
	var cm certificateMsg
	if err := cm.unmarshal(msg); err != nil {
		return protoErr(alertDecodeError, "Certificate")
	}
	if len(cm.context) != 0 {
		return protoErr(alertIllegalParameter, "server Certificate with a context")
	}
	if len(cm.chain) == 0 {
		return &handshakeError{alertDecodeError, fmt.Errorf("%w: server sent no certificate", ErrServerAuth)}
	}
	hs.chain = cm.chain
	hs.ts.Write(msg)
	return nil
}

// readCertificateVerify reads the server's signature over the transcript
// and has Config.VerifyServer check it with the chain.
func (hs *clientHandshake) readCertificateVerify() error {
	if hs.resumed {
		return nil
	}
	c := hs.c
	msg, err := c.readHandshake()
	if err != nil {
		return err
	}
	if err := expectMessage(msg, typeCertificateVerify, "CertificateVerify"); err != nil {
		return err
	}
	var cv certificateVerifyMsg
	if err := cv.unmarshal(msg); err != nil {
		return protoErr(alertDecodeError, "CertificateVerify")
	}
	if !slices.Contains(hs.hello.signatureAlgorithms, cv.scheme) {
		return protoErr(alertIllegalParameter, "server used signature scheme 0x%04x, not offered", cv.scheme)
	}
	sc := &ServerCertificate{
		ServerName:      c.config.ServerName,
		Chain:           hs.chain,
		SignatureScheme: cv.scheme,
		Signed:          signedContent(serverSignatureContext, hs.ts.Sum()),
		Signature:       cv.signature,
	}
	if err := c.config.VerifyServer(sc); err != nil {
		alert := alertBadCertificate
		if errors.Is(err, ErrBadSignature) {
			alert = alertDecryptError
		}
		return &handshakeError{alert, fmt.Errorf("%w: %w", ErrServerAuth, err)}
	}
	hs.ts.Write(msg)
	return nil
}
