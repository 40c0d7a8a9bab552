package memtrim

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"time"
)

// DefaultHeadroom is how much the heap may grow between collections at
// least, whatever the live heap.
const DefaultHeadroom = 64 << 20

// maxGCPercent bounds the collector setting the headroom may ask for.
const maxGCPercent = 1000

// GCPercent is the collector setting (GOGC) that lets the heap grow by at
// least headroom over live before the next collection: 100 (Go's default)
// once the live heap is larger than headroom, more below, at most 1000.
func GCPercent(live, headroom uint64) int {
	if headroom == 0 {
		return 100
	}
	live = max(live, 1<<20)
	return int(min(max(headroom*100/live, 100), maxGCPercent))
}

// KeepHeadroom adjusts the collector every second so that the heap may
// grow by at least headroom between collections. A broker with a small
// live heap doing thousands of TLS handshakes a second (each leaving tens
// of kilobytes of garbage) would otherwise collect many times a second,
// each collection with its fixed costs; with a large live heap it changes
// nothing. Memory a burst leaves behind is returned by Run once the broker
// is quiet. GOGC or GOMEMLIMIT in the environment is the operator's
// choice: KeepHeadroom then does nothing. It returns when ctx ends.
func KeepHeadroom(ctx context.Context, headroom uint64, log *slog.Logger) {
	if headroom == 0 || os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	current := 100
	for {
		pct := GCPercent(Read().Live, headroom)
		// Small changes are not worth a new setting.
		if pct*10 > current*11 || pct*11 < current*10 {
			debug.SetGCPercent(pct)
			if log != nil {
				log.Debug("collector setting", "gc_percent", pct)
			}
			current = pct
		}
		select {
		case <-ctx.Done():
			debug.SetGCPercent(100)
			return
		case <-t.C:
		}
	}
}
