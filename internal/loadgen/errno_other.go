//go:build !unix

package loadgen

func isErrno(err error, name string) bool { return false }
