package revocation

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"moat/internal/tlspolicy"
)

var ctx = context.Background()

func ptr[T any](v T) *T { return &v }

func mustNew(t *testing.T, o Options) *Checker {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantRevoked(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrRevoked) || !errors.Is(err, tlspolicy.ErrRevoked) {
		t.Fatalf("want ErrRevoked (and tlspolicy.ErrRevoked), got %v", err)
	}
	if tlspolicy.ClassifyHandshakeError(err) != tlspolicy.ReasonRevoked {
		t.Fatalf("classified as %q", tlspolicy.ClassifyHandshakeError(err))
	}
}

func wantOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("want nil, got %v", err)
	}
}

func wantAlarm(t *testing.T, c *Checker, source, substr string) {
	t.Helper()
	for _, a := range c.Alarms() {
		if a.Source == source && strings.Contains(a.Message, substr) && !a.Since.IsZero() {
			return
		}
	}
	t.Fatalf("no alarm for %s containing %q; alarms: %+v", source, substr, c.Alarms())
}

// A CRL made by `openssl ca -gencrl` revokes a leaf; the root's CRL revokes
// the intermediate after a reload, refusing every leaf below it.
func TestOpenSSLCRLRevokedLeafAndIntermediate(t *testing.T) {
	root := newRoot(t, "Root")
	inter := issue(t, root, "Intermediate", true, certOpts{})
	leaf1 := issue(t, inter, "leaf1", false, certOpts{})
	leaf2 := issue(t, inter, "leaf2", false, certOpts{})
	dir := t.TempDir()
	interCRL, rootCRL := filepath.Join(dir, "inter.crl"), filepath.Join(dir, "root.crl")

	oi := newOpenSSLCA(t, inter)
	oi.revoke(leaf1.cert)
	oi.gencrl(interCRL)
	or := newOpenSSLCA(t, root)
	or.gencrl(rootCRL)

	c := mustNew(t, Options{CRLFiles: []string{interCRL, rootCRL}, Policy: FailClosed})
	var notified atomic.Int32
	c.OnRevoked(func() { notified.Add(1) })

	chain := func(l *testCA) []*x509.Certificate { return []*x509.Certificate{l.cert, inter.cert, root.cert} }
	wantRevoked(t, c.Check(ctx, chain(leaf1)))
	wantOK(t, c.Check(ctx, chain(leaf2)))

	// Revoke the intermediate at the root: takes effect on Reload.
	or.revoke(inter.cert)
	or.gencrl(rootCRL)
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if notified.Load() != 1 {
		t.Fatalf("OnRevoked called %d times, want 1", notified.Load())
	}
	err := c.Check(ctx, chain(leaf2))
	wantRevoked(t, err)
	if !strings.Contains(err.Error(), "Intermediate") {
		t.Errorf("error should name the intermediate: %v", err)
	}
	// Nothing changed: no second notification.
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if notified.Load() != 1 {
		t.Fatalf("OnRevoked called %d times after an unchanged reload", notified.Load())
	}
	st := c.Status()
	if len(st) != 2 || st[0].Entries != 1 || st[1].Entries != 1 || st[1].Kind != "file" || st[0].NextUpdate.IsZero() {
		t.Fatalf("status: %+v", st)
	}
	if len(c.Alarms()) != 0 {
		t.Fatalf("unexpected alarms: %+v", c.Alarms())
	}
}

