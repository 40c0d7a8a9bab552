package pki

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
)

// KeyProtector seals private keys before they are written to disk and
// opens them when they are read back. Seal must not return the plaintext
// unless the protector is PlainProtector.
type KeyProtector interface {
	Seal(plaintext []byte) ([]byte, error)
	Open(sealed []byte) ([]byte, error)
}

// MasterKeySize is the size of a master key: AES-256.
const MasterKeySize = 32

// Sealed formats: one version byte, then the payload.
const (
	sealPlain  byte = 0x00 // PlainProtector: the plaintext follows
	sealAESGCM byte = 0x01 // MasterKey: 12-byte nonce, AES-256-GCM ciphertext and tag
)

const gcmNonceSize = 12

// MasterKey is a KeyProtector that seals with AES-256-GCM under a 32-byte
// key and a random 96-bit nonce per seal. Sealed bytes are
// 0x01 || nonce || ciphertext || tag. It never prints its key.
type MasterKey struct {
	aead cipher.AEAD
}

// NewMasterKey returns a MasterKey for a 32-byte key. The key is copied.
func NewMasterKey(key []byte) (*MasterKey, error) {
	if len(key) != MasterKeySize {
		return nil, fmt.Errorf("pki: master key is %d bytes, want %d: %w", len(key), MasterKeySize, ErrMasterKey)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("pki: master key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("pki: master key: %w", err)
	}
	return &MasterKey{aead: aead}, nil
}

// String never reveals the key.
func (m *MasterKey) String() string { return "MasterKey(AES-256-GCM)" }

// GoString never reveals the key.
func (m *MasterKey) GoString() string { return m.String() }

// Seal encrypts plaintext.
func (m *MasterKey) Seal(plaintext []byte) ([]byte, error) {
	out := make([]byte, 1+gcmNonceSize, 1+gcmNonceSize+len(plaintext)+m.aead.Overhead())
	out[0] = sealAESGCM
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("pki: seal: %w", err)
	}
	return m.aead.Seal(out, out[1:1+gcmNonceSize], plaintext, out[:1]), nil
}

// Open decrypts and authenticates sealed bytes.
func (m *MasterKey) Open(sealed []byte) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, fmt.Errorf("pki: open: empty: %w", ErrCorrupt)
	}
	switch sealed[0] {
	case sealAESGCM:
	case sealPlain:
		return nil, fmt.Errorf("pki: open: the key is stored unencrypted (PlainProtector), not under a master key: %w", ErrWrongKey)
	default:
		return nil, fmt.Errorf("pki: open: unknown sealed format %#x: %w", sealed[0], ErrCorrupt)
	}
	if len(sealed) < 1+gcmNonceSize+m.aead.Overhead() {
		return nil, fmt.Errorf("pki: open: truncated: %w", ErrCorrupt)
	}
	pt, err := m.aead.Open(nil, sealed[1:1+gcmNonceSize], sealed[1+gcmNonceSize:], sealed[:1])
	if err != nil {
		return nil, fmt.Errorf("pki: open: %w", ErrWrongKey)
	}
	return pt, nil
}

// PlainProtector stores keys unencrypted (0x00 || plaintext). Only for an
// explicit opt-in, such as a throw-away test setup or a machine whose disk
// encryption and access control are trusted instead: anyone who can read
// the CA directory (a backup, a copied data dir, a container image layer)
// can then issue certificates that every device trusts.
type PlainProtector struct{}

// Seal returns the plaintext behind a one-byte format marker.
func (PlainProtector) Seal(plaintext []byte) ([]byte, error) {
	return append([]byte{sealPlain}, plaintext...), nil
}

// Open returns the plaintext of bytes sealed by PlainProtector.
func (PlainProtector) Open(sealed []byte) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, fmt.Errorf("pki: open: empty: %w", ErrCorrupt)
	}
	switch sealed[0] {
	case sealPlain:
		return append([]byte(nil), sealed[1:]...), nil
	case sealAESGCM:
		return nil, fmt.Errorf("pki: open: the key is encrypted; a master key is needed: %w", ErrWrongKey)
	}
	return nil, fmt.Errorf("pki: open: unknown sealed format %#x: %w", sealed[0], ErrCorrupt)
}

