package tlspsk

import (
	"crypto/sha256"
	"errors"

	"golang.org/x/crypto/cryptobyte"
)

// This file holds the handshake messages: their encoding and decoding, and
// nothing else (no state, no I/O). Each unmarshal takes a whole message,
// 4-byte header included, and keeps it in raw.

// Handshake message types.
const (
	typeHelloRequest        uint8 = 0
	typeClientHello         uint8 = 1
	typeServerHello         uint8 = 2
	typeNewSessionTicket    uint8 = 4
	typeEndOfEarlyData      uint8 = 5
	typeEncryptedExtensions uint8 = 8
	typeCertificate         uint8 = 11
	typeServerKeyExchange   uint8 = 12
	typeCertificateRequest  uint8 = 13
	typeServerHelloDone     uint8 = 14
	typeCertificateVerify   uint8 = 15
	typeClientKeyExchange   uint8 = 16
	typeFinished            uint8 = 20
	typeKeyUpdate           uint8 = 24
	typeMessageHash         uint8 = 254
)

// Extension types.
const (
	extServerName           uint16 = 0
	extSupportedGroups      uint16 = 10
	extPointFormats         uint16 = 11
	extSignatureAlgorithms  uint16 = 13
	extALPN                 uint16 = 16
	extExtendedMasterSecret uint16 = 23
	extPreSharedKey         uint16 = 41
	extEarlyData            uint16 = 42
	extSupportedVersions    uint16 = 43
	extCookie               uint16 = 44
	extPSKModes             uint16 = 45
	extKeyShare             uint16 = 51
	extRenegotiationInfo    uint16 = 0xff01
)

const (
	pskModeKE  uint8 = 0
	pskModeDHE uint8 = 1

	scsvRenegotiation uint16 = 0x00ff
	scsvFallback      uint16 = 0x5600

	pointFormatUncompressed uint8 = 0
	curveTypeNamed          uint8 = 3
)

var (
	errDecode       = errors.New("malformed handshake message")
	errDuplicateExt = errors.New("duplicate extension")
	errPSKNotLast   = errors.New("pre_shared_key is not the last extension")
)

// helloRetryRequestRandom is SHA-256("HelloRetryRequest") (RFC 8446 §4.1.3).
var helloRetryRequestRandom = func() []byte {
	h := sha256.Sum256([]byte("HelloRetryRequest"))
	return h[:]
}()

// downgradeTLS12 ends a TLS 1.2 ServerHello.random from a TLS 1.3 server.
var downgradeTLS12 = []byte("DOWNGRD\x01")

type keyShare struct {
	group CurveID
	data  []byte
}

type pskIdentity struct {
	label []byte
	age   uint32
}

func readUint8Bytes(s *cryptobyte.String, out *[]byte) bool {
	var v cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&v) {
		return false
	}
	*out = append([]byte(nil), v...)
	return true
}

func readUint16Bytes(s *cryptobyte.String, out *[]byte) bool {
	var v cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&v) {
		return false
	}
	*out = append([]byte(nil), v...)
	return true
}

// readMessage strips the handshake header of a message of type typ.
func readMessage(data []byte, typ uint8) (cryptobyte.String, bool) {
	s := cryptobyte.String(data)
	var t uint8
	var body cryptobyte.String
	if !s.ReadUint8(&t) || t != typ || !s.ReadUint24LengthPrefixed(&body) || !s.Empty() {
		return nil, false
	}
	return body, true
}

