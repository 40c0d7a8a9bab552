package registry

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// SetFleetKey sets the fleet key (32 to 64 bytes, e.g. from
// NewRandomKey) from which derived PSKs are computed: PSK =
// HMAC-SHA256(fleet key, identity). Replacing a key calls the OnChange
// hooks for every device with a derived PSK.
func (r *Registry) SetFleetKey(key []byte) error {
	if len(key) < minFleetKeyLen || len(key) > maxFleetKeyLen {
		return invalid("fleet key must be %d to %d bytes", minFleetKeyLen, maxFleetKeyLen)
	}
	var affected []string
	err := func() error {
		r.wmu.Lock()
		defer r.wmu.Unlock()
		if r.closed {
			return fmt.Errorf("registry: %w", ErrClosed)
		}
		sealed, err := sealLabeled(r.protector(), labelFleet, key)
		if err != nil {
			return err
		}
		err = r.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFleet, sealed) })
		if err != nil {
			return fmt.Errorf("registry: %s: writing fleet key: %w", r.path, err)
		}
		r.mu.Lock()
		replaced := r.fleet != nil && !hmac.Equal(r.fleet, key)
		clear(r.fleet)
		r.fleet = bytes.Clone(key)
		if replaced {
			for id, e := range r.idx.devices {
				if slices.ContainsFunc(e.creds, func(c *credEntry) bool { return c.cred.Derived }) {
					affected = append(affected, id)
				}
			}
		}
		r.mu.Unlock()
		return nil
	}()
	if err != nil {
		return err
	}
	sort.Strings(affected)
	r.log.Info("fleet key set", "devices_affected", len(affected))
	r.notify(affected...)
	return nil
}

// HasFleetKey reports whether a fleet key is set.
func (r *Registry) HasFleetKey() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.fleet != nil
}

// NewRandomKey returns 32 random bytes (a fleet key, a PSK).
func NewRandomKey() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

// DerivePSK returns the fleet-derived PSK of an identity,
// HMAC-SHA256(fleet key, identity), for provisioning a device. It does not
// require the device to be registered; the broker accepts the key only
// for an enabled device with a derived psk credential of that identity.
func (r *Registry) DerivePSK(identity string) ([]byte, error) {
	if err := validIdentity(identity); err != nil {
		return nil, err
	}
	r.mu.RLock()
	fleet := r.fleet
	r.mu.RUnlock()
	if fleet == nil {
		return nil, fmt.Errorf("registry: %w: set one first", ErrNoFleetKey)
	}
	return fleetPSK(fleet, identity), nil
}

func fleetPSK(key []byte, identity string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(identity))
	return m.Sum(nil)
}

// brokerECDH returns the broker's X25519 key, making and storing it
// (encrypted) on first use.
func (r *Registry) brokerECDH() (*ecdh.PrivateKey, error) {
	r.mu.RLock()
	priv := r.ecdhPriv
	r.mu.RUnlock()
	if priv != nil {
		return priv, nil
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.mu.RLock()
	priv = r.ecdhPriv
	r.mu.RUnlock()
	if priv != nil {
		return priv, nil
	}
	if r.closed {
		return nil, fmt.Errorf("registry: %w", ErrClosed)
	}
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("registry: generating ECDH key: %w", err)
	}
	raw := priv.Bytes()
	sealed, err := sealLabeled(r.protector(), labelECDH, raw)
	clear(raw)
	if err != nil {
		return nil, err
	}
	err = r.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m.Get(keyECDH) != nil {
			return errors.New("ECDH key already stored")
		}
		return m.Put(keyECDH, sealed)
	})
	if err != nil {
		return nil, fmt.Errorf("registry: %s: writing ECDH key: %w", r.path, err)
	}
	r.mu.Lock()
	r.ecdhPriv = priv
	r.mu.Unlock()
	r.log.Info("broker ECDH key generated")
	return priv, nil
}

