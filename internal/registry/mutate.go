package registry

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
)

// Add registers a device with its credentials, in one transaction. It
// returns the device and the secrets it made (generated PSKs and
// passwords, derived PSKs), to be shown once.
func (r *Registry) Add(nd NewDevice) (*Device, []Issued, error) {
	if !ValidDeviceID(nd.ID) {
		return nil, nil, invalid("device id %q: want 1 to %d characters of A-Z a-z 0-9 - _ . : @, starting with a letter or digit", nd.ID, maxIDLen)
	}
	if len(nd.Credentials) > maxCredentials {
		return nil, nil, invalid("at most %d credentials per device", maxCredentials)
	}
	creds, issued, err := r.makeCreds(nd.ID, nd.Credentials)
	if err != nil {
		return nil, nil, err
	}
	now := r.now().UTC()
	rec := &deviceRecord{ID: nd.ID, Status: StatusEnabled, Metadata: cloneMap(nd.Metadata), ACL: slices.Clone(nd.ACL),
		Credentials: creds, Created: now, Updated: now}
	if nd.Disabled {
		rec.Status = StatusDisabled
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.mu.RLock()
	_, exists := r.idx.devices[nd.ID]
	priv := r.ecdhPriv
	r.mu.RUnlock()
	if exists {
		return nil, nil, fmt.Errorf("registry: device %q: %w", nd.ID, ErrExists)
	}
	e, err := r.newEntry(rec, priv)
	if err != nil {
		return nil, nil, err
	}
	if err := r.commit(nd.ID, e); err != nil {
		return nil, nil, err
	}
	r.log.Info("device added", "device", nd.ID, "status", rec.Status, "credentials", len(creds))
	return e.dev.clone(), issued, nil
}

// makeCreds builds the records of new credentials for a device.
func (r *Registry) makeCreds(deviceID string, ncs []NewCredential) ([]credRecord, []Issued, error) {
	var creds []credRecord
	var issued []Issued
	for i := range ncs {
		cr, is, err := r.makeCred(deviceID, &ncs[i])
		if err != nil {
			if len(ncs) > 1 {
				return nil, nil, fmt.Errorf("credential %d: %w", i, err)
			}
			return nil, nil, err
		}
		creds = append(creds, cr)
		if is != nil {
			issued = append(issued, *is)
		}
	}
	return creds, issued, nil
}

func newCredID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// makeCred checks a new credential and makes its record. It does not check
// uniqueness (commit does).
func (r *Registry) makeCred(deviceID string, nc *NewCredential) (credRecord, *Issued, error) {
	cr := credRecord{Credential: Credential{ID: newCredID(), Kind: nc.Kind, Created: r.now().UTC()}}
	// Fields that belong to other kinds must be empty.
	x509Fields := nc.Fingerprint != "" || nc.Issuer != "" || nc.Serial != "" || nc.Subject != ""
	pskFields := nc.Key != nil || nc.Derived
	identity := nc.Identity != ""
	pwFields := nc.Password != nil || nc.PasswordHash != ""
	cert := nc.Certificate != nil
	foreign := func(bad bool) error {
		if bad {
			return invalid("%s credential with fields of another kind", nc.Kind)
		}
		return nil
	}
	switch nc.Kind {
	case KindX509:
		if err := foreign(pskFields || identity || pwFields || nc.SPKISHA256 != "" || nc.PublicKey != ""); err != nil {
			return cr, nil, err
		}
		modes := 0
		if cert {
			modes++
			fp := CertFingerprint(nc.Certificate)
			cr.Fingerprint = hex.EncodeToString(fp[:])
		}
		if nc.Fingerprint != "" {
			modes++
			fp, err := normHex(nc.Fingerprint, sha256.Size)
			if err != nil {
				return cr, nil, invalid("fingerprint: %v", err)
			}
			cr.Fingerprint = fp
		}
		if nc.Issuer != "" || nc.Serial != "" {
			modes++
			if nc.Issuer == "" || nc.Serial == "" {
				return cr, nil, invalid("issuer and serial go together")
			}
			if !validText(nc.Issuer, 1024) {
				return cr, nil, invalid("issuer must be a DN of at most 1024 bytes of UTF-8 without control characters")
			}
			s, err := normSerial(nc.Serial)
			if err != nil {
				return cr, nil, invalid("%v", err)
			}
			cr.Issuer, cr.Serial = nc.Issuer, s
		}
		if nc.Subject != "" {
			modes++
			if !validText(nc.Subject, 1024) {
				return cr, nil, invalid("subject must be at most 1024 bytes of UTF-8 without control characters")
			}
			if _, _, err := parseSubject(nc.Subject); err != nil {
				return cr, nil, invalid("%v", err)
			}
			cr.Subject = nc.Subject
		}
		if modes != 1 {
			return cr, nil, invalid("x509 credential needs exactly one of certificate, fingerprint, issuer+serial, subject")
		}
		return cr, nil, nil
	case KindPinnedKey:
		if err := foreign(pskFields || identity || pwFields || x509Fields || nc.PublicKey != ""); err != nil {
			return cr, nil, err
		}
		switch {
		case cert && nc.SPKISHA256 == "":
			pin := SPKISHA256(nc.Certificate)
			cr.SPKISHA256 = hex.EncodeToString(pin[:])
		case !cert && nc.SPKISHA256 != "":
			pin, err := normHex(nc.SPKISHA256, sha256.Size)
			if err != nil {
				return cr, nil, invalid("spki_sha256: %v", err)
			}
			cr.SPKISHA256 = pin
		default:
			return cr, nil, invalid("pinned-key credential needs exactly one of certificate, spki_sha256")
		}
		return cr, nil, nil
	case KindPSK:
		if err := foreign(cert || pwFields || x509Fields || nc.SPKISHA256 != "" || nc.PublicKey != ""); err != nil {
			return cr, nil, err
		}
		cr.Identity = nc.Identity
		if cr.Identity == "" {
			cr.Identity = deviceID
		}
		if err := validIdentity(cr.Identity); err != nil {
			return cr, nil, err
		}
		is := &Issued{CredentialID: cr.ID, Kind: KindPSK, Identity: cr.Identity}
		if nc.Derived {
			if nc.Key != nil {
				return cr, nil, invalid("a derived psk takes no key")
			}
			k, err := r.DerivePSK(cr.Identity)
			if err != nil {
				return cr, nil, err
			}
			cr.Derived, is.Secret = true, k
			return cr, is, nil
		}
		key := nc.Key
		if key == nil {
			key = make([]byte, defaultPSKLen)
			rand.Read(key)
			is.Secret = key
		} else {
			is = nil
		}
		if len(key) < minPSKLen || len(key) > maxPSKLen {
			return cr, nil, invalid("psk must be %d to %d bytes", minPSKLen, maxPSKLen)
		}
		sealed, err := sealLabeled(r.protector(), pskLabel(deviceID, cr.ID), key)
		if err != nil {
			return cr, nil, err
		}
		cr.SealedKey = sealed
		return cr, is, nil
	case KindECDH:
		if err := foreign(cert || pskFields || pwFields || x509Fields || nc.SPKISHA256 != ""); err != nil {
			return cr, nil, err
		}
		cr.Identity = nc.Identity
		if cr.Identity == "" {
			cr.Identity = deviceID
		}
		if err := validIdentity(cr.Identity); err != nil {
			return cr, nil, err
		}
		pub, err := normHex(nc.PublicKey, 32)
		if err != nil {
			return cr, nil, invalid("public_key: %v", err)
		}
		raw, _ := hex.DecodeString(pub)
		pk, err := ecdh.X25519().NewPublicKey(raw)
		if err != nil {
			return cr, nil, invalid("public_key: not an X25519 public key")
		}
		priv, err := r.brokerECDH()
		if err != nil {
			return cr, nil, err
		}
		shared, err := priv.ECDH(pk)
		if err != nil {
			return cr, nil, invalid("public_key: unusable X25519 public key (low order)")
		}
		clear(shared)
		cr.PublicKey = pub
		return cr, nil, nil
	case KindPassword:
		if err := foreign(cert || pskFields || identity || x509Fields || nc.SPKISHA256 != "" || nc.PublicKey != ""); err != nil {
			return cr, nil, err
		}
		if nc.Password != nil && nc.PasswordHash != "" {
			return cr, nil, invalid("give a password or a password hash, not both")
		}
		if nc.PasswordHash != "" {
			if !isPasswordHash(nc.PasswordHash) {
				return cr, nil, invalid("password_hash is not an argon2id or bcrypt hash within limits")
			}
			cr.PasswordHash = nc.PasswordHash
			return cr, nil, nil
		}
		pw := nc.Password
		var is *Issued
		if pw == nil {
			pw = newPassword()
			is = &Issued{CredentialID: cr.ID, Kind: KindPassword, Secret: pw}
		}
		if len(pw) < minPasswordLen || len(pw) > maxPasswordLen {
			return cr, nil, invalid("password must be %d to %d bytes", minPasswordLen, maxPasswordLen)
		}
		h, err := hashPassword(pw)
		if err != nil {
			return cr, nil, err
		}
		cr.PasswordHash = h
		return cr, is, nil
	}
	return cr, nil, invalid("credential kind %q (want x509, psk, pinned-key, ecdh or password)", nc.Kind)
}

// Update changes a device's metadata and/or ACL. It does not call the
// OnChange hooks: ACL rules are checked at every publish and delivery, so
// a narrowed ACL takes effect on live connections at once.
func (r *Registry) Update(id string, u DeviceUpdate) (*Device, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	cur, err := r.current(id)
	if err != nil {
		return nil, err
	}
	rec := cur.rec.clone()
	if u.Metadata != nil {
		rec.Metadata = cloneMap(*u.Metadata)
	}
	if u.ACL != nil {
		rec.ACL = slices.Clone(*u.ACL)
	}
	rec.Updated = r.now().UTC()
	e, err := r.rebuild(rec)
	if err != nil {
		return nil, err
	}
	if err := r.commit(id, e); err != nil {
		return nil, err
	}
	r.log.Info("device updated", "device", id)
	return e.dev.clone(), nil
}

// rebuild makes the entry of a changed record; the caller holds wmu.
func (r *Registry) rebuild(rec *deviceRecord) (*devEntry, error) {
	r.mu.RLock()
	priv := r.ecdhPriv
	r.mu.RUnlock()
	return r.newEntry(rec, priv)
}

// SetStatus enables or disables a device. Disabling calls the OnChange
// hooks; a disabled device is refused at every lookup although its
// credentials stay registered.
func (r *Registry) SetStatus(id string, s Status) (*Device, error) {
	if s != StatusEnabled && s != StatusDisabled {
		return nil, invalid("status %q (want enabled or disabled)", s)
	}
	d, changed, err := func() (*Device, bool, error) {
		r.wmu.Lock()
		defer r.wmu.Unlock()
		cur, err := r.current(id)
		if err != nil {
			return nil, false, err
		}
		if cur.rec.Status == s {
			return cur.dev.clone(), false, nil
		}
		rec := cur.rec.clone()
		rec.Status, rec.Updated = s, r.now().UTC()
		e, err := r.rebuild(rec)
		if err != nil {
			return nil, false, err
		}
		if err := r.commit(id, e); err != nil {
			return nil, false, err
		}
		return e.dev.clone(), true, nil
	}()
	if err != nil {
		return nil, err
	}
	if changed {
		r.log.Info("device status changed", "device", id, "status", s)
		if s == StatusDisabled {
			r.notify(id)
		}
	}
	return d, nil
}

// Remove deletes a device and calls the OnChange hooks.
func (r *Registry) Remove(id string) error {
	err := func() error {
		r.wmu.Lock()
		defer r.wmu.Unlock()
		if _, err := r.current(id); err != nil {
			return err
		}
		return r.commit(id, nil)
	}()
	if err != nil {
		return err
	}
	r.log.Info("device removed", "device", id)
	r.notify(id)
	return nil
}

// AddCredential adds a credential to a device. The returned Issued (nil
// when nothing was made) holds a generated or derived secret, to be shown
// once.
func (r *Registry) AddCredential(deviceID string, nc NewCredential) (*Credential, *Issued, error) {
	if _, ok := r.Device(deviceID); !ok {
		return nil, nil, fmt.Errorf("registry: device %q: %w", deviceID, ErrNotFound)
	}
	cr, is, err := r.makeCred(deviceID, &nc)
	if err != nil {
		return nil, nil, err
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	cur, err := r.current(deviceID)
	if err != nil {
		return nil, nil, err
	}
	rec := cur.rec.clone()
	if len(rec.Credentials) >= maxCredentials {
		return nil, nil, invalid("at most %d credentials per device", maxCredentials)
	}
	rec.Credentials = append(rec.Credentials, cr)
	rec.Updated = r.now().UTC()
	e, err := r.rebuild(rec)
	if err != nil {
		return nil, nil, err
	}
	if err := r.commit(deviceID, e); err != nil {
		return nil, nil, err
	}
	r.log.Info("credential added", "device", deviceID, "credential", cr.ID, "kind", cr.Kind)
	c := cr.Credential
	return &c, is, nil
}

// RemoveCredential removes a credential from a device and calls the
// OnChange hooks.
func (r *Registry) RemoveCredential(deviceID, credID string) error {
	err := func() error {
		r.wmu.Lock()
		defer r.wmu.Unlock()
		cur, err := r.current(deviceID)
		if err != nil {
			return err
		}
		rec := cur.rec.clone()
		i := slices.IndexFunc(rec.Credentials, func(c credRecord) bool { return c.ID == credID })
		if i < 0 {
			return fmt.Errorf("registry: device %q: credential %q: %w", deviceID, credID, ErrNotFound)
		}
		rec.Credentials = slices.Delete(rec.Credentials, i, i+1)
		rec.Updated = r.now().UTC()
		e, err := r.rebuild(rec)
		if err != nil {
			return err
		}
		return r.commit(deviceID, e)
	}()
	if err != nil {
		return err
	}
	r.log.Info("credential removed", "device", deviceID, "credential", credID)
	r.notify(deviceID)
	return nil
}

// RotateCredential replaces the secret of a psk (stored key; same length
// as before) or password credential with a new random one, returns it
// (shown once) and calls the OnChange hooks; the old secret fails from the
// next handshake on. Credentials with no broker-side secret (x509,
// pinned-key, ecdh) and fleet-derived PSKs give ErrNotRotatable: register
// the new certificate, key or identity and remove the old credential.
func (r *Registry) RotateCredential(deviceID, credID string) ([]byte, error) {
	r.mu.RLock()
	var kind Kind
	var derived bool
	var keyLen int
	if e := r.idx.devices[deviceID]; e != nil {
		for _, ce := range e.creds {
			if ce.cred.ID == credID {
				kind, derived, keyLen = ce.cred.Kind, ce.cred.Derived, len(ce.key)
			}
		}
	}
	r.mu.RUnlock()
	var secret []byte
	var hash string
	switch {
	case kind == "":
		return nil, fmt.Errorf("registry: device %q: credential %q: %w", deviceID, credID, ErrNotFound)
	case kind == KindPSK && !derived:
		secret = make([]byte, max(keyLen, minPSKLen))
		rand.Read(secret)
	case kind == KindPassword:
		secret = newPassword()
		var err error
		if hash, err = hashPassword(secret); err != nil {
			return nil, err
		}
	default:
		what := string(kind)
		if derived {
			what = "fleet-derived psk"
		}
		return nil, fmt.Errorf("registry: credential %q (%s): %w", credID, what, ErrNotRotatable)
	}
	err := func() error {
		r.wmu.Lock()
		defer r.wmu.Unlock()
		cur, err := r.current(deviceID)
		if err != nil {
			return err
		}
		rec := cur.rec.clone()
		i := slices.IndexFunc(rec.Credentials, func(c credRecord) bool { return c.ID == credID })
		if i < 0 || rec.Credentials[i].Kind != kind || rec.Credentials[i].Derived {
			return fmt.Errorf("registry: device %q: credential %q: %w", deviceID, credID, ErrNotFound)
		}
		c := rec.Credentials[i]
		if kind == KindPSK {
			if c.SealedKey, err = sealLabeled(r.protector(), pskLabel(deviceID, credID), secret); err != nil {
				return err
			}
		} else {
			c.PasswordHash = hash
		}
		rec.Credentials[i] = c
		rec.Updated = r.now().UTC()
		e, err := r.rebuild(rec)
		if err != nil {
			return err
		}
		return r.commit(deviceID, e)
	}()
	if err != nil {
		clear(secret)
		return nil, err
	}
	r.log.Info("credential rotated", "device", deviceID, "credential", credID, "kind", kind)
	r.notify(deviceID)
	return secret, nil
}
