package registry

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"slices"

	"moat/internal/auth"
	"moat/internal/tlspolicy"
)

// LookupPSK returns a copy of the PSK of an identity (tlspsk.KeyStore):
// the stored key of a psk credential, the fleet-derived key of a derived
// one, or the ECDH-derived key of an ecdh one. Unknown identities and
// identities of disabled devices are not found. Every lookup computes an
// HMAC-SHA256 (under the fleet key or a random dummy key), so unknown,
// disabled, stored and derived identities cost about the same; an ecdh
// identity costs one X25519 operation on its first lookup only.
func (r *Registry) LookupPSK(identity string) ([]byte, bool) {
	k, ok, _ := r.lookupPSK(identity)
	return k, ok
}

// lookupPSK is LookupPSK that also reports whether the identity is
// registered at all (known), even where it is refused.
func (r *Registry) lookupPSK(identity string) (key []byte, ok, known bool) {
	r.mu.RLock()
	ce := r.idx.creds[indexKey{spacePSK, identity}]
	fleet, priv := r.fleet, r.ecdhPriv
	r.mu.RUnlock()
	mac := fleet
	if mac == nil {
		mac = r.dummy[:]
	}
	derived := fleetPSK(mac, identity)
	if ce == nil {
		clear(derived)
		return nil, false, false
	}
	if !ce.dev.dev.Enabled() {
		clear(derived)
		return nil, false, true
	}
	switch {
	case ce.cred.Kind == KindPSK && ce.cred.Derived:
		if fleet == nil {
			clear(derived)
			return nil, false, true
		}
		return derived, true, true
	case ce.cred.Kind == KindPSK:
		clear(derived)
		return slices.Clone(ce.key), true, true
	case ce.cred.Kind == KindECDH:
		clear(derived)
		k, ok := ce.ecdhKey(priv)
		return k, ok, true
	}
	clear(derived)
	return nil, false, true
}

// PSKLookup is the method set of tlspsk.KeyStore.
type PSKLookup interface {
	LookupPSK(identity string) ([]byte, bool)
}

// PSKStore returns a tlspsk.KeyStore that answers from the registry and
// hands identities the registry does not know at all to fallback (e.g. the
// listener's psk_file store; nil for none). An identity the registry knows
// but refuses (disabled device, derived key without a fleet key) is
// refused, never passed to fallback, so a psk_file entry cannot revive a
// disabled device.
func (r *Registry) PSKStore(fallback PSKLookup) PSKLookup {
	return pskStore{r, fallback}
}

type pskStore struct {
	r        *Registry
	fallback PSKLookup
}

func (s pskStore) LookupPSK(identity string) ([]byte, bool) {
	k, ok, known := s.r.lookupPSK(identity)
	if known || s.fallback == nil {
		return k, ok
	}
	return s.fallback.LookupPSK(identity)
}

// ecdhKey returns a copy of the credential's ECDH-derived PSK, deriving it
// on first use.
func (ce *credEntry) ecdhKey(priv *ecdh.PrivateKey) ([]byte, bool) {
	if p := ce.ecdhPSK.Load(); p != nil {
		return slices.Clone(*p), true
	}
	if priv == nil || ce.ecdhPub == nil {
		return nil, false
	}
	shared, err := priv.ECDH(ce.ecdhPub)
	if err != nil {
		return nil, false
	}
	k := DeriveECDHPSK(shared, ce.cred.Identity)
	clear(shared)
	ce.ecdhPSK.Store(&k)
	return slices.Clone(k), true
}

// find returns the credential a key maps to.
func (r *Registry) find(k indexKey) *credEntry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.idx.creds[k]
}

// ByCertificate finds the device a client certificate belongs to: by its
// fingerprint, else by its issuer and serial number, else by a subject
// match (the most specific binding wins). ok is false when nothing matches
// or when the device is disabled; the device and credential are returned
// in the second case so the caller can tell "disabled" from "unknown".
//
// Only pass certificates whose chain crypto/tls (or VerifyPeer) verified
// against the client CAs: issuer, serial and subject are claims a
// self-signed certificate can make. A subject match trusts every
// configured client CA alike; bind by fingerprint or issuer+serial where
// several CAs are trusted.
func (r *Registry) ByCertificate(cert *x509.Certificate) (*Device, *Credential, bool) {
	ce := r.byCertificate(cert)
	if ce == nil {
		return nil, nil, false
	}
	c := ce.cred
	return ce.dev.dev.clone(), &c, ce.dev.dev.Enabled()
}

