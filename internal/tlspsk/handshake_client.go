package tlspsk

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/hmac"
	"fmt"
	"slices"
)

type clientHandshake struct {
	c        *Conn
	hello    *clientHelloMsg
	offer13  bool
	offer12  bool
	keyHash  crypto.Hash
	group    CurveID
	key      *ecdh.PrivateKey // TLS 1.3 key share
	ts       transcript
	prefix   []byte // transcript before ClientHello2 (after HRR)
	hrr      *serverHelloMsg
	sentCCS  bool
	sh       *serverHelloMsg
	suite    *cipherSuite
	master   []byte
	hsSecret []byte
	cHS, sHS []byte

	// Certificate mode (see handshake_client_cert.go).
	cert        bool
	cacheKey    string   // SessionCache key
	session     *session // ticket offered, nil when none
	resumed     bool     // the server accepted the ticket
	chain       [][]byte // the server's certificates
	certRequest *certificateRequestMsg
	alpn        string
}

func (c *Conn) clientHandshake() error {
	hs := &clientHandshake{c: c, keyHash: c.config.keyHash(), cert: c.config.CertificateMode}
	build := hs.buildClientHello
	if hs.cert {
		build = hs.buildCertHello
	}
	for _, step := range []func() error{
		build,
		hs.sendClientHello,
		hs.readServerHello,
	} {
		if err := step(); err != nil {
			return err
		}
	}
	switch {
	case hs.cert:
		return hs.handshakeCert13() // readServerHello accepts nothing but TLS 1.3
	case hs.sh.supportedVersion == VersionTLS13:
		return hs.handshake13()
	}
	return hs.handshake12()
}

// keyFor returns the key for a key share of group id: a static one from
// the config, or a fresh one.
func (hs *clientHandshake) keyFor(id CurveID) (*ecdh.PrivateKey, error) {
	if curve := curveFor(id); curve != nil {
		for _, k := range hs.c.config.StaticKeyShares {
			if k.Curve() == curve {
				return k, nil
			}
		}
	}
	return generateKey(id, hs.c.config.rand())
}

func (hs *clientHandshake) buildClientHello() error {
	c, cfg := hs.c, hs.c.config
	hello := &clientHelloMsg{vers: VersionTLS12, compressionMethods: []uint8{0}, hasExtensions: true}
	var suites13 []*cipherSuite
	if cfg.supportsVersion(VersionTLS13) {
		for _, s := range cfg.suites(VersionTLS13) {
			if s.hash == hs.keyHash {
				suites13 = append(suites13, s)
			}
		}
	}
	hs.offer13 = len(suites13) > 0
	hs.offer12 = cfg.supportsVersion(VersionTLS12) && len(cfg.suites(VersionTLS12)) > 0
	if !hs.offer13 && !hs.offer12 {
		return fmt.Errorf("%w: no cipher suite matches the key's hash", ErrConfig)
	}
	var err error
	if hello.random, err = randomBytes(cfg.rand(), 32); err != nil {
		return err
	}
	for _, s := range suites13 {
		hello.cipherSuites = append(hello.cipherSuites, s.id)
	}
	hello.supportedGroups = cfg.curves()
	if hs.offer12 {
		for _, s := range cfg.suites(VersionTLS12) {
			hello.cipherSuites = append(hello.cipherSuites, s.id)
		}
		hello.hasSupportedPoints = true
		hello.supportedPoints = []uint8{pointFormatUncompressed}
		hello.extendedMasterSecret = true
		hello.secureRenegotiationExt = true
	}
	if hs.offer13 {
		if hello.sessionID, err = randomBytes(cfg.rand(), 32); err != nil {
			return err
		}
		hello.supportedVersions = []uint16{VersionTLS13}
		if hs.offer12 {
			hello.supportedVersions = append(hello.supportedVersions, VersionTLS12)
		}
		hello.hasPSKModes = true
		hello.pskModes = []uint8{pskModeDHE}
		hs.group = hello.supportedGroups[0]
		if hs.key, err = hs.keyFor(hs.group); err != nil {
			return err
		}
		hello.hasKeyShares = true
		hello.keyShares = []keyShare{{group: hs.group, data: hs.key.PublicKey().Bytes()}}
		hello.pskIdentities = []pskIdentity{{label: []byte(cfg.Identity), age: 0}}
		hello.pskBinders = [][]byte{make([]byte, hs.keyHash.Size())}
		hello.earlyData = c.testEarlyData > 0
	}
	hs.hello = hello
	hs.marshalHello()
	c.setState(0, nil, cfg.Identity)
	return nil
}

