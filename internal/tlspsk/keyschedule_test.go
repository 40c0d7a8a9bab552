package tlspsk

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"encoding/hex"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TLS 1.2 PRF (P_SHA256) vector published on the IETF TLS list and used
// by many implementations' self-tests.
func TestPRF12Vector(t *testing.T) {
	secret := unhex(t, "9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35")
	seed := unhex(t, "a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c")
	want := unhex(t, `e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4 e6 1e db 5a
		6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af 0f a0 22 f7 07 7d ef 17 ab fd 37 97 c0 56 4b ab
		4f bc 91 66 6e 9d ef 9b 97 fc e3 4f 79 67 89 ba a4 80 82 d1 22 ee 42 c5 a7 2e 5a 51 10 ff f7 01 87 34 7b 66`)
	if got := prf12(crypto.SHA256, secret, "test label", seed, 100); !bytes.Equal(got, want) {
		t.Fatalf("PRF = %x\nwant  %x", got, want)
	}
}

func TestPSKPremaster(t *testing.T) {
	psk := []byte{0xaa, 0xbb}
	if got, want := pskPremaster(nil, len(psk), psk), []byte{0, 2, 0, 0, 0, 2, 0xaa, 0xbb}; !bytes.Equal(got, want) {
		t.Fatalf("plain PSK premaster %x, want %x", got, want)
	}
	z := []byte{1, 2, 3}
	if got, want := pskPremaster(z, 0, psk), []byte{0, 3, 1, 2, 3, 0, 2, 0xaa, 0xbb}; !bytes.Equal(got, want) {
		t.Fatalf("ECDHE PSK premaster %x, want %x", got, want)
	}
}

