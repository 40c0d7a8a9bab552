package tlspsk

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/hmac"
	"fmt"
	"slices"
)

// serverHandshake reads the ClientHello and runs the handshake of the
// version it selects.
func (c *Conn) serverHandshake() error {
	msg, err := c.readHandshake()
	if err != nil {
		return err
	}
	hello, err := parseClientHello(msg)
	if err != nil {
		return err
	}
	vers, err := c.pickVersion(hello)
	if err != nil {
		return err
	}
	c.readVers = vers
	if vers == VersionTLS13 {
		hs := &serverHandshake13{c: c, hello: hello}
		return hs.handshake()
	}
	hs := &serverHandshake12{c: c, hello: hello}
	return hs.handshake()
}

func parseClientHello(msg []byte) (*clientHelloMsg, error) {
	if err := expectMessage(msg, typeClientHello, "ClientHello"); err != nil {
		return nil, err
	}
	hello := new(clientHelloMsg)
	if err := hello.unmarshal(msg); err != nil {
		if err == errPSKNotLast {
			return nil, protoErr(alertIllegalParameter, "%v", err)
		}
		return nil, protoErr(alertDecodeError, "ClientHello: %v", err)
	}
	return hello, nil
}

func (c *Conn) pickVersion(hello *clientHelloMsg) (uint16, error) {
	var vers uint16
	if len(hello.supportedVersions) > 0 {
		for v := c.config.maxVersion(); v >= c.config.minVersion(); v-- {
			if slices.Contains(hello.supportedVersions, v) {
				vers = v
				break
			}
		}
	} else if hello.vers >= VersionTLS12 && c.config.supportsVersion(VersionTLS12) {
		vers = VersionTLS12
	}
	if vers == 0 {
		return 0, &handshakeError{alertProtocolVersion, fmt.Errorf("%w: no common protocol version", ErrNegotiation)}
	}
	if hello.scsvFallback && vers < c.config.maxVersion() {
		return 0, &handshakeError{alertInappropriateFallback, fmt.Errorf("%w: inappropriate fallback", ErrNegotiation)}
	}
	return vers, nil
}

// lookupPSK finds the key and hash for an identity. An unknown or
// over-long identity gets a random key, so that it fails later exactly as a
// wrong key does (RFC 4279 §2).
func (c *Conn) lookupPSK(identity []byte) (psk []byte, h crypto.Hash, known bool, err error) {
	h = crypto.SHA256
	if len(identity) > 0 && len(identity) <= c.config.maxIdentityLength() {
		if hs, ok := c.config.Keys.(KeyHashStore); ok {
			var hh crypto.Hash
			psk, hh, known = hs.LookupPSKHash(string(identity))
			if known && (hh == crypto.SHA256 || hh == crypto.SHA384) {
				h = hh
			}
		} else {
			psk, known = c.config.Keys.LookupPSK(string(identity))
		}
		if known && len(psk) == 0 {
			known = false
		}
	}
	if !known {
		psk, err = randomBytes(c.config.rand(), 32)
	}
	return psk, h, known, err
}

func keyFailure(known bool) error {
	if !known {
		return &handshakeError{alertDecryptError, ErrUnknownIdentity}
	}
	return &handshakeError{alertDecryptError, ErrBadKey}
}

// ---- TLS 1.2 ----

type serverHandshake12 struct {
	c            *Conn
	hello        *clientHelloMsg
	suite        *cipherSuite
	group        CurveID
	ecdheKey     *ecdh.PrivateKey
	serverRandom []byte
	ts           transcript
	ems          bool
	master       []byte
	identity     string
	known        bool
	writeKeys    recordAEAD
}

func (hs *serverHandshake12) handshake() error {
	for _, step := range []func() error{
		hs.processClientHello,
		hs.sendServerFlight,
		hs.readClientKeyExchange,
		hs.readClientFinished,
		hs.sendServerFinished,
	} {
		if err := step(); err != nil {
			return err
		}
	}
	clear(hs.master)
	hs.c.setState(VersionTLS12, hs.suite, hs.identity)
	return nil
}