func buildMessage(typ uint8, f func(b *cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	b.AddUint8(typ)
	b.AddUint24LengthPrefixed(f)
	return b.BytesOrPanic()
}

// ---- ClientHello ----

type clientHelloMsg struct {
	raw                []byte
	vers               uint16
	random             []byte
	sessionID          []byte
	cipherSuites       []uint16
	compressionMethods []uint8
	hasExtensions      bool

	serverName              string
	supportedGroups         []CurveID
	supportedPoints         []uint8
	hasSupportedPoints      bool
	extendedMasterSecret    bool
	secureRenegotiationExt  bool // renegotiation_info extension present
	secureRenegotiation     []byte
	scsvRenegotiation       bool // TLS_EMPTY_RENEGOTIATION_INFO_SCSV offered
	scsvFallback            bool
	supportedVersions       []uint16
	hasKeyShares            bool
	keyShares               []keyShare
	pskModes                []uint8
	hasPSKModes             bool
	pskIdentities           []pskIdentity
	pskBinders              [][]byte
	bindersLen              int // bytes of the binders list (with its length) at the end of raw
	earlyData               bool
	cookie                  []byte
	signatureAlgorithmsSent bool

	// Sent by the certificate-mode client only; the server does not
	// decode them (it has no use for them).
	signatureAlgorithms []uint16
	alpnProtocols       []string
}

func (m *clientHelloMsg) marshal() []byte {
	raw := buildMessage(typeClientHello, func(b *cryptobyte.Builder) {
		b.AddUint16(m.vers)
		b.AddBytes(m.random)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.sessionID) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, s := range m.cipherSuites {
				b.AddUint16(s)
			}
		})
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.compressionMethods) })
		if !m.hasExtensions {
			return
		}
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			if m.serverName != "" {
				addExt(b, extServerName, func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						b.AddUint8(0)
						b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(m.serverName)) })
					})
				})
			}
			if m.hasSupportedPoints {
				addExt(b, extPointFormats, func(b *cryptobyte.Builder) {
					b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.supportedPoints) })
				})
			}
			if len(m.supportedGroups) > 0 {
				addExt(b, extSupportedGroups, func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, g := range m.supportedGroups {
							b.AddUint16(uint16(g))
						}
					})
				})
			}
			if len(m.signatureAlgorithms) > 0 {
				addExt(b, extSignatureAlgorithms, func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, s := range m.signatureAlgorithms {
							b.AddUint16(s)
						}
					})
				})
			}
			if len(m.alpnProtocols) > 0 {
				addExt(b, extALPN, func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, p := range m.alpnProtocols {
							b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(p)) })
						}
					})
				})
			}
			if m.extendedMasterSecret {
				addExt(b, extExtendedMasterSecret, func(*cryptobyte.Builder) {})
			}
			if m.secureRenegotiationExt {
				addExt(b, extRenegotiationInfo, func(b *cryptobyte.Builder) {
					b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.secureRenegotiation) })
				})
			}
			if len(m.supportedVersions) > 0 {
				addExt(b, extSupportedVersions, func(b *cryptobyte.Builder) {
					b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, v := range m.supportedVersions {
							b.AddUint16(v)
						}
					})
				})
			}
			if m.hasPSKModes {
				addExt(b, extPSKModes, func(b *cryptobyte.Builder) {
					b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.pskModes) })
				})
			}
			if m.hasKeyShares {
				addExt(b, extKeyShare, func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, ks := range m.keyShares {
							b.AddUint16(uint16(ks.group))
							b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(ks.data) })
						}
					})
				})
			}
			if len(m.cookie) > 0 {
				addExt(b, extCookie, func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.cookie) })
				})
			}
			if m.earlyData {
				addExt(b, extEarlyData, func(*cryptobyte.Builder) {})
			}
			if len(m.pskIdentities) > 0 {
				addExt(b, extPreSharedKey, func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, id := range m.pskIdentities {
							b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(id.label) })
							b.AddUint32(id.age)
						}
					})
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, bd := range m.pskBinders {
							b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(bd) })
						}
					})
				})
			}
		})
	})
	m.raw = raw
	m.bindersLen = 0
	if len(m.pskIdentities) > 0 {
		m.bindersLen = 2
		for _, bd := range m.pskBinders {
			m.bindersLen += 1 + len(bd)
		}
	}
	return raw
}

// truncated returns the ClientHello up to (excluding) the binders list.
func (m *clientHelloMsg) truncated() []byte { return m.raw[:len(m.raw)-m.bindersLen] }

// setBinders overwrites the binders in raw; they must keep their lengths.
func (m *clientHelloMsg) setBinders(binders [][]byte) {
	off := len(m.raw) - m.bindersLen + 2
	for i, bd := range binders {
		off++
		copy(m.raw[off:], bd)
		off += len(bd)
		m.pskBinders[i] = bd
	}
}

func addExt(b *cryptobyte.Builder, typ uint16, f func(b *cryptobyte.Builder)) {
	b.AddUint16(typ)
	b.AddUint16LengthPrefixed(f)
}

