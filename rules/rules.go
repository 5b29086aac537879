// Package rules compiles a campaign's conditional destinations (the optional
// "rules" block of the campaign JSON, after Shlink's redirect rules) and picks
// the destination for a click.
//
// A rule is an AND of conditions (country, continent, os, device, language,
// time window, client CIDR); an absent condition matches everything and the
// values of one condition are OR'ed. Rules are tried in order and the first
// match wins; when none matches the caller uses the campaign's destination. A
// rule either names one destination or splits traffic by weight between
// several, stickily: the chosen arm is returned as "<rule>.<index>" for the
// caller to keep in the rr_ab cookie.
//
// Every destination is checked against the campaign's allow-list at Parse
// time (CheckDestination), so Match can never return a URL outside it. A Set is
// immutable after Parse and safe for concurrent use; Match does not allocate.
package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/refrouter/refrouter/internal/ascii"
)

// Limits on a rules block.
const (
	MaxRules     = 64
	MaxArms      = 16
	MaxValues    = 64      // per condition
	MaxWeight    = 1000000 // per split arm
	MaxRulesSize = 64 << 10
)

// ErrInvalid is wrapped by every Parse error that is not about a destination
// (those wrap ErrDestination).
var ErrInvalid = errors.New("rules: invalid rules")

// Error is a Parse error naming the rule (by index) and the field.
type Error struct {
	Rule  int    // index in the rules array, -1 for the array itself
	Field string // JSON path inside the rule, such as "when.country[1]"
	Err   error  // wraps ErrInvalid or ErrDestination
}

// Error formats the error as "rules[i].field: reason".
func (e *Error) Error() string {
	if e.Rule < 0 {
		return fmt.Sprintf("rules: %v", e.Err)
	}
	if e.Field == "" {
		return fmt.Sprintf("rules[%d]: %v", e.Rule, e.Err)
	}
	return fmt.Sprintf("rules[%d].%s: %v", e.Rule, e.Field, e.Err)
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Request is what Match knows about a click. The byte slices are only read
// during Match and never retained.
type Request struct {
	Country        string     // ISO 3166-1 alpha-2, any case; "" if unknown
	Continent      string     // AF AN AS EU NA OC SA; "" if unknown
	UA             []byte     // User-Agent header
	AcceptLanguage []byte     // Accept-Language header
	IP             netip.Addr // client address
	Now            time.Time  // time of the click; a zero Now fails time conditions
	Sticky         []byte     // the rr_ab cookie value if present, else a fresh random or click id
}

// Set is a compiled, validated rules block. A nil or empty Set matches
// nothing. It is immutable and safe for concurrent use.
type Set struct {
	rules []rule
}

type rule struct {
	countries  []string // upper case
	continents []string // upper case
	osMask     uint8    // 1<<osID; 0 means any
	devMask    uint8    // 1<<deviceID; 0 means any
	langs      []string // lower case
	cidrs      []netip.Prefix
	time       *timeCond
	dest       string
	arms       []arm
	total      uint64
}

type arm struct {
	dest   string
	weight uint64
	cum    uint64 // sum of weights up to and including this arm
	sticky string // "<rule>.<index>"
}

type timeCond struct {
	from, to           time.Time // zero means unbounded
	daily              bool
	dailyFrom, dailyTo int // minutes after midnight in loc
	loc                *time.Location
}

// JSON shapes (decoded strictly).

type ruleJSON struct {
	When        *whenJSON `json:"when"`
	Destination string    `json:"destination"`
	Split       []armJSON `json:"split"`
}

type whenJSON struct {
	Country   []string  `json:"country"`
	Continent []string  `json:"continent"`
	OS        []string  `json:"os"`
	Device    []string  `json:"device"`
	Language  []string  `json:"language"`
	Time      *timeJSON `json:"time"`
	CIDR      []string  `json:"cidr"`
}

type timeJSON struct {
	From      string `json:"from"`
	To        string `json:"to"`
	DailyFrom string `json:"daily_from"`
	DailyTo   string `json:"daily_to"`
	TZ        string `json:"tz"`
}

type armJSON struct {
	Destination string `json:"destination"`
	Weight      int64  `json:"weight"`
}

var continents = map[string]bool{"AF": true, "AN": true, "AS": true, "EU": true, "NA": true, "OC": true, "SA": true}

// Parse decodes and validates a rules block: a JSON array of rules, or null
// (an empty Set). Decoding is strict: unknown fields, trailing data, empty
// condition lists and unknown values are rejected. Every destination must pass
// CheckDestination(dest, allowedHosts). Errors are *Error values naming the
// rule index and field, wrapping ErrInvalid or ErrDestination. Time zones are
// loaded with time.LoadLocation, so binaries running without system zoneinfo
// should import time/tzdata.
func Parse(raw []byte, allowedHosts []string) (*Set, error) {
	if len(raw) > MaxRulesSize {
		return nil, &Error{Rule: -1, Err: fmt.Errorf("%w: larger than %d bytes", ErrInvalid, MaxRulesSize)}
	}
	var items []json.RawMessage
	if err := decodeStrict(raw, &items); err != nil {
		return nil, &Error{Rule: -1, Err: fmt.Errorf("%w: %w", ErrInvalid, err)}
	}
	if len(items) > MaxRules {
		return nil, &Error{Rule: -1, Err: fmt.Errorf("%w: %d rules, at most %d", ErrInvalid, len(items), MaxRules)}
	}
	s := &Set{rules: make([]rule, 0, len(items))}
	for i, item := range items {
		var rj ruleJSON
		if err := decodeStrict(item, &rj); err != nil {
			return nil, &Error{Rule: i, Err: fmt.Errorf("%w: %w", ErrInvalid, err)}
		}
		if bytes.Equal(bytes.TrimSpace(item), []byte("null")) {
			return nil, &Error{Rule: i, Err: fmt.Errorf("%w: null rule", ErrInvalid)}
		}
		r, err := compileRule(i, &rj, allowedHosts)
		if err != nil {
			return nil, err
		}
		s.rules = append(s.rules, r)
	}
	return s, nil
}

func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("decode: trailing data after JSON value")
	}
	return nil
}

