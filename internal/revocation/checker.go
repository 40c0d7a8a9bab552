package revocation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"moat/internal/tlspolicy"
)

// Policies for unavailable revocation data; see the package documentation.
const (
	FailOpen   = "fail_open"
	FailClosed = "fail_closed"
)

// Defaults of Options.
const (
	DefaultHTTPTimeout     = 5 * time.Second
	DefaultMaxCRLSize      = 10 << 20
	DefaultRefreshInterval = time.Hour
	DefaultRetryInterval   = 30 * time.Second
	maxOCSPSize            = 64 << 10
	// clockSkew tolerated on thisUpdate/nextUpdate of OCSP responses.
	clockSkew = 5 * time.Minute
	// maxOCSPEntries bounds the OCSP cache; expired entries are dropped
	// first, then the whole cache when it is still full.
	maxOCSPEntries = 100_000
)

// Options configure a Checker. The zero value checks CRL distribution
// points only, fail_open.
type Options struct {
	// CRLFiles are CRLs (DER, or PEM with one or more "X509 CRL" blocks)
	// applied to every chain whose issuer matches; reloaded by Reload and
	// Watch when they change. A file that cannot be loaded makes New fail.
	CRLFiles []string
	// FetchCDP fetches CRLs from the certificates' CRL distribution points
	// (http and https). nil means true.
	FetchCDP *bool
	// OCSP checks the leaf with OCSP.
	OCSP bool
	// OCSPResponder overrides the responder of the leaf's AIA extension.
	OCSPResponder string
	// Policy is FailOpen (default) or FailClosed.
	Policy string
	// HTTPTimeout bounds each fetch; default 5s.
	HTTPTimeout time.Duration
	// MaxCRLSize bounds a fetched CRL; default 10 MiB.
	MaxCRLSize int64
	// RefreshInterval: fetched CRLs are refreshed this often, and always
	// before their nextUpdate; default 1h. It is also how long an OCSP
	// response without nextUpdate is cached.
	RefreshInterval time.Duration
	// RetryInterval: after a failed fetch, the same URL is not tried again
	// for this long (handshakes use the cached state); default 30s.
	RetryInterval time.Duration
	// Log receives warnings and alarms; default discards.
	Log *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// HTTPClient fetches CRLs and OCSP responses; default a client with
	// HTTPTimeout and no proxy from the environment.
	HTTPClient *http.Client
}

// Alarm is a revocation source in trouble.
type Alarm struct {
	Source  string    `json:"source"`  // file name or URL
	Message string    `json:"message"` // what is wrong, and what the policy does about it
	Since   time.Time `json:"since"`
}

// SourceStatus describes one CRL source.
type SourceStatus struct {
	Source     string    `json:"source"` // file name or URL
	Kind       string    `json:"kind"`   // "file" or "cdp"
	Issuer     string    `json:"issuer,omitempty"`
	ThisUpdate time.Time `json:"this_update,omitzero"`
	NextUpdate time.Time `json:"next_update,omitzero"`
	Entries    int       `json:"entries"`
	Fetched    time.Time `json:"fetched,omitzero"` // when the current data was loaded
	LastError  string    `json:"last_error,omitempty"`
}

// crlData is one parsed CRL.
type crlData struct {
	crl     *x509.RevocationList
	hash    [32]byte
	revoked map[string]struct{} // serial (decimal)
	// verified caches signature checks by issuer certificate hash.
	verified map[[32]byte]error
}

// crlSource is a file or a distribution point.
type crlSource struct {
	source string
	kind   string // "file" | "cdp"
	crls   []*crlData
	// loaded is when crls was last replaced.
	loaded time.Time
	// lastErr of the last load or fetch; nil when it succeeded.
	lastErr error
	// lastTry is the time of the last fetch attempt (cdp).
	lastTry time.Time
	// issuer of a cdp source: the CA whose certificates name this URL.
	issuer *x509.Certificate
	// file state (file sources).
	mtime   time.Time
	size    int64
	checked time.Time
	hash    [32]byte
}

type ocspKey struct {
	issuer [32]byte
	serial string
}

type ocspEntry struct {
	status    int // ocsp.Good, ocsp.Revoked, ocsp.Unknown
	until     time.Time
	err       error // fetch failure (negative cache until `until`)
	responder string
}

