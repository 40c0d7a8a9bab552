package tlspolicy

// Decryption of PKCS#8 EncryptedPrivateKeyInfo (RFC 5958 section 3) protected
// with PBES2 (RFC 8018 section 6.2). crypto/x509 has no decoder for it.
//
//	EncryptedPrivateKeyInfo ::= SEQUENCE {
//	    encryptionAlgorithm  AlgorithmIdentifier {{PBES2}},
//	    encryptedData        OCTET STRING }
//	PBES2-params ::= SEQUENCE {
//	    keyDerivationFunc AlgorithmIdentifier {{PBKDF2 | scrypt}},
//	    encryptionScheme  AlgorithmIdentifier {{aesNNN-CBC}} }
//	PBKDF2-params ::= SEQUENCE {                        -- RFC 8018 A.2
//	    salt CHOICE { specified OCTET STRING, otherSource AlgorithmIdentifier },
//	    iterationCount INTEGER (1..MAX),
//	    keyLength INTEGER (1..MAX) OPTIONAL,
//	    prf AlgorithmIdentifier DEFAULT algid-hmacWithSHA1 }
//	scrypt-params ::= SEQUENCE {                        -- RFC 7914 section 7
//	    salt OCTET STRING,
//	    costParameter INTEGER (1..MAX),
//	    blockSize INTEGER (1..MAX),
//	    parallelizationParameter INTEGER (1..MAX),
//	    keyLength INTEGER (1..MAX) OPTIONAL }
//	aesNNN-CBC parameters: OCTET STRING (SIZE(16))      -- the IV
//
// Supported: PBKDF2 with HMAC-SHA1/224/256/384/512 or scrypt, and
// AES-128/192/256-CBC. Everything else (PBES1, DES, 3DES, RC2, PKCS#12 PBE)
// is refused. The work factors are bounded so that a hostile file cannot make
// loading take minutes or gigabytes.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"hash"

	"golang.org/x/crypto/scrypt"
)

// Work-factor bounds for encrypted keys.
const (
	// MaxPBKDF2Iterations bounds PBKDF2 work (about 1-3 s of CPU at the
	// top). OpenSSL's default is 2048; OWASP suggests 600000 for SHA-256.
	MaxPBKDF2Iterations = 10_000_000
	// MaxScryptMemory bounds scrypt memory (128 * N * r bytes).
	MaxScryptMemory = 256 << 20
	// MaxScryptP bounds scrypt parallelisation.
	MaxScryptP = 16

	maxSaltLen      = 1024
	maxEncryptedLen = 64 << 10
)

var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidScrypt     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
	oidHMACSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACSHA224 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 8}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACSHA384 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	oidHMACSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

type encryptedPrivateKeyInfo struct {
	Algorithm     pkix.AlgorithmIdentifier
	EncryptedData []byte
}

type pbes2Params struct {
	KeyDerivationFunc pkix.AlgorithmIdentifier
	EncryptionScheme  pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt           asn1.RawValue // CHOICE; only "specified" (OCTET STRING) is supported
	IterationCount int
	KeyLength      int                      `asn1:"optional"`
	PRF            pkix.AlgorithmIdentifier `asn1:"optional"`
}

type scryptParams struct {
	Salt                     []byte
	CostParameter            int
	BlockSize                int
	ParallelizationParameter int
	KeyLength                int `asn1:"optional"`
}

// unmarshalStrict decodes exactly one DER value with no trailing bytes.
func unmarshalStrict(der []byte, v any, what string) error {
	rest, err := asn1.Unmarshal(der, v)
	if err != nil {
		return fmt.Errorf("%s: %v: %w", what, err, ErrEncryptedKeyFormat)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%s: trailing data: %w", what, ErrEncryptedKeyFormat)
	}
	return nil
}

