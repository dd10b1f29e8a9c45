package bench

import (
	"math"
	"slices"
	"time"
)

// Dist summarises a set of durations.
type Dist struct {
	N    int           `json:"n"`
	Min  time.Duration `json:"min_ns"`
	Mean time.Duration `json:"mean_ns"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
}

// summarize sorts ds in place and returns its distribution.
func summarize(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return Dist{
		N:    len(ds),
		Min:  ds[0],
		Mean: sum / time.Duration(len(ds)),
		P50:  quantile(ds, 0.50),
		P90:  quantile(ds, 0.90),
		P99:  quantile(ds, 0.99),
		P999: quantile(ds, 0.999),
		Max:  ds[len(ds)-1],
	}
}

// quantile is the nearest-rank quantile q of sorted ds: the smallest value
// with at least q of the samples at or below it.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q*float64(len(sorted)))) - 1
	rank = min(max(rank, 0), len(sorted)-1)
	return sorted[rank]
}

// ms converts a duration to fractional milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
