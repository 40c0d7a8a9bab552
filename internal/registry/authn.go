package registry

import (
	"context"
	"encoding/hex"
	"fmt"
	"maps"

	"moat/internal/auth"
)

// Principal attributes the Authenticator adds.
const (
	AttrDevice         = "device"          // the device id
	AttrCredential     = "credential"      // the credential id
	AttrCredentialKind = "credential_kind" // x509, psk, pinned-key, ecdh, password
	// AttrSPKISHA256 is the transport attribute the broker may set on a
	// pinned-key TransportIdentity (hex SHA-256 of the SPKI) when it does
	// not pass the certificate with WithPeerCertificate.
	AttrSPKISHA256 = "spki_sha256"
)

// Authenticator authenticates registered devices (auth.Authenticator):
//
//   - a TLS-PSK transport identity (Method psk): the device with a psk or
//     ecdh credential of that identity;
//   - a client certificate (Method cert): ByCertificate on the leaf the
//     context carries (WithPeerCertificate), or, without one, the
//     "fingerprint" attribute of the transport identity;
//   - a pinned key (Method pinned-key): the device whose pin is the leaf's
//     SPKI hash (from the context, or the "spki_sha256" attribute). A pinned
//     key that is not registered is refused, never passed on;
//   - no transport identity, a username and a password: the device whose id
//     is the username, if it has a password credential.
//
// A matched, enabled device gives a Principal with ID = device id, the
// transport's Method (psk for ecdh credentials too, password for
// passwords), Username = device id (so %u means %i) and the transport's
// attributes plus AttrDevice, AttrCredential and AttrCredentialKind. A
// matched but disabled device is refused with auth.ErrNotAuthorized, and a
// wrong password with auth.ErrBadCredentials; neither falls through.
// Everything the registry does not know goes to Next (e.g. an
// auth.Transport in front of the static password list); with Next nil it is
// refused.
type Authenticator struct {
	Registry *Registry
	Next     auth.Authenticator
}

// Authenticate implements auth.Authenticator.
func (a *Authenticator) Authenticate(ctx context.Context, r *auth.Request) (*auth.Principal, error) {
	if r == nil {
		return nil, fmt.Errorf("registry: no request: %w", auth.ErrNotAuthorized)
	}
	reg := a.Registry
	if ti := r.Transport; ti != nil {
		var ce *credEntry
		switch ti.Method {
		case auth.MethodPSK:
			ce = reg.find(indexKey{spacePSK, ti.ID})
		case auth.MethodCert:
			if cert := peerCert(ctx); cert != nil {
				ce = reg.byCertificate(cert)
			} else if fp, err := hex.DecodeString(ti.Attrs["fingerprint"]); err == nil && len(fp) == 32 {
				ce = reg.find(indexKey{spaceFingerprint, string(fp)})
			}
		case auth.MethodPinnedKey:
			if cert := peerCert(ctx); cert != nil {
				pin := SPKISHA256(cert)
				ce = reg.byPin(pin[:])
			} else if pin, err := hex.DecodeString(ti.Attrs[AttrSPKISHA256]); err == nil {
				ce = reg.byPin(pin)
			}
			if ce == nil || ce.cred.Kind != KindPinnedKey {
				return nil, fmt.Errorf("registry: public key not registered: %w", auth.ErrNotAuthorized)
			}
		}
		if ce == nil {
			return a.next(ctx, r)
		}
		if !ce.dev.dev.Enabled() {
			return nil, fmt.Errorf("registry: device %q is disabled: %w", ce.dev.rec.ID, auth.ErrNotAuthorized)
		}
		return principal(ce, ti.Method, ti.Attrs), nil
	}
	if r.HasUsername && r.HasPassword && reg.passwordEntry(r.Username) != nil {
		ce, ok, err := reg.verifyPassword(ctx, r.Username, r.Password)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("registry: password check abandoned: %w", ctx.Err())
			}
			return nil, fmt.Errorf("registry: unusable password hash: %w", auth.ErrBadCredentials)
		}
		if !ok {
			return nil, fmt.Errorf("registry: wrong password: %w", auth.ErrBadCredentials)
		}
		if !ce.dev.dev.Enabled() {
			return nil, fmt.Errorf("registry: device %q is disabled: %w", ce.dev.rec.ID, auth.ErrNotAuthorized)
		}
		return principal(ce, auth.MethodPassword, nil), nil
	}
	return a.next(ctx, r)
}