// marshalHello encodes the ClientHello and fills in its PSK binder: the
// external PSK's, or in certificate mode the offered ticket's.
func (hs *clientHandshake) marshalHello() {
	hs.hello.marshal()
	if !hs.offer13 || len(hs.hello.pskIdentities) == 0 {
		return
	}
	h, psk, binderKey := hs.keyHash, hs.c.config.Key, extBinderKey
	if hs.cert {
		h, psk, binderKey = hs.session.suite.hash, hs.session.psk, resBinderKey
	}
	early := earlySecret(h, psk)
	th := h.New()
	th.Write(hs.prefix)
	th.Write(hs.hello.truncated())
	hs.hello.setBinders([][]byte{finishedMAC(h, binderKey(h, early), th.Sum(nil))})
	clear(early)
}

func (hs *clientHandshake) sendClientHello() error {
	c := hs.c
	hs.ts.Write(hs.hello.raw)
	if err := c.writeHandshake(hs.hello.raw); err != nil {
		return err
	}
	if hs.hello.earlyData {
		// Tests only: what 0-RTT data looks like on the wire to a server
		// that cannot decrypt it.
		c.out.Lock()
		for left := c.testEarlyData; left > 0; left -= maxPlaintext {
			junk := make([]byte, min(left, maxPlaintext))
			c.sendBuf = append(c.sendBuf, recordTypeApplicationData, 3, 3, byte(len(junk)>>8), byte(len(junk)))
			c.sendBuf = append(c.sendBuf, junk...)
		}
		c.out.Unlock()
	}
	return c.flush()
}

func (hs *clientHandshake) readServerHello() error {
	c := hs.c
	msg, err := c.readHandshake()
	if err != nil {
		return err
	}
	if err := expectMessage(msg, typeServerHello, "ServerHello"); err != nil {
		return err
	}
	sh := new(serverHelloMsg)
	if err := sh.unmarshal(msg); err != nil {
		return protoErr(alertDecodeError, "ServerHello: %v", err)
	}
	c.out.Lock()
	c.recordVersion = VersionTLS12
	c.out.Unlock()
	if sh.supportedVersion != 0 && (sh.supportedVersion != VersionTLS13 || !hs.offer13) {
		return protoErr(alertIllegalParameter, "server selected version 0x%04x", sh.supportedVersion)
	}
	if sh.isHelloRetryRequest() {
		if sh.supportedVersion != VersionTLS13 || hs.hrr != nil {
			return protoErr(alertUnexpectedMessage, "unexpected HelloRetryRequest")
		}
		if err := hs.processHelloRetryRequest(sh); err != nil {
			return err
		}
		return hs.readServerHello()
	}
	hs.sh = sh
	if sh.supportedVersion == VersionTLS13 {
		c.readVers = VersionTLS13
		return nil
	}
	if sh.vers != VersionTLS12 || !hs.offer12 {
		return &handshakeError{alertProtocolVersion, fmt.Errorf("%w: server selected version 0x%04x", ErrNegotiation, sh.vers)}
	}
	if hs.offer13 && bytes.Equal(sh.random[24:], downgradeTLS12) {
		return protoErr(alertIllegalParameter, "downgrade to TLS 1.2 detected")
	}
	c.readVers = VersionTLS12
	return nil
}

