// Package bots recognises user agents of bots, link preloaders, scripted
// HTTP clients and scanners, so that their clicks are redirected but not
// counted.
//
// Matching is a case-insensitive (ASCII) substring search for any of a list
// of patterns, run as one pass of a precomputed automaton over the user
// agent, without allocating. Exceptions mask patterns that end inside them:
// "cubot" (a phone brand) hides the "bot" it ends with, but not a
// "Googlebot" elsewhere in the same user agent.
//
// Two optimisations leave every verdict unchanged (see prefilter.go and
// cache.go): a cheap scan for byte pairs that every pattern occurrence
// contains lets most human user agents skip the automaton, and each Matcher
// remembers recent verdicts in a small lock-free table keyed by a seeded
// 64-bit hash of the user agent, since a few app and browser builds make up
// most real traffic.
package bots

import (
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync/atomic"

	"github.com/refrouter/refrouter/internal/ascii"
)

// ErrInvalid reports an invalid pattern list given to NewMatcher.
var ErrInvalid = errors.New("bots: invalid pattern")

// maxStates bounds the automaton (states x byte classes) so that
// pre-multiplied states fit in uint16.
const maxStates = 1 << 16

// defaultPatterns are the built-in bot patterns. Several are covered by the
// generic "bot", "spider", "crawler" and "preview" but are listed to
// document them. curl is deliberately absent: it is a person trying the demo.
var defaultPatterns = [...]string{
	// TikTok / ByteDance preloaders and crawlers (the in-app browser, which
	// says "musical_ly" or "BytedanceWebview", is a person).
	"thirdLandingPageFeInfra", "Bytespider", "TikTokSpider",
	// Link preview fetchers of social and chat apps.
	"facebookexternalhit", "facebookcatalog", "Facebot", "meta-externalagent", "meta-externalfetcher",
	"WhatsApp", "TelegramBot", "Slackbot", "Slack-ImgProxy", "Discordbot",
	"Twitterbot", "LinkedInBot", "Pinterestbot", "redditbot", "SkypeUriPreview",
	"vkShare", "Embedly", "Iframely",
	// Search engines.
	"Googlebot", "AdsBot-Google", "Google-InspectionTool", "bingbot", "Applebot",
	"YandexBot", "Baiduspider", "Yahoo! Slurp", "DuckDuckBot",
	// Scripted clients and headless browsers.
	"python-requests", "python-urllib", "python-httpx", "aiohttp", "Go-http-client",
	"libwww-perl", "Wget", "Scrapy", "HeadlessChrome", "PhantomJS",
	// Generic words.
	"bot", "spider", "crawler", "preview",
	// Scanners.
	"Nuclei", "zgrab", "masscan", "CensysInspect", "Expanse", "nmap",
}

// defaultExceptions are substrings of human user agents that end with a bot
// pattern.
var defaultExceptions = [...]string{
	"cubot", // Cubot Android phones, e.g. "CUBOT X30"
}

// DefaultPatterns returns a copy of the built-in bot patterns used by IsBot.
func DefaultPatterns() []string { return append([]string(nil), defaultPatterns[:]...) }

// DefaultExceptions returns a copy of the built-in exceptions used by IsBot.
func DefaultExceptions() []string { return append([]string(nil), defaultExceptions[:]...) }

// defaultMatcher is built once at package initialisation and never mutated.
var defaultMatcher = mustMatcher(defaultPatterns[:], defaultExceptions[:])

func mustMatcher(patterns, exceptions []string) *Matcher {
	m, err := NewMatcher(patterns, exceptions)
	if err != nil {
		panic(err) // the built-in lists are fixed and tested
	}
	return m
}

// IsBot reports whether ua, an HTTP User-Agent value, belongs to a known
// bot, link preloader, scripted client or scanner. An empty user agent
// counts as a bot. It does not allocate, does not retain ua, and is safe
// for concurrent use.
func IsBot(ua []byte) bool {
	return len(ua) == 0 || defaultMatcher.Match(ua)
}

// Matcher finds any of a set of patterns in a byte string, ignoring ASCII
// case. Its patterns, and so its verdicts, are fixed by NewMatcher; it
// keeps a private cache of recent verdicts, and is safe for concurrent use.
type Matcher struct {
	class  [256]uint8 // byte -> input class; 0 for bytes in no pattern
	nclass int
	// next[state+class] is the next state; states are pre-multiplied by
	// nclass. All matching states are one absorbing sink, so only the final
	// state needs checking.
	next   []uint16
	sink   int // pre-multiplied sink state, -1 if nothing can match
	maxLen int // longest pattern or exception, in bytes

	pairs *pairTable // the prefilter (prefilter.go)

	// Verdict cache (cache.go).
	seed  maphash.Seed
	slots []atomic.Uint64
	mask  uint64 // len(slots)-1
}

// NewMatcher builds a matcher of patterns, masked by exceptions: a pattern
// occurrence that ends where an exception occurrence ends, and lies within
// it, does not count. Patterns and exceptions are compared ignoring ASCII
// case. It fails with ErrInvalid for an empty pattern list, an empty
// pattern or exception, or a set too large for the automaton. Besides the
// automaton, a Matcher holds a 64 KiB prefilter table and a 32 KiB verdict
// cache of its own, with its own random hash seed.
func NewMatcher(patterns, exceptions []string) (*Matcher, error) {
	return newMatcher(patterns, exceptions, humanSample[:], cacheSlots)
}