func (hs *serverHandshake12) processClientHello() error {
	c, hello := hs.c, hs.hello
	if !slices.Contains(hello.compressionMethods, 0) {
		return protoErr(alertIllegalParameter, "client does not offer null compression")
	}
	if hello.secureRenegotiationExt && len(hello.secureRenegotiation) != 0 {
		return &handshakeError{alertHandshakeFailure, fmt.Errorf("%w: renegotiation_info not empty", ErrRenegotiation)}
	}
	hs.ems = hello.extendedMasterSecret
	if !hs.ems && !c.config.AllowLegacyMasterSecret {
		return &handshakeError{alertHandshakeFailure, fmt.Errorf("%w: client lacks extended_master_secret", ErrNegotiation)}
	}
	for _, s := range c.config.suites(VersionTLS12) {
		if !hasSuite(hello.cipherSuites, s.id) {
			continue
		}
		if s.ecdhe {
			if hello.hasSupportedPoints && !slices.Contains(hello.supportedPoints, pointFormatUncompressed) {
				continue
			}
			hs.group = 0
			for _, g := range c.config.curves() {
				if slices.Contains(hello.supportedGroups, g) {
					hs.group = g
					break
				}
			}
			if hs.group == 0 {
				continue
			}
		}
		hs.suite = s
		break
	}
	if hs.suite == nil {
		return &handshakeError{alertHandshakeFailure, fmt.Errorf("%w: no common TLS 1.2 PSK cipher suite", ErrNegotiation)}
	}
	hs.ts.setHash(hs.suite.hash)
	hs.ts.Write(hello.raw)
	c.setState(VersionTLS12, hs.suite, "")
	return nil
}

func (hs *serverHandshake12) sendServerFlight() error {
	c, hello := hs.c, hs.hello
	var err error
	if hs.serverRandom, err = randomBytes(c.config.rand(), 32); err != nil {
		return err
	}
	if c.config.maxVersion() >= VersionTLS13 {
		copy(hs.serverRandom[24:], downgradeTLS12)
	}
	sh := serverHelloMsg{
		vers:                         VersionTLS12,
		random:                       hs.serverRandom,
		cipherSuite:                  hs.suite.id,
		secureRenegotiationSupported: hello.secureRenegotiationExt || hello.scsvRenegotiation,
		extendedMasterSecret:         hs.ems,
	}
	if hs.suite.ecdhe && hello.hasSupportedPoints {
		sh.supportedPoints = []uint8{pointFormatUncompressed}
	}
	sh.hasExtensions = sh.secureRenegotiationSupported || sh.extendedMasterSecret || len(sh.supportedPoints) > 0
	msgs := [][]byte{sh.marshal()}
	if hs.suite.ecdhe {
		if hs.ecdheKey, err = generateKey(hs.group, c.config.rand()); err != nil {
			return err
		}
		ske := serverKeyExchangeMsg{hint: []byte(c.config.IdentityHint), ecdhe: true, group: hs.group, public: hs.ecdheKey.PublicKey().Bytes()}
		msgs = append(msgs, ske.marshal())
	} else if c.config.IdentityHint != "" {
		ske := serverKeyExchangeMsg{hint: []byte(c.config.IdentityHint)}
		msgs = append(msgs, ske.marshal())
	}
	msgs = append(msgs, emptyMsg(typeServerHelloDone))
	for _, m := range msgs {
		hs.ts.Write(m)
	}
	c.out.Lock()
	c.recordVersion = VersionTLS12
	c.out.Unlock()
	if err := c.writeHandshake(msgs...); err != nil {
		return err
	}
	return c.flush()
}

func (hs *serverHandshake12) readClientKeyExchange() error {
	c := hs.c
	msg, err := c.readHandshake()
	if err != nil {
		return err
	}
	if err := expectMessage(msg, typeClientKeyExchange, "ClientKeyExchange"); err != nil {
		return err
	}
	var cke clientKeyExchangeMsg
	if err := cke.unmarshal(msg, hs.suite.ecdhe); err != nil {
		return protoErr(alertDecodeError, "ClientKeyExchange")
	}
	var z []byte
	if hs.suite.ecdhe {
		if z, err = sharedSecret(hs.ecdheKey, cke.public); err != nil {
			return err
		}
	}
	psk, _, known, err := c.lookupPSK(cke.identity)
	if err != nil {
		return err
	}
	hs.known, hs.identity = known, string(cke.identity)
	premaster := pskPremaster(z, len(psk), psk)
	clear(psk)
	clear(z)
	hs.ts.Write(cke.raw)
	if hs.ems {
		hs.master = extendedMasterSecret12(hs.suite.hash, premaster, hs.ts.Sum())
	} else {
		hs.master = masterSecret12(hs.suite.hash, premaster, hs.hello.random, hs.serverRandom)
	}
	clear(premaster)
	cKey, sKey, cIV, sIV := keys12(hs.suite, hs.master, hs.hello.random, hs.serverRandom)
	c.in.suite = hs.suite
	c.in.pending = hs.suite.aead(cKey, cIV, false)
	hs.writeKeys = hs.suite.aead(sKey, sIV, false)
	return nil
}