func (hs *clientHandshake) processHelloRetryRequest(hrr *serverHelloMsg) error {
	c := hs.c
	s := suiteByID(hrr.cipherSuite)
	if s == nil || s.version != VersionTLS13 || !hasSuite(hs.hello.cipherSuites, s.id) || (!hs.cert && s.hash != hs.keyHash) {
		return protoErr(alertIllegalParameter, "HelloRetryRequest with a suite not offered")
	}
	if hs.session != nil && s.hash != hs.session.suite.hash {
		// The ticket cannot be used with this suite (RFC 8446 §4.1.4).
		hs.session, hs.hello.pskIdentities, hs.hello.pskBinders = nil, nil, nil
	}
	if !bytes.Equal(hrr.sessionID, hs.hello.sessionID) || hrr.compressionMethod != 0 {
		return protoErr(alertIllegalParameter, "bad HelloRetryRequest")
	}
	if len(hrr.otherExtensions) > 0 || hrr.selectedIdentityPresent || hrr.extendedMasterSecret ||
		hrr.secureRenegotiationSupported || len(hrr.supportedPoints) > 0 {
		return &handshakeError{alertUnsupportedExtension, fmt.Errorf("%w: unexpected extension in HelloRetryRequest", ErrProtocol)}
	}
	if hrr.selectedGroup == 0 && len(hrr.cookie) == 0 {
		return protoErr(alertIllegalParameter, "HelloRetryRequest changes nothing")
	}
	if hrr.selectedGroup != 0 {
		if hrr.selectedGroup == hs.group || !c.config.supportsCurve(hrr.selectedGroup) {
			return protoErr(alertIllegalParameter, "HelloRetryRequest for group %d", hrr.selectedGroup)
		}
		var err error
		hs.group = hrr.selectedGroup
		if hs.key, err = hs.keyFor(hs.group); err != nil {
			return err
		}
		hs.hello.keyShares = []keyShare{{group: hs.group, data: hs.key.PublicKey().Bytes()}}
	}
	hs.hrr = hrr
	c.didHRR = true
	c.readVers = VersionTLS13
	c.ccsAllowed = true
	hs.prefix = append(messageHash(hs.ts.hashOf(s.hash, nil)), hrr.raw...)
	hs.ts = transcript{}
	hs.hello.cookie = hrr.cookie
	hs.hello.earlyData = false
	hs.marshalHello()
	hs.ts.Write(hs.prefix)
	hs.ts.Write(hs.hello.raw)
	c.out.Lock()
	err := c.writeRecordLocked(recordTypeChangeCipherSpec, []byte{1})
	if err == nil {
		err = c.writeRecordLocked(recordTypeHandshake, hs.hello.raw)
	}
	if err == nil {
		err = c.flushLocked()
	}
	c.out.Unlock()
	hs.sentCCS = true
	return err
}

// ---- TLS 1.3 ----

func (hs *clientHandshake) handshake13() error {
	for _, step := range []func() error{
		hs.processServerHello13,
		hs.readEncryptedExtensions,
		hs.readServerFinished13,
	} {
		if err := step(); err != nil {
			return err
		}
	}
	for _, s := range [][]byte{hs.hsSecret, hs.cHS, hs.sHS} {
		clear(s)
	}
	hs.c.setState(VersionTLS13, hs.suite, hs.c.config.Identity)
	return nil
}

