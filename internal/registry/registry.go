package registry

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"moat/internal/auth"
)

var (
	bucketMeta    = []byte("registry")
	bucketDevices = []byte("devices")
	keySchema     = []byte("schema")
	keyCheck      = []byte("keycheck")
	keyFleet      = []byte("fleet")
	keyECDH       = []byte("ecdh")
)

const (
	schemaVersion  = 1
	labelKeyCheck  = "keycheck"
	labelFleet     = "fleet"
	labelECDH      = "ecdh"
	keyCheckText   = "moat registry key check v1"
	openTimeout    = 2 * time.Second
	minFleetKeyLen = 32
	maxFleetKeyLen = 64
)

// Registry holds the devices and their credentials: a bbolt file of its
// own, and an in-memory index that answers the broker's lookups without
// touching the file. It is safe for concurrent use.
//
// Lock order: wmu, then mu. hookMu is taken alone.
type Registry struct {
	path  string
	log   *slog.Logger
	now   func() time.Time
	dummy [32]byte // HMAC key for unknown PSK identities

	// wmu serializes mutations, so that the file and the index change in
	// the same order; it guards the following fields.
	wmu    sync.Mutex
	db     *bolt.DB
	closed bool

	// mu guards the following fields (written under wmu too).
	mu       sync.RWMutex
	keys     KeyProtector // seals and opens secrets; see protector
	idx      *index
	fleet    []byte           // fleet key, nil when unset
	ecdhPriv *ecdh.PrivateKey // broker's long-term X25519 key, nil until first use
	sources  []string         // subject-match sources in use, sorted; replaced, never modified
	srcCount map[string]int   // source -> number of credentials using it

	pwSlots chan struct{} // limits concurrent password verifications

	hookMu sync.Mutex     // guards hooks
	hooks  []func(string) // OnChange callbacks

	dummyOnce sync.Once // makes dummyPW
	dummyPW   string    // verified for devices without a password
	dummyErr  error
}

// index maps every lookup key to its credential.
type index struct {
	devices map[string]*devEntry
	creds   map[indexKey]*credEntry
}

// indexKey is a lookup key: a namespace and a value.
type indexKey struct {
	space byte // one of the space* constants
	key   string
}

const (
	spacePSK          = 'p' // psk and ecdh identity
	spaceFingerprint  = 'f' // SHA-256 of the certificate DER (raw bytes)
	spaceIssuerSerial = 'i' // issuer DN "\x00" serial hex
	spaceSubject      = 's' // source "\x00" value
	spacePin          = 'k' // SHA-256 of the SPKI (raw bytes)
)

// devEntry is a device as the index holds it. It is immutable: a change
// makes a new entry.
type devEntry struct {
	rec   *deviceRecord
	dev   *Device // public view; clone before handing out
	acl   *deviceACL
	creds []*credEntry
}

// credEntry is a credential with what lookups need in clear.
type credEntry struct {
	dev     *devEntry
	cred    Credential
	key     []byte // psk (not derived): the key
	hash    string // password: the hash
	ecdhPub *ecdh.PublicKey
	ecdhPSK atomic.Pointer[[]byte] // ecdh: derived on first use
	keys    []indexKey
	subjSrc string // x509 subject match: the source
}

// deviceACL is a device's compiled ACL: one ACL for publish, one for
// subscribe and delivery (see compileACL for their defaults).
type deviceACL struct {
	pub, sub *auth.ACL
}