func invalid(i int, field, format string, args ...any) error {
	return &Error{Rule: i, Field: field, Err: fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)}
}

func compileRule(i int, rj *ruleJSON, allowed []string) (rule, error) {
	var r rule
	if w := rj.When; w != nil {
		var err error
		if r.countries, err = upperCodes(i, "when.country", w.Country, func(v string) bool {
			return len(v) == 2 && isAlpha(v[0]) && isAlpha(v[1])
		}); err != nil {
			return r, err
		}
		if r.continents, err = upperCodes(i, "when.continent", w.Continent, func(v string) bool { return continents[v] }); err != nil {
			return r, err
		}
		if r.osMask, err = mask(i, "when.os", w.OS, func(v string) (uint8, bool) {
			if v == DeviceDesktop { // "desktop" as an os means any desktop os
				return 1<<osWindows | 1<<osMacOS | 1<<osLinux, true
			}
			for k, n := range osNames {
				if v == n {
					return 1 << k, true
				}
			}
			return 0, false
		}); err != nil {
			return r, err
		}
		if r.devMask, err = mask(i, "when.device", w.Device, func(v string) (uint8, bool) {
			for k, n := range deviceNames {
				if v == n {
					return 1 << k, true
				}
			}
			return 0, false
		}); err != nil {
			return r, err
		}
		if err := checkList(i, "when.language", w.Language); err != nil {
			return r, err
		}
		for k, v := range w.Language {
			if v == "*" || !validLangRange([]byte(v)) {
				return r, invalid(i, fmt.Sprintf("when.language[%d]", k), "%q is not a language tag", v)
			}
			r.langs = append(r.langs, ascii.LowerString(v))
		}
		if err := checkList(i, "when.cidr", w.CIDR); err != nil {
			return r, err
		}
		for k, v := range w.CIDR {
			p, err := parsePrefix(v)
			if err != nil {
				return r, invalid(i, fmt.Sprintf("when.cidr[%d]", k), "%q: %v", v, err)
			}
			r.cidrs = append(r.cidrs, p)
		}
		if w.Time != nil {
			tc, err := compileTime(i, w.Time)
			if err != nil {
				return r, err
			}
			r.time = tc
		}
	}
	switch {
	case rj.Destination != "" && rj.Split != nil:
		return r, invalid(i, "destination", "give destination or split, not both")
	case rj.Destination != "":
		if err := CheckDestination(rj.Destination, allowed); err != nil {
			return r, &Error{Rule: i, Field: "destination", Err: err}
		}
		r.dest = rj.Destination
	case len(rj.Split) > 0:
		if len(rj.Split) > MaxArms {
			return r, invalid(i, "split", "%d arms, at most %d", len(rj.Split), MaxArms)
		}
		for k, a := range rj.Split {
			f := fmt.Sprintf("split[%d]", k)
			if a.Weight < 0 || a.Weight > MaxWeight {
				return r, invalid(i, f+".weight", "%d not in [0, %d]", a.Weight, MaxWeight)
			}
			if err := CheckDestination(a.Destination, allowed); err != nil {
				return r, &Error{Rule: i, Field: f + ".destination", Err: err}
			}
			r.total += uint64(a.Weight)
			r.arms = append(r.arms, arm{
				dest:   a.Destination,
				weight: uint64(a.Weight),
				cum:    r.total,
				sticky: strconv.Itoa(i) + "." + strconv.Itoa(k),
			})
		}
		if r.total == 0 {
			return r, invalid(i, "split", "weights sum to 0")
		}
	default:
		return r, invalid(i, "destination", "missing: give destination or split")
	}
	return r, nil
}

