//go:build unix

package loadgen

import (
	"errors"
	"syscall"
)

var errnoNames = map[string]syscall.Errno{
	"EMFILE":        syscall.EMFILE,
	"ENFILE":        syscall.ENFILE,
	"EADDRNOTAVAIL": syscall.EADDRNOTAVAIL,
	"ECONNREFUSED":  syscall.ECONNREFUSED,
	"ECONNRESET":    syscall.ECONNRESET,
}

func isErrno(err error, name string) bool {
	var e syscall.Errno
	return errors.As(err, &e) && e == errnoNames[name]
}
