package memtrim

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"
)

func TestShouldTrim(t *testing.T) {
	p := DefaultPolicy
	const mb = 1 << 20
	cases := []struct {
		name      string
		prev, now Stats
		want      bool
	}{
		{"quiet with much free memory", Stats{Allocs: 1000 * mb}, Stats{Allocs: 1000*mb + mb, Live: 64 * mb, Free: 60 * mb}, true},
		{"busy", Stats{Allocs: 1000 * mb}, Stats{Allocs: 1100 * mb, Live: 64 * mb, Free: 60 * mb}, false},
		{"little free memory", Stats{Allocs: 1000 * mb}, Stats{Allocs: 1000 * mb, Live: 64 * mb, Free: 4 * mb}, false},
		{"free small next to the live heap", Stats{Allocs: 1000 * mb}, Stats{Allocs: 1000 * mb, Live: 400 * mb, Free: 20 * mb}, false},
		{"counter went back", Stats{Allocs: 1000 * mb}, Stats{Allocs: 10 * mb, Live: 64 * mb, Free: 60 * mb}, false},
	}
	for _, c := range cases {
		if got := p.ShouldTrim(c.prev, c.now); got != c.want {
			t.Errorf("%s: ShouldTrim = %v, want %v", c.name, got, c.want)
		}
	}
}

var sink [][]byte

// TestRunReleases makes a burst of garbage, goes quiet, and expects the
// trimmer to return the free pages; with the trimmer off they stay.
func TestRunReleases(t *testing.T) {
	burst := func() {
		for i := 0; i < 4096; i++ {
			sink = append(sink, make([]byte, 16<<10)) // 64 MiB
		}
		sink = nil
		runtime.GC()
	}
	burst()
	if s := Read(); s.Free < 32<<20 {
		t.Fatalf("after a 64 MiB burst only %d bytes are free: the test cannot tell", s.Free)
	}
	var calls atomic.Int32
	freeOSMemory = func() { calls.Add(1); debug.FreeOSMemory() }
	defer func() { freeOSMemory = debug.FreeOSMemory }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { Run(ctx, 20*time.Millisecond, DefaultPolicy, nil); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() == 0 || Read().Free >= 16<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("free memory not released: %d bytes", Read().Free)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if n := calls.Load(); n != 1 {
		t.Errorf("released %d times; once quiet and trimmed, there is nothing more to release", n)
	}

	// Interval 0: Run returns at once and releases nothing.
	calls.Store(0)
	burst()
	Run(context.Background(), 0, DefaultPolicy, nil)
	if n := calls.Load(); n != 0 {
		t.Errorf("interval 0 released %d times", n)
	}
}
