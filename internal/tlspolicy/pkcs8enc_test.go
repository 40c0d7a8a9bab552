package tlspolicy

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"hash"
	"testing"
	"time"

	"golang.org/x/crypto/scrypt"
)

// A test-only PBES2 encoder, to exercise every supported combination and
// the bounds without depending on openssl.

type encParams struct {
	kdf        string // "pbkdf2" or "scrypt"
	prf        asn1.ObjectIdentifier
	iter       int
	n, r, p    int
	cipher     asn1.ObjectIdentifier
	keyLenAttr int  // written into the KDF params when non-zero
	badIV      bool // 8-byte IV
	saltOther  bool // salt as AlgorithmIdentifier (otherSource)
	trailing   bool // bytes after the structure
}

func cipherKeyLen(oid asn1.ObjectIdentifier) int {
	switch {
	case oid.Equal(oidAES128CBC):
		return 16
	case oid.Equal(oidAES192CBC):
		return 24
	}
	return 32
}

func encryptPKCS8ForTest(t testing.TB, der, password []byte, ep encParams) []byte {
	t.Helper()
	salt := make([]byte, 16)
	iv := make([]byte, 16)
	rand.Read(salt)
	rand.Read(iv)
	keyLen := cipherKeyLen(ep.cipher)
	var kdfAlg pkix.AlgorithmIdentifier
	var key []byte
	var err error
	switch ep.kdf {
	case "scrypt":
		params, err := asn1.Marshal(scryptParams{Salt: salt, CostParameter: ep.n, BlockSize: ep.r, ParallelizationParameter: ep.p, KeyLength: ep.keyLenAttr})
		if err != nil {
			t.Fatal(err)
		}
		kdfAlg = pkix.AlgorithmIdentifier{Algorithm: oidScrypt, Parameters: asn1.RawValue{FullBytes: params}}
		if 128*ep.n*ep.r <= 64<<20 && ep.n&(ep.n-1) == 0 && ep.p <= MaxScryptP {
			key, err = scrypt.Key(password, salt, ep.n, ep.r, ep.p, keyLen)
		} else {
			key = make([]byte, keyLen) // out of bounds anyway; never derived
		}
		if err != nil {
			t.Fatal(err)
		}
	default:
		saltVal := asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagOctetString, Bytes: salt}
		if ep.saltOther {
			b, _ := asn1.Marshal(pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 3}})
			saltVal = asn1.RawValue{FullBytes: b}
		}
		pp := pbkdf2Params{Salt: saltVal, IterationCount: ep.iter, KeyLength: ep.keyLenAttr}
		h := func() hash.Hash { return sha1.New() }
		if ep.prf != nil {
			pp.PRF = pkix.AlgorithmIdentifier{Algorithm: ep.prf, Parameters: asn1.NullRawValue}
			switch {
			case ep.prf.Equal(oidHMACSHA224):
				h = sha256.New224
			case ep.prf.Equal(oidHMACSHA256):
				h = sha256.New
			case ep.prf.Equal(oidHMACSHA384):
				h = sha512.New384
			case ep.prf.Equal(oidHMACSHA512):
				h = sha512.New
			}
		}
		params, err := asn1.Marshal(pp)
		if err != nil {
			t.Fatal(err)
		}
		kdfAlg = pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: params}}
		if ep.iter > 0 && ep.iter <= 100000 {
			key, err = pbkdf2.Key(h, string(password), salt, ep.iter, keyLen)
			if err != nil {
				t.Fatal(err)
			}
		} else {
			key = make([]byte, keyLen)
		}
	}
	ivParam := iv
	if ep.badIV {
		ivParam = iv[:8]
	}
	ivDER, _ := asn1.Marshal(ivParam)
	pbes2, err := asn1.Marshal(pbes2Params{
		KeyDerivationFunc: kdfAlg,
		EncryptionScheme:  pkix.AlgorithmIdentifier{Algorithm: ep.cipher, Parameters: asn1.RawValue{FullBytes: ivDER}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// PKCS#7 pad and encrypt.
	pad := aes.BlockSize - len(der)%aes.BlockSize
	plain := append(bytes.Clone(der), bytes.Repeat([]byte{byte(pad)}, pad)...)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, plain)
	out, err := asn1.Marshal(encryptedPrivateKeyInfo{
		Algorithm:     pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: pbes2}},
		EncryptedData: ct,
	})
	if err != nil {
		t.Fatal(err)
	}
	if ep.trailing {
		out = append(out, 0)
	}
	return out
}