func (m *clientHelloMsg) unmarshal(data []byte) error {
	*m = clientHelloMsg{raw: data}
	body, ok := readMessage(data, typeClientHello)
	if !ok || !body.ReadUint16(&m.vers) || !body.ReadBytes(&m.random, 32) ||
		!readUint8Bytes(&body, &m.sessionID) || len(m.sessionID) > 32 {
		return errDecode
	}
	m.random = append([]byte(nil), m.random...)
	var suites cryptobyte.String
	if !body.ReadUint16LengthPrefixed(&suites) || suites.Empty() || len(suites)%2 != 0 {
		return errDecode
	}
	for !suites.Empty() {
		var s uint16
		suites.ReadUint16(&s)
		switch s {
		case scsvRenegotiation:
			m.scsvRenegotiation = true
		case scsvFallback:
			m.scsvFallback = true
		}
		m.cipherSuites = append(m.cipherSuites, s)
	}
	if !readUint8Bytes(&body, &m.compressionMethods) || len(m.compressionMethods) == 0 {
		return errDecode
	}
	if body.Empty() {
		return nil
	}
	m.hasExtensions = true
	var exts cryptobyte.String
	if !body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return errDecode
	}
	seen := make(map[uint16]bool)
	for !exts.Empty() {
		var typ uint16
		var e cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&e) {
			return errDecode
		}
		if seen[typ] {
			return errDuplicateExt
		}
		seen[typ] = true
		if typ == extPreSharedKey && !exts.Empty() {
			return errPSKNotLast
		}
		if !m.parseExtension(typ, e) {
			return errDecode
		}
	}
	return nil
}

// parseExtension decodes one ClientHello extension.
func (m *clientHelloMsg) parseExtension(typ uint16, e cryptobyte.String) bool {
	switch typ {
	case extServerName:
		var list cryptobyte.String
		if !e.ReadUint16LengthPrefixed(&list) || list.Empty() {
			return false
		}
		for !list.Empty() {
			var nameType uint8
			var name cryptobyte.String
			if !list.ReadUint8(&nameType) || !list.ReadUint16LengthPrefixed(&name) || name.Empty() {
				return false
			}
			if nameType == 0 && m.serverName == "" {
				m.serverName = string(name)
			}
		}
	case extSupportedGroups:
		var list cryptobyte.String
		if !e.ReadUint16LengthPrefixed(&list) || list.Empty() || len(list)%2 != 0 {
			return false
		}
		for !list.Empty() {
			var g uint16
			list.ReadUint16(&g)
			m.supportedGroups = append(m.supportedGroups, CurveID(g))
		}
	case extPointFormats:
		m.hasSupportedPoints = true
		if !readUint8Bytes(&e, &m.supportedPoints) || len(m.supportedPoints) == 0 {
			return false
		}
	case extSignatureAlgorithms:
		m.signatureAlgorithmsSent = true
		e = nil // not used: no certificates
	case extExtendedMasterSecret:
		m.extendedMasterSecret = true
	case extRenegotiationInfo:
		m.secureRenegotiationExt = true
		if !readUint8Bytes(&e, &m.secureRenegotiation) {
			return false
		}
	case extSupportedVersions:
		var list cryptobyte.String
		if !e.ReadUint8LengthPrefixed(&list) || list.Empty() || len(list)%2 != 0 {
			return false
		}
		for !list.Empty() {
			var v uint16
			list.ReadUint16(&v)
			m.supportedVersions = append(m.supportedVersions, v)
		}
	case extKeyShare:
		m.hasKeyShares = true
		var list cryptobyte.String
		if !e.ReadUint16LengthPrefixed(&list) {
			return false
		}
		for !list.Empty() {
			var ks keyShare
			var g uint16
			if !list.ReadUint16(&g) || !readUint16Bytes(&list, &ks.data) || len(ks.data) == 0 {
				return false
			}
			ks.group = CurveID(g)
			m.keyShares = append(m.keyShares, ks)
		}
	case extPSKModes:
		m.hasPSKModes = true
		if !readUint8Bytes(&e, &m.pskModes) || len(m.pskModes) == 0 {
			return false
		}
	case extEarlyData:
		m.earlyData = true
	case extCookie:
		if !readUint16Bytes(&e, &m.cookie) || len(m.cookie) == 0 {
			return false
		}
	case extPreSharedKey:
		var ids, binders cryptobyte.String
		if !e.ReadUint16LengthPrefixed(&ids) || ids.Empty() {
			return false
		}
		m.bindersLen = len(e)
		if !e.ReadUint16LengthPrefixed(&binders) || binders.Empty() {
			return false
		}
		for !ids.Empty() {
			var id pskIdentity
			if !readUint16Bytes(&ids, &id.label) || len(id.label) == 0 || !ids.ReadUint32(&id.age) {
				return false
			}
			m.pskIdentities = append(m.pskIdentities, id)
		}
		for !binders.Empty() {
			var bd []byte
			if !readUint8Bytes(&binders, &bd) || len(bd) < 32 {
				return false
			}
			m.pskBinders = append(m.pskBinders, bd)
		}
	default:
		return true // unknown extensions are ignored
	}
	return e.Empty()
}