// decryptPKCS8 decrypts a DER EncryptedPrivateKeyInfo and returns the inner
// PKCS#8 PrivateKeyInfo DER. A wrong password yields
// ErrKeyPasswordIncorrect; an unsupported or malformed structure yields
// ErrEncryptedKeyFormat. The password is never part of an error.
func decryptPKCS8(der, password []byte) ([]byte, error) {
	var info encryptedPrivateKeyInfo
	if err := unmarshalStrict(der, &info, "EncryptedPrivateKeyInfo"); err != nil {
		return nil, err
	}
	if !info.Algorithm.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("encryption algorithm %s is not PBES2 (re-encrypt with: openssl pkcs8 -topk8 -v2 aes256 -v2prf hmacWithSHA256): %w",
			info.Algorithm.Algorithm, ErrEncryptedKeyFormat)
	}
	var params pbes2Params
	if err := unmarshalStrict(info.Algorithm.Parameters.FullBytes, &params, "PBES2 parameters"); err != nil {
		return nil, err
	}

	keyLen, iv, err := aesCBCParams(params.EncryptionScheme)
	if err != nil {
		return nil, err
	}
	ct := info.EncryptedData
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 || len(ct) > maxEncryptedLen {
		return nil, fmt.Errorf("encrypted data length %d invalid: %w", len(ct), ErrEncryptedKeyFormat)
	}

	key, err := deriveKey(params.KeyDerivationFunc, password, keyLen)
	if err != nil {
		return nil, err
	}
	defer clear(key)

	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %v: %w", err, ErrEncryptedKeyFormat)
	}
	plain := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, ct)
	n, ok := pkcs7Unpad(plain)
	if !ok {
		clear(plain)
		return nil, ErrKeyPasswordIncorrect
	}
	out := plain[:n]
	// A wrong key passes the padding check about once in 256 tries; the
	// caller's PKCS#8 parse catches those (and reports them the same way).
	// Cheap sanity check: a PrivateKeyInfo is a DER SEQUENCE.
	if len(out) < 2 || out[0] != 0x30 {
		clear(plain)
		return nil, ErrKeyPasswordIncorrect
	}
	return out, nil
}

// pkcs7Unpad checks PKCS#7 padding (RFC 8018 section 6.1.1 step 4) in
// constant time with respect to the padding bytes and returns the length of
// the content.
func pkcs7Unpad(b []byte) (int, bool) {
	if len(b) == 0 || len(b)%aes.BlockSize != 0 {
		return 0, false
	}
	pad := int(b[len(b)-1])
	good := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, aes.BlockSize)
	// Check the last 16 bytes: those within the pad must equal pad.
	tail := b[len(b)-aes.BlockSize:]
	for i := range aes.BlockSize {
		inPad := subtle.ConstantTimeLessOrEq(aes.BlockSize-i, pad) // position from end <= pad
		eq := subtle.ConstantTimeByteEq(tail[i], byte(pad))
		good &= subtle.ConstantTimeSelect(inPad, eq, 1)
	}
	if good != 1 {
		return 0, false
	}
	return len(b) - pad, true
}

func aesCBCParams(alg pkix.AlgorithmIdentifier) (keyLen int, iv []byte, err error) {
	switch {
	case alg.Algorithm.Equal(oidAES128CBC):
		keyLen = 16
	case alg.Algorithm.Equal(oidAES192CBC):
		keyLen = 24
	case alg.Algorithm.Equal(oidAES256CBC):
		keyLen = 32
	default:
		return 0, nil, fmt.Errorf("encryption scheme %s not supported (only AES-128/192/256-CBC): %w", alg.Algorithm, ErrEncryptedKeyFormat)
	}
	if err := unmarshalStrict(alg.Parameters.FullBytes, &iv, "AES-CBC IV"); err != nil {
		return 0, nil, err
	}
	if len(iv) != aes.BlockSize {
		return 0, nil, fmt.Errorf("AES-CBC IV length %d: %w", len(iv), ErrEncryptedKeyFormat)
	}
	return keyLen, iv, nil
}