// RFC 8448 §3 (simple 1-RTT handshake) key schedule.
func TestKeySchedule13RFC8448Simple(t *testing.T) {
	h := crypto.SHA256
	early := earlySecret(h, nil)
	check := func(name string, got []byte, want string) {
		t.Helper()
		if w := unhex(t, want); !bytes.Equal(got, w) {
			t.Fatalf("%s = %x\nwant %x", name, got, w)
		}
	}
	check("early secret", early, "33 ad 0a 1c 60 7e c0 3b 09 e6 cd 98 93 68 0c e2 10 ad f3 00 aa 1f 26 60 e1 b2 2e 10 f1 70 f9 2a")
	check("derived", deriveSecret(h, early, "derived", nil), "6f 26 15 a1 08 c7 02 c5 67 8f 54 fc 9d ba b6 97 16 c0 76 18 9c 48 25 0c eb ea c3 57 6c 36 11 ba")
	shared := unhex(t, "8b d4 05 4f b5 5b 9d 63 fd fb ac f9 f0 4b 9f 0d 35 e6 d6 3f 53 75 63 ef d4 62 72 90 0f 89 49 2d")
	hs := handshakeSecret(h, early, shared)
	check("handshake secret", hs, "1d c8 26 e9 36 06 aa 6f dc 0a ad c1 2f 74 1b 01 04 6a a6 b9 9f 69 1e d2 21 a9 f0 ca 04 3f be ac")
	chsh := unhex(t, "86 0c 06 ed c0 78 58 ee 8e 78 f0 e7 42 8c 58 ed d6 b4 3f 2c a3 e6 e9 5f 02 ed 06 3c f0 e1 ca d8")
	check("c hs traffic", deriveSecret(h, hs, "c hs traffic", chsh), "b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e 27 a5 5a 21")
	sHS := deriveSecret(h, hs, "s hs traffic", chsh)
	check("s hs traffic", sHS, "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38")
	key, iv := trafficKey(suiteByID(TLS_AES_128_GCM_SHA256), sHS)
	check("server handshake key", key, "3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
	check("server handshake iv", iv, "5d 31 3e b2 67 12 76 ee 13 00 0b 30")
	check("server finished key", expandLabel(h, sHS, "finished", nil, 32), "00 8d 3b 66 f8 16 ea 55 9f 96 b5 37 e8 85 c3 1f c0 68 bf 49 2c 65 2f 01 f2 88 a1 d8 cd c1 9f c8")
	master := masterSecret13(h, hs)
	check("master secret", master, "18 df 06 84 3d 13 a0 8b f2 a4 49 84 4c 5f 8a 47 80 01 bc 4d 4c 62 79 84 d5 a4 1d a8 d0 40 29 19")
	chsf := unhex(t, "96 08 10 2a 0f 1c cc 6d b6 25 0b 7b 7e 41 7b 1a 00 0e aa da 3d aa e4 77 7a 76 86 c9 ff 83 df 13")
	check("c ap traffic", deriveSecret(h, master, "c ap traffic", chsf), "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5")
	check("s ap traffic", deriveSecret(h, master, "s ap traffic", chsf), "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43")
}

// RFC 8448 §3: the resumption master secret, and the PSK of the ticket
// with nonce 00 00 (the PSK that §4 resumes with).
func TestResumptionPSKRFC8448(t *testing.T) {
	h := crypto.SHA256
	master := unhex(t, "18 df 06 84 3d 13 a0 8b f2 a4 49 84 4c 5f 8a 47 80 01 bc 4d 4c 62 79 84 d5 a4 1d a8 d0 40 29 19")
	th := unhex(t, "20 91 45 a9 6e e8 e2 a1 22 ff 81 00 47 cc 95 26 84 65 8d 60 49 e8 64 29 42 6d b8 7c 54 ad 14 3d")
	rms := deriveSecret(h, master, "res master", th)
	if want := unhex(t, "7d f2 35 f2 03 1d 2a 05 12 87 d0 2b 02 41 b0 bf da f8 6c c8 56 23 1f 2d 5a ba 46 c4 34 ec 19 6c"); !bytes.Equal(rms, want) {
		t.Fatalf("resumption master secret %x", rms)
	}
	if got, want := resumptionPSK(h, rms, []byte{0, 0}), unhex(t, "4e cd 0e b6 ec 3b 4d 87 f5 d6 02 8f 92 2c a4 c5 85 1a 27 7f d4 13 11 c9 e6 2d 2c 94 92 e1 c4 f3"); !bytes.Equal(got, want) {
		t.Fatalf("ticket PSK %x", got)
	}
}

// RFC 8448 §4 (resumed 0-RTT handshake): the binder of a resumption PSK.
// The external binder differs only by its label ("ext binder"), so this
// checks the whole binder construction.
func TestBinderRFC8448(t *testing.T) {
	h := crypto.SHA256
	psk := unhex(t, "4e cd 0e b6 ec 3b 4d 87 f5 d6 02 8f 92 2c a4 c5 85 1a 27 7f d4 13 11 c9 e6 2d 2c 94 92 e1 c4 f3")
	early := earlySecret(h, psk)
	if want := unhex(t, "9b 21 88 e9 b2 fc 6d 64 d7 1d c3 29 90 0e 20 bb 41 91 50 00 f6 78 aa 83 9c bb 79 7c b7 d8 33 2c"); !bytes.Equal(early, want) {
		t.Fatalf("early secret %x", early)
	}
	bk := resBinderKey(h, early)
	if want := unhex(t, "69 fe 13 1a 3b ba d5 d6 3c 64 ee bc c3 0e 39 5b 9d 81 07 72 6a 13 d0 74 e3 89 db c8 a4 e4 72 56"); !bytes.Equal(bk, want) {
		t.Fatalf("binder key %x", bk)
	}
	if got, want := expandLabel(h, bk, "finished", nil, 32), unhex(t, "55 88 67 3e 72 cb 59 c8 7d 22 0c af fe 94 f2 de a9 a3 b1 60 9f 7d 50 e9 0a 48 22 7d b9 ed 7e aa"); !bytes.Equal(got, want) {
		t.Fatalf("binder finished key %x", got)
	}
	binderHash := unhex(t, "63 22 4b 2e 45 73 f2 d3 45 4c a8 4b 9d 00 9a 04 f6 be 9e 05 71 1a 83 96 47 3a ef a0 1e 92 4a 14")
	if got, want := finishedMAC(h, bk, binderHash), unhex(t, "3a dd 4f b2 d8 fd f8 22 a0 ca 3c f7 67 8e f5 e8 8d ae 99 01 41 c5 92 4d 57 bb 6f a3 1b 9e 5f 9d"); !bytes.Equal(got, want) {
		t.Fatalf("binder %x", got)
	}
	if bytes.Equal(extBinderKey(h, early), bk) {
		t.Fatal("external and resumption binder keys must differ")
	}
}

// RFC 3610 §8 packet vectors #1 and #2 (13-byte nonce, 8-byte tag).
func TestCCMRFC3610(t *testing.T) {
	block, _ := aes.NewCipher(unhex(t, "C0 C1 C2 C3 C4 C5 C6 C7 C8 C9 CA CB CC CD CE CF"))
	c := newCCM(block, 13, 8)
	for _, v := range []struct{ nonce, pt, want string }{
		{"00 00 00 03 02 01 00 A0 A1 A2 A3 A4 A5", "08 09 0A 0B 0C 0D 0E 0F 10 11 12 13 14 15 16 17 18 19 1A 1B 1C 1D 1E",
			"58 8C 97 9A 61 C6 63 D2 F0 66 D0 C2 C0 F9 89 80 6D 5F 6B 61 DA C3 84 17 E8 D1 2C FD F9 26 E0"},
		{"00 00 00 04 03 02 01 A0 A1 A2 A3 A4 A5", "08 09 0A 0B 0C 0D 0E 0F 10 11 12 13 14 15 16 17 18 19 1A 1B 1C 1D 1E 1F",
			"72 C9 1A 36 E1 35 F8 CF 29 1C A8 94 08 5C 87 E3 CC 15 C4 39 C9 E4 3A 3B A0 91 D5 6E 10 40 09 16"},
	} {
		aad := unhex(t, "00 01 02 03 04 05 06 07")
		nonce, pt, want := unhex(t, v.nonce), unhex(t, v.pt), unhex(t, v.want)
		got := c.Seal(nil, nonce, pt, aad)
		if !bytes.Equal(got, want) {
			t.Fatalf("seal %x\nwant %x", got, want)
		}
		back, err := c.Open(nil, nonce, got, aad)
		if err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("open: %v", err)
		}
		got[3] ^= 1
		if _, err := c.Open(nil, nonce, got, aad); err == nil {
			t.Fatal("tampered ciphertext opened")
		}
	}
}

