package tlspsk

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
)

func TestClientHelloRoundTrip(t *testing.T) {
	m := &clientHelloMsg{
		vers: VersionTLS12, random: bytes.Repeat([]byte{1}, 32), sessionID: bytes.Repeat([]byte{2}, 32),
		cipherSuites: []uint16{TLS_AES_128_GCM_SHA256, TLS_PSK_WITH_AES_128_GCM_SHA256}, compressionMethods: []uint8{0},
		hasExtensions: true, serverName: "broker.example", supportedGroups: []CurveID{X25519, P256},
		hasSupportedPoints: true, supportedPoints: []uint8{0}, extendedMasterSecret: true,
		secureRenegotiationExt: true, secureRenegotiation: []byte{}, supportedVersions: []uint16{VersionTLS13, VersionTLS12},
		hasPSKModes: true, pskModes: []uint8{pskModeDHE}, hasKeyShares: true,
		keyShares: []keyShare{{X25519, bytes.Repeat([]byte{3}, 32)}}, cookie: []byte("cookie"), earlyData: true,
		pskIdentities: []pskIdentity{{[]byte("id-1"), 0}, {[]byte("id-2"), 77}},
		pskBinders:    [][]byte{bytes.Repeat([]byte{4}, 32), bytes.Repeat([]byte{5}, 48)},
	}
	raw := m.marshal()
	var got clientHelloMsg
	if err := got.unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	if !same(&got, m) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", &got, m)
	}
	if !bytes.Equal(got.marshal(), raw) {
		t.Fatal("re-encoding differs")
	}
	// truncated + binders == raw
	if tr := got.truncated(); !bytes.Equal(raw[:len(tr)], tr) || len(raw)-len(tr) != 2+1+32+1+48 {
		t.Fatal("truncated ClientHello is wrong")
	}
	nb := [][]byte{bytes.Repeat([]byte{8}, 32), bytes.Repeat([]byte{9}, 48)}
	got.setBinders(nb)
	var again clientHelloMsg
	if err := again.unmarshal(got.raw); err != nil || !reflect.DeepEqual(again.pskBinders, nb) {
		t.Fatalf("setBinders: %v", err)
	}
}

func TestClientHelloRejects(t *testing.T) {
	m := &clientHelloMsg{vers: VersionTLS12, random: make([]byte, 32), cipherSuites: []uint16{1}, compressionMethods: []uint8{0},
		hasExtensions: true, pskIdentities: []pskIdentity{{[]byte("a"), 0}}, pskBinders: [][]byte{make([]byte, 32)}, extendedMasterSecret: true}
	raw := m.marshal()
	// Move extended_master_secret (00 17 00 00) after pre_shared_key.
	i := bytes.Index(raw, []byte{0, 0x17, 0, 0})
	moved := append(append(append([]byte{}, raw[:i]...), raw[i+4:]...), 0, 0x17, 0, 0)
	var got clientHelloMsg
	if err := got.unmarshal(moved); err != errPSKNotLast {
		t.Fatalf("psk not last: %v", err)
	}
	dup := append(append([]byte{}, raw[:i]...), append([]byte{0, 0x17, 0, 0}, raw[i:]...)...)
	// fix lengths: message +4, extensions +4
	dup[3] += 4
	extLenOff := 4 + 2 + 32 + 1 + 2 + 2 + 2
	dup[extLenOff+1] += 4
	if err := got.unmarshal(dup); err != errDuplicateExt {
		t.Fatalf("duplicate: %v", err)
	}
	for n := 0; n < len(raw); n++ {
		if err := got.unmarshal(raw[:n]); err == nil {
			t.Fatalf("truncated at %d accepted", n)
		}
	}
}

