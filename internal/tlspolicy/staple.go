package tlspolicy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"
)

// stapler holds the OCSP responses stapled to the server certificates, by
// the leaf's DER. A certificate without a response is served without a
// staple: a missing staple is never fatal.
type stapler struct {
	mu sync.Mutex
	// staples maps leaf DER to a good, current OCSP response.
	staples map[string]stapled
}

type stapled struct {
	raw        []byte
	nextUpdate time.Time
}

func (s *stapler) get(leaf []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.staples[string(leaf)]
	if !ok || (!st.nextUpdate.IsZero() && time.Now().After(st.nextUpdate)) {
		return nil
	}
	return st.raw
}

func (s *stapler) set(leaf []byte, st stapled) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.staples == nil {
		s.staples = make(map[string]stapled)
	}
	s.staples[string(leaf)] = st
}

// with returns c with its OCSP staple, when there is one.
func (s *stapler) with(c *tls.Certificate) *tls.Certificate {
	if s == nil || c == nil || len(c.Certificate) == 0 {
		return c
	}
	raw := s.get(c.Certificate[0])
	if raw == nil {
		return c
	}
	cp := *c
	cp.OCSPStaple = raw
	return &cp
}

// Staple fetches OCSP responses for the server certificates that name a
// responder (and carry their issuer in the chain), staples them in
// handshakes, and refreshes them before they expire, until ctx ends. It
// returns at once when no certificate names a responder.
func (p *Policy) Staple(ctx context.Context, client *http.Client) {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	for {
		next := p.refreshStaples(ctx, client)
		if next < 0 {
			return
		}
		select {
		case <-time.After(next):
		case <-ctx.Done():
			return
		}
	}
}

// refreshStaples fetches a response for every certificate that needs one
// and returns when to look again (-1: nothing to staple).
func (p *Policy) refreshStaples(ctx context.Context, client *http.Client) time.Duration {
	m := p.cur.Load()
	wait := time.Duration(-1)
	for _, lc := range m.certs {
		c := &lc.cert
		if len(c.Certificate) < 2 || c.Leaf == nil || len(c.Leaf.OCSPServer) == 0 {
			continue
		}
		issuer, err := x509.ParseCertificate(c.Certificate[1])
		if err != nil {
			continue
		}
		every := time.Hour
		resp, raw, err := fetchOCSP(ctx, client, c.Leaf, issuer)
		switch {
		case err != nil:
			p.log.Warn("OCSP staple not refreshed; handshakes go on without it", "file", lc.file, "err", err)
			every = time.Minute
		case resp.Status != ocsp.Good:
			p.log.Error("OCSP responder says the server certificate is not good", "file", lc.file, "status", resp.Status)
			every = 10 * time.Minute
		default:
			p.staples.set(c.Certificate[0], stapled{raw: raw, nextUpdate: resp.NextUpdate})
			if !resp.NextUpdate.IsZero() {
				// Refresh at half the remaining validity.
				every = max(time.Until(resp.NextUpdate)/2, time.Minute)
			}
		}
		if wait < 0 || every < wait {
			wait = every
		}
	}
	return wait
}

func fetchOCSP(ctx context.Context, client *http.Client, leaf, issuer *x509.Certificate) (*ocsp.Response, []byte, error) {
	req, err := ocsp.CreateRequest(leaf, issuer, nil)
	if err != nil {
		return nil, nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, leaf.OCSPServer[0], bytes.NewReader(req))
	if err != nil {
		return nil, nil, err
	}
	hreq.Header.Set("Content-Type", "application/ocsp-request")
	hresp, err := client.Do(hreq)
	if err != nil {
		return nil, nil, err
	}
	defer hresp.Body.Close()
	if hresp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("OCSP responder %s: HTTP %d", leaf.OCSPServer[0], hresp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(hresp.Body, 64<<10))
	if err != nil {
		return nil, nil, err
	}
	resp, err := ocsp.ParseResponseForCert(raw, leaf, issuer)
	if err != nil {
		return nil, nil, err
	}
	if resp.NextUpdate.Before(time.Now()) && !resp.NextUpdate.IsZero() {
		return nil, nil, fmt.Errorf("OCSP response from %s is stale (nextUpdate %s)", leaf.OCSPServer[0], resp.NextUpdate)
	}
	return resp, raw, nil
}