// ---- ServerHello (and HelloRetryRequest) ----

type serverHelloMsg struct {
	raw               []byte
	vers              uint16
	random            []byte
	sessionID         []byte
	cipherSuite       uint16
	compressionMethod uint8
	hasExtensions     bool

	supportedVersion             uint16
	serverShare                  keyShare // ServerHello
	selectedGroup                CurveID  // HelloRetryRequest
	selectedIdentityPresent      bool
	selectedIdentity             uint16
	extendedMasterSecret         bool
	secureRenegotiationSupported bool
	secureRenegotiation          []byte
	supportedPoints              []uint8
	cookie                       []byte
	otherExtensions              []uint16 // types this package does not know
}

func (m *serverHelloMsg) isHelloRetryRequest() bool {
	return string(m.random) == string(helloRetryRequestRandom)
}

func (m *serverHelloMsg) marshal() []byte {
	hrr := m.isHelloRetryRequest()
	m.raw = buildMessage(typeServerHello, func(b *cryptobyte.Builder) {
		b.AddUint16(m.vers)
		b.AddBytes(m.random)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.sessionID) })
		b.AddUint16(m.cipherSuite)
		b.AddUint8(m.compressionMethod)
		if !m.hasExtensions {
			return
		}
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			if m.secureRenegotiationSupported {
				addExt(b, extRenegotiationInfo, func(b *cryptobyte.Builder) {
					b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.secureRenegotiation) })
				})
			}
			if m.extendedMasterSecret {
				addExt(b, extExtendedMasterSecret, func(*cryptobyte.Builder) {})
			}
			if len(m.supportedPoints) > 0 {
				addExt(b, extPointFormats, func(b *cryptobyte.Builder) {
					b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.supportedPoints) })
				})
			}
			if m.supportedVersion != 0 {
				addExt(b, extSupportedVersions, func(b *cryptobyte.Builder) { b.AddUint16(m.supportedVersion) })
			}
			if hrr && m.selectedGroup != 0 {
				addExt(b, extKeyShare, func(b *cryptobyte.Builder) { b.AddUint16(uint16(m.selectedGroup)) })
			}
			if !hrr && m.serverShare.group != 0 {
				addExt(b, extKeyShare, func(b *cryptobyte.Builder) {
					b.AddUint16(uint16(m.serverShare.group))
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.serverShare.data) })
				})
			}
			if len(m.cookie) > 0 {
				addExt(b, extCookie, func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.cookie) })
				})
			}
			if m.selectedIdentityPresent {
				addExt(b, extPreSharedKey, func(b *cryptobyte.Builder) { b.AddUint16(m.selectedIdentity) })
			}
		})
	})
	return m.raw
}