func testKeyDER(t testing.TB) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestDecryptPKCS8Combinations(t *testing.T) {
	der := testKeyDER(t)
	pw := []byte("pässword")
	for _, ep := range []encParams{
		{kdf: "pbkdf2", iter: 1000, cipher: oidAES128CBC}, // default PRF (SHA-1), PRF omitted
		{kdf: "pbkdf2", prf: oidHMACSHA1, iter: 1000, cipher: oidAES128CBC},
		{kdf: "pbkdf2", prf: oidHMACSHA224, iter: 1000, cipher: oidAES192CBC},
		{kdf: "pbkdf2", prf: oidHMACSHA256, iter: 1000, cipher: oidAES256CBC},
		{kdf: "pbkdf2", prf: oidHMACSHA384, iter: 1000, cipher: oidAES256CBC},
		{kdf: "pbkdf2", prf: oidHMACSHA512, iter: 1000, cipher: oidAES256CBC, keyLenAttr: 32},
		{kdf: "pbkdf2", prf: oidHMACSHA256, iter: 1, cipher: oidAES128CBC},
		{kdf: "scrypt", n: 1024, r: 8, p: 1, cipher: oidAES256CBC},
		{kdf: "scrypt", n: 16, r: 1, p: 2, cipher: oidAES128CBC, keyLenAttr: 16},
	} {
		enc := encryptPKCS8ForTest(t, der, pw, ep)
		got, err := decryptPKCS8(enc, pw)
		if err != nil {
			t.Errorf("%+v: %v", ep, err)
			continue
		}
		if !bytes.Equal(got, der) {
			t.Errorf("%+v: wrong plaintext", ep)
		}
		if _, err := decryptPKCS8(enc, []byte("wrong")); !errors.Is(err, ErrKeyPasswordIncorrect) {
			// A wrong key yields valid padding and a SEQUENCE tag about once
			// in 65536 tries; parsePrivateKeyPEM catches those.
			if err == nil {
				if _, perr := parsePKCS8Signer(got); perr == nil {
					t.Errorf("%+v: wrong password accepted", ep)
				}
			} else {
				t.Errorf("%+v: wrong password: %v", ep, err)
			}
		}
	}
}

