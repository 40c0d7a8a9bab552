//go:build !unix

package pki

// lockDir is a no-op where flock is unavailable: there, only one process
// at a time may change a CA directory (the in-process mutex still
// serialises goroutines).
func lockDir(dir string) (unlock func(), err error) { return func() {}, nil }