func TestServerHelloRoundTrip(t *testing.T) {
	for _, m := range []*serverHelloMsg{
		{vers: VersionTLS12, random: bytes.Repeat([]byte{1}, 32), sessionID: []byte{}, cipherSuite: 0x00A8, hasExtensions: true,
			extendedMasterSecret: true, secureRenegotiationSupported: true, secureRenegotiation: []byte{}, supportedPoints: []uint8{0}},
		{vers: VersionTLS12, random: bytes.Repeat([]byte{1}, 32), sessionID: []byte{7}, cipherSuite: 0x1301, hasExtensions: true,
			supportedVersion: VersionTLS13, serverShare: keyShare{X25519, bytes.Repeat([]byte{3}, 32)},
			selectedIdentityPresent: true, selectedIdentity: 0},
		{vers: VersionTLS12, random: helloRetryRequestRandom, sessionID: []byte{7}, cipherSuite: 0x1301, hasExtensions: true,
			supportedVersion: VersionTLS13, selectedGroup: P256, cookie: []byte("c")},
		{vers: VersionTLS12, random: bytes.Repeat([]byte{1}, 32), sessionID: []byte{}, cipherSuite: 0x00A8},
	} {
		raw := m.marshal()
		var got serverHelloMsg
		if err := got.unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		if !same(&got, m) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", &got, m)
		}
	}
}

// same compares messages, treating nil and empty slices alike.
func same(a, b any) bool { return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b) }

func TestSmallMessagesRoundTrip(t *testing.T) {
	for _, ecdhe := range []bool{false, true} {
		ske := &serverKeyExchangeMsg{hint: []byte("hint"), ecdhe: ecdhe}
		cke := &clientKeyExchangeMsg{identity: []byte("sensor"), ecdhe: ecdhe}
		if ecdhe {
			ske.group, ske.public, cke.public = X25519, bytes.Repeat([]byte{5}, 32), bytes.Repeat([]byte{6}, 32)
		}
		var ske2 serverKeyExchangeMsg
		if err := ske2.unmarshal(ske.marshal(), ecdhe); err != nil || !reflect.DeepEqual(&ske2, ske) {
			t.Fatalf("ServerKeyExchange: %v %+v", err, ske2)
		}
		var cke2 clientKeyExchangeMsg
		if err := cke2.unmarshal(cke.marshal(), ecdhe); err != nil || !reflect.DeepEqual(&cke2, cke) {
			t.Fatalf("ClientKeyExchange: %v %+v", err, cke2)
		}
	}
	fin := &finishedMsg{verifyData: bytes.Repeat([]byte{1}, 12)}
	var fin2 finishedMsg
	if err := fin2.unmarshal(fin.marshal()); err != nil || !reflect.DeepEqual(&fin2, fin) {
		t.Fatal("Finished")
	}
	for _, req := range []bool{false, true} {
		ku := &keyUpdateMsg{updateRequested: req}
		var ku2 keyUpdateMsg
		if err := ku2.unmarshal(ku.marshal()); err != nil || !reflect.DeepEqual(&ku2, ku) {
			t.Fatal("KeyUpdate")
		}
	}
	var ku keyUpdateMsg
	if ku.unmarshal([]byte{typeKeyUpdate, 0, 0, 1, 2}) == nil {
		t.Fatal("KeyUpdate value 2 accepted")
	}
	ee := &encryptedExtensionsMsg{groups: []CurveID{X25519}}
	var ee2 encryptedExtensionsMsg
	if err := ee2.unmarshal(ee.marshal()); err != nil || !reflect.DeepEqual(ee2.groups, ee.groups) || len(ee2.extensions) != 1 {
		t.Fatal("EncryptedExtensions")
	}
	if got := messageHash(bytes.Repeat([]byte{1}, 32)); len(got) != 36 || got[0] != typeMessageHash || got[3] != 32 {
		t.Fatal("message_hash")
	}
}