func (m *serverHelloMsg) unmarshal(data []byte) error {
	*m = serverHelloMsg{raw: data}
	body, ok := readMessage(data, typeServerHello)
	if !ok || !body.ReadUint16(&m.vers) || !body.ReadBytes(&m.random, 32) ||
		!readUint8Bytes(&body, &m.sessionID) || len(m.sessionID) > 32 ||
		!body.ReadUint16(&m.cipherSuite) || !body.ReadUint8(&m.compressionMethod) {
		return errDecode
	}
	m.random = append([]byte(nil), m.random...)
	if body.Empty() {
		return nil
	}
	m.hasExtensions = true
	hrr := m.isHelloRetryRequest()
	var exts cryptobyte.String
	if !body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return errDecode
	}
	seen := make(map[uint16]bool)
	for !exts.Empty() {
		var typ uint16
		var e cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&e) {
			return errDecode
		}
		if seen[typ] {
			return errDuplicateExt
		}
		seen[typ] = true
		switch typ {
		case extSupportedVersions:
			if !e.ReadUint16(&m.supportedVersion) {
				return errDecode
			}
		case extKeyShare:
			var g uint16
			if !e.ReadUint16(&g) {
				return errDecode
			}
			if hrr {
				m.selectedGroup = CurveID(g)
			} else {
				m.serverShare.group = CurveID(g)
				if !readUint16Bytes(&e, &m.serverShare.data) || len(m.serverShare.data) == 0 {
					return errDecode
				}
			}
		case extPreSharedKey:
			m.selectedIdentityPresent = true
			if !e.ReadUint16(&m.selectedIdentity) {
				return errDecode
			}
		case extExtendedMasterSecret:
			m.extendedMasterSecret = true
		case extRenegotiationInfo:
			m.secureRenegotiationSupported = true
			if !readUint8Bytes(&e, &m.secureRenegotiation) {
				return errDecode
			}
		case extPointFormats:
			if !readUint8Bytes(&e, &m.supportedPoints) || len(m.supportedPoints) == 0 {
				return errDecode
			}
		case extCookie:
			if !readUint16Bytes(&e, &m.cookie) || len(m.cookie) == 0 {
				return errDecode
			}
		default:
			m.otherExtensions = append(m.otherExtensions, typ)
			continue
		}
		if !e.Empty() {
			return errDecode
		}
	}
	return nil
}

// ---- EncryptedExtensions ----

type encryptedExtensionsMsg struct {
	raw        []byte
	extensions []uint16 // types received, in order
	groups     []CurveID
	alpn       string // the selected protocol, when extALPN was received
	malformed  bool   // an ALPN or server_name extension did not parse
}

func (m *encryptedExtensionsMsg) marshal() []byte {
	m.raw = buildMessage(typeEncryptedExtensions, func(b *cryptobyte.Builder) {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			if len(m.groups) > 0 {
				addExt(b, extSupportedGroups, func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						for _, g := range m.groups {
							b.AddUint16(uint16(g))
						}
					})
				})
			}
		})
	})
	return m.raw
}

func (m *encryptedExtensionsMsg) unmarshal(data []byte) error {
	*m = encryptedExtensionsMsg{raw: data}
	body, ok := readMessage(data, typeEncryptedExtensions)
	var exts cryptobyte.String
	if !ok || !body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return errDecode
	}
	seen := make(map[uint16]bool)
	for !exts.Empty() {
		var typ uint16
		var e cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&e) {
			return errDecode
		}
		if seen[typ] {
			return errDuplicateExt
		}
		seen[typ] = true
		m.extensions = append(m.extensions, typ)
		switch typ {
		case extSupportedGroups:
			var list cryptobyte.String
			if !e.ReadUint16LengthPrefixed(&list) || list.Empty() || len(list)%2 != 0 || !e.Empty() {
				return errDecode
			}
			for !list.Empty() {
				var g uint16
				list.ReadUint16(&g)
				m.groups = append(m.groups, CurveID(g))
			}
		case extALPN:
			// RFC 7301 §3.1: the server selects exactly one protocol. A
			// malformed one is flagged, not refused here: only the
			// certificate-mode client accepts the extension at all.
			var list, proto cryptobyte.String
			if !e.ReadUint16LengthPrefixed(&list) || !list.ReadUint8LengthPrefixed(&proto) ||
				proto.Empty() || !list.Empty() || !e.Empty() {
				m.malformed = true
			} else {
				m.alpn = string(proto)
			}
		case extServerName:
			m.malformed = m.malformed || !e.Empty() // the acknowledgement is empty
		}
	}
	return nil
}

// ---- certificate mode (TLS 1.3 client) ----

// certificateMsg is the TLS 1.3 Certificate (RFC 8446 §4.4.2). The
// per-entry extensions (OCSP, SCT) are skipped.
type certificateMsg struct {
	raw     []byte
	context []byte
	chain   [][]byte // DER, leaf first
}

