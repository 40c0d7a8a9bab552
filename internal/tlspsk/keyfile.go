package tlspsk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// MinFileKeyLength is the shortest key LoadPSKFile accepts, in bytes. A
// shorter PSK can be brute-forced offline from one recorded handshake.
const MinFileKeyLength = 16

// FileStore is a KeyStore read from a mosquitto-style psk_file: one
// "identity:hexkey" per line, '#' comments and blank lines allowed. The
// identity is everything before the last ':'. It is safe for concurrent use
// and can be reloaded while in use.
type FileStore struct {
	path string

	// mu guards the following fields.
	mu   sync.RWMutex
	keys map[string][]byte
	sum  [32]byte // content hash of the loaded (or last rejected) file
	size int64
	mod  time.Time
}

// LoadPSKFile reads a key file. Errors name the file and line and never
// include key bytes.
func LoadPSKFile(path string) (*FileStore, error) {
	f := &FileStore{path: path}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Path returns the file the store reads.
func (f *FileStore) Path() string { return f.path }

// LookupPSK returns a copy of the key for identity.
func (f *FileStore) LookupPSK(identity string) ([]byte, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	k, ok := f.keys[identity]
	if !ok {
		return nil, false
	}
	return append([]byte(nil), k...), true
}

// Len returns the number of identities loaded.
func (f *FileStore) Len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.keys)
}

// Reload reads the file again. On any error the keys in use are kept.
func (f *FileStore) Reload() error {
	_, err := f.reload(false)
	return err
}

// reload reads and, when the content changed (or force), parses the file.
func (f *FileStore) reload(onlyIfChanged bool) (changed bool, err error) {
	st, err := os.Stat(f.path)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	defer clear(data)
	sum := sha256.Sum256(data)
	f.mu.Lock()
	same := f.keys != nil && sum == f.sum
	f.sum, f.size, f.mod = sum, st.Size(), st.ModTime()
	f.mu.Unlock()
	if onlyIfChanged && same {
		return false, nil
	}
	keys, err := parsePSKFile(f.path, data)
	if err != nil {
		return true, err
	}
	f.mu.Lock()
	old := f.keys
	f.keys = keys
	f.mu.Unlock()
	for _, k := range old {
		clear(k)
	}
	return true, nil
}

func parsePSKFile(path string, data []byte) (map[string][]byte, error) {
	keys := make(map[string][]byte)
	for i, raw := range bytes.Split(data, []byte("\n")) {
		line := strings.TrimSpace(string(raw))
		if line == "" || line[0] == '#' {
			continue
		}
		colon := strings.LastIndexByte(line, ':')
		if colon < 0 {
			return nil, fmt.Errorf("%w: %s:%d: expected identity:hexkey", ErrKeyFile, path, i+1)
		}
		id, hexKey := strings.TrimSpace(line[:colon]), strings.TrimSpace(line[colon+1:])
		switch {
		case id == "":
			return nil, fmt.Errorf("%w: %s:%d: empty identity", ErrKeyFile, path, i+1)
		case len(id) > 0xffff:
			return nil, fmt.Errorf("%w: %s:%d: identity longer than 65535 bytes", ErrKeyFile, path, i+1)
		}
		if _, dup := keys[id]; dup {
			return nil, fmt.Errorf("%w: %s:%d: duplicate identity %q", ErrKeyFile, path, i+1, id)
		}
		key, err := hex.DecodeString(hexKey)
		if err != nil {
			return nil, fmt.Errorf("%w: %s:%d: key of %q is not valid hex", ErrKeyFile, path, i+1, id)
		}
		if len(key) < MinFileKeyLength {
			return nil, fmt.Errorf("%w: %s:%d: key of %q is %d bytes, at least %d are required", ErrKeyFile, path, i+1, id, len(key), MinFileKeyLength)
		}
		keys[id] = key
	}
	return keys, nil
}

// Watch polls the file every interval until ctx ends and reloads it when
// its size, modification time or content hash changes. A broken file is
// logged and the previous keys stay in use.
func (f *FileStore) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for tick := 1; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := os.Stat(f.path)
		if err != nil {
			log.Warn("psk file unreadable, keeping the keys in use", "path", f.path, "err", err)
			continue
		}
		f.mu.RLock()
		statSame := st.Size() == f.size && st.ModTime().Equal(f.mod)
		f.mu.RUnlock()
		// The content is hashed every tenth tick even when size and mtime
		// look the same (coarse mtimes, same-size edits).
		if statSame && tick%10 != 0 {
			continue
		}
		changed, err := f.reload(true)
		switch {
		case err != nil:
			log.Warn("psk file rejected, keeping the keys in use", "path", f.path, "err", err)
		case changed:
			log.Info("psk file reloaded", "path", f.path, "identities", f.Len())
		}
	}
}