func TestDecryptPKCS8Refusals(t *testing.T) {
	der := testKeyDER(t)
	pw := []byte("pw")
	desOID := asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
	for _, tc := range []struct {
		name string
		ep   encParams
	}{
		{"iterations above bound", encParams{kdf: "pbkdf2", prf: oidHMACSHA256, iter: MaxPBKDF2Iterations + 1, cipher: oidAES256CBC}},
		{"zero iterations", encParams{kdf: "pbkdf2", prf: oidHMACSHA256, iter: 0, cipher: oidAES256CBC}},
		{"unknown PRF", encParams{kdf: "pbkdf2", prf: asn1.ObjectIdentifier{1, 2, 3, 4}, iter: 10, cipher: oidAES256CBC}},
		{"key length mismatch", encParams{kdf: "pbkdf2", prf: oidHMACSHA256, iter: 10, cipher: oidAES256CBC, keyLenAttr: 16}},
		{"salt otherSource", encParams{kdf: "pbkdf2", prf: oidHMACSHA256, iter: 10, cipher: oidAES256CBC, saltOther: true}},
		{"bad IV length", encParams{kdf: "pbkdf2", prf: oidHMACSHA256, iter: 10, cipher: oidAES256CBC, badIV: true}},
		{"trailing data", encParams{kdf: "pbkdf2", prf: oidHMACSHA256, iter: 10, cipher: oidAES256CBC, trailing: true}},
		{"scrypt N too large", encParams{kdf: "scrypt", n: 1 << 22, r: 8, p: 1, cipher: oidAES256CBC}},
		{"scrypt N not a power of 2", encParams{kdf: "scrypt", n: 1000, r: 8, p: 1, cipher: oidAES256CBC}},
		{"scrypt p too large", encParams{kdf: "scrypt", n: 16, r: 1, p: MaxScryptP + 1, cipher: oidAES256CBC}},
		{"scrypt r huge", encParams{kdf: "scrypt", n: 2, r: 1 << 30, p: 1, cipher: oidAES256CBC}},
		{"DES cipher", encParams{kdf: "pbkdf2", prf: oidHMACSHA256, iter: 10, cipher: desOID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var enc []byte
			if tc.ep.cipher.Equal(desOID) {
				enc = desPBES2ForTest(t)
			} else {
				enc = encryptPKCS8ForTest(t, der, pw, tc.ep)
			}
			start := time.Now()
			_, err := decryptPKCS8(enc, pw)
			if !errors.Is(err, ErrEncryptedKeyFormat) {
				t.Fatalf("got %v", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("refusal took %v", d)
			}
		})
	}
	if _, err := decryptPKCS8([]byte{0x30, 0x00}, pw); !errors.Is(err, ErrEncryptedKeyFormat) {
		t.Errorf("empty sequence: %v", err)
	}
}

// desPBES2ForTest is a PBES2 structure with DES-EDE3-CBC as the cipher.
func desPBES2ForTest(t testing.TB) []byte {
	t.Helper()
	ivDER, _ := asn1.Marshal(make([]byte, 8))
	kdf, _ := asn1.Marshal(pbkdf2Params{Salt: asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagOctetString, Bytes: []byte("saltsalt")}, IterationCount: 10})
	pbes2, err := asn1.Marshal(pbes2Params{
		KeyDerivationFunc: pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: kdf}},
		EncryptionScheme:  pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}, Parameters: asn1.RawValue{FullBytes: ivDER}},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := asn1.Marshal(encryptedPrivateKeyInfo{
		Algorithm:     pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: pbes2}},
		EncryptedData: make([]byte, 32),
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPKCS7Unpad(t *testing.T) {
	blk := func(tail ...byte) []byte {
		b := bytes.Repeat([]byte{0xAA}, 32-len(tail))
		return append(b, tail...)
	}
	for _, tc := range []struct {
		in   []byte
		n    int
		good bool
	}{
		{blk(1), 31, true},
		{blk(2, 2), 30, true},
		{bytes.Repeat([]byte{16}, 32), 16, true},
		{blk(0), 0, false},
		{blk(17), 0, false},
		{blk(1, 2), 0, false},
		{blk(3, 2, 3), 0, false},
		{nil, 0, false},
		{make([]byte, 15), 0, false},
	} {
		n, ok := pkcs7Unpad(tc.in)
		if ok != tc.good || (ok && n != tc.n) {
			t.Errorf("%x: got %d %v", tc.in, n, ok)
		}
	}
}

func FuzzDecryptPKCS8(f *testing.F) {
	der := testKeyDER(f)
	for _, ep := range []encParams{
		{kdf: "pbkdf2", prf: oidHMACSHA256, iter: 2, cipher: oidAES256CBC},
		{kdf: "pbkdf2", iter: 1, cipher: oidAES128CBC},
		{kdf: "scrypt", n: 2, r: 1, p: 1, cipher: oidAES192CBC},
	} {
		f.Add(encryptPKCS8ForTest(f, der, []byte("pw"), ep), []byte("pw"))
	}
	f.Fuzz(func(t *testing.T, data, pw []byte) {
		// Keep fuzz iterations fast: skip inputs that ask for real work.
		out, err := decryptPKCS8(data, pw)
		if err == nil && len(out) == 0 {
			t.Fatal("success with empty plaintext")
		}
	})
}
