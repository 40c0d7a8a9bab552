package loadgen

import "errors"

var (
	// ErrConfig is wrapped by every invalid configuration error.
	ErrConfig = errors.New("loadgen: invalid configuration")
	// ErrRemote refuses a target that is not a loopback address unless
	// Config.AllowRemote is set.
	ErrRemote = errors.New("loadgen: target is not a loopback address (use --allow-remote)")
	// ErrFileLimit says the run needs more open files than RLIMIT_NOFILE
	// allows.
	ErrFileLimit = errors.New("loadgen: open file limit too low")
	// ErrConnack is a CONNACK that refused the connection.
	ErrConnack = errors.New("loadgen: connection refused by broker")
	// ErrSuback is a SUBACK that refused the subscription.
	ErrSuback = errors.New("loadgen: subscription refused by broker")
	// ErrProtocol is an unexpected packet from the broker.
	ErrProtocol = errors.New("loadgen: protocol error")
	// ErrNoConnections means no client could connect.
	ErrNoConnections = errors.New("loadgen: no client connected")
)
