package registry

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
)

// KeyProtector encrypts secrets at rest (PSKs, the fleet key, the broker's
// ECDH private key). Seal must authenticate what it encrypts: Open of a
// modified or foreign blob fails. Implementations must be safe for
// concurrent use.
type KeyProtector interface {
	Seal(plaintext []byte) ([]byte, error)
	Open(sealed []byte) ([]byte, error)
}

// MasterKeySize is the length of a master key: 32 bytes (AES-256).
const MasterKeySize = 32

// DefaultMasterKeyEnv is the environment variable LoadMasterKey reads when
// no file is given.
const DefaultMasterKeyEnv = "MOAT_MASTER_KEY"

// sealVersion is the first byte of a MasterKey blob: version 1 is
// AES-256-GCM with a random 96-bit nonce.
const sealVersion = 1

// MasterKey is the registry's KeyProtector: AES-256-GCM under a 32-byte key,
// a fresh random nonce per Seal. A blob is version (1 byte) || nonce (12) ||
// ciphertext and tag. This is the registry's own implementation (internal/pki
// has a similar one for its keys); keep them apart so either can evolve.
type MasterKey struct {
	aead cipher.AEAD
}

// NewMasterKey makes a MasterKey from 32 bytes. The bytes are not retained
// (the cipher keeps its own expanded key).
func NewMasterKey(key []byte) (*MasterKey, error) {
	if len(key) != MasterKeySize {
		return nil, fmt.Errorf("registry: %w: want %d bytes, got %d", ErrMasterKey, MasterKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("registry: %w: %v", ErrMasterKey, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("registry: %w: %v", ErrMasterKey, err)
	}
	return &MasterKey{aead: aead}, nil
}

// GenerateMasterKey returns 32 random bytes.
func GenerateMasterKey() []byte {
	k := make([]byte, MasterKeySize)
	rand.Read(k) // never fails (crypto/rand since Go 1.24)
	return k
}

// ParseMasterKey reads a hex master key (64 hex digits; surrounding white
// space ignored). The error never quotes the input.
func ParseMasterKey(s string) (*MasterKey, error) {
	s = strings.TrimSpace(s)
	if len(s) != 2*MasterKeySize {
		return nil, fmt.Errorf("registry: %w: want %d hex digits", ErrMasterKey, 2*MasterKeySize)
	}
	k, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("registry: %w: not hex", ErrMasterKey)
	}
	defer clear(k)
	return NewMasterKey(k)
}

// LoadMasterKeyFile reads a hex master key from a file. A file that group or
// others may read (or write) is refused: chmod 600 it. (The check is skipped
// on Windows, where mode bits do not describe access.)
func LoadMasterKeyFile(path string) (*MasterKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("registry: %w file: %w", ErrMasterKey, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("registry: %w file %s: not a regular file", ErrMasterKey, path)
	}
	if err := checkKeyFileMode(fi.Mode()); err != nil {
		return nil, fmt.Errorf("registry: %w file %s: %v", ErrMasterKey, path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("registry: %w file: %w", ErrMasterKey, err)
	}
	defer clear(b)
	mk, err := ParseMasterKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return mk, nil
}

func checkKeyFileMode(m fs.FileMode) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	if m.Perm()&0o077 != 0 {
		return fmt.Errorf("mode %04o gives access to group or others (want 0600 or 0400)", m.Perm())
	}
	return nil
}

// MasterKeyFromEnv reads a hex master key from an environment variable. An
// unset or empty variable is an error wrapping ErrMasterKey and fs.ErrNotExist.
func MasterKeyFromEnv(name string) (*MasterKey, error) {
	v := os.Getenv(name)
	if v == "" {
		return nil, fmt.Errorf("registry: %w: environment variable %s is not set: %w", ErrMasterKey, name, fs.ErrNotExist)
	}
	mk, err := ParseMasterKey(v)
	if err != nil {
		return nil, fmt.Errorf("%w (environment variable %s)", err, name)
	}
	return mk, nil
}

// WriteMasterKeyFile creates path (mode 0600; it must not exist) holding a
// new random master key in hex, and returns that key.
func WriteMasterKeyFile(path string) (*MasterKey, error) {
	k := GenerateMasterKey()
	defer clear(k)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("registry: %w file: %w", ErrMasterKey, err)
	}
	buf := []byte(hex.EncodeToString(k) + "\n")
	defer clear(buf)
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("registry: %w file %s: %v", ErrMasterKey, path, err)
	}
	return NewMasterKey(k)
}

// LoadMasterKey is the usual way to get the master key: from file when
// file is not empty, else from the environment variable env (default
// DefaultMasterKeyEnv).
func LoadMasterKey(file, env string) (*MasterKey, error) {
	if file != "" {
		return LoadMasterKeyFile(file)
	}
	if env == "" {
		env = DefaultMasterKeyEnv
	}
	return MasterKeyFromEnv(env)
}

// Seal implements KeyProtector.
func (m *MasterKey) Seal(plaintext []byte) ([]byte, error) {
	ns := m.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+m.aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1 : 1+ns])
	return m.aead.Seal(out, out[1:1+ns], plaintext, out[:1]), nil
}

// Open implements KeyProtector. Any failure is the same error: a blob sealed
// under another key and a modified blob look alike.
func (m *MasterKey) Open(sealed []byte) ([]byte, error) {
	ns := m.aead.NonceSize()
	if len(sealed) < 1+ns+m.aead.Overhead() || sealed[0] != sealVersion {
		return nil, errOpen
	}
	pt, err := m.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], sealed[:1])
	if err != nil {
		return nil, errOpen
	}
	return pt, nil
}

var errOpen = fmt.Errorf("registry: %w: cannot decrypt (wrong master key or modified data)", ErrMasterKey)

// sealLabeled seals secret bound to a label (the record it belongs to), so
// a sealed value copied into another record does not open there.
func sealLabeled(kp KeyProtector, label string, secret []byte) ([]byte, error) {
	buf := make([]byte, 0, binary.MaxVarintLen64+len(label)+len(secret))
	buf = binary.AppendUvarint(buf, uint64(len(label)))
	buf = append(buf, label...)
	buf = append(buf, secret...)
	defer clear(buf)
	s, err := kp.Seal(buf)
	if err != nil {
		return nil, fmt.Errorf("registry: sealing %s: %w", label, err)
	}
	return s, nil
}

// openLabeled reverses sealLabeled and checks the label.
func openLabeled(kp KeyProtector, label string, sealed []byte) ([]byte, error) {
	pt, err := kp.Open(sealed)
	if err != nil {
		return nil, err
	}
	n, k := binary.Uvarint(pt)
	if k <= 0 || uint64(len(pt)-k) < n || string(pt[k:k+int(n)]) != label {
		clear(pt)
		return nil, errors.New("registry: sealed value belongs to another record")
	}
	out := append([]byte(nil), pt[k+int(n):]...)
	clear(pt)
	return out, nil
}
