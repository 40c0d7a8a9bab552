// Package memtrim returns memory to the operating system once a burst of
// work is over.
//
// A Go process keeps the heap it grew to: after a burst (thousands of TLS
// handshakes, a flood of messages) the garbage collector frees the objects,
// but the runtime returns the free pages only down to its next heap goal,
// twice the live heap by default, so an idle broker stays well above what
// it uses. The trimmer watches the runtime's own counters and, when the
// process has gone quiet and holds much free memory, forces a collection
// and releases the free pages. While the process is busy it does nothing:
// the collector's pacing is cheaper than trimming memory the next burst
// would take back.
//
// KeepHeadroom is the other half: while the live heap is small it lets the
// heap grow by a fixed amount between collections, so bursts do not start
// many collections a second; Run gives that memory back afterwards.
package memtrim

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Stats are the runtime counters a decision needs.
type Stats struct {
	Allocs uint64 // bytes allocated since the process started
	Live   uint64 // live heap after the last collection
	// Free is heap memory held from the operating system beyond the live
	// heap: free pages not yet returned, and the garbage and gaps in
	// spans in use that a collection would free (after a burst the
	// collector may not have run since: the garbage is still "in use").
	Free uint64
}

// Policy says when the process counts as quiet and its free memory as
// worth returning.
type Policy struct {
	// QuietFraction: the process is quiet when it allocated less than
	// this fraction of its live heap (at least 1 MiB) since the last look.
	QuietFraction float64
	// MinFree: free memory below this is left alone.
	MinFree uint64
	// FreeFraction: free memory below this fraction of the live heap is
	// left alone.
	FreeFraction float64
}

// DefaultPolicy trims when less than 1/16 of the live heap was allocated
// in an interval and at least 8 MiB and a quarter of the live heap is free.
var DefaultPolicy = Policy{QuietFraction: 1.0 / 16, MinFree: 8 << 20, FreeFraction: 0.25}

// ShouldTrim reports whether memory should be released, given the
// counters at the previous look and now.
func (p Policy) ShouldTrim(prev, now Stats) bool {
	if now.Allocs < prev.Allocs {
		return false
	}
	allocated := now.Allocs - prev.Allocs
	if float64(allocated) > p.QuietFraction*float64(max(now.Live, 1<<20)) {
		return false // busy
	}
	return now.Free >= p.MinFree && float64(now.Free) >= p.FreeFraction*float64(now.Live)
}

var sampleNames = [...]string{
	"/gc/heap/allocs:bytes",
	"/gc/heap/live:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
}

// Read samples the runtime's counters.
func Read() Stats {
	var s [len(sampleNames)]metrics.Sample
	for i, n := range sampleNames {
		s[i].Name = n
	}
	metrics.Read(s[:])
	v := func(i int) uint64 {
		if s[i].Value.Kind() == metrics.KindUint64 {
			return s[i].Value.Uint64()
		}
		return 0
	}
	st := Stats{Allocs: v(0), Live: v(1)}
	if held := v(2) + v(3) + v(4); held > st.Live {
		st.Free = held - st.Live
	}
	return st
}

// freeOSMemory is debug.FreeOSMemory; tests count the calls.
var freeOSMemory = debug.FreeOSMemory

// Run looks every interval until ctx ends and releases free memory when
// the policy says so. An interval of zero or less disables it.
func Run(ctx context.Context, interval time.Duration, p Policy, log *slog.Logger) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	prev := Read()
	// floor is what a trim could not return (gaps in spans in use): only
	// what comes on top of it counts.
	var floor uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := Read()
		floor = min(floor, now.Free)
		cand := now
		cand.Free -= floor
		if p.ShouldTrim(prev, cand) {
			freeOSMemory()
			after := Read()
			if log != nil {
				log.Debug("returned free memory to the operating system",
					"free_before", now.Free, "free_after", after.Free, "live", after.Live)
			}
			now, floor = after, after.Free
		}
		prev = now
	}
}