func (a *Authenticator) next(ctx context.Context, r *auth.Request) (*auth.Principal, error) {
	if a.Next != nil {
		return a.Next.Authenticate(ctx, r)
	}
	switch {
	case r.Transport != nil:
		return nil, fmt.Errorf("registry: not a registered device: %w", auth.ErrNotAuthorized)
	case r.HasUsername && r.HasPassword:
		// Cost what a known device costs.
		a.Registry.verifyPassword(ctx, "", r.Password)
		return nil, fmt.Errorf("registry: unknown device or wrong password: %w", auth.ErrBadCredentials)
	case r.HasUsername || r.HasPassword:
		return nil, fmt.Errorf("registry: incomplete credentials: %w", auth.ErrBadCredentials)
	}
	return nil, fmt.Errorf("registry: no credentials: %w", auth.ErrNotAuthorized)
}

func principal(ce *credEntry, m auth.Method, transportAttrs map[string]string) *auth.Principal {
	attrs := maps.Clone(transportAttrs)
	if attrs == nil {
		attrs = make(map[string]string, 3)
	}
	id := ce.dev.rec.ID
	attrs[AttrDevice] = id
	attrs[AttrCredential] = ce.cred.ID
	attrs[AttrCredentialKind] = string(ce.cred.Kind)
	return &auth.Principal{ID: id, Method: m, Username: id, Attrs: attrs}
}

// Authorizer returns the per-device ACL as an auth.Authorizer, to be
// combined with the configuration's ACL through auth.AllOf (deny wins
// everywhere; a device's rules can only narrow what the configuration
// allows):
//
//   - a Principal that is not a registered device (no device with its ID)
//     is allowed here, leaving the decision to the other authorizers;
//     but one the registry authenticated (AttrDevice set) whose device is
//     gone is denied;
//   - a disabled device is denied everything (its connections are being
//     closed);
//   - otherwise the device's rules decide: a matching deny rule denies;
//     for publish, and separately for subscribe and delivery, a device
//     with at least one allow rule there is allowed only what an allow
//     rule matches (an allowlist), and a device with no allow rule there
//     is allowed what no deny rule matches.
//
// Rule changes apply to live connections at the next publish, subscribe or
// delivery.
func (r *Registry) Authorizer() auth.Authorizer { return authorizer{r} }

type authorizer struct{ r *Registry }

// acl returns the device ACL for p, or the decision when there is none.
func (a authorizer) acl(p *auth.Principal) (acl *deviceACL, decision bool) {
	// Only principals the registry authenticated are devices: another
	// principal whose ID happens to equal a device id is not that device.
	id := ""
	if p != nil {
		id = p.Attrs[AttrDevice]
	}
	if id == "" {
		return nil, true
	}
	a.r.mu.RLock()
	e := a.r.idx.devices[id]
	a.r.mu.RUnlock()
	switch {
	case e == nil:
		return nil, false
	case !e.dev.Enabled():
		return nil, false
	}
	return e.acl, false
}

func (a authorizer) CanPublish(p *auth.Principal, clientID, topic string) bool {
	acl, d := a.acl(p)
	if acl == nil {
		return d
	}
	return acl.pub.CanPublish(p, clientID, topic)
}

func (a authorizer) CanSubscribe(p *auth.Principal, clientID, filter string) bool {
	acl, d := a.acl(p)
	if acl == nil {
		return d
	}
	return acl.sub.CanSubscribe(p, clientID, filter)
}

func (a authorizer) CanReceive(p *auth.Principal, clientID, topic string) bool {
	acl, d := a.acl(p)
	if acl == nil {
		return d
	}
	return acl.sub.CanReceive(p, clientID, topic)
}