// Checker answers whether verified chains are revoked. All methods are safe
// for concurrent use.
type Checker struct {
	opts      Options
	fetchCDP  bool
	failOpen  bool
	log       *slog.Logger
	now       func() time.Time
	client    *http.Client
	fileNames []string

	// hooksMu guards the following fields.
	hooksMu   sync.Mutex
	onRevoked []func()

	// flightMu guards the following fields: one fetch per URL at a time.
	flightMu sync.Mutex
	flights  map[string]*flight

	// mu guards the following fields. Lock order: flightMu is never held
	// while taking mu for longer than a map access; hooksMu is never held
	// with mu.
	mu     sync.Mutex
	files  map[string]*crlSource
	cdps   map[string]*crlSource
	ocsp   map[ocspKey]*ocspEntry
	alarms map[string]Alarm
}

type flight struct {
	done chan struct{}
}

// New builds a Checker and loads the CRL files.
func New(opts Options) (*Checker, error) {
	c := &Checker{
		opts:     opts,
		fetchCDP: opts.FetchCDP == nil || *opts.FetchCDP,
		log:      opts.Log,
		now:      opts.Now,
		client:   opts.HTTPClient,
		flights:  map[string]*flight{},
		files:    map[string]*crlSource{},
		cdps:     map[string]*crlSource{},
		ocsp:     map[ocspKey]*ocspEntry{},
		alarms:   map[string]Alarm{},
	}
	switch opts.Policy {
	case "", FailOpen:
		c.failOpen = true
	case FailClosed:
	default:
		return nil, fmt.Errorf("revocation: %w: policy %q (want %q or %q)", ErrOptions, opts.Policy, FailOpen, FailClosed)
	}
	if c.opts.HTTPTimeout <= 0 {
		c.opts.HTTPTimeout = DefaultHTTPTimeout
	}
	if c.opts.MaxCRLSize <= 0 {
		c.opts.MaxCRLSize = DefaultMaxCRLSize
	}
	if c.opts.RefreshInterval <= 0 {
		c.opts.RefreshInterval = DefaultRefreshInterval
	}
	if c.opts.RetryInterval <= 0 {
		c.opts.RetryInterval = DefaultRetryInterval
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.client == nil {
		c.client = &http.Client{
			Timeout:   c.opts.HTTPTimeout,
			Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute},
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 3 {
					return errors.New("too many redirects")
				}
				return nil
			},
		}
	}
	for _, f := range opts.CRLFiles {
		if _, dup := c.files[f]; dup {
			continue
		}
		c.fileNames = append(c.fileNames, f)
		src := &crlSource{source: f, kind: "file"}
		c.files[f] = src
		if _, err := c.loadFile(src, true); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// OnRevoked registers fn, called (outside any lock, on the goroutine that
// loaded the data) whenever new revocation data arrives: a CRL file that
// changed, a CRL fetched with new content, an OCSP "revoked" answer. The
// broker re-checks its live connections then. fn must not block for long.
func (c *Checker) OnRevoked(fn func()) {
	c.hooksMu.Lock()
	c.onRevoked = append(c.onRevoked, fn)
	c.hooksMu.Unlock()
}

func (c *Checker) notify() {
	c.hooksMu.Lock()
	hooks := slices.Clone(c.onRevoked)
	c.hooksMu.Unlock()
	for _, fn := range hooks {
		fn()
	}
}

// Func adapts the Checker to tlspolicy.Options.Revocation: each call is
// bounded by the HTTP timeout (twice, for a CRL and an OCSP fetch).
func (c *Checker) Func() func(chain []*x509.Certificate) error {
	return func(chain []*x509.Certificate) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*c.opts.HTTPTimeout+time.Second)
		defer cancel()
		return c.Check(ctx, chain)
	}
}

// Check checks chain, leaf first and root last as verified by crypto/tls.
// Every certificate but the root is checked against the CRLs of its issuer
// (files and distribution points); the leaf is also checked with OCSP when
// enabled. It returns an error wrapping ErrRevoked (and
// tlspolicy.ErrRevoked) for a revoked certificate; an error wrapping
// ErrUnavailable when data is missing or stale under fail_closed; nil
// otherwise (under fail_open with an alarm raised for what was missing).
func (c *Checker) Check(ctx context.Context, chain []*x509.Certificate) error {
	var unavailable []error
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		err := c.checkCRLs(ctx, cert, issuer)
		if errors.Is(err, ErrRevoked) {
			return err
		}
		if err != nil {
			unavailable = append(unavailable, err)
		}
	}
	if c.opts.OCSP && len(chain) >= 2 {
		err := c.checkOCSP(ctx, chain[0], chain[1])
		if errors.Is(err, ErrRevoked) {
			return err
		}
		if err != nil {
			unavailable = append(unavailable, err)
		}
	}
	if len(unavailable) == 0 || c.failOpen {
		return nil
	}
	return fmt.Errorf("revocation: %w: %w", ErrUnavailable, errors.Join(unavailable...))
}

