package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketMeta     = []byte("meta")
	bucketSessions = []byte("sessions")
	bucketMessages = []byte("messages")
	bucketInbound  = []byte("inbound")
	bucketRetained = []byte("retained")
	keySchema      = []byte("schema")
)

const schemaVersion = 1

// Bolt is the embedded store: one bbolt file in the data directory.
type Bolt struct {
	db       *bolt.DB
	path     string
	policy   Policy
	log      *slog.Logger
	ch       chan item
	done     chan struct{}
	stopSync chan struct{}
	syncDone chan struct{}

	// mu guards closed; Apply and Sync hold it shared while sending.
	mu     sync.RWMutex
	closed bool

	// Commits and Ops count transactions and writes, for benchmarks and
	// $SYS.
	statsMu sync.Mutex
	commits uint64
	ops     uint64
}

type item struct {
	ops  []Op
	done func(error)
}

// BoltOptions configure OpenBolt.
type BoltOptions struct {
	Policy   Policy        // default SyncBatch
	Interval time.Duration // fsync interval for SyncPeriodic; default 1s
	Log      *slog.Logger
}

// OpenBolt opens (or creates) the store file at path. A file that another
// process holds, or that is not a readable moat store, is an error naming
// the file; such a file is never modified.
func OpenBolt(path string, opts BoltOptions) (st *Bolt, err error) {
	if opts.Policy == "" {
		opts.Policy = SyncBatch
	}
	switch opts.Policy {
	case SyncAlways, SyncBatch, SyncPeriodic:
	default:
		return nil, fmt.Errorf("store: unknown sync policy %q", opts.Policy)
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	// bbolt panics on some kinds of corruption; turn that into an error
	// and release the file.
	var db *bolt.DB
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				db.Close()
			}
			st, err = nil, fmt.Errorf("%w: %s: %v (the file was left untouched)", ErrCorrupt, path, r)
		}
	}()
	if fi, statErr := os.Stat(path); statErr == nil && fi.Size() > 0 {
		if err := checkHeader(path); err != nil {
			return nil, err
		}
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s is locked by another process (is another moat running on this data directory?)", ErrInUse, path)
		}
		return nil, fmt.Errorf("%w: %s: %v (the file was left untouched)", ErrCorrupt, path, err)
	}
	db.NoSync = opts.Policy == SyncPeriodic
	// Check first without writing: a file that is refused is not touched.
	ready := false
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			if tx.Bucket(bucketSessions) != nil {
				return fmt.Errorf("%w: %s: no schema record", ErrCorrupt, path)
			}
			return nil
		}
		if v := meta.Get(keySchema); len(v) != 1 || v[0] != schemaVersion {
			return fmt.Errorf("%w: %s: unsupported schema %v", ErrCorrupt, path, v)
		}
		ready = true
		for _, b := range [][]byte{bucketSessions, bucketMessages, bucketInbound, bucketRetained} {
			if tx.Bucket(b) == nil {
				ready = false
			}
		}
		return nil
	})
	if err == nil && !ready {
		err = db.Update(func(tx *bolt.Tx) error {
			meta, err := tx.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			if err := meta.Put(keySchema, []byte{schemaVersion}); err != nil {
				return err
			}
			for _, b := range [][]byte{bucketSessions, bucketMessages, bucketInbound, bucketRetained} {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		db.Close()
		if errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	st = &Bolt{
		db:       db,
		path:     path,
		policy:   opts.Policy,
		log:      opts.Log,
		ch:       make(chan item, 8192),
		done:     make(chan struct{}),
		stopSync: make(chan struct{}),
		syncDone: make(chan struct{}),
	}
	go st.commitLoop()
	if opts.Policy == SyncPeriodic {
		go st.syncLoop(opts.Interval)
	}
	return st, nil
}

// checkHeader refuses files that are not bbolt databases before bbolt
// touches them.
func checkHeader(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("store: %s: %w", path, err)
	}
	defer f.Close()
	hdr := make([]byte, 32)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return fmt.Errorf("%w: %s: too short to be a store file (the file was left untouched)", ErrCorrupt, path)
	}
	// bbolt's meta page carries the magic 0xED0CDAED after the 16-byte
	// page header.
	if binary.LittleEndian.Uint32(hdr[16:20]) != 0xED0CDAED {
		return fmt.Errorf("%w: %s: not a moat store file (the file was left untouched)", ErrCorrupt, path)
	}
	return nil
}

// Path returns the file name.
func (b *Bolt) Path() string { return b.path }

// Apply submits writes.
func (b *Bolt) Apply(ops ...Op) {
	if len(ops) == 0 {
		return
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return
	}
	b.ch <- item{ops: ops}
}

// Sync calls done when everything submitted before is durable.
func (b *Bolt) Sync(done func(error)) {
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		done(ErrClosed)
		return
	}
	b.ch <- item{done: done}
	b.mu.RUnlock()
}

// Stats returns the number of commits and writes so far.
func (b *Bolt) Stats() (commits, ops uint64) {
	b.statsMu.Lock()
	defer b.statsMu.Unlock()
	return b.commits, b.ops
}

func (b *Bolt) commitLoop() {
	defer close(b.done)
	batch := make([]item, 0, 256)
	for it := range b.ch {
		batch = append(batch[:0], it)
		if b.policy != SyncAlways {
		drain:
			for len(batch) < 4096 {
				select {
				case it, ok := <-b.ch:
					if !ok {
						break drain
					}
					batch = append(batch, it)
				default:
					break drain
				}
			}
		}
		b.commit(batch)
	}
}