func checkList(i int, field string, vs []string) error {
	if vs != nil && len(vs) == 0 {
		return invalid(i, field, "empty list (omit the condition to match all)")
	}
	if len(vs) > MaxValues {
		return invalid(i, field, "%d values, at most %d", len(vs), MaxValues)
	}
	return nil
}

func upperCodes(i int, field string, vs []string, ok func(string) bool) ([]string, error) {
	if err := checkList(i, field, vs); err != nil {
		return nil, err
	}
	var out []string
	for k, v := range vs {
		// ASCII only, so that no Unicode case mapping (such as "ſ" upper-casing
		// to "S") can turn into a valid code.
		u := ascii.UpperString(v)
		if !ok(u) {
			return nil, invalid(i, fmt.Sprintf("%s[%d]", field, k), "unknown value %q", v)
		}
		out = append(out, u)
	}
	return out, nil
}

func mask(i int, field string, vs []string, bit func(string) (uint8, bool)) (uint8, error) {
	if err := checkList(i, field, vs); err != nil {
		return 0, err
	}
	var m uint8
	for k, v := range vs {
		b, ok := bit(ascii.LowerString(v))
		if !ok {
			return 0, invalid(i, fmt.Sprintf("%s[%d]", field, k), "unknown value %q", v)
		}
		m |= b
	}
	return m, nil
}

func parsePrefix(v string) (netip.Prefix, error) {
	if strings.Contains(v, "%") {
		return netip.Prefix{}, errors.New("zones are not allowed")
	}
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return p, err
		}
		a := p.Addr()
		if a.Is4In6() && p.Bits() >= 96 {
			return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked(), nil
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func compileTime(i int, tj *timeJSON) (*timeCond, error) {
	tc := &timeCond{loc: time.UTC}
	var err error
	if tj.From != "" {
		if tc.from, err = time.Parse(time.RFC3339, tj.From); err != nil {
			return nil, invalid(i, "when.time.from", "%q is not an RFC 3339 time", tj.From)
		}
	}
	if tj.To != "" {
		if tc.to, err = time.Parse(time.RFC3339, tj.To); err != nil {
			return nil, invalid(i, "when.time.to", "%q is not an RFC 3339 time", tj.To)
		}
	}
	if !tc.from.IsZero() && !tc.to.IsZero() && !tc.from.Before(tc.to) {
		return nil, invalid(i, "when.time.to", "%q is not after from %q", tj.To, tj.From)
	}
	if tj.TZ != "" {
		if tj.TZ == "Local" || strings.ContainsAny(tj.TZ, "\\.") || strings.HasPrefix(tj.TZ, "/") {
			return nil, invalid(i, "when.time.tz", "%q is not a time zone name", tj.TZ)
		}
		if tc.loc, err = time.LoadLocation(tj.TZ); err != nil {
			return nil, invalid(i, "when.time.tz", "unknown time zone %q", tj.TZ)
		}
	}
	if (tj.DailyFrom == "") != (tj.DailyTo == "") {
		return nil, invalid(i, "when.time.daily_from", "daily_from and daily_to go together")
	}
	if tj.DailyFrom != "" {
		var ok bool
		if tc.dailyFrom, ok = parseClock(tj.DailyFrom); !ok {
			return nil, invalid(i, "when.time.daily_from", "%q is not HH:MM", tj.DailyFrom)
		}
		if tc.dailyTo, ok = parseClock(tj.DailyTo); !ok {
			return nil, invalid(i, "when.time.daily_to", "%q is not HH:MM", tj.DailyTo)
		}
		if tc.dailyFrom == tc.dailyTo {
			return nil, invalid(i, "when.time.daily_to", "empty daily window %s-%s", tj.DailyFrom, tj.DailyTo)
		}
		tc.daily = true
	}
	return tc, nil
}

// parseClock parses "HH:MM" (00:00 to 24:00) into minutes after midnight.
func parseClock(s string) (int, bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, false
	}
	for _, k := range []int{0, 1, 3, 4} {
		if s[k] < '0' || s[k] > '9' {
			return 0, false
		}
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if m > 59 || h > 24 || (h == 24 && m != 0) {
		return 0, false
	}
	return h*60 + m, true
}

// Len returns the number of rules.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.rules)
}