func revokedError(cert *x509.Certificate, by string) error {
	return fmt.Errorf("revocation: %q (serial %s) revoked according to %s: %w (%w)",
		cert.Subject.String(), cert.SerialNumber.Text(16), by, ErrRevoked, tlspolicy.ErrRevoked)
}

// checkCRLs returns a revoked error, an error describing missing data (the
// alarm already raised), or nil.
func (c *Checker) checkCRLs(ctx context.Context, cert, issuer *x509.Certificate) error {
	serial := cert.SerialNumber.String()
	issuerHash := sha256.Sum256(issuer.Raw)
	var problems []error

	// Files: every CRL of the issuer.
	c.mu.Lock()
	var fileCRLs []struct {
		src string
		d   *crlData
	}
	for _, name := range c.fileNames {
		for _, d := range c.files[name].crls {
			if issuedBy(d.crl, issuer) {
				fileCRLs = append(fileCRLs, struct {
					src string
					d   *crlData
				}{name, d})
			}
		}
	}
	c.mu.Unlock()
	for _, f := range fileCRLs {
		if err := c.verifyCRL(f.d, issuer, issuerHash); err != nil {
			problems = append(problems, c.raise(f.src, fmt.Sprintf("CRL does not verify against %q: %v", issuer.Subject, err)))
			continue
		}
		if _, ok := f.d.revoked[serial]; ok {
			return revokedError(cert, "CRL file "+f.src)
		}
		if err := c.checkFresh(f.src, f.d); err != nil {
			problems = append(problems, err)
		}
	}

	// Distribution points.
	if c.fetchCDP {
		for _, url := range cdpURLs(cert) {
			d, err := c.cdpCRL(ctx, url, issuer)
			if err != nil {
				problems = append(problems, err)
				if d == nil {
					continue
				}
			}
			if _, ok := d.revoked[serial]; ok {
				return revokedError(cert, "CRL "+url)
			}
			if err := c.checkFresh(url, d); err != nil {
				problems = append(problems, err)
			}
		}
	}
	return errors.Join(problems...)
}

// checkFresh raises (or clears) the staleness alarm of a CRL.
func (c *Checker) checkFresh(src string, d *crlData) error {
	now := c.now()
	if nu := d.crl.NextUpdate; !nu.IsZero() && now.After(nu) {
		return c.raise(src, fmt.Sprintf("CRL of %q is stale: nextUpdate %s passed", d.crl.Issuer, nu.UTC().Format(time.RFC3339)))
	}
	return nil
}

func cdpURLs(cert *x509.Certificate) []string {
	var out []string
	for _, u := range cert.CRLDistributionPoints {
		if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
			out = append(out, u)
		}
	}
	return out
}

// issuedBy reports whether crl names issuer as its issuer.
func issuedBy(crl *x509.RevocationList, issuer *x509.Certificate) bool {
	if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) {
		return false
	}
	if len(crl.AuthorityKeyId) > 0 && len(issuer.SubjectKeyId) > 0 {
		return bytes.Equal(crl.AuthorityKeyId, issuer.SubjectKeyId)
	}
	return true
}

func (c *Checker) verifyCRL(d *crlData, issuer *x509.Certificate, issuerHash [32]byte) error {
	c.mu.Lock()
	err, ok := d.verified[issuerHash]
	c.mu.Unlock()
	if ok {
		return err
	}
	err = d.crl.CheckSignatureFrom(issuer)
	c.mu.Lock()
	d.verified[issuerHash] = err
	c.mu.Unlock()
	return err
}

// raise records an alarm for src and returns an error describing it.
func (c *Checker) raise(src, msg string) error {
	policy := "accepting certificates (fail_open)"
	if !c.failOpen {
		policy = "refusing certificates (fail_closed)"
	}
	full := msg + "; " + policy
	c.mu.Lock()
	a, ok := c.alarms[src]
	if !ok {
		a = Alarm{Source: src, Since: c.now()}
	}
	changed := a.Message != full
	a.Message = full
	c.alarms[src] = a
	c.mu.Unlock()
	if changed {
		c.log.Warn("revocation alarm", "source", src, "problem", msg, "policy", policyName(c.failOpen))
	}
	return fmt.Errorf("%s: %s", src, msg)
}