// A CRL file made with x509.CreateRevocationList, rewritten while Watch
// runs, takes effect without a restart.
func TestGoCRLFileWatch(t *testing.T) {
	root := newRoot(t, "Root")
	leaf := issue(t, root, "leaf", false, certOpts{})
	f := filepath.Join(t.TempDir(), "root.crl")
	writeFile(t, f, root.crl(t, time.Now(), 24*time.Hour))

	c := mustNew(t, Options{CRLFiles: []string{f}})
	revoked := make(chan struct{}, 1)
	c.OnRevoked(func() {
		select {
		case revoked <- struct{}{}:
		default:
		}
	})
	chain := []*x509.Certificate{leaf.cert, root.cert}
	wantOK(t, c.Check(ctx, chain))

	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { c.Watch(wctx, 10*time.Millisecond) })
	defer func() { cancel(); wg.Wait() }()

	writeFile(t, f, root.crl(t, time.Now(), 24*time.Hour, leaf.cert.SerialNumber))
	select {
	case <-revoked:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not pick up the new CRL")
	}
	wantRevoked(t, c.Check(ctx, chain))

	// A broken rewrite keeps the previous CRL and raises an alarm.
	writeFile(t, f, []byte("garbage"))
	deadline := time.Now().Add(5 * time.Second)
	for len(c.Alarms()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	wantAlarm(t, c, f, "keeping the previous one")
	wantRevoked(t, c.Check(ctx, chain))
}

// CRLs at distribution points (leaf -> intermediate's CRL, intermediate ->
// root's CRL) are fetched once, cached, refreshed before nextUpdate, and a
// new revocation arriving with a refresh is enforced.
func TestCDPFetchCacheRefresh(t *testing.T) {
	srv := newCRLServer(t)
	clk := newClock()
	root := newRoot(t, "Root")
	inter := issue(t, root, "Intermediate", true, certOpts{cdp: []string{srv.URL + "/root.crl"}})
	leaf := issue(t, inter, "leaf", false, certOpts{cdp: []string{srv.URL + "/inter.crl", "ldap://ignored/"}})
	srv.set("/root.crl", root.crl(t, clk.Now(), 10*time.Hour))
	srv.set("/inter.crl", inter.crl(t, clk.Now(), 10*time.Hour))

	c := mustNew(t, Options{Now: clk.Now, RefreshInterval: time.Hour, Policy: FailClosed})
	var notified atomic.Int32
	c.OnRevoked(func() { notified.Add(1) })
	chain := []*x509.Certificate{leaf.cert, inter.cert, root.cert}
	for range 5 {
		wantOK(t, c.Check(ctx, chain))
	}
	if srv.count("/inter.crl") != 1 || srv.count("/root.crl") != 1 {
		t.Fatalf("fetches: inter %d root %d, want 1 each (cached)", srv.count("/inter.crl"), srv.count("/root.crl"))
	}
	// Not due yet.
	clk.Add(30 * time.Minute)
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if srv.count("/inter.crl") != 1 {
		t.Fatal("refreshed too early")
	}
	// The CA revokes the leaf; the refresh after RefreshInterval brings it.
	srv.set("/inter.crl", inter.crl(t, clk.Now(), 10*time.Hour, leaf.cert.SerialNumber))
	clk.Add(31 * time.Minute)
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if srv.count("/inter.crl") != 2 || srv.count("/root.crl") != 2 {
		t.Fatalf("refresh: inter %d root %d fetches, want 2 each", srv.count("/inter.crl"), srv.count("/root.crl"))
	}
	if notified.Load() == 0 {
		t.Fatal("OnRevoked not called for new CDP data")
	}
	wantRevoked(t, c.Check(ctx, chain))
	st := c.Status()
	if len(st) != 2 || st[0].Kind != "cdp" || st[0].Source != srv.URL+"/inter.crl" || st[0].Entries != 1 {
		t.Fatalf("status: %+v", st)
	}

	// Refresh happens before nextUpdate even with a long RefreshInterval.
	c2 := mustNew(t, Options{Now: clk.Now, RefreshInterval: 100 * time.Hour})
	srv.set("/inter.crl", inter.crl(t, clk.Now(), 2*time.Hour))
	wantOK(t, c2.Check(ctx, []*x509.Certificate{issue(t, inter, "other", false, certOpts{cdp: []string{srv.URL + "/inter.crl"}}).cert, inter.cert}))
	before := srv.count("/inter.crl")
	clk.Add(time.Hour + 50*time.Minute) // within the last 10% before nextUpdate
	_ = c2.Reload(ctx)
	if srv.count("/inter.crl") != before+1 {
		t.Fatalf("not refreshed before nextUpdate: %d -> %d", before, srv.count("/inter.crl"))
	}
}