func deriveKey(kdf pkix.AlgorithmIdentifier, password []byte, keyLen int) ([]byte, error) {
	switch {
	case kdf.Algorithm.Equal(oidPBKDF2):
		var p pbkdf2Params
		if err := unmarshalStrict(kdf.Parameters.FullBytes, &p, "PBKDF2 parameters"); err != nil {
			return nil, err
		}
		if p.Salt.Class != asn1.ClassUniversal || p.Salt.Tag != asn1.TagOctetString || p.Salt.IsCompound {
			return nil, fmt.Errorf("PBKDF2 salt must be an OCTET STRING: %w", ErrEncryptedKeyFormat)
		}
		salt := p.Salt.Bytes
		if len(salt) == 0 || len(salt) > maxSaltLen {
			return nil, fmt.Errorf("PBKDF2 salt length %d: %w", len(salt), ErrEncryptedKeyFormat)
		}
		if p.IterationCount < 1 || p.IterationCount > MaxPBKDF2Iterations {
			return nil, fmt.Errorf("PBKDF2 iteration count %d outside 1..%d: %w", p.IterationCount, MaxPBKDF2Iterations, ErrEncryptedKeyFormat)
		}
		if p.KeyLength != 0 && p.KeyLength != keyLen {
			return nil, fmt.Errorf("PBKDF2 key length %d does not match cipher key length %d: %w", p.KeyLength, keyLen, ErrEncryptedKeyFormat)
		}
		var h func() hash.Hash
		prf := p.PRF.Algorithm
		switch {
		case len(prf) == 0 || prf.Equal(oidHMACSHA1):
			h = sha1.New
		case prf.Equal(oidHMACSHA224):
			h = sha256.New224
		case prf.Equal(oidHMACSHA256):
			h = sha256.New
		case prf.Equal(oidHMACSHA384):
			h = sha512.New384
		case prf.Equal(oidHMACSHA512):
			h = sha512.New
		default:
			return nil, fmt.Errorf("PBKDF2 PRF %s not supported: %w", prf, ErrEncryptedKeyFormat)
		}
		if len(p.PRF.Parameters.FullBytes) != 0 && !bytes.Equal(p.PRF.Parameters.FullBytes, asn1.NullBytes) {
			return nil, fmt.Errorf("PBKDF2 PRF parameters must be NULL or absent: %w", ErrEncryptedKeyFormat)
		}
		key, err := pbkdf2.Key(h, string(password), salt, p.IterationCount, keyLen)
		if err != nil {
			return nil, fmt.Errorf("PBKDF2: %v: %w", err, ErrEncryptedKeyFormat)
		}
		return key, nil

	case kdf.Algorithm.Equal(oidScrypt):
		var p scryptParams
		if err := unmarshalStrict(kdf.Parameters.FullBytes, &p, "scrypt parameters"); err != nil {
			return nil, err
		}
		if len(p.Salt) == 0 || len(p.Salt) > maxSaltLen {
			return nil, fmt.Errorf("scrypt salt length %d: %w", len(p.Salt), ErrEncryptedKeyFormat)
		}
		n, r, par := p.CostParameter, p.BlockSize, p.ParallelizationParameter
		if n < 2 || n&(n-1) != 0 || r < 1 || par < 1 || par > MaxScryptP ||
			n > MaxScryptMemory/128 || r > MaxScryptMemory/128 || 128*n*r > MaxScryptMemory {
			return nil, fmt.Errorf("scrypt parameters N=%d r=%d p=%d outside the allowed bounds (memory <= %d MiB, p <= %d): %w",
				n, r, par, MaxScryptMemory>>20, MaxScryptP, ErrEncryptedKeyFormat)
		}
		if p.KeyLength != 0 && p.KeyLength != keyLen {
			return nil, fmt.Errorf("scrypt key length %d does not match cipher key length %d: %w", p.KeyLength, keyLen, ErrEncryptedKeyFormat)
		}
		key, err := scrypt.Key(password, p.Salt, n, r, par, keyLen)
		if err != nil {
			return nil, fmt.Errorf("scrypt: %v: %w", err, ErrEncryptedKeyFormat)
		}
		return key, nil
	}
	return nil, fmt.Errorf("key derivation function %s not supported (only PBKDF2 and scrypt): %w", kdf.Algorithm, ErrEncryptedKeyFormat)
}