func policyName(failOpen bool) string {
	if failOpen {
		return FailOpen
	}
	return FailClosed
}

// clear removes the alarm of src.
func (c *Checker) clear(src string) {
	c.mu.Lock()
	_, ok := c.alarms[src]
	delete(c.alarms, src)
	c.mu.Unlock()
	if ok {
		c.log.Info("revocation alarm cleared", "source", src)
	}
}

// Alarms returns the current alarms, sorted by source.
func (c *Checker) Alarms() []Alarm {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Alarm, 0, len(c.alarms))
	for _, a := range c.alarms {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b Alarm) int { return strings.Compare(a.Source, b.Source) })
	return out
}

// Status describes every CRL source: files in configuration order, then
// distribution points by URL.
func (c *Checker) Status() []SourceStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []SourceStatus
	add := func(s *crlSource) {
		st := SourceStatus{Source: s.source, Kind: s.kind, Fetched: s.loaded}
		if s.lastErr != nil {
			st.LastError = s.lastErr.Error()
		}
		for i, d := range s.crls {
			if i == 0 {
				st.Issuer = d.crl.Issuer.String()
				st.ThisUpdate, st.NextUpdate = d.crl.ThisUpdate, d.crl.NextUpdate
			} else if !d.crl.NextUpdate.IsZero() && (st.NextUpdate.IsZero() || d.crl.NextUpdate.Before(st.NextUpdate)) {
				st.NextUpdate = d.crl.NextUpdate
			}
			st.Entries += len(d.revoked)
		}
		out = append(out, st)
	}
	for _, f := range c.fileNames {
		add(c.files[f])
	}
	urls := make([]string, 0, len(c.cdps))
	for u := range c.cdps {
		urls = append(urls, u)
	}
	slices.Sort(urls)
	for _, u := range urls {
		add(c.cdps[u])
	}
	return out
}

// parseCRLs parses DER or PEM (one or more "X509 CRL" blocks).
func parseCRLs(data []byte) ([]*crlData, error) {
	var ders [][]byte
	if bytes.Contains(data, []byte("-----BEGIN")) {
		ders = pemBlocks(data, "X509 CRL")
		if len(ders) == 0 {
			return nil, fmt.Errorf("%w: no X509 CRL PEM block", ErrBadCRL)
		}
	} else {
		ders = [][]byte{data}
	}
	var out []*crlData
	for _, der := range ders {
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadCRL, err)
		}
		d := &crlData{crl: crl, hash: sha256.Sum256(der), revoked: make(map[string]struct{}, len(crl.RevokedCertificateEntries)), verified: map[[32]byte]error{}}
		for _, e := range crl.RevokedCertificateEntries {
			d.revoked[e.SerialNumber.String()] = struct{}{}
		}
		out = append(out, d)
	}
	return out, nil
}

func sameCRLs(a, b []*crlData) bool {
	return slices.EqualFunc(a, b, func(x, y *crlData) bool { return x.hash == y.hash })
}

// loadFile (re)reads a CRL file when it changed. It reports whether the
// content changed. initial makes every error fatal (New).
func (c *Checker) loadFile(src *crlSource, initial bool) (bool, error) {
	fi, err := os.Stat(src.source)
	now := c.now()
	if err == nil {
		c.mu.Lock()
		// Re-hash when mtime or size changed, or when the file was modified
		// recently (coarse mtime granularity can hide a fast rewrite).
		unchanged := !initial && fi.ModTime().Equal(src.mtime) && fi.Size() == src.size &&
			time.Since(fi.ModTime()) > 3*time.Second
		c.mu.Unlock()
		if unchanged {
			return false, nil
		}
	}
	var data []byte
	if err == nil {
		if fi.Size() > c.opts.MaxCRLSize {
			err = fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, fi.Size(), c.opts.MaxCRLSize)
		} else {
			data, err = os.ReadFile(src.source)
		}
	}
	var crls []*crlData
	hash := sha256.Sum256(data)
	if err == nil {
		c.mu.Lock()
		same := !initial && hash == src.hash
		if same {
			src.mtime, src.size = fi.ModTime(), fi.Size()
		}
		c.mu.Unlock()
		if same {
			return false, nil
		}
		crls, err = parseCRLs(data)
	}
	if err != nil {
		err = fmt.Errorf("revocation: CRL file %s: %w", src.source, err)
		if initial {
			return false, err
		}
		c.mu.Lock()
		src.lastErr = err
		c.mu.Unlock()
		c.raise(src.source, "cannot reload CRL file, keeping the previous one: "+err.Error())
		return false, err
	}
	c.mu.Lock()
	changed := !sameCRLs(src.crls, crls)
	src.crls, src.loaded, src.lastErr = crls, now, nil
	src.mtime, src.size, src.hash = fi.ModTime(), fi.Size(), hash
	c.mu.Unlock()
	c.clear(src.source)
	if !initial {
		c.log.Info("CRL file reloaded", "file", src.source, "entries", countEntries(crls))
	}
	return changed, nil
}