// A CRL whose signature does not verify against the issuer in the chain is
// rejected, from a distribution point and from a file.
func TestBadSignatureCRL(t *testing.T) {
	srv := newCRLServer(t)
	root := newRoot(t, "Root")
	impostor := newRoot(t, "Root") // same name, other key
	leaf := issue(t, root, "leaf", false, certOpts{cdp: []string{srv.URL + "/root.crl"}})
	// Same issuer name and key identifier as the root, other key.
	fake := *impostor.cert
	fake.SubjectKeyId, fake.RawSubject = root.cert.SubjectKeyId, root.cert.RawSubject
	forged := (&testCA{cert: &fake, key: impostor.key}).crl(t, time.Now(), time.Hour, leaf.cert.SerialNumber)
	srv.set("/root.crl", forged)
	chain := []*x509.Certificate{leaf.cert, root.cert}

	for _, policy := range []string{FailOpen, FailClosed} {
		t.Run("cdp/"+policy, func(t *testing.T) {
			c := mustNew(t, Options{Policy: policy})
			err := c.Check(ctx, chain)
			if errors.Is(err, ErrRevoked) {
				t.Fatal("forged CRL was believed")
			}
			if (policy == FailClosed) != errors.Is(err, ErrUnavailable) {
				t.Fatalf("policy %s: %v", policy, err)
			}
			wantAlarm(t, c, srv.URL+"/root.crl", "signature")
			if st := c.Status(); len(st) != 1 || !strings.Contains(st[0].LastError, "signature") {
				t.Fatalf("status: %+v", st)
			}
		})
		t.Run("file/"+policy, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "forged.crl")
			writeFile(t, f, forged)
			c := mustNew(t, Options{CRLFiles: []string{f}, FetchCDP: ptr(false), Policy: policy})
			err := c.Check(ctx, chain)
			if errors.Is(err, ErrRevoked) {
				t.Fatal("forged CRL was believed")
			}
			if (policy == FailClosed) != errors.Is(err, ErrUnavailable) {
				t.Fatalf("policy %s: %v", policy, err)
			}
			wantAlarm(t, c, f, "does not verify")
		})
	}
}

// Unreachable distribution point, stale CRL file and unreachable OCSP
// responder: fail_open accepts, fail_closed refuses, both raise an alarm.
// A stale CRL still revokes what it lists under both policies.
func TestUnavailablePolicies(t *testing.T) {
	root := newRoot(t, "Root")
	dead := deadURL(t)
	clk := newClock()
	staleFile := filepath.Join(t.TempDir(), "stale.crl")
	revokedLeaf := issue(t, root, "revoked", false, certOpts{})
	writeFile(t, staleFile, root.crl(t, clk.Now().Add(-48*time.Hour), 24*time.Hour, revokedLeaf.cert.SerialNumber))

	cases := []struct {
		name   string
		leaf   *testCA
		opts   Options
		source string
		alarm  string
	}{
		{"unreachable cdp", issue(t, root, "a", false, certOpts{cdp: []string{dead + "/crl"}}), Options{}, dead + "/crl", "CRL fetch failed"},
		{"stale crl file", issue(t, root, "b", false, certOpts{}), Options{CRLFiles: []string{staleFile}}, staleFile, "stale"},
		{"unreachable ocsp (aia)", issue(t, root, "c", false, certOpts{ocsp: []string{dead + "/ocsp"}}), Options{OCSP: true}, dead + "/ocsp", "OCSP"},
		{"unreachable ocsp (override)", issue(t, root, "d", false, certOpts{}), Options{OCSP: true, OCSPResponder: dead + "/o"}, dead + "/o", "OCSP"},
	}
	for _, tc := range cases {
		for _, policy := range []string{FailOpen, FailClosed} {
			t.Run(tc.name+"/"+policy, func(t *testing.T) {
				o := tc.opts
				o.Policy, o.Now = policy, clk.Now
				c := mustNew(t, o)
				err := c.Check(ctx, []*x509.Certificate{tc.leaf.cert, root.cert})
				if policy == FailOpen {
					wantOK(t, err)
				} else if !errors.Is(err, ErrUnavailable) || errors.Is(err, tlspolicy.ErrRevoked) {
					t.Fatalf("fail_closed: want ErrUnavailable, got %v", err)
				}
				wantAlarm(t, c, tc.source, tc.alarm)
				wantAlarm(t, c, tc.source, policy)
				if tc.source == staleFile {
					wantRevoked(t, c.Check(ctx, []*x509.Certificate{revokedLeaf.cert, root.cert}))
				}
			})
		}
	}

	// The stale alarm is raised by Reload even when nobody connects.
	c := mustNew(t, Options{CRLFiles: []string{staleFile}, Now: clk.Now})
	if len(c.Alarms()) != 0 {
		t.Fatal("alarm before any check")
	}
	_ = c.Reload(ctx)
	wantAlarm(t, c, staleFile, "nextUpdate")

	// An unreachable CDP is not hammered: retried after RetryInterval.
	var hits atomic.Int32
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer flaky.Close()
	leaf := issue(t, root, "e", false, certOpts{cdp: []string{flaky.URL + "/crl"}})
	c = mustNew(t, Options{Now: clk.Now, RetryInterval: time.Minute})
	for range 3 {
		wantOK(t, c.Check(ctx, []*x509.Certificate{leaf.cert, root.cert}))
	}
	if hits.Load() != 1 {
		t.Fatalf("%d fetches while backing off, want 1", hits.Load())
	}
	clk.Add(2 * time.Minute)
	_ = c.Check(ctx, []*x509.Certificate{leaf.cert, root.cert})
	if hits.Load() != 2 {
		t.Fatalf("%d fetches after RetryInterval, want 2", hits.Load())
	}
}