func (m *certificateMsg) marshal() []byte {
	m.raw = buildMessage(typeCertificate, func(b *cryptobyte.Builder) {
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.context) })
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, c := range m.chain {
				b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c) })
				b.AddUint16(0) // no extensions
			}
		})
	})
	return m.raw
}

func (m *certificateMsg) unmarshal(data []byte) error {
	*m = certificateMsg{raw: data}
	body, ok := readMessage(data, typeCertificate)
	var list cryptobyte.String
	if !ok || !readUint8Bytes(&body, &m.context) || !body.ReadUint24LengthPrefixed(&list) || !body.Empty() {
		return errDecode
	}
	for !list.Empty() {
		var cert, exts cryptobyte.String
		if !list.ReadUint24LengthPrefixed(&cert) || cert.Empty() || !list.ReadUint16LengthPrefixed(&exts) {
			return errDecode
		}
		m.chain = append(m.chain, append([]byte(nil), cert...))
	}
	return nil
}

// certificateRequestMsg is the TLS 1.3 CertificateRequest (RFC 8446
// §4.3.2); only its context is kept, for the empty Certificate reply.
type certificateRequestMsg struct {
	raw     []byte
	context []byte
}

func (m *certificateRequestMsg) marshal() []byte {
	m.raw = buildMessage(typeCertificateRequest, func(b *cryptobyte.Builder) {
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.context) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			addExt(b, extSignatureAlgorithms, func(b *cryptobyte.Builder) {
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(SignatureECDSAP256SHA256) })
			})
		})
	})
	return m.raw
}

func (m *certificateRequestMsg) unmarshal(data []byte) error {
	*m = certificateRequestMsg{raw: data}
	body, ok := readMessage(data, typeCertificateRequest)
	var exts cryptobyte.String
	if !ok || !readUint8Bytes(&body, &m.context) || !body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return errDecode
	}
	for !exts.Empty() {
		var typ uint16
		var e cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&e) {
			return errDecode
		}
	}
	return nil
}

// certificateVerifyMsg is the TLS 1.3 CertificateVerify (RFC 8446 §4.4.3).
type certificateVerifyMsg struct {
	raw       []byte
	scheme    uint16
	signature []byte
}

func (m *certificateVerifyMsg) marshal() []byte {
	m.raw = buildMessage(typeCertificateVerify, func(b *cryptobyte.Builder) {
		b.AddUint16(m.scheme)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.signature) })
	})
	return m.raw
}

func (m *certificateVerifyMsg) unmarshal(data []byte) error {
	*m = certificateVerifyMsg{raw: data}
	body, ok := readMessage(data, typeCertificateVerify)
	if !ok || !body.ReadUint16(&m.scheme) || !readUint16Bytes(&body, &m.signature) ||
		len(m.signature) == 0 || !body.Empty() {
		return errDecode
	}
	return nil
}

// newSessionTicketMsg is the TLS 1.3 NewSessionTicket (RFC 8446 §4.6.1).
// Its extensions (early_data) are skipped: this package sends no 0-RTT.
type newSessionTicketMsg struct {
	raw      []byte
	lifetime uint32 // seconds
	ageAdd   uint32
	nonce    []byte
	ticket   []byte
}

func (m *newSessionTicketMsg) marshal() []byte {
	m.raw = buildMessage(typeNewSessionTicket, func(b *cryptobyte.Builder) {
		b.AddUint32(m.lifetime)
		b.AddUint32(m.ageAdd)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.nonce) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.ticket) })
		b.AddUint16(0) // no extensions
	})
	return m.raw
}

func (m *newSessionTicketMsg) unmarshal(data []byte) error {
	*m = newSessionTicketMsg{raw: data}
	body, ok := readMessage(data, typeNewSessionTicket)
	var exts cryptobyte.String
	if !ok || !body.ReadUint32(&m.lifetime) || !body.ReadUint32(&m.ageAdd) ||
		!readUint8Bytes(&body, &m.nonce) || !readUint16Bytes(&body, &m.ticket) || len(m.ticket) == 0 ||
		!body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return errDecode
	}
	for !exts.Empty() {
		var typ uint16
		var e cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&e) {
			return errDecode
		}
	}
	return nil
}

// ---- TLS 1.2 key exchange messages ----