func (hs *clientHandshake) processServerHello13() error {
	c, sh := hs.c, hs.sh
	hs.suite = suiteByID(sh.cipherSuite)
	if hs.suite == nil || hs.suite.version != VersionTLS13 || !hasSuite(hs.hello.cipherSuites, sh.cipherSuite) ||
		(!hs.cert && hs.suite.hash != hs.keyHash) || (hs.hrr != nil && hs.hrr.cipherSuite != sh.cipherSuite) {
		return protoErr(alertIllegalParameter, "server chose a suite not offered")
	}
	if !bytes.Equal(sh.sessionID, hs.hello.sessionID) || sh.compressionMethod != 0 {
		return protoErr(alertIllegalParameter, "bad ServerHello")
	}
	if len(sh.otherExtensions) > 0 || sh.extendedMasterSecret || sh.secureRenegotiationSupported ||
		len(sh.supportedPoints) > 0 || len(sh.cookie) > 0 {
		return &handshakeError{alertUnsupportedExtension, fmt.Errorf("%w: unexpected extension in ServerHello", ErrProtocol)}
	}
	psk := c.config.Key
	switch {
	case hs.cert && sh.selectedIdentityPresent:
		if hs.session == nil || sh.selectedIdentity != 0 || hs.session.suite.hash != hs.suite.hash {
			return protoErr(alertIllegalParameter, "server selected a PSK not offered")
		}
		hs.resumed, psk = true, hs.session.psk
	case hs.cert:
		psk = nil // a full handshake: the early secret of a zero key
	case !sh.selectedIdentityPresent:
		return &handshakeError{alertMissingExtension, fmt.Errorf("%w: server did not accept the PSK", ErrNegotiation)}
	case sh.selectedIdentity != 0:
		return protoErr(alertIllegalParameter, "server selected PSK identity %d", sh.selectedIdentity)
	}
	if sh.serverShare.group != hs.group {
		return protoErr(alertIllegalParameter, "server key share for group %d", sh.serverShare.group)
	}
	hs.ts.setHash(hs.suite.hash) // ClientHello (or message_hash, HRR, ClientHello2) is buffered
	hs.ts.Write(sh.raw)
	shared, err := sharedSecret(hs.key, sh.serverShare.data)
	if err != nil {
		return err
	}
	h := hs.suite.hash
	early := earlySecret(h, psk)
	hs.hsSecret = handshakeSecret(h, early, shared)
	clear(early)
	clear(shared)
	hs.cHS = deriveSecret(h, hs.hsSecret, "c hs traffic", hs.ts.Sum())
	hs.sHS = deriveSecret(h, hs.hsSecret, "s hs traffic", hs.ts.Sum())
	if len(c.hand) > 0 {
		return protoErr(alertUnexpectedMessage, "data after ServerHello")
	}
	c.ccsAllowed = true
	c.in.setTrafficSecret13(hs.suite, hs.sHS)
	return nil
}

func (hs *clientHandshake) readEncryptedExtensions() error {
	msg, err := hs.c.readHandshake()
	if err != nil {
		return err
	}
	if err := expectMessage(msg, typeEncryptedExtensions, "EncryptedExtensions"); err != nil {
		return err
	}
	var ee encryptedExtensionsMsg
	if err := ee.unmarshal(msg); err != nil {
		return protoErr(alertDecodeError, "EncryptedExtensions: %v", err)
	}
	for _, e := range ee.extensions {
		switch {
		case e == extSupportedGroups:
		case hs.cert && e == extALPN && len(hs.hello.alpnProtocols) > 0:
		case hs.cert && e == extServerName && hs.hello.serverName != "":
		default:
			return &handshakeError{alertUnsupportedExtension, fmt.Errorf("%w: unexpected extension %d in EncryptedExtensions", ErrProtocol, e)}
		}
	}
	if hs.cert {
		if ee.malformed {
			return protoErr(alertDecodeError, "EncryptedExtensions")
		}
		if ee.alpn != "" && !slices.Contains(hs.hello.alpnProtocols, ee.alpn) {
			return protoErr(alertIllegalParameter, "server selected ALPN protocol %q, not offered", ee.alpn)
		}
		hs.alpn = ee.alpn
	}
	hs.ts.Write(msg)
	return nil
}