// commit applies the writes of a batch in one transaction, then calls the
// batch's Sync callbacks.
func (b *Bolt) commit(batch []item) {
	n := 0
	for _, it := range batch {
		n += len(it.ops)
	}
	var err error
	if n > 0 {
		err = b.db.Update(func(tx *bolt.Tx) error {
			for _, it := range batch {
				for i := range it.ops {
					if err := apply(tx, &it.ops[i]); err != nil {
						return err
					}
				}
			}
			return nil
		})
		b.statsMu.Lock()
		b.commits++
		b.ops += uint64(n)
		b.statsMu.Unlock()
		if err != nil {
			err = fmt.Errorf("store: %s: commit: %w", b.path, err)
			b.log.Error("store commit failed", "err", err)
		}
	}
	for _, it := range batch {
		if it.done != nil {
			it.done(err)
		}
	}
}

func (b *Bolt) syncLoop(interval time.Duration) {
	defer close(b.syncDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := b.db.Sync(); err != nil {
				b.log.Error("store fsync failed", "path", b.path, "err", err)
			}
		case <-b.stopSync:
			return
		}
	}
}

func msgKey(clientID string, seq uint64) []byte {
	k := make([]byte, 0, len(clientID)+9)
	k = append(k, clientID...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

func inboundKey(clientID string, id uint16) []byte {
	k := make([]byte, 0, len(clientID)+3)
	k = append(k, clientID...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint16(k, id)
}

func prefix(clientID string) []byte {
	return append([]byte(clientID), 0)
}

func deletePrefix(b *bolt.Bucket, p []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Seek(p) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func apply(tx *bolt.Tx, op *Op) error {
	switch op.Kind {
	case PutSession:
		return tx.Bucket(bucketSessions).Put([]byte(op.ClientID), MarshalSession(op.Session))
	case DeleteSession:
		if err := tx.Bucket(bucketSessions).Delete([]byte(op.ClientID)); err != nil {
			return err
		}
		if err := deletePrefix(tx.Bucket(bucketMessages), prefix(op.ClientID)); err != nil {
			return err
		}
		return deletePrefix(tx.Bucket(bucketInbound), prefix(op.ClientID))
	case PutMessage:
		return tx.Bucket(bucketMessages).Put(msgKey(op.ClientID, op.Message.Seq), MarshalMessage(op.Message))
	case DeleteMessage:
		return tx.Bucket(bucketMessages).Delete(msgKey(op.ClientID, op.Seq))
	case PutInbound:
		return tx.Bucket(bucketInbound).Put(inboundKey(op.ClientID, op.PacketID), nil)
	case DeleteInbound:
		return tx.Bucket(bucketInbound).Delete(inboundKey(op.ClientID, op.PacketID))
	case PutRetained:
		return tx.Bucket(bucketRetained).Put([]byte(op.Message.Topic), MarshalMessage(op.Message))
	case DeleteRetained:
		return tx.Bucket(bucketRetained).Delete([]byte(op.Topic))
	}
	return fmt.Errorf("unknown write kind %d", op.Kind)
}

// Load reads everything stored. A record that does not decode is an error
// naming the file and the record; nothing is modified.
func (b *Bolt) Load(retained func(*Message) error, session func(*Session, []*Message, []uint16) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %v", ErrCorrupt, b.path, r)
		}
	}()
	return b.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketRetained).ForEach(func(k, v []byte) error {
			m, err := UnmarshalMessage(v)
			if err != nil {
				return fmt.Errorf("%w: %s: retained message %q: %v", ErrCorrupt, b.path, k, err)
			}
			return retained(m)
		})
		if err != nil {
			return err
		}
		msgs := tx.Bucket(bucketMessages).Cursor()
		inb := tx.Bucket(bucketInbound).Cursor()
		return tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
			s, err := UnmarshalSession(v)
			if err != nil {
				return fmt.Errorf("%w: %s: session %q: %v", ErrCorrupt, b.path, k, err)
			}
			p := prefix(string(k))
			var ms []*Message
			for mk, mv := msgs.Seek(p); mk != nil && bytes.HasPrefix(mk, p); mk, mv = msgs.Next() {
				m, err := UnmarshalMessage(mv)
				if err != nil {
					return fmt.Errorf("%w: %s: message of session %q: %v", ErrCorrupt, b.path, k, err)
				}
				ms = append(ms, m)
			}
			var ids []uint16
			for ik, _ := inb.Seek(p); ik != nil && bytes.HasPrefix(ik, p); ik, _ = inb.Next() {
				if len(ik) == len(p)+2 {
					ids = append(ids, binary.BigEndian.Uint16(ik[len(p):]))
				}
			}
			return session(s, ms, ids)
		})
	})
}

// Close commits what is pending, fsyncs and closes the file.
func (b *Bolt) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.ch)
	b.mu.Unlock()
	<-b.done
	if b.policy == SyncPeriodic {
		close(b.stopSync)
		<-b.syncDone
	}
	if err := b.db.Sync(); err != nil {
		b.db.Close()
		return fmt.Errorf("store: %s: %w", b.path, err)
	}
	return b.db.Close()
}
