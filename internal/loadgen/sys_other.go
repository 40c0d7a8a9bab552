//go:build !unix

package loadgen

import "time"

func fileLimit() (soft, hard uint64, ok bool) { return 0, 0, false }

func selfCPU() time.Duration { return 0 }