func TestCertificateModeMessagesRoundTrip(t *testing.T) {
	cm := &certificateMsg{context: []byte{}, chain: [][]byte{bytes.Repeat([]byte{1}, 300), {2}}}
	var cm2 certificateMsg
	if err := cm2.unmarshal(cm.marshal()); err != nil || !reflect.DeepEqual(cm2.chain, cm.chain) || len(cm2.context) != 0 {
		t.Fatalf("Certificate: %v %+v", err, cm2)
	}
	var empty certificateMsg
	if err := empty.unmarshal((&certificateMsg{context: []byte{9}}).marshal()); err != nil || len(empty.chain) != 0 || !bytes.Equal(empty.context, []byte{9}) {
		t.Fatalf("empty Certificate: %v", err)
	}
	cr := &certificateRequestMsg{context: []byte{}}
	var cr2 certificateRequestMsg
	if err := cr2.unmarshal(cr.marshal()); err != nil || len(cr2.context) != 0 {
		t.Fatalf("CertificateRequest: %v", err)
	}
	cv := &certificateVerifyMsg{scheme: SignatureEd25519, signature: bytes.Repeat([]byte{3}, 64)}
	var cv2 certificateVerifyMsg
	if err := cv2.unmarshal(cv.marshal()); err != nil || cv2.scheme != cv.scheme || !bytes.Equal(cv2.signature, cv.signature) {
		t.Fatalf("CertificateVerify: %v", err)
	}
	if cv2.unmarshal((&certificateVerifyMsg{scheme: 1}).marshal()) == nil {
		t.Fatal("CertificateVerify without a signature accepted")
	}
	nst := &newSessionTicketMsg{lifetime: 3600, ageAdd: 0xdeadbeef, nonce: []byte{0, 1}, ticket: []byte("opaque")}
	var nst2 newSessionTicketMsg
	if err := nst2.unmarshal(nst.marshal()); err != nil || nst2.lifetime != 3600 || nst2.ageAdd != 0xdeadbeef ||
		!bytes.Equal(nst2.nonce, nst.nonce) || !bytes.Equal(nst2.ticket, nst.ticket) {
		t.Fatalf("NewSessionTicket: %v %+v", err, nst2)
	}
	if nst2.unmarshal((&newSessionTicketMsg{lifetime: 1}).marshal()) == nil {
		t.Fatal("NewSessionTicket without a ticket accepted")
	}

	// EncryptedExtensions as a certificate server sends them: ALPN and
	// the server_name acknowledgement.
	ee := []byte{typeEncryptedExtensions, 0, 0, 17, 0, 15, 0, 16, 0, 7, 0, 5, 4, 'm', 'q', 't', 't', 0, 0, 0, 0}
	var m encryptedExtensionsMsg
	if err := m.unmarshal(ee); err != nil || m.alpn != "mqtt" || m.malformed || !reflect.DeepEqual(m.extensions, []uint16{extALPN, extServerName}) {
		t.Fatalf("EncryptedExtensions: %v %+v", err, m)
	}
	ee[11] = 3 // the protocol's length no longer matches the list's
	if err := m.unmarshal(ee); err != nil || !m.malformed {
		t.Fatalf("malformed ALPN: %v %+v", err, m)
	}

	// The certificate-mode ClientHello's extra extensions.
	ch := &clientHelloMsg{vers: VersionTLS12, random: make([]byte, 32), cipherSuites: []uint16{TLS_AES_128_GCM_SHA256},
		compressionMethods: []uint8{0}, hasExtensions: true, signatureAlgorithms: []uint16{SignatureECDSAP256SHA256},
		alpnProtocols: []string{"mqtt", "x"}}
	raw := ch.marshal()
	for _, ext := range [][]byte{{0, 13, 0, 4, 0, 2, 4, 3}, {0, 16, 0, 9, 0, 7, 4, 'm', 'q', 't', 't', 1, 'x'}} {
		if !bytes.Contains(raw, ext) {
			t.Errorf("ClientHello lacks % x", ext)
		}
	}
	var ch2 clientHelloMsg
	if err := ch2.unmarshal(raw); err != nil || !ch2.signatureAlgorithmsSent {
		t.Fatalf("ClientHello: %v", err)
	}
}