// ocspResponder answers from a serial -> status map, signed by the CA or by
// a delegated responder.
type ocspResponder struct {
	*httptest.Server
	hits atomic.Int32
}

func newOCSPResponder(t *testing.T, ca *testCA, signer *testCA, status map[string]int, now func() time.Time) *ocspResponder {
	r := &ocspResponder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.hits.Add(1)
		body := make([]byte, 4096)
		n, _ := req.Body.Read(body)
		oreq, err := ocsp.ParseRequest(body[:n])
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		st, ok := status[oreq.SerialNumber.String()]
		if !ok {
			st = ocsp.Unknown
		}
		tmpl := ocsp.Response{
			Status:       st,
			SerialNumber: oreq.SerialNumber,
			ThisUpdate:   now().Add(-time.Minute),
			NextUpdate:   now().Add(time.Hour),
		}
		if st == ocsp.Revoked {
			tmpl.RevokedAt = now().Add(-time.Hour)
			tmpl.RevocationReason = ocsp.KeyCompromise
		}
		responderCert := ca.cert
		if signer != ca {
			responderCert = signer.cert
			tmpl.Certificate = signer.cert
		}
		der, err := ocsp.CreateResponse(ca.cert, responderCert, tmpl, signer.key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		_, _ = w.Write(der)
	}))
	t.Cleanup(r.Close)
	return r
}