func countEntries(crls []*crlData) int {
	n := 0
	for _, d := range crls {
		n += len(d.revoked)
	}
	return n
}

// Reload re-reads the CRL files that changed and refreshes the
// distribution point CRLs that are due; OnRevoked hooks run when anything
// new arrived. It returns the errors met (the previous data stays in use).
func (c *Checker) Reload(ctx context.Context) error {
	var errs []error
	changed := false
	for _, name := range c.fileNames {
		c.mu.Lock()
		src := c.files[name]
		c.mu.Unlock()
		ch, err := c.loadFile(src, false)
		changed = changed || ch
		if err != nil {
			errs = append(errs, err)
		}
	}
	if changed {
		c.notify()
	}
	if err := c.refreshCDPs(ctx); err != nil {
		errs = append(errs, err)
	}
	c.checkStale()
	c.pruneOCSP()
	return errors.Join(errs...)
}

// checkStale raises alarms for every CRL past its nextUpdate, so a stale
// CRL is visible even when no client connects.
func (c *Checker) checkStale() {
	c.mu.Lock()
	type item struct {
		src string
		d   *crlData
	}
	var items []item
	for _, s := range c.files {
		for _, d := range s.crls {
			items = append(items, item{s.source, d})
		}
	}
	for _, s := range c.cdps {
		for _, d := range s.crls {
			items = append(items, item{s.source, d})
		}
	}
	c.mu.Unlock()
	for _, it := range items {
		_ = c.checkFresh(it.src, it.d)
	}
}

// Watch calls Reload every interval until ctx ends: CRL files are reloaded
// when they change (mtime, size, content hash), distribution point CRLs are
// refreshed before their nextUpdate, stale CRLs raise alarms.
func (c *Checker) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := c.Reload(ctx); err != nil && ctx.Err() == nil {
				c.log.Debug("revocation reload", "err", err)
			}
		}
	}
}

// refreshAt is when a fetched CRL should be fetched again: after
// RefreshInterval, and before nextUpdate (at 90% of the remaining time).
func (c *Checker) refreshAt(s *crlSource) time.Time {
	at := s.loaded.Add(c.opts.RefreshInterval)
	for _, d := range s.crls {
		if nu := d.crl.NextUpdate; !nu.IsZero() {
			early := nu.Add(-nu.Sub(s.loaded) / 10)
			if early.Before(at) {
				at = early
			}
		}
	}
	return at
}