// Destinations returns every destination the Set can return, in rule order
// (a fresh slice).
func (s *Set) Destinations() []string {
	if s == nil {
		return nil
	}
	var out []string
	for _, r := range s.rules {
		if r.dest != "" {
			out = append(out, r.dest)
		}
		for _, a := range r.arms {
			out = append(out, a.dest)
		}
	}
	return out
}

// Match returns the destination of the first rule that matches r. For a split
// rule, sticky is the arm's "<rule>.<index>" (for the rr_ab cookie): when
// r.Sticky holds such a value for this rule and the arm still has weight, that
// arm is kept; otherwise the arm is chosen by weight from a hash of r.Sticky
// (so the same key always gets the same arm). For other rules sticky is "".
// ok is false when no rule matches: use the campaign's destination. Match
// does not allocate and never returns a destination that failed
// CheckDestination at Parse.
func (s *Set) Match(r *Request) (dest string, sticky string, ok bool) {
	if s == nil || r == nil {
		return "", "", false
	}
	var ua uaState
	for i := range s.rules {
		ru := &s.rules[i]
		if !ru.matches(r, &ua) {
			continue
		}
		if len(ru.arms) == 0 {
			return ru.dest, "", true
		}
		a := &ru.arms[ru.pick(i, r.Sticky)]
		return a.dest, a.sticky, true
	}
	return "", "", false
}

// uaState caches ClassifyUA for one Match call.
type uaState struct {
	done bool
	os   osID
	dev  deviceID
}

func (u *uaState) get(ua []byte) (osID, deviceID) {
	if !u.done {
		u.os, u.dev = classifyUA(ua)
		u.done = true
	}
	return u.os, u.dev
}

func (ru *rule) matches(r *Request, ua *uaState) bool {
	if ru.countries != nil && !anyEqualFold(ru.countries, r.Country) {
		return false
	}
	if ru.continents != nil && !anyEqualFold(ru.continents, r.Continent) {
		return false
	}
	if ru.osMask != 0 || ru.devMask != 0 {
		o, d := ua.get(r.UA)
		if ru.osMask != 0 && ru.osMask&(1<<o) == 0 {
			return false
		}
		if ru.devMask != 0 && ru.devMask&(1<<d) == 0 {
			return false
		}
	}
	if ru.cidrs != nil {
		ip := r.IP.Unmap()
		found := false
		for _, p := range ru.cidrs {
			if p.Contains(ip) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if ru.time != nil && !ru.time.matches(r.Now) {
		return false
	}
	if ru.langs != nil && !matchLanguage(r.AcceptLanguage, ru.langs) {
		return false
	}
	return true
}

func (tc *timeCond) matches(now time.Time) bool {
	if now.IsZero() {
		return false
	}
	if !tc.from.IsZero() && now.Before(tc.from) {
		return false
	}
	if !tc.to.IsZero() && !now.Before(tc.to) {
		return false
	}
	if tc.daily {
		h, m, _ := now.In(tc.loc).Clock()
		mins := h*60 + m
		if tc.dailyFrom < tc.dailyTo {
			return tc.dailyFrom <= mins && mins < tc.dailyTo
		}
		return mins >= tc.dailyFrom || mins < tc.dailyTo // wraps past midnight
	}
	return true
}

func anyEqualFold(list []string, v string) bool {
	for _, x := range list {
		if asciiEqualFold(x, v) {
			return true
		}
	}
	return false
}

// pick returns the arm index for rule i and sticky key.
func (ru *rule) pick(i int, key []byte) int {
	if k, ok := parseSticky(key, i); ok && k < len(ru.arms) && ru.arms[k].weight > 0 {
		return k
	}
	x := hashKey(key, uint64(i)) % ru.total
	for k := range ru.arms {
		if x < ru.arms[k].cum {
			return k
		}
	}
	return len(ru.arms) - 1 // unreachable: x < total == last cum
}

// parseSticky parses "<rule>.<index>" and reports the index when rule == i.
func parseSticky(b []byte, i int) (int, bool) {
	dot := bytes.IndexByte(b, '.')
	if dot <= 0 || dot > 4 || len(b)-dot-1 <= 0 || len(b)-dot-1 > 4 {
		return 0, false
	}
	r, ok := smallUint(b[:dot])
	if !ok || r != i {
		return 0, false
	}
	return smallUint(b[dot+1:])
}

func smallUint(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// hashKey is FNV-1a over key and the rule index, finished with the
// splitmix64 mixer so that the low bits are uniform. It is stable across
// processes and versions.
func hashKey(key []byte, salt uint64) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for _, c := range key {
		h ^= uint64(c)
		h *= prime
	}
	for k := 0; k < 8; k++ {
		h ^= (salt >> (8 * k)) & 0xff
		h *= prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
