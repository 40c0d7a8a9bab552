package memtrim

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCPercent(t *testing.T) {
	const mb = 1 << 20
	cases := []struct {
		live, headroom uint64
		want           int
	}{
		{10 * mb, 64 * mb, 640}, // small heap: 64 MiB of room
		{64 * mb, 64 * mb, 100}, // large enough: Go's default
		{500 * mb, 64 * mb, 100},
		{1 * mb, 64 * mb, 1000}, // bounded
		{0, 64 * mb, 1000},      // before the first collection
		{10 * mb, 0, 100},       // off
	}
	for _, c := range cases {
		if got := GCPercent(c.live, c.headroom); got != c.want {
			t.Errorf("GCPercent(%d MiB, %d MiB) = %d, want %d", c.live/mb, c.headroom/mb, got, c.want)
		}
	}
}

// TestKeepHeadroom: the setting is raised while the heap is small and put
// back when the context ends; GOGC in the environment leaves it alone.
func TestKeepHeadroom(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { KeepHeadroom(ctx, 1<<40, nil); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pct := gogc()
		if pct == maxGCPercent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector setting %d, want %d", pct, maxGCPercent)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if pct := gogc(); pct != 100 {
		t.Fatalf("setting %d after the end, want 100", pct)
	}

	t.Setenv("GOGC", "200")
	debug.SetGCPercent(200)
	defer debug.SetGCPercent(100)
	KeepHeadroom(context.Background(), 1<<40, nil) // returns at once
	if pct := gogc(); pct != 200 {
		t.Fatalf("GOGC=200 in the environment, setting changed to %d", pct)
	}
}

// gogc reads the collector setting without changing it.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
