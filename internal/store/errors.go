package store

import "errors"

// Sentinel errors of the store.
var (
	// ErrCorrupt: the store file cannot be read as a moat store.
	ErrCorrupt = errors.New("store: unreadable store file")
	// ErrInUse: another process holds the store file.
	ErrInUse = errors.New("store: store file in use")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
)