func (hs *serverHandshake12) readClientFinished() error {
	c := hs.c
	for c.in.pending != nil {
		if err := c.readRecord(); err != nil {
			return err
		}
	}
	msg, err := c.readHandshake()
	if err != nil {
		// The client's Finished is the first record under the new keys: a
		// wrong (or made-up) PSK shows up as a record that fails to decrypt.
		var he *handshakeError
		if asHandshakeError(err, &he) && he.alert == alertBadRecordMAC {
			return keyFailure(hs.known)
		}
		return err
	}
	if err := expectMessage(msg, typeFinished, "Finished"); err != nil {
		return err
	}
	var fin finishedMsg
	if err := fin.unmarshal(msg); err != nil {
		return protoErr(alertDecodeError, "Finished")
	}
	want := finished12(hs.suite.hash, hs.master, "client finished", hs.ts.Sum())
	if !hmac.Equal(want, fin.verifyData) || !hs.known {
		return keyFailure(hs.known)
	}
	if len(c.hand) > 0 {
		return protoErr(alertUnexpectedMessage, "data after Finished")
	}
	hs.ts.Write(fin.raw)
	return nil
}

func (hs *serverHandshake12) sendServerFinished() error {
	c := hs.c
	fin := finishedMsg{verifyData: finished12(hs.suite.hash, hs.master, "server finished", hs.ts.Sum())}
	c.out.Lock()
	defer c.out.Unlock()
	if err := c.writeRecordLocked(recordTypeChangeCipherSpec, []byte{1}); err != nil {
		return err
	}
	c.out.setKeys(VersionTLS12, hs.suite, hs.writeKeys, nil)
	if err := c.writeRecordLocked(recordTypeHandshake, fin.marshal()); err != nil {
		return err
	}
	return c.flushLocked()
}

// ---- TLS 1.3 ----

type serverHandshake13 struct {
	c           *Conn
	hello       *clientHelloMsg
	suite       *cipherSuite
	group       CurveID
	clientShare []byte
	pskIndex    int
	psk         []byte
	pskHash     crypto.Hash
	identity    string
	known       bool
	sentHRR     bool
	prefix      []byte // transcript before the current ClientHello (after HRR)
	ts          transcript
	early       []byte
	hsSecret    []byte
	cHS, sHS    []byte
	cAP, sAP    []byte
}

func (hs *serverHandshake13) handshake() error {
	for _, step := range []func() error{
		hs.processClientHello,
		hs.verifyBinder,
		hs.sendServerHello,
		hs.sendServerFinished,
		hs.readClientFinished,
	} {
		if err := step(); err != nil {
			return err
		}
	}
	for _, s := range [][]byte{hs.psk, hs.early, hs.hsSecret, hs.cHS, hs.sHS} {
		clear(s)
	}
	hs.c.setState(VersionTLS13, hs.suite, hs.identity)
	return nil
}