// LoadMasterKey reads the master key from the environment variable env
// (when env is not empty and the variable is set) or from the file at path
// (when path is not empty and the file exists). Exactly one source must be
// present: both present is refused as ambiguous, none gives ErrNoMasterKey
// (so that a first run can GenerateMasterKeyFile).
//
// The key is 32 bytes given as 64 hex digits or as base64 (standard or
// URL alphabet, padded or not); a file may also hold the 32 raw bytes.
// Surrounding white space is ignored. The file must be a regular file that
// is not accessible by group or others (mode 0600 or 0400), else it is
// refused.
func LoadMasterKey(path, env string) (*MasterKey, error) {
	var envVal string
	envSet := false
	if env != "" {
		envVal, envSet = os.LookupEnv(env)
		envSet = envSet && envVal != ""
	}
	fileSet := false
	var fi fs.FileInfo
	if path != "" {
		var err error
		fi, err = os.Stat(path)
		switch {
		case err == nil:
			fileSet = true
		case errors.Is(err, fs.ErrNotExist):
		default:
			return nil, fmt.Errorf("pki: master key file %s: %w", path, err)
		}
	}
	switch {
	case envSet && fileSet:
		return nil, fmt.Errorf("pki: master key given both by $%s and by file %s; remove one: %w", env, path, ErrMasterKey)
	case envSet:
		key, err := decodeMasterKey(envVal, false)
		if err != nil {
			return nil, fmt.Errorf("pki: master key in $%s: %w", env, err)
		}
		defer clear(key)
		return NewMasterKey(key)
	case fileSet:
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("pki: master key file %s: not a regular file: %w", path, ErrMasterKey)
		}
		if err := checkPrivateMode(fi); err != nil {
			return nil, fmt.Errorf("pki: master key file %s: mode %04o: %w (chmod 600 it)", path, fi.Mode().Perm(), err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("pki: master key file %s: %w", path, err)
		}
		defer clear(b)
		key, err := decodeMasterKey(string(b), true)
		if err != nil {
			return nil, fmt.Errorf("pki: master key file %s: %w", path, err)
		}
		defer clear(key)
		return NewMasterKey(key)
	}
	var where []string
	if env != "" {
		where = append(where, "$"+env)
	}
	if path != "" {
		where = append(where, path)
	}
	return nil, fmt.Errorf("pki: looked in %s: %w", strings.Join(where, " and "), ErrNoMasterKey)
}

// checkPrivateMode refuses files that group or others may access. Windows
// has no such mode bits; there the check is skipped.
func checkPrivateMode(fi fs.FileInfo) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return ErrInsecureFile
	}
	return nil
}

func decodeMasterKey(s string, rawOK bool) ([]byte, error) {
	if rawOK && len(s) == MasterKeySize && !isPrintableASCII(s) {
		// 32 raw bytes. 32 printable characters are a mistake (such as
		// the hex of a 16-byte key), not a random key: the chance that 32
		// random bytes are all printable is about 1e-14.
		return []byte(s), nil
	}
	t := strings.TrimSpace(s)
	if len(t) == 2*MasterKeySize {
		if k, err := hex.DecodeString(t); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(t); err == nil {
			if len(k) == MasterKeySize {
				return k, nil
			}
			clear(k)
		}
	}
	return nil, fmt.Errorf("want %d bytes as 64 hex digits or base64 (got %d characters): %w", MasterKeySize, len(t), ErrMasterKey)
}

// GenerateMasterKeyFile creates a new random master key and writes it as
// 64 hex digits and a newline to path with mode 0600. It refuses to
// overwrite an existing file. Keep a copy of this key somewhere safe: the
// CA keys cannot be opened without it.
func GenerateMasterKeyFile(path string) (*MasterKey, error) {
	key := make([]byte, MasterKeySize)
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("pki: generate master key: %w", err)
	}
	text := []byte(hex.EncodeToString(key) + "\n")
	defer clear(text)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("pki: master key file %s: %w", path, ErrExists)
		}
		return nil, fmt.Errorf("pki: master key file: %w", err)
	}
	if _, err := f.Write(text); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("pki: master key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("pki: master key file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("pki: master key file %s: %w", path, err)
	}
	return NewMasterKey(key)
}