// newMatcher is NewMatcher with the sample that guides the choice of
// prefilter pairs and the number of cache slots (a power of two, at least
// 4) given, for tests.
func newMatcher(patterns, exceptions, sample []string, slots int) (*Matcher, error) {
	if len(patterns) == 0 {
		return nil, fmt.Errorf("new matcher: no patterns: %w", ErrInvalid)
	}
	lower := func(kind string, in []string) ([]string, error) {
		out := make([]string, len(in))
		for i, p := range in {
			if p == "" {
				return nil, fmt.Errorf("new matcher: empty %s %d: %w", kind, i, ErrInvalid)
			}
			out[i] = ascii.LowerString(p)
		}
		return out, nil
	}
	pats, err := lower("pattern", patterns)
	if err != nil {
		return nil, err
	}
	excs, err := lower("exception", exceptions)
	if err != nil {
		return nil, err
	}

	m := &Matcher{nclass: 1}
	for _, p := range append(append([]string(nil), pats...), excs...) {
		m.maxLen = max(m.maxLen, len(p))
		for i := 0; i < len(p); i++ {
			b := p[i]
			if m.class[b] != 0 {
				continue
			}
			if m.nclass == 256 {
				return nil, fmt.Errorf("new matcher: more than 255 distinct bytes: %w", ErrInvalid)
			}
			m.class[b] = uint8(m.nclass)
			if 'a' <= b && b <= 'z' {
				m.class[b-'a'+'A'] = uint8(m.nclass)
			}
			m.nclass++
		}
	}

	// Trie of patterns and exceptions; state 0 is the root.
	type node struct {
		child []int32 // by class, -1 for none
		str   string
		fail  int
	}
	newNode := func(s string) node {
		c := make([]int32, m.nclass)
		for i := range c {
			c[i] = -1
		}
		return node{child: c, str: s}
	}
	nodes := []node{newNode("")}
	for _, p := range append(append([]string(nil), pats...), excs...) {
		s := 0
		for i := 0; i < len(p); i++ {
			c := m.class[p[i]]
			if nodes[s].child[c] < 0 {
				if len(nodes) == maxStates {
					return nil, fmt.Errorf("new matcher: more than %d states: %w", maxStates, ErrInvalid)
				}
				nodes[s].child[c] = int32(len(nodes))
				nodes = append(nodes, newNode(p[:i+1]))
			}
			s = int(nodes[s].child[c])
		}
	}

	// Breadth-first: complete the transition table (Aho-Corasick).
	n := len(nodes)
	if n*m.nclass > maxStates {
		return nil, fmt.Errorf("new matcher: %d states x %d byte classes exceed %d: %w", n, m.nclass, maxStates, ErrInvalid)
	}
	m.next = make([]uint16, n*m.nclass)
	queue := []int{0}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for c := 0; c < m.nclass; c++ {
			ch := nodes[s].child[c]
			if ch < 0 {
				if s != 0 {
					m.next[s*m.nclass+c] = m.next[nodes[s].fail*m.nclass+c]
				}
				continue
			}
			if s != 0 {
				nodes[ch].fail = int(m.next[nodes[s].fail*m.nclass+c])
			}
			m.next[s*m.nclass+c] = uint16(ch)
			queue = append(queue, int(ch))
		}
	}

	// A state matches when some pattern ending here is longer than every
	// exception ending here (shorter ones lie within an exception). All
	// matching states merge into one absorbing sink, and entries are
	// pre-multiplied by nclass so that Match does one add per byte.
	term := make([]bool, n)
	m.sink = -1
	for s := range nodes {
		term[s] = matchesAtEnd(nodes[s].str, pats, excs)
		if term[s] && m.sink < 0 {
			m.sink = s * m.nclass
		}
	}
	for i, t := range m.next {
		if s := i / m.nclass; term[s] {
			m.next[i] = uint16(m.sink)
		} else if term[t] {
			m.next[i] = uint16(m.sink)
		} else {
			m.next[i] = t * uint16(m.nclass)
		}
	}
	m.pairs = buildPairs(pats, sample)
	m.initCache(slots)
	return m, nil
}

// matchesAtEnd reports whether a pattern ends at the end of s (lower case)
// without lying within an exception that also ends there.
func matchesAtEnd(s string, pats, excs []string) bool {
	longestExc := 0
	for _, e := range excs {
		if strings.HasSuffix(s, e) && len(e) > longestExc {
			longestExc = len(e)
		}
	}
	for _, p := range pats {
		if len(p) > longestExc && strings.HasSuffix(s, p) {
			return true
		}
	}
	return false
}

// Match reports whether s contains any pattern (ignoring ASCII case) that is
// not masked by an exception. It does not allocate or retain s, and is safe
// for concurrent use.
func (m *Matcher) Match(s []byte) bool {
	h := maphash.Bytes(m.seed, s)
	if v, ok := m.cached(h); ok {
		if invariants {
			m.check(s, v)
		}
		return v
	}
	v := m.scan(s)
	if invariants {
		m.check(s, v)
	}
	m.remember(h, v)
	return v
}

// check panics if v is not the reference automaton's verdict on s. It runs
// on every Match in builds with the invariants tag; a panic is a bug in the
// prefilter or the cache (or, with probability 2^-64 per lookup, a hash
// collision).
func (m *Matcher) check(s []byte, v bool) {
	if m.run(s) != v {
		panic(fmt.Sprintf("bots: invariant broken: Match(%q) = %v, automaton %v", string(s), v, !v))
	}
}

// run is the automaton over s from its start state: the reference
// matcher, with no prefilter and no cache (it stops at the first match, as
// the sink absorbs).
func (m *Matcher) run(s []byte) bool {
	st := 0
	next := m.next
	sink := m.sink
	for _, b := range s {
		st = int(next[st+int(m.class[b])])
		if st == sink {
			return true
		}
	}
	return false
}