func (hs *clientHandshake) readServerFinished13() error {
	c := hs.c
	h := hs.suite.hash
	msg, err := c.readHandshake()
	if err != nil {
		return err
	}
	if err := expectMessage(msg, typeFinished, "Finished"); err != nil {
		return err
	}
	var fin finishedMsg
	if err := fin.unmarshal(msg); err != nil {
		return protoErr(alertDecodeError, "Finished")
	}
	if !hmac.Equal(finishedMAC(h, hs.sHS, hs.ts.Sum()), fin.verifyData) {
		failed := ErrBadKey
		if hs.cert {
			failed = ErrServerAuth
		}
		return &handshakeError{alertDecryptError, fmt.Errorf("%w: server Finished", failed)}
	}
	hs.ts.Write(msg)
	master := masterSecret13(h, hs.hsSecret)
	cAP := deriveSecret(h, master, "c ap traffic", hs.ts.Sum())
	sAP := deriveSecret(h, master, "s ap traffic", hs.ts.Sum())
	var certMsg []byte
	if hs.certRequest != nil { // certificate mode: we have no certificate
		certMsg = (&certificateMsg{context: hs.certRequest.context}).marshal()
		hs.ts.Write(certMsg)
	}
	mine := finishedMsg{verifyData: finishedMAC(h, hs.cHS, hs.ts.Sum())}
	mine.marshal()
	if hs.cert && c.config.SessionCache != nil {
		hs.ts.Write(mine.raw)
		c.tickets = &ticketState{
			suite:  hs.suite,
			secret: deriveSecret(h, master, "res master", hs.ts.Sum()),
			key:    hs.cacheKey,
		}
	}
	clear(master)
	c.out.Lock()
	defer c.out.Unlock()
	if !hs.sentCCS {
		if err := c.writeRecordLocked(recordTypeChangeCipherSpec, []byte{1}); err != nil {
			return err
		}
	}
	c.out.setTrafficSecret13(hs.suite, hs.cHS)
	if certMsg != nil {
		if err := c.writeRecordLocked(recordTypeHandshake, certMsg); err != nil {
			return err
		}
	}
	if err := c.writeRecordLocked(recordTypeHandshake, mine.raw); err != nil {
		return err
	}
	if err := c.flushLocked(); err != nil {
		return err
	}
	c.out.setTrafficSecret13(hs.suite, cAP)
	if len(c.hand) > 0 {
		return protoErr(alertUnexpectedMessage, "data after Finished")
	}
	c.ccsAllowed = false
	c.in.setTrafficSecret13(hs.suite, sAP)
	return nil
}

// ---- TLS 1.2 ----

func (hs *clientHandshake) handshake12() error {
	for _, step := range []func() error{
		hs.processServerHello12,
		hs.readServerFlight12,
		hs.readServerFinished12,
	} {
		if err := step(); err != nil {
			return err
		}
	}
	clear(hs.master)
	hs.c.setState(VersionTLS12, hs.suite, hs.c.config.Identity)
	return nil
}

func (hs *clientHandshake) processServerHello12() error {
	c, sh := hs.c, hs.sh
	hs.suite = suiteByID(sh.cipherSuite)
	if hs.suite == nil || hs.suite.version != VersionTLS12 || !hasSuite(hs.hello.cipherSuites, sh.cipherSuite) {
		return protoErr(alertIllegalParameter, "server chose a suite not offered")
	}
	if sh.compressionMethod != 0 {
		return protoErr(alertIllegalParameter, "server chose compression")
	}
	if len(sh.otherExtensions) > 0 || sh.serverShare.group != 0 || sh.selectedIdentityPresent || len(sh.cookie) > 0 {
		return &handshakeError{alertUnsupportedExtension, fmt.Errorf("%w: unexpected extension in ServerHello", ErrProtocol)}
	}
	if sh.secureRenegotiationSupported && len(sh.secureRenegotiation) != 0 {
		return &handshakeError{alertHandshakeFailure, fmt.Errorf("%w: renegotiation_info not empty", ErrRenegotiation)}
	}
	if !sh.extendedMasterSecret && !c.config.AllowLegacyMasterSecret {
		return &handshakeError{alertHandshakeFailure, fmt.Errorf("%w: server lacks extended_master_secret", ErrNegotiation)}
	}
	hs.ts.setHash(hs.suite.hash)
	hs.ts.Write(sh.raw)
	c.setState(VersionTLS12, hs.suite, c.config.Identity)
	return nil
}

