package loadgen

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(v int64) {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("index(%d) = %d out of range", v, i)
		}
		hi := histHigh(i)
		if hi < v {
			t.Fatalf("value %d above its bucket's high %d", v, hi)
		}
		if i > 0 && histHigh(i-1) >= v {
			t.Fatalf("value %d not above the previous bucket's high %d", v, histHigh(i-1))
		}
		if v >= histSubCount && float64(hi-v) > float64(v)/float64(histSubHalf) {
			t.Fatalf("bucket of %d too wide: high %d", v, hi)
		}
	}
	for v := range int64(5000) {
		check(v)
	}
	for range 100000 {
		check(rng.Int64N(histMaxValue + 1))
	}
	check(histMaxValue)
	if histIndex(histMaxValue) != histBuckets-1 {
		t.Fatalf("max value in bucket %d of %d", histIndex(histMaxValue), histBuckets)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Count() != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram not zero")
	}
	// 1..100000 µs, uniform.
	for i := int64(1); i <= 100000; i++ {
		h.Record(i * int64(time.Microsecond))
	}
	for _, tc := range []struct {
		q    float64
		want float64
	}{{0.5, 50000}, {0.9, 90000}, {0.99, 99000}, {0.999, 99900}, {1, 100000}, {0, 1}} {
		got := float64(h.Quantile(tc.q)) / float64(time.Microsecond)
		if math.Abs(got-tc.want)/tc.want > 1.0/histSubHalf {
			t.Errorf("q%v = %v µs, want %v ±1.6%%", tc.q, got, tc.want)
		}
	}
	if h.Min() != int64(time.Microsecond) || h.Max() != 100000*int64(time.Microsecond) {
		t.Errorf("min %d max %d", h.Min(), h.Max())
	}
	if m := h.Mean() / float64(time.Microsecond); math.Abs(m-50000.5) > 0.01 {
		t.Errorf("mean %v", m)
	}

	// A long tail: 99% at 1 ms, 1% at 50 ms.
	var tail Histogram
	for i := range 10000 {
		v := time.Millisecond
		if i%100 == 0 {
			v = 50 * time.Millisecond
		}
		tail.Record(int64(v))
	}
	if p := tail.Quantile(0.98); p < int64(time.Millisecond) || p > int64(time.Millisecond)*65/64 {
		t.Errorf("p98 = %v", time.Duration(p))
	}
	if p := tail.Quantile(0.995); p < int64(50*time.Millisecond) || p > int64(50*time.Millisecond) {
		t.Errorf("p99.5 = %v, want 50ms (clamped to max)", time.Duration(p))
	}

	// Merge equals recording into one.
	var a, b, all Histogram
	for i := int64(0); i < 5000; i++ {
		v := i * i * 37
		all.Record(v)
		if i%2 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	a.Merge(&b)
	a.Merge(nil)
	if a != all {
		t.Error("merged histogram differs")
	}
	// Negative values count as zero; huge ones are clamped but keep the max.
	var odd Histogram
	odd.Record(-5)
	odd.Record(math.MaxInt64)
	if odd.Min() != 0 || odd.Max() != math.MaxInt64 || odd.Quantile(1) != math.MaxInt64 || odd.Quantile(0.5) != 0 {
		t.Errorf("min %d max %d q1 %d q.5 %d", odd.Min(), odd.Max(), odd.Quantile(1), odd.Quantile(0.5))
	}
	odd.Reset()
	if odd.Count() != 0 {
		t.Error("reset")
	}
}

func TestTimestampPayload(t *testing.T) {
	for _, size := range []int{12, 13, 64, 1000} {
		p := fillPayload(size)
		if ts, ok := Timestamp(p); !ok || ts != 0 {
			t.Fatalf("size %d: fresh payload: %d %v", size, ts, ok)
		}
		now := time.Now().UnixNano()
		if !PutTimestamp(p, now) {
			t.Fatalf("size %d: PutTimestamp refused", size)
		}
		if ts, ok := Timestamp(p); !ok || ts != now {
			t.Fatalf("size %d: got %d %v, want %d", size, ts, ok, now)
		}
	}
	short := make([]byte, TimestampSize-1)
	if PutTimestamp(short, 1) {
		t.Error("PutTimestamp into a short payload")
	}
	if _, ok := Timestamp(short); ok {
		t.Error("timestamp from a short payload")
	}
	if _, ok := Timestamp([]byte("hello, this is not ours")); ok {
		t.Error("timestamp from a foreign payload")
	}
}

func TestExpandTopicAndCommas(t *testing.T) {
	if got := expandTopic("bench/%i/%c", 7, "id7"); got != "bench/7/id7" {
		t.Errorf("expandTopic = %q", got)
	}
	if got := expandTopic("bench/all", 7, "x"); got != "bench/all" {
		t.Errorf("expandTopic = %q", got)
	}
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := commas(n); got != want {
			t.Errorf("commas(%d) = %q", n, got)
		}
	}
	for _, tc := range []struct{ n, ports, forced, want int }{
		{100, 28232, 0, 1}, {25000, 28232, 0, 1}, {26000, 28232, 0, 2}, {60000, 28232, 0, 3}, {10, 28232, 4, 4},
	} {
		if got := sourcePlan(tc.n, tc.ports, tc.forced); got != tc.want {
			t.Errorf("sourcePlan(%d, %d, %d) = %d, want %d", tc.n, tc.ports, tc.forced, got, tc.want)
		}
	}
}
