package broker

import "errors"

// Sentinel errors of the broker package.
var (
	// ErrClosed is returned by Serve after Shutdown.
	ErrClosed = errors.New("broker: server closed")
	// ErrNoListeners is returned when the configuration binds nothing.
	ErrNoListeners = errors.New("broker: no listeners configured")
)
