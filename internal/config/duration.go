package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in the configuration as a string:
// Go duration syntax ("500ms", "10s", "1h30m") with an extra "d" unit of 24
// hours that may only lead ("7d", "1d12h"). Negative durations are refused.
type Duration struct{ time.Duration }

const day = 24 * time.Hour

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler; the output parses back to
// the same value ("7d", "1d12h0m0s", "10s").
func (d Duration) MarshalText() ([]byte, error) {
	v := d.Duration
	if v < 0 {
		return nil, fmt.Errorf("config: negative duration %s", v)
	}
	if v < day {
		return []byte(v.String()), nil
	}
	days := int64(v / day)
	rest := v % day
	s := strconv.FormatInt(days, 10) + "d"
	if rest != 0 {
		s += rest.String()
	}
	return []byte(s), nil
}

func parseDuration(s string) (time.Duration, error) {
	in := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New(`empty duration; write e.g. "10s", "5m", "24h" or "7d"`)
	}
	if s[0] == '-' {
		return 0, fmt.Errorf("duration %q must not be negative", in)
	}
	s = strings.TrimPrefix(s, "+")
	var total time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q: the \"d\" unit takes a whole number of days first, as in \"7d\" or \"1d12h\"", in)
		}
		if n > int64(math.MaxInt64/int64(day)) {
			return 0, fmt.Errorf("duration %q is too long", in)
		}
		total = time.Duration(n) * day
		s = s[i+1:]
		if s == "" {
			return total, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil && s != "0" {
			return 0, fmt.Errorf("duration %q needs a unit, e.g. %q", in, s+"s")
		}
		return 0, fmt.Errorf("invalid duration %q: units are ns, us, ms, s, m, h and d", in)
	}
	if v < 0 {
		return 0, fmt.Errorf("duration %q must not be negative", in)
	}
	if total > math.MaxInt64-v {
		return 0, fmt.Errorf("duration %q is too long", in)
	}
	return total + v, nil
}