// BrokerECDHPublicKey returns the broker's long-term X25519 public key (32
// bytes), generating the key pair on first use. Devices with an ecdh
// credential combine it with their private key (DeviceECDHPSK).
func (r *Registry) BrokerECDHPublicKey() ([]byte, error) {
	priv, err := r.brokerECDH()
	if err != nil {
		return nil, err
	}
	return priv.PublicKey().Bytes(), nil
}

// RotateMasterKey re-encrypts every secret under newKeys in one
// transaction; from then on the registry opens only with newKeys. The file
// is then compacted into a fresh copy, so that blobs sealed under the old
// key do not linger in freed pages (if that step fails the registry stays
// correct and usable, and the failure is logged and returned wrapped).
func (r *Registry) RotateMasterKey(newKeys KeyProtector) error {
	if newKeys == nil {
		return fmt.Errorf("registry: %w: none given", ErrMasterKey)
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return fmt.Errorf("registry: %w", ErrClosed)
	}
	old := r.protector()
	reseal := func(label string, sealed []byte) ([]byte, error) {
		pt, err := openLabeled(old, label, sealed)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		defer clear(pt)
		return sealLabeled(newKeys, label, pt)
	}
	err := r.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		for _, m := range []struct {
			key   []byte
			label string
		}{{keyCheck, labelKeyCheck}, {keyFleet, labelFleet}, {keyECDH, labelECDH}} {
			v := meta.Get(m.key)
			if v == nil {
				continue
			}
			n, err := reseal(m.label, v)
			if err != nil {
				return err
			}
			if err := meta.Put(m.key, n); err != nil {
				return err
			}
		}
		devs := tx.Bucket(bucketDevices)
		type kv struct{ k, v []byte }
		var updates []kv
		err := devs.ForEach(func(k, v []byte) error {
			var rec deviceRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("device %q: undecodable record", k)
			}
			changed := false
			for i := range rec.Credentials {
				c := &rec.Credentials[i]
				if c.SealedKey == nil {
					continue
				}
				n, err := reseal(pskLabel(rec.ID, c.ID), c.SealedKey)
				if err != nil {
					return fmt.Errorf("device %q: %w", k, err)
				}
				c.SealedKey, changed = n, true
			}
			if changed {
				nv, err := json.Marshal(&rec)
				if err != nil {
					return err
				}
				updates = append(updates, kv{bytes.Clone(k), nv})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, u := range updates {
			if err := devs.Put(u.k, u.v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("registry: %s: rotating master key (nothing changed): %w", r.path, err)
	}
	r.mu.Lock()
	r.keys = newKeys
	r.mu.Unlock()
	if err := r.load(); err != nil {
		return fmt.Errorf("registry: %s: reloading after master key rotation: %w", r.path, err)
	}
	r.log.Info("master key rotated", "path", r.path)
	if err := r.compact(); err != nil {
		r.log.Warn("registry compaction after master key rotation failed; old sealed blobs may remain in free pages", "path", r.path, "err", err)
		return fmt.Errorf("registry: master key rotated, but compacting %s failed: %w", r.path, err)
	}
	return nil
}

// compact rewrites the file into a fresh copy without free pages and
// swaps it in. The caller holds wmu.
func (r *Registry) compact() error {
	tmp := r.path + ".compact"
	os.Remove(tmp) // a leftover of ours from an interrupted compaction
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: openTimeout})
	if err != nil {
		return err
	}
	if err := bolt.Compact(dst, r.db, 0); err != nil {
		dst.Close()
		os.Remove(tmp)
		return err
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		os.Remove(tmp)
		return err
	}
	if err := dst.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := r.db.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	renameErr := os.Rename(tmp, r.path)
	if renameErr == nil {
		if d, err := os.Open(filepath.Dir(r.path)); err == nil {
			d.Sync()
			d.Close()
		}
	} else {
		os.Remove(tmp)
	}
	db, err := bolt.Open(r.path, 0o600, &bolt.Options{Timeout: openTimeout})
	if err != nil {
		r.closed = true
		return fmt.Errorf("reopening: %w (registry closed)", err)
	}
	r.db = db
	return renameErr
}