// serverKeyExchangeMsg is the PSK (RFC 4279 §2) or ECDHE_PSK (RFC 5489 §2)
// ServerKeyExchange: an identity hint, then for ECDHE the server's
// ephemeral public key. There is no signature.
type serverKeyExchangeMsg struct {
	raw    []byte
	hint   []byte
	ecdhe  bool
	group  CurveID
	public []byte
}

func (m *serverKeyExchangeMsg) marshal() []byte {
	m.raw = buildMessage(typeServerKeyExchange, func(b *cryptobyte.Builder) {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.hint) })
		if m.ecdhe {
			b.AddUint8(curveTypeNamed)
			b.AddUint16(uint16(m.group))
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.public) })
		}
	})
	return m.raw
}

func (m *serverKeyExchangeMsg) unmarshal(data []byte, ecdhe bool) error {
	*m = serverKeyExchangeMsg{raw: data, ecdhe: ecdhe}
	body, ok := readMessage(data, typeServerKeyExchange)
	if !ok || !readUint16Bytes(&body, &m.hint) {
		return errDecode
	}
	if ecdhe {
		var ct uint8
		var g uint16
		if !body.ReadUint8(&ct) || ct != curveTypeNamed || !body.ReadUint16(&g) ||
			!readUint8Bytes(&body, &m.public) || len(m.public) == 0 {
			return errDecode
		}
		m.group = CurveID(g)
	}
	if !body.Empty() {
		return errDecode
	}
	return nil
}

// clientKeyExchangeMsg is the PSK / ECDHE_PSK ClientKeyExchange.
type clientKeyExchangeMsg struct {
	raw      []byte
	identity []byte
	ecdhe    bool
	public   []byte
}

func (m *clientKeyExchangeMsg) marshal() []byte {
	m.raw = buildMessage(typeClientKeyExchange, func(b *cryptobyte.Builder) {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.identity) })
		if m.ecdhe {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.public) })
		}
	})
	return m.raw
}

func (m *clientKeyExchangeMsg) unmarshal(data []byte, ecdhe bool) error {
	*m = clientKeyExchangeMsg{raw: data, ecdhe: ecdhe}
	body, ok := readMessage(data, typeClientKeyExchange)
	if !ok || !readUint16Bytes(&body, &m.identity) {
		return errDecode
	}
	if ecdhe && (!readUint8Bytes(&body, &m.public) || len(m.public) == 0) {
		return errDecode
	}
	if !body.Empty() {
		return errDecode
	}
	return nil
}

// ---- small messages ----

type finishedMsg struct {
	raw        []byte
	verifyData []byte
}

func (m *finishedMsg) marshal() []byte {
	m.raw = buildMessage(typeFinished, func(b *cryptobyte.Builder) { b.AddBytes(m.verifyData) })
	return m.raw
}

func (m *finishedMsg) unmarshal(data []byte) error {
	body, ok := readMessage(data, typeFinished)
	if !ok {
		return errDecode
	}
	*m = finishedMsg{raw: data, verifyData: append([]byte(nil), body...)}
	return nil
}

type keyUpdateMsg struct {
	raw             []byte
	updateRequested bool
}

func (m *keyUpdateMsg) marshal() []byte {
	m.raw = buildMessage(typeKeyUpdate, func(b *cryptobyte.Builder) {
		if m.updateRequested {
			b.AddUint8(1)
		} else {
			b.AddUint8(0)
		}
	})
	return m.raw
}

func (m *keyUpdateMsg) unmarshal(data []byte) error {
	body, ok := readMessage(data, typeKeyUpdate)
	var v uint8
	if !ok || !body.ReadUint8(&v) || !body.Empty() || v > 1 {
		return errDecode
	}
	*m = keyUpdateMsg{raw: data, updateRequested: v == 1}
	return nil
}

// emptyMsg is ServerHelloDone or HelloRequest: a header and no body.
func emptyMsg(typ uint8) []byte { return []byte{typ, 0, 0, 0} }

// messageHash is the synthetic message replacing ClientHello1 in the
// transcript after a HelloRetryRequest (RFC 8446 §4.4.1).
func messageHash(hash []byte) []byte {
	return append([]byte{typeMessageHash, 0, 0, byte(len(hash))}, hash...)
}