// processClientHello picks the PSK, suite and group, and sends a
// HelloRetryRequest when the client's shares do not fit.
func (hs *serverHandshake13) processClientHello() error {
	c, hello := hs.c, hs.hello
	c.ccsAllowed = true
	if len(hello.compressionMethods) != 1 || hello.compressionMethods[0] != 0 {
		return protoErr(alertIllegalParameter, "TLS 1.3 ClientHello with compression")
	}
	if hello.secureRenegotiationExt && len(hello.secureRenegotiation) != 0 {
		return protoErr(alertHandshakeFailure, "renegotiation_info not empty")
	}
	if len(hello.pskIdentities) == 0 {
		return &handshakeError{alertHandshakeFailure, fmt.Errorf("%w: client offers no PSK", ErrNegotiation)}
	}
	if !hello.hasPSKModes {
		return &handshakeError{alertMissingExtension, fmt.Errorf("%w: pre_shared_key without psk_key_exchange_modes", ErrProtocol)}
	}
	if !slices.Contains(hello.pskModes, pskModeDHE) {
		return &handshakeError{alertHandshakeFailure, fmt.Errorf("%w: client offers only psk_ke, psk_dhe_ke is required", ErrNegotiation)}
	}
	if len(hello.pskBinders) != len(hello.pskIdentities) {
		return protoErr(alertIllegalParameter, "binder count does not match identities")
	}
	if !hello.hasKeyShares || len(hello.supportedGroups) == 0 {
		return &handshakeError{alertMissingExtension, fmt.Errorf("%w: key_share and supported_groups are required", ErrProtocol)}
	}
	if err := hs.pickPSK(); err != nil {
		return err
	}
	for _, s := range c.config.suites(VersionTLS13) {
		if s.hash == hs.pskHash && hasSuite(hello.cipherSuites, s.id) {
			hs.suite = s
			break
		}
	}
	if hs.suite == nil {
		return &handshakeError{alertHandshakeFailure, fmt.Errorf("%w: no common TLS 1.3 cipher suite for the PSK's hash", ErrNegotiation)}
	}
	c.setState(VersionTLS13, hs.suite, "")
	for _, ks := range hello.keyShares {
		if !slices.Contains(hello.supportedGroups, ks.group) {
			return protoErr(alertIllegalParameter, "key share for a group not in supported_groups")
		}
	}
	for _, g := range c.config.curves() {
		for _, ks := range hello.keyShares {
			if ks.group == g {
				hs.group, hs.clientShare = g, ks.data
				return nil
			}
		}
	}
	for _, g := range c.config.curves() {
		if slices.Contains(hello.supportedGroups, g) {
			hs.group = g
			return hs.helloRetryRequest()
		}
	}
	return &handshakeError{alertHandshakeFailure, fmt.Errorf("%w: no common group", ErrNegotiation)}
}

// pickPSK takes the first external identity (obfuscated_ticket_age 0);
// only one identity is ever looked up, so one ClientHello cannot probe many.
func (hs *serverHandshake13) pickPSK() error {
	hs.pskIndex = 0
	for i, id := range hs.hello.pskIdentities {
		if id.age == 0 {
			hs.pskIndex = i
			break
		}
	}
	id := hs.hello.pskIdentities[hs.pskIndex]
	var err error
	hs.psk, hs.pskHash, hs.known, err = hs.c.lookupPSK(id.label)
	hs.identity = string(id.label)
	return err
}

func (hs *serverHandshake13) helloRetryRequest() error {
	c := hs.c
	if hs.hello.earlyData {
		c.earlyDataSkip = maxEarlyDataSkip
	}
	hrr := serverHelloMsg{
		vers:             VersionTLS12,
		random:           helloRetryRequestRandom,
		sessionID:        hs.hello.sessionID,
		cipherSuite:      hs.suite.id,
		hasExtensions:    true,
		supportedVersion: VersionTLS13,
		selectedGroup:    hs.group,
	}
	h := hs.suite.hash.New()
	h.Write(hs.hello.raw)
	hs.prefix = append(messageHash(h.Sum(nil)), hrr.marshal()...)
	hs.sentHRR = true
	c.didHRR = true
	if err := c.writeHandshake(hrr.raw); err != nil {
		return err
	}
	if len(hs.hello.sessionID) > 0 {
		if err := c.writeCCS(); err != nil {
			return err
		}
	}
	if err := c.flush(); err != nil {
		return err
	}

	msg, err := c.readHandshake()
	if err != nil {
		return err
	}
	hello, err := parseClientHello(msg)
	if err != nil {
		return err
	}
	if !slices.Contains(hello.supportedVersions, VersionTLS13) || !hasSuite(hello.cipherSuites, hs.suite.id) ||
		!bytes.Equal(hello.sessionID, hs.hello.sessionID) || hello.earlyData || len(hello.cookie) > 0 {
		return protoErr(alertIllegalParameter, "second ClientHello does not match the first")
	}
	if len(hello.keyShares) != 1 || hello.keyShares[0].group != hs.group {
		return protoErr(alertIllegalParameter, "second ClientHello lacks the requested key share")
	}
	if len(hello.pskIdentities) == 0 || !hello.hasPSKModes || !slices.Contains(hello.pskModes, pskModeDHE) ||
		len(hello.pskBinders) != len(hello.pskIdentities) {
		return protoErr(alertIllegalParameter, "second ClientHello changed its PSK offer")
	}
	first := hs.identity
	hs.hello = hello
	clear(hs.psk)
	if err := hs.pickPSK(); err != nil {
		return err
	}
	if hs.identity != first {
		return protoErr(alertIllegalParameter, "second ClientHello changed its PSK identity")
	}
	hs.clientShare = hello.keyShares[0].data
	return nil
}