// Record protection round trip for every suite, both directions of nonce
// construction, including tampering.
func TestRecordSealOpen(t *testing.T) {
	for _, s := range cipherSuites {
		key := bytes.Repeat([]byte{7}, s.keyLen)
		iv := bytes.Repeat([]byte{9}, s.ivLen)
		var w, r halfConn
		tls13 := s.version == VersionTLS13
		w.setKeys(s.version, s, s.aead(key, iv, tls13), nil)
		r.setKeys(s.version, s, s.aead(key, iv, tls13), nil)
		for i, msg := range [][]byte{[]byte("hello"), {}, bytes.Repeat([]byte{1}, maxPlaintext)} {
			rec, err := w.seal(nil, recordTypeApplicationData, msg, VersionTLS12)
			if err != nil {
				t.Fatal(err)
			}
			typ, pt, err := r.open(rec[:5], rec[5:])
			if err != nil || typ != recordTypeApplicationData || !bytes.Equal(pt, msg) {
				t.Fatalf("%s record %d: type %d err %v", s.name, i, typ, err)
			}
		}
		rec, _ := w.seal(nil, recordTypeApplicationData, []byte("x"), VersionTLS12)
		rec[len(rec)-1] ^= 0x80
		if _, _, err := r.open(rec[:5], rec[5:]); err != errBadRecordMAC {
			t.Fatalf("%s: tampered record: %v", s.name, err)
		}
	}
}
