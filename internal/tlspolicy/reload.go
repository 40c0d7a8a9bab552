package tlspolicy

import (
	"context"
	"crypto/sha256"
	"io"
	"maps"
	"os"
	"slices"
	"time"
)

// ReloadStatus reports the state of a Policy's files, for logs, metrics and
// the admin API. It holds no secrets.
type ReloadStatus struct {
	Reloads     uint64    // successful reloads since New (the initial load is not counted)
	Failures    uint64    // failed reload attempts since New
	LastError   string    // error of the latest attempt; "" when it succeeded
	LastSuccess time.Time // when the material in use was loaded
	LastAttempt time.Time
	Files       []string // every file the policy reads (certs, keys, password files, CA bundles)
	// NotAfter maps each certificate file to its leaf's expiry and each CA
	// bundle to the earliest expiry among its certificates, for the
	// material in use.
	NotAfter map[string]time.Time
}

// Status returns a copy of the reload status.
func (p *Policy) Status() ReloadStatus {
	p.statusMu.Lock()
	defer p.statusMu.Unlock()
	return ReloadStatus{
		Reloads:     p.reloads,
		Failures:    p.failures,
		LastError:   p.lastErr,
		LastSuccess: p.lastSuccess,
		LastAttempt: p.lastAttempt,
		Files:       slices.Clone(p.files),
		NotAfter:    maps.Clone(p.notAfter),
	}
}

// Reload re-reads every certificate, key, password and CA file. If all of
// them load and check out, new handshakes use the new material at once;
// established connections are untouched. On any failure (unreadable file,
// bad PEM, key not matching its certificate, wrong password, ...) the
// material in use is kept, the reason is logged and recorded in Status, and
// the error is returned. Safe to call concurrently (for example from a
// SIGHUP handler while Watch runs); loads are serialised.
func (p *Policy) Reload() error {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	m, err := p.load(newFileReader())
	now := time.Now()

	p.statusMu.Lock()
	p.lastAttempt = now
	p.attempted = m.files
	if err != nil {
		p.failures++
		p.lastErr = err.Error()
		p.statusMu.Unlock()
		p.log.Error("tls reload failed; the previous certificates stay in use", "err", err)
		return err
	}
	p.cur.Store(m)
	p.reloads++
	p.lastErr = ""
	p.lastSuccess = now
	p.files = m.fileList
	p.notAfter = m.notAfter
	p.statusMu.Unlock()

	for _, lc := range m.certs {
		p.log.Info("tls certificate reloaded", "cert_file", lc.file, "names", lc.names,
			"subject", lc.cert.Leaf.Subject.String(), "not_after", lc.cert.Leaf.NotAfter)
	}
	p.log.Info("tls reload complete", "files", len(m.fileList))
	return nil
}

// Watch polls the policy's files every interval (default 2 s) until ctx is
// done and calls Reload when one of them changed: a different size or
// modification time, or different content (re-hashed every 10th poll even
// when size and time look unchanged, and whenever they changed). A change
// must be stable for one more poll before the reload, so a certificate and
// key replaced one after the other are picked up together. A failed reload
// is not retried until the files change again.
func (p *Policy) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	cache := make(statCache)
	var pending map[string][32]byte
	for tick := 1; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.statusMu.Lock()
		files := slices.Clone(p.files)
		attempted := p.attempted
		p.statusMu.Unlock()

		snap := make(map[string][32]byte, len(files))
		for _, f := range files {
			snap[f] = cache.digest(f, tick%10 == 0)
		}
		if maps.Equal(snap, attempted) {
			pending = nil
			continue
		}
		if pending != nil && maps.Equal(snap, pending) {
			pending = nil
			p.log.Info("tls files changed; reloading")
			_ = p.Reload() // logged and recorded by Reload
			continue
		}
		pending = snap
	}
}

type statEntry struct {
	size   int64
	mtime  time.Time
	digest [32]byte
}

type statCache map[string]statEntry

// digest returns the SHA-256 of a file's content (zero if unreadable),
// re-reading it only when its size or mtime changed or force is set.
func (c statCache) digest(path string, force bool) [32]byte {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		delete(c, path)
		return [32]byte{}
	}
	if e, ok := c[path]; ok && !force && e.size == fi.Size() && e.mtime.Equal(fi.ModTime()) {
		return e.digest
	}
	d := fileDigest(path)
	c[path] = statEntry{size: fi.Size(), mtime: fi.ModTime(), digest: d}
	return d
}

// fileDigest hashes a file the way fileReader does; unreadable or
// oversized files give the zero digest.
func fileDigest(path string) [32]byte {
	f, err := os.Open(path)
	if err != nil {
		return [32]byte{}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil || len(data) > maxFileSize {
		return [32]byte{}
	}
	return sha256.Sum256(data)
}
