package admin

import "errors"

// Sentinel errors.
var (
	// ErrOptions: Options that cannot make a safe server.
	ErrOptions = errors.New("admin: invalid options")
	// ErrNotLoopback: a listen address off the loopback interface without
	// remote access allowed.
	ErrNotLoopback = errors.New("admin: address is not a loopback address")
)
