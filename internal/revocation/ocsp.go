package revocation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/ocsp"
)

// checkOCSP asks the leaf's responder (cached until the response's
// nextUpdate). It returns a revoked error, an error describing missing data
// (alarm raised), or nil.
func (c *Checker) checkOCSP(ctx context.Context, leaf, issuer *x509.Certificate) error {
	responder := c.opts.OCSPResponder
	if responder == "" {
		if len(leaf.OCSPServer) == 0 {
			return nil // nothing to ask; CRLs (if any) still apply
		}
		responder = leaf.OCSPServer[0]
	}
	key := ocspKey{issuer: sha256.Sum256(issuer.Raw), serial: leaf.SerialNumber.String()}
	now := c.now()
	c.mu.Lock()
	e := c.ocsp[key]
	if e != nil && !now.Before(e.until) {
		e = nil
	}
	c.mu.Unlock()
	if e == nil {
		e = c.fetchOCSP(ctx, responder, leaf, issuer)
		c.mu.Lock()
		if len(c.ocsp) >= maxOCSPEntries {
			c.pruneOCSPLocked(now)
			if len(c.ocsp) >= maxOCSPEntries {
				clear(c.ocsp)
			}
		}
		c.ocsp[key] = e
		c.mu.Unlock()
		if e.err == nil {
			c.clear(responder)
			if e.status == ocsp.Revoked {
				c.notify()
			}
		}
	}
	if e.err != nil {
		return c.raise(responder, "OCSP: "+e.err.Error())
	}
	switch e.status {
	case ocsp.Good:
		return nil
	case ocsp.Revoked:
		return revokedError(leaf, "OCSP responder "+responder)
	}
	return c.raise(responder, fmt.Sprintf("OCSP: status unknown for serial %s of %q", leaf.SerialNumber.Text(16), issuer.Subject))
}

// fetchOCSP queries responder; a failure is cached for RetryInterval.
func (c *Checker) fetchOCSP(ctx context.Context, responder string, leaf, issuer *x509.Certificate) *ocspEntry {
	now := c.now()
	fail := func(err error) *ocspEntry {
		return &ocspEntry{err: err, until: now.Add(c.opts.RetryInterval), responder: responder}
	}
	req, err := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{})
	if err != nil {
		return fail(err)
	}
	body, err := c.do(ctx, "POST", responder, "application/ocsp-request", req, maxOCSPSize)
	if err != nil {
		return fail(err)
	}
	resp, err := ocsp.ParseResponseForCert(body, leaf, issuer)
	if err != nil {
		return fail(fmt.Errorf("%w: %v", ErrBadOCSP, err))
	}
	if err := checkOCSPResponse(resp, issuer, now); err != nil {
		return fail(err)
	}
	until := resp.NextUpdate
	if until.IsZero() {
		until = now.Add(c.opts.RefreshInterval)
	}
	return &ocspEntry{status: resp.Status, until: until, responder: responder}
}

// checkOCSPResponse checks freshness and, for a delegated responder, its
// certificate (OCSP signing EKU, validity); ParseResponseForCert has
// checked the signatures and that it answers for this certificate.
func checkOCSPResponse(resp *ocsp.Response, issuer *x509.Certificate, now time.Time) error {
	if resp.ThisUpdate.After(now.Add(clockSkew)) {
		return fmt.Errorf("%w: thisUpdate %s is in the future", ErrBadOCSP, resp.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if !resp.NextUpdate.IsZero() && now.After(resp.NextUpdate.Add(clockSkew)) {
		return fmt.Errorf("%w: stale, nextUpdate %s passed", ErrBadOCSP, resp.NextUpdate.UTC().Format(time.RFC3339))
	}
	if rc := resp.Certificate; rc != nil && !bytes.Equal(rc.Raw, issuer.Raw) {
		if !slices.Contains(rc.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
			return fmt.Errorf("%w: delegated responder certificate lacks the OCSP signing usage", ErrBadOCSP)
		}
		if now.Before(rc.NotBefore) || now.After(rc.NotAfter) {
			return fmt.Errorf("%w: delegated responder certificate is not valid now", ErrBadOCSP)
		}
	}
	return nil
}

func (c *Checker) pruneOCSP() {
	c.mu.Lock()
	c.pruneOCSPLocked(c.now())
	c.mu.Unlock()
}

func (c *Checker) pruneOCSPLocked(now time.Time) {
	for k, e := range c.ocsp {
		if !now.Before(e.until) {
			delete(c.ocsp, k)
		}
	}
}
