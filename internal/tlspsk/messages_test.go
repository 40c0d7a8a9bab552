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