func (c *Checker) refreshCDPs(ctx context.Context) error {
	if !c.fetchCDP {
		return nil
	}
	now := c.now()
	c.mu.Lock()
	type due struct {
		url    string
		issuer *x509.Certificate
	}
	var todo []due
	for u, s := range c.cdps {
		if s.issuer == nil || now.Sub(s.lastTry) < c.opts.RetryInterval && s.lastErr != nil {
			continue
		}
		if len(s.crls) == 0 || !now.Before(c.refreshAt(s)) {
			todo = append(todo, due{u, s.issuer})
		}
	}
	c.mu.Unlock()
	var errs []error
	for _, d := range todo {
		if _, err := c.fetchCRL(ctx, d.url, d.issuer); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cdpCRL returns the CRL of url for a handshake: the cached one when it is
// fresh, otherwise a fetched one. On failure it returns the cached (stale)
// CRL, if any, with an error (the alarm raised).
func (c *Checker) cdpCRL(ctx context.Context, url string, issuer *x509.Certificate) (*crlData, error) {
	now := c.now()
	issuerHash := sha256.Sum256(issuer.Raw)
	c.mu.Lock()
	s := c.cdps[url]
	var cached *crlData
	var lastErr error
	needFetch := true
	if s != nil {
		for _, d := range s.crls {
			if issuedBy(d.crl, issuer) {
				if err, ok := d.verified[issuerHash]; ok && err == nil {
					cached = d
				}
			}
		}
		lastErr = s.lastErr
		fresh := cached != nil && (cached.crl.NextUpdate.IsZero() || now.Before(cached.crl.NextUpdate))
		recentFail := s.lastErr != nil && now.Sub(s.lastTry) < c.opts.RetryInterval
		// A fresh CRL is used as is (Watch refreshes it before nextUpdate);
		// after a recent failure the cached state is used until the retry.
		needFetch = !fresh && !recentFail
		if s.issuer == nil {
			s.issuer = issuer
		}
	}
	c.mu.Unlock()
	if !needFetch {
		if cached == nil {
			if lastErr == nil {
				lastErr = errors.New("no CRL for this issuer")
			}
			return nil, c.raise(url, "no CRL: "+lastErr.Error())
		}
		return cached, nil
	}
	d, err := c.fetchCRL(ctx, url, issuer)
	if err != nil {
		if cached != nil {
			return cached, err
		}
		return nil, err
	}
	return d, nil
}

// fetchCRL fetches, verifies and stores the CRL of url, one fetch per URL
// at a time. The returned error has raised an alarm.
func (c *Checker) fetchCRL(ctx context.Context, url string, issuer *x509.Certificate) (*crlData, error) {
	c.flightMu.Lock()
	if f, ok := c.flights[url]; ok {
		c.flightMu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, c.raise(url, "CRL fetch: "+ctx.Err().Error())
		}
		return c.cachedCDP(url, issuer)
	}
	f := &flight{done: make(chan struct{})}
	c.flights[url] = f
	c.flightMu.Unlock()
	defer func() {
		c.flightMu.Lock()
		delete(c.flights, url)
		c.flightMu.Unlock()
		close(f.done)
	}()

	now := c.now()
	body, err := c.get(ctx, url, c.opts.MaxCRLSize)
	var crls []*crlData
	if err == nil {
		crls, err = parseCRLs(body)
	}
	if err == nil {
		if len(crls) != 1 {
			err = fmt.Errorf("%w: %d CRLs in one response", ErrBadCRL, len(crls))
		} else if !issuedBy(crls[0].crl, issuer) {
			err = fmt.Errorf("%w: issued by %q (key id %x), not by %q (key id %x)", ErrBadCRL,
				crls[0].crl.Issuer, crls[0].crl.AuthorityKeyId, issuer.Subject, issuer.SubjectKeyId)
		} else if serr := crls[0].crl.CheckSignatureFrom(issuer); serr != nil {
			err = fmt.Errorf("%w: signature: %v", ErrBadCRL, serr)
		} else {
			crls[0].verified[sha256.Sum256(issuer.Raw)] = nil
		}
	}
	c.mu.Lock()
	s := c.cdps[url]
	if s == nil {
		s = &crlSource{source: url, kind: "cdp", issuer: issuer}
		c.cdps[url] = s
	}
	s.lastTry = now
	if err != nil {
		s.lastErr = fmt.Errorf("revocation: fetch CRL %s: %w", url, err)
		c.mu.Unlock()
		return nil, c.raise(url, "CRL fetch failed: "+err.Error())
	}
	changed := !sameCRLs(s.crls, crls)
	s.crls, s.loaded, s.lastErr, s.issuer = crls, now, nil, issuer
	c.mu.Unlock()
	c.clear(url)
	c.log.Debug("CRL fetched", "url", url, "entries", len(crls[0].revoked), "next_update", crls[0].crl.NextUpdate)
	if changed {
		c.notify()
	}
	return crls[0], nil
}

func (c *Checker) cachedCDP(url string, issuer *x509.Certificate) (*crlData, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.cdps[url]
	if s == nil {
		return nil, fmt.Errorf("%s: no CRL", url)
	}
	if s.lastErr != nil {
		return nil, fmt.Errorf("%s: %w", url, s.lastErr)
	}
	for _, d := range s.crls {
		if issuedBy(d.crl, issuer) {
			return d, nil
		}
	}
	return nil, fmt.Errorf("%s: no CRL for %q", url, issuer.Subject)
}

// get fetches url with the HTTP timeout and a size limit.
func (c *Checker) get(ctx context.Context, url string, limit int64) ([]byte, error) {
	return c.do(ctx, http.MethodGet, url, "", nil, limit)
}

func (c *Checker) do(ctx context.Context, method, url, ctype string, body []byte, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.HTTPTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, resp.ContentLength, limit)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return data, nil
}

func pemBlocks(data []byte, typ string) [][]byte {
	var out [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		if b.Type == typ {
			out = append(out, b.Bytes)
		}
	}
}
