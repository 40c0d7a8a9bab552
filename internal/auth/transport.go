package auth

import (
	"context"
	"maps"
)

// Transport authenticates clients by what their transport proved (a
// verified client certificate, a TLS-PSK identity) and hands every other
// client to Next (passwords, anonymous access).
//
// A transport identity is the whole proof: a username or password the
// client also sends does not change who it is, and the Principal's
// Username is the transport identity, so %u in ACL templates means the
// same as %i.
type Transport struct {
	Next Authenticator
}

// Authenticate implements Authenticator.
func (t *Transport) Authenticate(ctx context.Context, r *Request) (*Principal, error) {
	if ti := r.Transport; ti != nil {
		if ti.ID == "" || !ti.Method.Valid() {
			return nil, ErrNotAuthorized
		}
		return &Principal{ID: ti.ID, Method: ti.Method, Username: ti.ID, Attrs: maps.Clone(ti.Attrs)}, nil
	}
	return t.Next.Authenticate(ctx, r)
}