// deviceRecord is the stored form of a device.
type deviceRecord struct {
	ID          string            `json:"id"`
	Status      Status            `json:"status"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	ACL         []Rule            `json:"acl,omitempty"`
	Credentials []credRecord      `json:"credentials"`
	Created     time.Time         `json:"created"`
	Updated     time.Time         `json:"updated"`
}

// credRecord is the stored form of a credential: the public part and the
// sealed secret or the password hash.
type credRecord struct {
	Credential
	SealedKey    []byte `json:"sealed_key,omitempty"`
	PasswordHash string `json:"password_hash,omitempty"`
}

func (rec *deviceRecord) clone() *deviceRecord {
	c := *rec
	c.Metadata = cloneMap(rec.Metadata)
	c.ACL = slices.Clone(rec.ACL)
	c.Credentials = slices.Clone(rec.Credentials)
	return &c
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Open opens (or creates) the registry file at path, e.g.
// <data dir>/registry.db, with keys protecting the secrets in it. A file
// that is not a moat registry, is damaged, is held by another process or
// whose secrets keys cannot open is an error naming the file (wrapping
// ErrCorrupt, ErrInUse or ErrMasterKey); such a file is never modified.
func Open(path string, keys KeyProtector, log *slog.Logger) (r *Registry, err error) {
	if keys == nil {
		return nil, fmt.Errorf("registry: %w: none given", ErrMasterKey)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var db *bolt.DB
	// bbolt panics on some kinds of corruption; turn that into an error
	// and release the file.
	defer func() {
		if p := recover(); p != nil {
			if db != nil {
				db.Close()
			}
			r, err = nil, fmt.Errorf("registry: %w: %s: %v (the file was left untouched)", ErrCorrupt, path, p)
		}
	}()
	if fi, statErr := os.Stat(path); statErr == nil && fi.Size() > 0 {
		if err := checkHeader(path); err != nil {
			return nil, err
		}
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout})
	if err != nil {
		var pe *fs.PathError
		switch {
		case errors.Is(err, bolt.ErrTimeout):
			return nil, fmt.Errorf("registry: %w: %s is locked by another process (is another moat running on this data directory?)", ErrInUse, path)
		case errors.As(err, &pe) && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission)):
			return nil, fmt.Errorf("registry: %w", err)
		}
		return nil, fmt.Errorf("registry: %w: %s: %v (the file was left untouched)", ErrCorrupt, path, err)
	}
	r = &Registry{
		path:     path,
		log:      log,
		now:      time.Now,
		db:       db,
		keys:     keys,
		srcCount: map[string]int{},
		pwSlots:  make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
	}
	rand.Read(r.dummy[:])
	fresh, err := r.checkFile()
	if err == nil && fresh {
		err = r.initFile()
	}
	if err == nil {
		err = r.load()
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	log.Info("device registry opened", "path", path, "devices", len(r.idx.devices))
	return r, nil
}

// protector returns the current KeyProtector.
func (r *Registry) protector() KeyProtector {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.keys
}

// checkHeader refuses files that are not bbolt databases, or that are
// shorter than their meta page says, before bbolt touches them: bbolt maps
// the file into memory, and reading a page beyond the end of a truncated
// file is a SIGBUS that no recover catches.
func checkHeader(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("registry: %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("registry: %s: %w", path, err)
	}
	refuse := func(why string) error {
		return fmt.Errorf("registry: %w: %s: %s (the file was left untouched)", ErrCorrupt, path, why)
	}
	m0, ok0 := readMeta(f, 0)
	if !ok0 && m0.magic != boltMagic {
		return refuse("not a moat registry file")
	}
	pageSize := int64(os.Getpagesize())
	if ok0 {
		pageSize = int64(m0.pageSize)
	}
	m1, ok1 := readMeta(f, pageSize)
	var m boltMeta
	switch {
	case ok0 && ok1:
		m = m0
		if m1.txid > m0.txid {
			m = m1
		}
	case ok0:
		m = m0
	case ok1:
		m = m1
	default:
		return refuse("no valid meta page")
	}
	if m.pageSize < 512 || m.pageSize > 1<<20 || int64(m.pageSize)*int64(m.pgid) > fi.Size() || m.root >= m.pgid {
		return refuse(fmt.Sprintf("truncated or damaged (%d bytes, meta page says %d pages of %d bytes)", fi.Size(), m.pgid, m.pageSize))
	}
	return nil
}

const boltMagic = 0xED0CDAED

// boltMeta is the part of a bbolt meta page checkHeader needs.
type boltMeta struct {
	magic, version, pageSize uint32
	root, pgid, txid         uint64
}

// readMeta reads and checks the meta page at off: after the 16-byte page
// header, magic, version, page size, flags (4 bytes each), root bucket
// (root page, sequence), freelist page, high-water page id, txid (8 bytes
// each), then the FNV-64a checksum of those 56 bytes. bbolt writes them in
// the machine's byte order; moat's platforms are little-endian.
func readMeta(f *os.File, off int64) (boltMeta, bool) {
	var b [16 + 64]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return boltMeta{}, false
	}
	p := b[16:]
	le := binary.LittleEndian
	m := boltMeta{magic: le.Uint32(p[0:]), version: le.Uint32(p[4:]), pageSize: le.Uint32(p[8:]),
		root: le.Uint64(p[16:]), pgid: le.Uint64(p[40:]), txid: le.Uint64(p[48:])}
	h := fnv.New64a()
	h.Write(p[:56])
	return m, m.magic == boltMagic && m.version == 2 && h.Sum64() == le.Uint64(p[56:])
}

// checkFile looks at the file without writing. fresh means an empty
// database (a new file) that initFile may set up.
func (r *Registry) checkFile() (fresh bool, err error) {
	err = r.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			empty := true
			tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return fmt.Errorf("registry: %w: %s: not a moat registry file (the file was left untouched)", ErrCorrupt, r.path)
			}
			fresh = true
			return nil
		}
		if v := meta.Get(keySchema); len(v) != 1 || v[0] != schemaVersion {
			return fmt.Errorf("registry: %w: %s: unsupported schema %v (the file was left untouched)", ErrCorrupt, r.path, v)
		}
		if tx.Bucket(bucketDevices) == nil {
			return fmt.Errorf("registry: %w: %s: no devices bucket (the file was left untouched)", ErrCorrupt, r.path)
		}
		kc := meta.Get(keyCheck)
		if kc == nil {
			return fmt.Errorf("registry: %w: %s: no key check record (the file was left untouched)", ErrCorrupt, r.path)
		}
		v, err := openLabeled(r.protector(), labelKeyCheck, kc)
		if err != nil || string(v) != keyCheckText {
			return fmt.Errorf("registry: %w: it does not open %s (the file was left untouched)", ErrMasterKey, r.path)
		}
		return nil
	})
	return fresh, err
}

func (r *Registry) initFile() error {
	kc, err := sealLabeled(r.protector(), labelKeyCheck, []byte(keyCheckText))
	if err != nil {
		return err
	}
	err = r.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketDevices); err != nil {
			return err
		}
		if err := meta.Put(keySchema, []byte{schemaVersion}); err != nil {
			return err
		}
		return meta.Put(keyCheck, kc)
	})
	if err != nil {
		return fmt.Errorf("registry: %s: initializing: %w", r.path, err)
	}
	return nil
}

// load reads the whole file into a new index.
func (r *Registry) load() error {
	idx := &index{devices: map[string]*devEntry{}, creds: map[indexKey]*credEntry{}}
	srcCount := map[string]int{}
	var fleet []byte
	var priv *ecdh.PrivateKey
	err := r.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyFleet); v != nil {
			k, err := openLabeled(r.protector(), labelFleet, v)
			if err != nil {
				return fmt.Errorf("registry: %w: %s: fleet key: %v", ErrCorrupt, r.path, err)
			}
			fleet = k
		}
		if v := meta.Get(keyECDH); v != nil {
			k, err := openLabeled(r.protector(), labelECDH, v)
			if err != nil {
				return fmt.Errorf("registry: %w: %s: ECDH key: %v", ErrCorrupt, r.path, err)
			}
			priv, err = ecdh.X25519().NewPrivateKey(k)
			clear(k)
			if err != nil {
				return fmt.Errorf("registry: %w: %s: ECDH key: %v", ErrCorrupt, r.path, err)
			}
		}
		return tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
			var rec deviceRecord
			dec := json.NewDecoder(bytes.NewReader(v))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&rec); err != nil || rec.ID != string(k) {
				return fmt.Errorf("registry: %w: %s: device %q: undecodable record", ErrCorrupt, r.path, k)
			}
			e, err := r.newEntry(&rec, priv)
			if err != nil {
				return fmt.Errorf("registry: %w: %s: device %q: %v", ErrCorrupt, r.path, k, err)
			}
			if err := idx.checkUnique(e); err != nil {
				return fmt.Errorf("registry: %w: %s: device %q: %v", ErrCorrupt, r.path, k, err)
			}
			idx.insert(e, srcCount)
			return nil
		})
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.idx, r.fleet, r.ecdhPriv, r.srcCount = idx, fleet, priv, srcCount
	r.sources = sortedKeys(srcCount)
	r.mu.Unlock()
	return nil
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// newEntry builds the index entry of a record: decrypts its PSKs, parses
// its keys, compiles its ACL and checks its credentials.
func (r *Registry) newEntry(rec *deviceRecord, priv *ecdh.PrivateKey) (*devEntry, error) {
	if !ValidDeviceID(rec.ID) {
		return nil, invalid("device id %q: want 1 to %d characters of A-Z a-z 0-9 - _ . : @, starting with a letter or digit", rec.ID, maxIDLen)
	}
	if rec.Status != StatusEnabled && rec.Status != StatusDisabled {
		return nil, invalid("status %q (want enabled or disabled)", rec.Status)
	}
	if err := checkMetadata(rec.Metadata); err != nil {
		return nil, err
	}
	acl, err := compileACL(rec.ACL)
	if err != nil {
		return nil, err
	}
	if len(rec.Credentials) > maxCredentials {
		return nil, invalid("at most %d credentials per device", maxCredentials)
	}
	e := &devEntry{rec: rec, acl: acl}
	dev := &Device{ID: rec.ID, Status: rec.Status, Metadata: cloneMap(rec.Metadata), ACL: slices.Clone(rec.ACL),
		Credentials: make([]Credential, 0, len(rec.Credentials)), Created: rec.Created, Updated: rec.Updated}
	ids := map[string]bool{}
	passwords := 0
	for i := range rec.Credentials {
		cr := &rec.Credentials[i]
		if cr.ID == "" || ids[cr.ID] {
			return nil, invalid("credential id %q missing or repeated", cr.ID)
		}
		ids[cr.ID] = true
		ce := &credEntry{dev: e, cred: cr.Credential}
		switch cr.Kind {
		case KindPSK:
			if err := validIdentity(cr.Identity); err != nil {
				return nil, err
			}
			if cr.Derived != (cr.SealedKey == nil) {
				return nil, invalid("credential %s: a psk has a stored key or is derived", cr.ID)
			}
			if !cr.Derived {
				k, err := openLabeled(r.protector(), pskLabel(rec.ID, cr.ID), cr.SealedKey)
				if err != nil {
					return nil, fmt.Errorf("credential %s: %w", cr.ID, err)
				}
				if len(k) < minPSKLen || len(k) > maxPSKLen {
					return nil, invalid("credential %s: psk length", cr.ID)
				}
				ce.key = k
			}
			ce.keys = []indexKey{{spacePSK, cr.Identity}}
		case KindECDH:
			if err := validIdentity(cr.Identity); err != nil {
				return nil, err
			}
			raw, err := hex.DecodeString(cr.PublicKey)
			if err != nil {
				return nil, invalid("credential %s: public key", cr.ID)
			}
			if ce.ecdhPub, err = ecdh.X25519().NewPublicKey(raw); err != nil {
				return nil, invalid("credential %s: public key", cr.ID)
			}
			if priv == nil {
				return nil, invalid("credential %s: ecdh credential but no broker ECDH key", cr.ID)
			}
			ce.keys = []indexKey{{spacePSK, cr.Identity}}
		case KindX509:
			switch {
			case cr.Fingerprint != "" && cr.Issuer == "" && cr.Serial == "" && cr.Subject == "":
				fp, err := hex.DecodeString(cr.Fingerprint)
				if err != nil || len(fp) != sha256.Size {
					return nil, invalid("credential %s: fingerprint", cr.ID)
				}
				ce.keys = []indexKey{{spaceFingerprint, string(fp)}}
			case cr.Fingerprint == "" && cr.Issuer != "" && cr.Serial != "" && cr.Subject == "":
				ce.keys = []indexKey{{spaceIssuerSerial, cr.Issuer + "\x00" + cr.Serial}}
			case cr.Fingerprint == "" && cr.Issuer == "" && cr.Serial == "" && cr.Subject != "":
				src, val, err := parseSubject(cr.Subject)
				if err != nil {
					return nil, invalid("credential %s: %v", cr.ID, err)
				}
				ce.subjSrc = src
				ce.keys = []indexKey{{spaceSubject, src + "\x00" + val}}
			default:
				return nil, invalid("credential %s: x509 needs one of fingerprint, issuer+serial, subject", cr.ID)
			}
		case KindPinnedKey:
			pin, err := hex.DecodeString(cr.SPKISHA256)
			if err != nil || len(pin) != sha256.Size {
				return nil, invalid("credential %s: spki_sha256", cr.ID)
			}
			ce.keys = []indexKey{{spacePin, string(pin)}}
		case KindPassword:
			if cr.PasswordHash == "" {
				return nil, invalid("credential %s: no password hash", cr.ID)
			}
			passwords++
			ce.hash = cr.PasswordHash
		default:
			return nil, invalid("credential %s: unknown kind %q", cr.ID, cr.Kind)
		}
		if passwords > 1 {
			return nil, invalid("at most one password credential per device")
		}
		e.creds = append(e.creds, ce)
		dev.Credentials = append(dev.Credentials, cr.Credential)
	}
	e.dev = dev
	return e, nil
}

func pskLabel(deviceID, credID string) string { return "psk:" + deviceID + ":" + credID }

// checkUnique reports a lookup key of e that another device already uses
// (or that e uses twice).
func (idx *index) checkUnique(e *devEntry) error {
	seen := map[indexKey]bool{}
	for _, ce := range e.creds {
		for _, k := range ce.keys {
			if seen[k] {
				return fmt.Errorf("registry: %w: %s given twice", ErrExists, describeKey(k))
			}
			seen[k] = true
			if o := idx.creds[k]; o != nil && o.dev.rec.ID != e.rec.ID {
				return fmt.Errorf("registry: %w: %s is registered to device %q", ErrExists, describeKey(k), o.dev.rec.ID)
			}
		}
	}
	return nil
}

func describeKey(k indexKey) string {
	switch k.space {
	case spacePSK:
		return fmt.Sprintf("psk identity %q", k.key)
	case spaceFingerprint:
		return "certificate fingerprint " + hex.EncodeToString([]byte(k.key))
	case spaceIssuerSerial:
		return "certificate issuer and serial"
	case spaceSubject:
		return "certificate subject match"
	case spacePin:
		return "public key pin " + hex.EncodeToString([]byte(k.key))
	}
	return "key"
}

// insert adds e (which checkUnique accepted) to the index.
func (idx *index) insert(e *devEntry, srcCount map[string]int) {
	idx.devices[e.rec.ID] = e
	for _, ce := range e.creds {
		for _, k := range ce.keys {
			idx.creds[k] = ce
		}
		if ce.subjSrc != "" {
			srcCount[ce.subjSrc]++
		}
	}
}

// remove takes the device id and its credentials out of the index.
func (idx *index) remove(id string, srcCount map[string]int) {
	e := idx.devices[id]
	if e == nil {
		return
	}
	delete(idx.devices, id)
	for _, ce := range e.creds {
		for _, k := range ce.keys {
			if idx.creds[k] == ce {
				delete(idx.creds, k)
			}
		}
		if ce.subjSrc != "" {
			if srcCount[ce.subjSrc]--; srcCount[ce.subjSrc] <= 0 {
				delete(srcCount, ce.subjSrc)
			}
		}
	}
}

// Path returns the file name.
func (r *Registry) Path() string { return r.path }

// Close closes the file. Lookups keep answering from memory; mutations
// fail with ErrClosed.
func (r *Registry) Close() error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if err := r.db.Close(); err != nil {
		return fmt.Errorf("registry: %s: %w", r.path, err)
	}
	return nil
}

// OnChange registers fn to be called with a device id after every change
// that can withdraw access from that device's live connections: the device
// was disabled or removed, one of its credentials was removed or rotated,
// or the fleet key its derived PSK depends on was replaced. The broker
// disconnects the device's sessions there. fn runs on the goroutine that
// made the change, after the change is durable and visible to lookups, with
// no registry lock held; it must not block for long.
func (r *Registry) OnChange(fn func(deviceID string)) {
	r.hookMu.Lock()
	r.hooks = append(r.hooks, fn)
	r.hookMu.Unlock()
}

func (r *Registry) notify(ids ...string) {
	r.hookMu.Lock()
	hooks := slices.Clone(r.hooks)
	r.hookMu.Unlock()
	for _, id := range ids {
		for _, fn := range hooks {
			fn(id)
		}
	}
}

// Device returns a copy of a device.
func (r *Registry) Device(id string) (*Device, bool) {
	r.mu.RLock()
	e := r.idx.devices[id]
	r.mu.RUnlock()
	if e == nil {
		return nil, false
	}
	return e.dev.clone(), true
}

// List returns copies of all devices, sorted by id.
func (r *Registry) List() []*Device {
	r.mu.RLock()
	out := make([]*Device, 0, len(r.idx.devices))
	for _, e := range r.idx.devices {
		out = append(out, e.dev)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	for i, d := range out {
		out[i] = d.clone()
	}
	return out
}

// Len returns the number of devices.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.idx.devices)
}

// commit persists rec (nil: deletes device id) and updates the index.
// The caller holds wmu and has built e from rec (nil when deleting).
func (r *Registry) commit(id string, e *devEntry) error {
	if r.closed {
		return fmt.Errorf("registry: %w", ErrClosed)
	}
	r.mu.RLock()
	err := func() error {
		if e == nil {
			return nil
		}
		// Check against the index without this device's current entry.
		for _, ce := range e.creds {
			for _, k := range ce.keys {
				if o := r.idx.creds[k]; o != nil && o.dev.rec.ID != id {
					return fmt.Errorf("registry: %w: %s is registered to device %q", ErrExists, describeKey(k), o.dev.rec.ID)
				}
			}
		}
		return (&index{creds: map[indexKey]*credEntry{}}).checkUnique(e)
	}()
	r.mu.RUnlock()
	if err != nil {
		return err
	}
	var v []byte
	if e != nil {
		if v, err = json.Marshal(e.rec); err != nil {
			return fmt.Errorf("registry: encoding device %q: %w", id, err)
		}
	}
	err = r.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDevices)
		if e == nil {
			return b.Delete([]byte(id))
		}
		return b.Put([]byte(id), v)
	})
	if err != nil {
		return fmt.Errorf("registry: %s: writing device %q: %w", r.path, id, err)
	}
	r.mu.Lock()
	r.idx.remove(id, r.srcCount)
	if e != nil {
		r.idx.insert(e, r.srcCount)
	}
	r.sources = sortedKeys(r.srcCount)
	r.mu.Unlock()
	return nil
}

// current returns the device's entry; the caller holds wmu.
func (r *Registry) current(id string) (*devEntry, error) {
	r.mu.RLock()
	e := r.idx.devices[id]
	r.mu.RUnlock()
	if e == nil {
		return nil, fmt.Errorf("registry: device %q: %w", id, ErrNotFound)
	}
	return e, nil
}
