package tlspsk

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
)

// PeekBufferSize is the bufio.Reader size PeekClientHello needs to see the
// largest ClientHello it accepts (maxHandshakeSize plus record headers).
const PeekBufferSize = maxHandshakeSize + 8<<10

// ClientHelloInfo summarizes a ClientHello for routing a connection on a
// shared port to crypto/tls or to this package.
type ClientHelloInfo struct {
	ServerName string
	// Versions the client offers (supported_versions, or its legacy version).
	Versions     []uint16
	CipherSuites []uint16
	// PSKIdentities are the external PSK identities (obfuscated_ticket_age
	// 0) offered in a TLS 1.3 pre_shared_key extension. Session tickets of
	// crypto/tls are not listed.
	PSKIdentities []string
	// TLS13PSK: the client offers TLS 1.3, an external PSK and psk_dhe_ke.
	TLS13PSK bool
	// OnlyPSKSuites: the client does not offer TLS 1.3 and every TLS 1.2
	// suite it offers uses a PSK key exchange.
	OnlyPSKSuites bool
}

// OffersPSK reports whether the connection belongs to this package rather
// than to certificate-based TLS.
func (i *ClientHelloInfo) OffersPSK() bool { return i.TLS13PSK || i.OnlyPSKSuites }

// PeekClientHello reads the first ClientHello from r without consuming it:
// later reads from r see every byte again. The hello may span several
// records and reads; r's buffer (see PeekBufferSize) bounds how much is
// read. Set a read deadline on the connection first.
func PeekClientHello(r *bufio.Reader) (*ClientHelloInfo, error) {
	return extractClientHello(func(n int) ([]byte, error) {
		b, err := r.Peek(n)
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: ClientHello larger than the %d-byte peek buffer", ErrNotTLS, r.Size())
		}
		return b, err
	})
}

// ClientHelloOffersPSK decides from the first bytes a client sent (one or
// more records holding a whole ClientHello) whether it offers TLS-PSK. It
// returns io.ErrUnexpectedEOF when data ends before the ClientHello does.
func ClientHelloOffersPSK(data []byte) (bool, error) {
	info, err := extractClientHello(func(n int) ([]byte, error) {
		if n > len(data) {
			return nil, io.ErrUnexpectedEOF
		}
		return data[:n], nil
	})
	if err != nil {
		return false, err
	}
	return info.OffersPSK(), nil
}

func extractClientHello(peek func(n int) ([]byte, error)) (*ClientHelloInfo, error) {
	var hs []byte
	off := 0
	for {
		b, err := peek(off + recordHeaderLen)
		if err != nil {
			return nil, err
		}
		h := b[off:]
		n := int(h[3])<<8 | int(h[4])
		if h[0] != recordTypeHandshake || h[1] != 3 || n == 0 || n > maxPlaintext {
			return nil, fmt.Errorf("%w: not a TLS handshake record", ErrNotTLS)
		}
		if b, err = peek(off + recordHeaderLen + n); err != nil {
			return nil, err
		}
		hs = append(hs, b[off+recordHeaderLen:]...)
		off += recordHeaderLen + n
		if len(hs) < 4 {
			continue
		}
		if hs[0] != typeClientHello {
			return nil, fmt.Errorf("%w: first message is not a ClientHello", ErrNotTLS)
		}
		mlen := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
		if mlen > maxHandshakeSize {
			return nil, fmt.Errorf("%w: ClientHello of %d bytes", ErrNotTLS, mlen)
		}
		if len(hs) >= 4+mlen {
			var m clientHelloMsg
			if err := m.unmarshal(hs[:4+mlen]); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrNotTLS, err)
			}
			return helloInfo(&m), nil
		}
	}
}

func helloInfo(m *clientHelloMsg) *ClientHelloInfo {
	info := &ClientHelloInfo{ServerName: m.serverName, CipherSuites: m.cipherSuites}
	if len(m.supportedVersions) > 0 {
		info.Versions = m.supportedVersions
	} else {
		info.Versions = []uint16{m.vers}
	}
	for _, id := range m.pskIdentities {
		if id.age == 0 {
			info.PSKIdentities = append(info.PSKIdentities, string(id.label))
		}
	}
	tls13 := slices.Contains(info.Versions, VersionTLS13)
	info.TLS13PSK = tls13 && len(info.PSKIdentities) > 0 && slices.Contains(m.pskModes, pskModeDHE)
	if !tls13 {
		n := 0
		info.OnlyPSKSuites = true
		for _, s := range m.cipherSuites {
			if s == scsvRenegotiation || s == scsvFallback || s&0x0f0f == 0x0a0a { // SCSVs and GREASE
				continue
			}
			n++
			if !isPSKSuite(s) {
				info.OnlyPSKSuites = false
			}
		}
		info.OnlyPSKSuites = info.OnlyPSKSuites && n > 0
	}
	return info
}

// isPSKSuite reports whether an IANA TLS 1.2 suite uses a PSK key exchange
// (PSK, DHE_PSK, RSA_PSK or ECDHE_PSK), whatever its cipher.
func isPSKSuite(id uint16) bool {
	for _, r := range [][2]uint16{
		{0x002C, 0x002E}, {0x008A, 0x0095}, {0x00A8, 0x00B9}, {0xC033, 0xC03B},
		{0xC064, 0xC071}, {0xC08E, 0xC09B}, {0xC0A4, 0xC0AB}, {0xCCAB, 0xCCAE}, {0xD001, 0xD005},
	} {
		if id >= r[0] && id <= r[1] {
			return true
		}
	}
	return false
}

// PeekedConn returns conn with the bytes buffered in r (the reader given
// to PeekClientHello) put back in front. Once they are consumed, reads go
// to conn directly and r is released.
func PeekedConn(conn net.Conn, r *bufio.Reader) net.Conn {
	return &peekedConn{Conn: conn, r: r}
}

type peekedConn struct {
	net.Conn
	mu sync.Mutex
	r  *bufio.Reader
}

func (p *peekedConn) Read(b []byte) (int, error) {
	p.mu.Lock()
	r := p.r
	if r != nil && r.Buffered() == 0 {
		p.r, r = nil, nil
	}
	p.mu.Unlock()
	if r != nil {
		n := min(len(b), r.Buffered())
		return r.Read(b[:n])
	}
	return p.Conn.Read(b)
}
