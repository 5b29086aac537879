package delay

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// ErrBadRTT is returned (wrapped) by ParseRTT.
var ErrBadRTT = errors.New("delay: bad rtt spec")

// ParseRTT parses round-trip times between regions, written as
// comma-separated "regionA:regionB=duration" entries, for example
// "ap-east:eu-central=180ms,ap-east:us-east=200ms". RTTs are symmetric: the
// map holds each pair in both orders. Spaces and empty entries are ignored and
// an empty spec gives an empty map. Errors name the entry: a missing ':' or
// '=', an empty region, a region paired with itself, a duration that does
// not parse or is negative, or the same pair given twice with different
// values. A Proxy between the two regions takes Delay = RTT/2.
func ParseRTT(spec string) (map[[2]string]time.Duration, error) {
	out := make(map[[2]string]time.Duration)
	if strings.TrimSpace(spec) == "" {
		return out, nil
	}
	for i, e := range strings.Split(spec, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		pair, dur, ok := strings.Cut(e, "=")
		if !ok {
			return nil, fmt.Errorf("%w: entry %d %q: want regionA:regionB=duration", ErrBadRTT, i+1, e)
		}
		a, b, ok := strings.Cut(pair, ":")
		a, b = strings.TrimSpace(a), strings.TrimSpace(b)
		if !ok || a == "" || b == "" || strings.Contains(b, ":") {
			return nil, fmt.Errorf("%w: entry %d %q: want two regions as regionA:regionB", ErrBadRTT, i+1, e)
		}
		if a == b {
			return nil, fmt.Errorf("%w: entry %d %q: region paired with itself", ErrBadRTT, i+1, e)
		}
		d, err := time.ParseDuration(strings.TrimSpace(dur))
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d %q: %w", ErrBadRTT, i+1, e, err)
		}
		if d < 0 {
			return nil, fmt.Errorf("%w: entry %d %q: negative rtt", ErrBadRTT, i+1, e)
		}
		if old, dup := out[[2]string{a, b}]; dup && old != d {
			return nil, fmt.Errorf("%w: entry %d %q: %s:%s already set to %v", ErrBadRTT, i+1, e, a, b, old)
		}
		out[[2]string{a, b}] = d
		out[[2]string{b, a}] = d
	}
	return out, nil
}

// FormatRTT writes m back in ParseRTT's syntax, one entry per unordered
// pair, sorted. Pairs whose two orders disagree keep the (a, b) with a < b.
func FormatRTT(m map[[2]string]time.Duration) string {
	var parts []string
	for _, k := range slices.SortedFunc(maps.Keys(m), func(x, y [2]string) int {
		return strings.Compare(x[0]+"\x00"+x[1], y[0]+"\x00"+y[1])
	}) {
		if k[0] < k[1] {
			parts = append(parts, fmt.Sprintf("%s:%s=%v", k[0], k[1], m[k]))
		} else if _, ok := m[[2]string{k[1], k[0]}]; !ok {
			parts = append(parts, fmt.Sprintf("%s:%s=%v", k[1], k[0], m[k]))
		}
	}
	return strings.Join(parts, ",")
}