func TestOCSP(t *testing.T) {
	clk := newClock()
	root := newRoot(t, "Root")
	status := map[string]int{}
	resp := newOCSPResponder(t, root, root, status, clk.Now)
	delegate := issue(t, root, "OCSP responder", false, certOpts{eku: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}})
	delegated := newOCSPResponder(t, root, delegate, status, clk.Now)
	noEKU := issue(t, root, "not a responder", false, certOpts{})
	badDelegate := newOCSPResponder(t, root, noEKU, status, clk.Now)
	impostor := newRoot(t, "Root")
	forged := newOCSPResponder(t, root, impostor, status, clk.Now)

	good := issue(t, root, "good", false, certOpts{ocsp: []string{resp.URL}})
	revoked := issue(t, root, "revoked", false, certOpts{ocsp: []string{resp.URL}})
	unknown := issue(t, root, "unknown", false, certOpts{ocsp: []string{resp.URL}})
	status[good.cert.SerialNumber.String()] = ocsp.Good
	status[revoked.cert.SerialNumber.String()] = ocsp.Revoked

	cases := []struct {
		name      string
		leaf      *testCA
		responder string // override
		policy    string
		want      error // nil, ErrRevoked, ErrUnavailable
	}{
		{"good", good, "", FailClosed, nil},
		{"revoked", revoked, "", FailOpen, ErrRevoked},
		{"revoked fail_closed", revoked, "", FailClosed, ErrRevoked},
		{"unknown fail_open", unknown, "", FailOpen, nil},
		{"unknown fail_closed", unknown, "", FailClosed, ErrUnavailable},
		{"delegated responder good", good, delegated.URL, FailClosed, nil},
		{"delegated responder revoked", revoked, delegated.URL, FailClosed, ErrRevoked},
		{"delegate without OCSP EKU", revoked, badDelegate.URL, FailClosed, ErrUnavailable},
		{"forged signature", revoked, forged.URL, FailClosed, ErrUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustNew(t, Options{OCSP: true, OCSPResponder: tc.responder, Policy: tc.policy, Now: clk.Now})
			err := c.Check(ctx, []*x509.Certificate{tc.leaf.cert, root.cert})
			switch tc.want {
			case nil:
				wantOK(t, err)
			case ErrRevoked:
				wantRevoked(t, err)
			default:
				if !errors.Is(err, tc.want) {
					t.Fatalf("want %v, got %v", tc.want, err)
				}
			}
			if tc.want == ErrUnavailable || tc.name == "unknown fail_open" {
				src := tc.responder
				if src == "" {
					src = resp.URL
				}
				wantAlarm(t, c, src, "OCSP")
			}
		})
	}

	// Responses are cached until nextUpdate.
	c := mustNew(t, Options{OCSP: true, Now: clk.Now})
	before := resp.hits.Load()
	for range 5 {
		wantOK(t, c.Check(ctx, []*x509.Certificate{good.cert, root.cert}))
	}
	if got := resp.hits.Load() - before; got != 1 {
		t.Fatalf("%d OCSP requests, want 1 (cached)", got)
	}
	clk.Add(61 * time.Minute)
	status[good.cert.SerialNumber.String()] = ocsp.Revoked
	var notified atomic.Int32
	c.OnRevoked(func() { notified.Add(1) })
	wantRevoked(t, c.Check(ctx, []*x509.Certificate{good.cert, root.cert}))
	if got := resp.hits.Load() - before; got != 2 {
		t.Fatalf("%d OCSP requests after nextUpdate, want 2", got)
	}
	if notified.Load() != 1 {
		t.Fatal("OnRevoked not called for an OCSP revocation")
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Options{Policy: "maybe"}); !errors.Is(err, ErrOptions) {
		t.Errorf("bad policy: %v", err)
	}
	if _, err := New(Options{CRLFiles: []string{filepath.Join(t.TempDir(), "missing.crl")}}); err == nil {
		t.Error("missing CRL file accepted")
	}
	f := filepath.Join(t.TempDir(), "bad.crl")
	writeFile(t, f, []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"))
	if _, err := New(Options{CRLFiles: []string{f}}); !errors.Is(err, ErrBadCRL) {
		t.Errorf("bad CRL file: %v", err)
	}
}

// An oversized CRL at a distribution point is refused.
func TestCDPSizeLimit(t *testing.T) {
	srv := newCRLServer(t)
	root := newRoot(t, "Root")
	leaf := issue(t, root, "leaf", false, certOpts{cdp: []string{srv.URL + "/big"}})
	srv.set("/big", make([]byte, 4096))
	c := mustNew(t, Options{MaxCRLSize: 1024, Policy: FailClosed})
	if err := c.Check(ctx, []*x509.Certificate{leaf.cert, root.cert}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
	wantAlarm(t, c, srv.URL+"/big", "too large")
}

// The tlspolicy adapter works and a chain of one certificate is not checked.
func TestFuncAdapter(t *testing.T) {
	root := newRoot(t, "Root")
	c := mustNew(t, Options{Policy: FailClosed})
	f := c.Func()
	wantOK(t, f([]*x509.Certificate{root.cert}))
	wantOK(t, f(nil))
}