// verifyBinder checks the PSK binder in constant time. Unknown identities
// were given a random key, so they fail here like wrong keys.
func (hs *serverHandshake13) verifyBinder() error {
	h := hs.suite.hash
	hs.early = earlySecret(h, hs.psk)
	th := h.New()
	th.Write(hs.prefix)
	th.Write(hs.hello.truncated())
	want := finishedMAC(h, extBinderKey(h, hs.early), th.Sum(nil))
	if !hmac.Equal(want, hs.hello.pskBinders[hs.pskIndex]) || !hs.known {
		return keyFailure(hs.known)
	}
	hs.ts.setHash(h)
	hs.ts.Write(hs.prefix)
	hs.ts.Write(hs.hello.raw)
	return nil
}

func (hs *serverHandshake13) sendServerHello() error {
	c := hs.c
	key, err := generateKey(hs.group, c.config.rand())
	if err != nil {
		return err
	}
	shared, err := sharedSecret(key, hs.clientShare)
	if err != nil {
		return err
	}
	random, err := randomBytes(c.config.rand(), 32)
	if err != nil {
		return err
	}
	sh := serverHelloMsg{
		vers:                    VersionTLS12,
		random:                  random,
		sessionID:               hs.hello.sessionID,
		cipherSuite:             hs.suite.id,
		hasExtensions:           true,
		supportedVersion:        VersionTLS13,
		serverShare:             keyShare{group: hs.group, data: key.PublicKey().Bytes()},
		selectedIdentityPresent: true,
		selectedIdentity:        uint16(hs.pskIndex),
	}
	hs.ts.Write(sh.marshal())
	if err := c.writeHandshake(sh.raw); err != nil {
		return err
	}
	if !hs.sentHRR && len(hs.hello.sessionID) > 0 {
		if err := c.writeCCS(); err != nil {
			return err
		}
	}
	h := hs.suite.hash
	hs.hsSecret = handshakeSecret(h, hs.early, shared)
	clear(shared)
	hs.cHS = deriveSecret(h, hs.hsSecret, "c hs traffic", hs.ts.Sum())
	hs.sHS = deriveSecret(h, hs.hsSecret, "s hs traffic", hs.ts.Sum())
	c.out.Lock()
	c.out.setTrafficSecret13(hs.suite, hs.sHS)
	c.out.Unlock()
	if len(c.hand) > 0 {
		return protoErr(alertUnexpectedMessage, "data after ClientHello")
	}
	c.in.setTrafficSecret13(hs.suite, hs.cHS)
	if hs.hello.earlyData && !hs.sentHRR {
		c.earlyDataSkip = maxEarlyDataSkip
	} else {
		c.earlyDataSkip = 0
	}
	return nil
}

func (hs *serverHandshake13) sendServerFinished() error {
	c := hs.c
	h := hs.suite.hash
	var ee encryptedExtensionsMsg
	hs.ts.Write(ee.marshal())
	fin := finishedMsg{verifyData: finishedMAC(h, hs.sHS, hs.ts.Sum())}
	hs.ts.Write(fin.marshal())
	if err := c.writeHandshake(ee.raw, fin.raw); err != nil {
		return err
	}
	if err := c.flush(); err != nil {
		return err
	}
	master := masterSecret13(h, hs.hsSecret)
	hs.cAP = deriveSecret(h, master, "c ap traffic", hs.ts.Sum())
	hs.sAP = deriveSecret(h, master, "s ap traffic", hs.ts.Sum())
	clear(master)
	c.out.Lock()
	c.out.setTrafficSecret13(hs.suite, hs.sAP)
	c.out.Unlock()
	return nil
}

func (hs *serverHandshake13) readClientFinished() error {
	c := hs.c
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
	if !hmac.Equal(finishedMAC(hs.suite.hash, hs.cHS, hs.ts.Sum()), fin.verifyData) {
		return &handshakeError{alertDecryptError, fmt.Errorf("%w: client Finished", ErrBadKey)}
	}
	if len(c.hand) > 0 {
		return protoErr(alertUnexpectedMessage, "data after Finished")
	}
	c.ccsAllowed = false
	c.in.setTrafficSecret13(hs.suite, hs.cAP)
	return nil
}
