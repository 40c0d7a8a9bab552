package store

// Memory is the store for brokers that keep nothing across restarts: the
// broker's in-memory state is the only copy, so writes are discarded and
// every Sync completes at once.
type Memory struct{}

// NewMemory returns the memory store.
func NewMemory() *Memory { return &Memory{} }

// Apply discards the writes.
func (*Memory) Apply(...Op) {}

// Sync calls done at once.
func (*Memory) Sync(done func(error)) { done(nil) }

// Load finds nothing.
func (*Memory) Load(func(*Message) error, func(*Session, []*Message, []uint16) error) error {
	return nil
}

// Close does nothing.
func (*Memory) Close() error { return nil }

// Path returns "memory".
func (*Memory) Path() string { return "memory" }
