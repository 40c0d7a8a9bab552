package pki

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// OpenOrInit opens the CA in dir, or creates it with opts when dir holds
// none (a first run). created tells which happened. opts.Protector is used
// for both.
func OpenOrInit(dir string, opts InitOptions) (ca *CA, created bool, err error) {
	ca, err = Open(dir, opts.Protector)
	if err == nil {
		return ca, false, nil
	}
	if !errors.Is(err, ErrNotInitialized) {
		return nil, false, err
	}
	ca, err = Init(dir, opts)
	if err != nil {
		return nil, false, err
	}
	return ca, true, nil
}

// LocalServerRequest is the first-run server certificate request:
// localhost, this machine's host name (when it is a valid DNS name),
// 127.0.0.1 and ::1, with the default validity and key algorithm.
func LocalServerRequest() ServerRequest {
	req := ServerRequest{DNS: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}}
	if h, err := os.Hostname(); err == nil {
		h = strings.ToLower(h)
		if _, err := normDNSNames([]string{h}); err == nil && h != "localhost" {
			req.DNS = append(req.DNS, h)
		}
	}
	return req
}

// Reseal re-encrypts the CA's private keys in dir under a new protector
// (for `moat keys rotate`): the issuing key, and the root key when it is
// at rootKeyFile (default dir/root.key, and always that for a one-tier
// CA; a missing two-tier root key is
// skipped, reseal it where it is kept, with its own rootKeyFile). Every
// key is opened with from before any file is replaced; each file is then
// replaced atomically. If the process dies between two files, Open
// reports ErrWrongKey for the one still under the old key: run Reseal
// again with the protectors that match.
func Reseal(dir, rootKeyFile string, from, to KeyProtector) error {
	if from == nil || to == nil {
		return fmt.Errorf("pki: reseal: %w", ErrNoProtector)
	}
	m, err := readMeta(dir)
	if err != nil {
		return err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	if rootKeyFile == "" || !m.TwoTier {
		// A one-tier CA's root key is always in the directory.
		rootKeyFile = filepath.Join(dir, fileRootKey)
	}
	files := []string{rootKeyFile}
	if m.TwoTier {
		files = append(files, filepath.Join(dir, fileIntermediateKey))
		if ok, err := exists(rootKeyFile); err != nil {
			return fmt.Errorf("pki: reseal: %w", err)
		} else if !ok {
			files = files[1:] // the root key is off-line
		}
	}
	sealed := make([][]byte, len(files))
	for i, f := range files {
		k, err := readSealedKey(f, from)
		if err != nil {
			return err
		}
		if sealed[i], err = sealKey(k, to); err != nil {
			return err
		}
	}
	for i, f := range files {
		if err := writeFileAtomic(f, sealed[i], 0o600); err != nil {
			return fmt.Errorf("pki: reseal: %w", err)
		}
	}
	return nil
}
