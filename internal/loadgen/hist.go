package loadgen

import (
	"math"
	"math/bits"
)

// Histogram is an HDR-style histogram of non-negative int64 values
// (nanoseconds here) with logarithmic buckets: values below 128 are exact,
// larger ones fall into 64 sub-buckets per power of two, so a reported
// percentile is within 1/64 (1.6%) of a recorded value. Values from 2^40
// (about 18 minutes in ns) up are clamped. Record does not allocate; a
// Histogram is about 18 KB and is not safe for concurrent use (give each
// goroutine its own and Merge them).
type Histogram struct {
	counts   [histBuckets]uint64
	count    uint64
	sum      float64
	min, max int64
}

const (
	histSubBits  = 7
	histSubCount = 1 << histSubBits // exact values below this
	histSubHalf  = histSubCount / 2 // sub-buckets per power of two
	histMaxBits  = 40
	histMaxValue = 1<<histMaxBits - 1
	histBuckets  = (histMaxBits-histSubBits)*histSubHalf + histSubCount
)

// histIndex is the bucket of v (0 <= v <= histMaxValue).
func histIndex(v int64) int {
	if v < histSubCount {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - histSubBits
	return shift*histSubHalf + int(v>>shift)
}

// histHigh is the largest value that falls into bucket i.
func histHigh(i int) int64 {
	if i < histSubCount {
		return int64(i)
	}
	shift := i/histSubHalf - 1
	m := int64(i - shift*histSubHalf)
	return (m+1)<<shift - 1
}

// Record adds one value; negative values count as 0.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	if h.count == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.count++
	h.sum += float64(v)
	if v > histMaxValue {
		v = histMaxValue
	}
	h.counts[histIndex(v)]++
}

// Merge adds o's values to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.count == 0 {
		return
	}
	if h.count == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.count += o.count
	h.sum += o.sum
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// Reset empties h.
func (h *Histogram) Reset() { *h = Histogram{} }

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.count }

// Min and Max are the exact extremes (0 when empty).
func (h *Histogram) Min() int64 { return h.min }

// Max is the largest recorded value.
func (h *Histogram) Max() int64 { return h.max }

// Mean is the exact mean (0 when empty).
func (h *Histogram) Mean() float64 {
	if h.count == 0 {
		return 0
	}
	return h.sum / float64(h.count)
}

// Quantile returns the value at quantile q (0..1): the upper bound of the
// bucket holding the ceil(q*count)-th smallest value, never above Max nor
// below Min. It is 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) int64 {
	if h.count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.count)))
	rank = max(rank, 1)
	rank = min(rank, h.count)
	var seen uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		seen += c
		if seen >= rank {
			if i == histBuckets-1 { // clamped values
				return h.max
			}
			return max(min(histHigh(i), h.max), h.min)
		}
	}
	return h.max
}