func (hs *clientHandshake) readServerFlight12() error {
	c, cfg := hs.c, hs.c.config
	msg, err := c.readHandshake()
	if err != nil {
		return err
	}
	var z []byte
	if msg[0] == typeServerKeyExchange {
		var ske serverKeyExchangeMsg
		if err := ske.unmarshal(msg, hs.suite.ecdhe); err != nil {
			return protoErr(alertDecodeError, "ServerKeyExchange")
		}
		hs.ts.Write(msg)
		if hs.suite.ecdhe {
			if !cfg.supportsCurve(ske.group) {
				return protoErr(alertIllegalParameter, "server chose group %d", ske.group)
			}
			if hs.key, err = hs.keyFor(ske.group); err != nil {
				return err
			}
			if z, err = sharedSecret(hs.key, ske.public); err != nil {
				return err
			}
		}
		if msg, err = c.readHandshake(); err != nil {
			return err
		}
	} else if hs.suite.ecdhe {
		return protoErr(alertUnexpectedMessage, "expected ServerKeyExchange, got message %d", msg[0])
	}
	if err := expectMessage(msg, typeServerHelloDone, "ServerHelloDone"); err != nil {
		return err
	}
	if len(msg) != 4 {
		return protoErr(alertDecodeError, "ServerHelloDone")
	}
	hs.ts.Write(msg)

	cke := clientKeyExchangeMsg{identity: []byte(cfg.Identity), ecdhe: hs.suite.ecdhe}
	if hs.suite.ecdhe {
		cke.public = hs.key.PublicKey().Bytes()
	}
	hs.ts.Write(cke.marshal())
	premaster := pskPremaster(z, len(cfg.Key), cfg.Key)
	clear(z)
	if hs.sh.extendedMasterSecret {
		hs.master = extendedMasterSecret12(hs.suite.hash, premaster, hs.ts.Sum())
	} else {
		hs.master = masterSecret12(hs.suite.hash, premaster, hs.hello.random, hs.sh.random)
	}
	clear(premaster)
	cKey, sKey, cIV, sIV := keys12(hs.suite, hs.master, hs.hello.random, hs.sh.random)
	c.in.suite = hs.suite
	c.in.pending = hs.suite.aead(sKey, sIV, false)
	fin := finishedMsg{verifyData: finished12(hs.suite.hash, hs.master, "client finished", hs.ts.Sum())}
	hs.ts.Write(fin.marshal())

	c.out.Lock()
	defer c.out.Unlock()
	if err := c.writeRecordLocked(recordTypeHandshake, cke.raw); err != nil {
		return err
	}
	if err := c.writeRecordLocked(recordTypeChangeCipherSpec, []byte{1}); err != nil {
		return err
	}
	c.out.setKeys(VersionTLS12, hs.suite, hs.suite.aead(cKey, cIV, false), nil)
	if err := c.writeRecordLocked(recordTypeHandshake, fin.raw); err != nil {
		return err
	}
	return c.flushLocked()
}

func (hs *clientHandshake) readServerFinished12() error {
	c := hs.c
	for c.in.pending != nil {
		if err := c.readRecord(); err != nil {
			return err
		}
	}
	msg, err := c.readHandshake()
	if err != nil {
		return err
	}
	if err := expectMessage(msg, typeFinished, "Finished"); err != nil {
		return err
	}
	var fin finishedMsg
	if err := fin.unmarshal(msg); err != nil {
		return protoErr(alertDecodeError, "Finished")
	}
	if !hmac.Equal(finished12(hs.suite.hash, hs.master, "server finished", hs.ts.Sum()), fin.verifyData) {
		return &handshakeError{alertDecryptError, fmt.Errorf("%w: server Finished", ErrBadKey)}
	}
	if len(c.hand) > 0 {
		return protoErr(alertUnexpectedMessage, "data after Finished")
	}
	return nil
}