func (r *Registry) byCertificate(cert *x509.Certificate) *credEntry {
	if cert == nil {
		return nil
	}
	fp := CertFingerprint(cert)
	r.mu.RLock()
	ce := r.idx.creds[indexKey{spaceFingerprint, string(fp[:])}]
	sources := r.sources
	r.mu.RUnlock()
	if ce != nil {
		return ce
	}
	if cert.SerialNumber != nil {
		if dn := issuerDN(cert); dn != "" {
			if ce := r.find(indexKey{spaceIssuerSerial, dn + "\x00" + cert.SerialNumber.Text(16)}); ce != nil {
				return ce
			}
		}
	}
	for _, src := range sources {
		v, err := tlspolicy.Identity(cert, src)
		if err != nil {
			continue
		}
		if ce := r.find(indexKey{spaceSubject, src + "\x00" + v}); ce != nil {
			return ce
		}
	}
	return nil
}

// ByPinnedKey finds the device whose pinned-key credential is the SHA-256
// of a SubjectPublicKeyInfo (see SPKISHA256). ok is false when nothing
// matches or the device is disabled (the device is returned then).
func (r *Registry) ByPinnedKey(spkiSHA256 []byte) (*Device, bool) {
	ce := r.byPin(spkiSHA256)
	if ce == nil {
		return nil, false
	}
	return ce.dev.dev.clone(), ce.dev.dev.Enabled()
}

func (r *Registry) byPin(spkiSHA256 []byte) *credEntry {
	if len(spkiSHA256) != sha256.Size {
		return nil
	}
	return r.find(indexKey{spacePin, string(spkiSHA256)})
}

// passwordEntry returns the password credential of a device, or nil.
func (r *Registry) passwordEntry(deviceID string) *credEntry {
	r.mu.RLock()
	e := r.idx.devices[deviceID]
	r.mu.RUnlock()
	if e == nil {
		return nil
	}
	for _, ce := range e.creds {
		if ce.cred.Kind == KindPassword {
			return ce
		}
	}
	return nil
}

// VerifyPassword checks a device's password (the MQTT username is the
// device id). ok is true only when the password matches and the device is
// enabled; when it matches a disabled device, that device is returned with
// ok false. A device without a password credential costs a verification
// of a dummy hash, like a wrong password. At most GOMAXPROCS verifications
// run at once (argon2id is deliberately expensive).
func (r *Registry) VerifyPassword(deviceID string, pw []byte) (*Device, bool) {
	ce, match, err := r.verifyPassword(context.Background(), deviceID, pw)
	if err != nil || !match {
		return nil, false
	}
	return ce.dev.dev.clone(), ce.dev.dev.Enabled()
}

// verifyPassword returns the credential and whether pw matched it.
func (r *Registry) verifyPassword(ctx context.Context, deviceID string, pw []byte) (*credEntry, bool, error) {
	ce := r.passwordEntry(deviceID)
	hash := ""
	if ce != nil {
		hash = ce.hash
	} else {
		r.dummyOnce.Do(func() {
			r.dummyPW, r.dummyErr = hashPassword(newPassword())
		})
		if r.dummyErr != nil {
			return nil, false, r.dummyErr
		}
		hash = r.dummyPW
	}
	select {
	case r.pwSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	ok, err := auth.VerifyPassword(hash, pw)
	<-r.pwSlots
	if err != nil || !ok || ce == nil {
		return nil, false, err
	}
	return ce, true, nil
}

// Password helpers (package variables so tests can swap in cheap ones).
var (
	hashPassword   = auth.HashPassword
	isPasswordHash = auth.IsPasswordHash
)

// newPassword makes a random password: 24 random bytes, base64url (32
// characters).
func newPassword() []byte {
	b := make([]byte, generatedPassword)
	rand.Read(b)
	out := make([]byte, base64.RawURLEncoding.EncodedLen(len(b)))
	base64.RawURLEncoding.Encode(out, b)
	clear(b)
	return out
}
