package proxyproto

import (
	"crypto/x509"
	"fmt"
	"net/netip"
)

// Command is the command of a PROXY header.
type Command uint8

// Commands of the PROXY protocol. A v1 header is always Proxy (for
// "UNKNOWN" its addresses are zero).
const (
	// Local: the proxy opened the connection itself (a health check);
	// the connection endpoints are the real ones.
	Local Command = 0x0
	// Proxy: the connection is relayed for the client in Source.
	Proxy Command = 0x1
)

func (c Command) String() string {
	switch c {
	case Local:
		return "LOCAL"
	case Proxy:
		return "PROXY"
	}
	return fmt.Sprintf("Command(%d)", uint8(c))
}

// Protocol bytes (v2 family<<4 | transport) that carry addresses moat
// uses. Header.Protocol holds the byte as received (v1 maps TCP4, TCP6 and
// UNKNOWN to ProtoTCP4, ProtoTCP6 and ProtoUnspec).
const (
	ProtoUnspec byte = 0x00
	ProtoTCP4   byte = 0x11
	ProtoUDP4   byte = 0x12
	ProtoTCP6   byte = 0x21
	ProtoUDP6   byte = 0x22
	ProtoUnix   byte = 0x31
	ProtoUnixDG byte = 0x32
)

// TLV types of PROXY protocol v2 (doc/proxy-protocol.txt of HAProxy, 2.2).
const (
	TypeALPN      byte = 0x01
	TypeAuthority byte = 0x02
	TypeCRC32C    byte = 0x03
	TypeNOOP      byte = 0x04
	TypeUniqueID  byte = 0x05
	TypeSSL       byte = 0x20
	TypeNetNS     byte = 0x30

	// TypeMinCustom..TypeMaxCustom is the range reserved for applications;
	// DefaultCertTLV lies in it.
	TypeMinCustom byte = 0xE0
	TypeMaxCustom byte = 0xEF
)

// Sub-TLV types inside a TypeSSL TLV. Group, SigScheme and ClientCert were
// added to the specification after HAProxy 2.6 (HAProxy sends the DER
// client certificate as SubtypeSSLClientCert from 3.4 on; ghostunnel does
// too).
const (
	SubtypeSSLVersion    byte = 0x21
	SubtypeSSLCN         byte = 0x22
	SubtypeSSLCipher     byte = 0x23
	SubtypeSSLSigAlg     byte = 0x24
	SubtypeSSLKeyAlg     byte = 0x25
	SubtypeSSLGroup      byte = 0x26
	SubtypeSSLSigScheme  byte = 0x27
	SubtypeSSLClientCert byte = 0x28
)

// Bits of SSLInfo.Client.
const (
	ClientSSL      byte = 0x01 // PP2_CLIENT_SSL: the client spoke TLS
	ClientCertConn byte = 0x02 // PP2_CLIENT_CERT_CONN: it sent a certificate on this connection
	ClientCertSess byte = 0x04 // PP2_CLIENT_CERT_SESS: it sent one on the TLS session (resumed) this connection belongs to
)

// DefaultCertTLV is the custom TLV type in which the balancer forwards the
// client certificate when no Options.CertTLV is set: 0xE0, the first type of
// the range the specification reserves for applications, and the one
// HAProxy's documentation uses in its set-proxy-v2-tlv-fmt examples:
//
//	server moat1 10.0.0.5:1883 send-proxy-v2-ssl-cn set-proxy-v2-tlv-fmt(0xE0) %[ssl_c_der,base64]
//
// (HAProxy >= 2.9). The value may be the DER bytes, or their base64 or hex
// encoding: HAProxy's set-proxy-v2-tlv-fmt cuts binary values at the first
// NUL byte, so forward ssl_c_der base64-encoded. Google Cloud's Private
// Service Connect also sends a TLV 0xE0 (its connection id); it never
// sends a TypeSSL TLV with it, and the custom TLV is read as a certificate
// only in a header that has one.
const DefaultCertTLV byte = 0xE0

// MaxV1HeaderLen is the longest v1 line including CRLF (the specification's
// worst case, "PROXY UNKNOWN" with two full IPv6 addresses and ports).
const MaxV1HeaderLen = 107

// MaxV2HeaderLen bounds a v2 header (16 fixed bytes plus addresses and
// TLVs). The protocol allows 16+65535 bytes; what real balancers send is
// far smaller: addresses (at most 216 bytes), a few short strings, and,
// the largest item, the client certificate, which is base64-encoded when
// forwarded with HAProxy's set-proxy-v2-tlv-fmt (an RSA-4096 leaf with a
// few SANs is ~1.5 KB DER, ~2 KB base64). 8 KiB leaves room for that with
// a margin, and only a trusted proxy gets as far as the length field: an
// untrusted peer is refused at the signature.
const MaxV2HeaderLen = 8 << 10

// TLV is one type-length-value item of a v2 header. Value aliases the
// header's buffer.
type TLV struct {
	Type  byte
	Value []byte
}

// Header is one parsed PROXY protocol header.
type Header struct {
	Version int     // 1 or 2
	Command Command // Local or Proxy
	// Protocol is the v2 family/transport byte (ProtoTCP4, ProtoTCP6, ...)
	// as received; for v1: ProtoTCP4, ProtoTCP6 or ProtoUnspec (UNKNOWN).
	Protocol byte
	// Source and Destination are the client's address and the address it
	// connected to, for TCP over IPv4 or IPv6 with the Proxy command; zero
	// otherwise (LOCAL, UNKNOWN, AF_UNSPEC, UDP and UNIX sockets, whose
	// address blocks are skipped as the specification allows). IPv4-mapped
	// IPv6 addresses are unmapped.
	Source, Destination netip.AddrPort
	// TLVs are the v2 TLVs in the order received (SSL and CRC32C included).
	TLVs []TLV
	// SSL is the decoded TypeSSL TLV, nil when there is none.
	SSL *SSLInfo
}

// TLV returns the value of the first TLV of type t.
func (h *Header) TLV(t byte) ([]byte, bool) {
	for _, tlv := range h.TLVs {
		if tlv.Type == t {
			return tlv.Value, true
		}
	}
	return nil, false
}

// HasAddresses reports whether the header names the real client (Proxy
// command with a TCP source address).
func (h *Header) HasAddresses() bool {
	return h != nil && h.Command == Proxy && h.Source.IsValid()
}

// SSLInfo is the TLS information of a PP2_TYPE_SSL TLV: what the balancer
// saw of the client's TLS connection, which it terminated.
type SSLInfo struct {
	// Client is the bit field of ClientSSL, ClientCertConn, ClientCertSess.
	Client byte
	// Verify is the balancer's verification result of the client
	// certificate (an OpenSSL X509_V_ERR_* code with HAProxy); 0 means
	// verified, but also "no certificate": see Verified.
	Verify uint32
	// Sub-TLVs, empty when absent.
	Version   string // PP2_SUBTYPE_SSL_VERSION, e.g. "TLSv1.3"
	CN        string // PP2_SUBTYPE_SSL_CN: client certificate subject CN
	Cipher    string // PP2_SUBTYPE_SSL_CIPHER
	SigAlg    string // PP2_SUBTYPE_SSL_SIG_ALG (of the balancer's certificate)
	KeyAlg    string // PP2_SUBTYPE_SSL_KEY_ALG (of the balancer's certificate)
	Group     string // PP2_SUBTYPE_SSL_GROUP
	SigScheme string // PP2_SUBTYPE_SSL_SIG_SCHEME
	// ClientCert is the client's leaf certificate (DER), from the
	// PP2_SUBTYPE_SSL_CLIENT_CERT sub-TLV or the custom certificate TLV
	// (see DefaultCertTLV); nil when the balancer forwards none.
	ClientCert []byte
	// TLVs are the sub-TLVs in the order received.
	TLVs []TLV
}

// TLS reports whether the client connected to the balancer over TLS.
func (s *SSLInfo) TLS() bool { return s != nil && s.Client&ClientSSL != 0 }

// HasClientCert reports whether the client presented a certificate, on this
// connection or on the TLS session it resumed.
func (s *SSLInfo) HasClientCert() bool {
	return s != nil && s.Client&(ClientCertConn|ClientCertSess) != 0
}

// Verified reports whether the client presented a certificate and the
// balancer verified it (Verify == 0). Verify alone is not enough: HAProxy
// reports 0 when the client sent no certificate at all.
func (s *SSLInfo) Verified() bool {
	return s.TLS() && s.HasClientCert() && s.Verify == 0
}

// Certificate parses ClientCert. It returns ErrNoClientCert when the
// balancer forwarded none. It says nothing about verification: check
// Verified, and check the chain and revocation as for a direct mTLS client.
func (s *SSLInfo) Certificate() (*x509.Certificate, error) {
	if s == nil || len(s.ClientCert) == 0 {
		return nil, ErrNoClientCert
	}
	c, err := x509.ParseCertificate(s.ClientCert)
	if err != nil {
		return nil, fmt.Errorf("proxyproto: forwarded client certificate: %w", err)
	}
	return c, nil
}
