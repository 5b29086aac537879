package bots

import (
	"encoding/binary"
	"strings"

	"github.com/refrouter/refrouter/internal/ascii"
)

// The prefilter is a table of byte pairs such that every occurrence of
// every pattern contains at least one of them. A string none of whose
// adjacent byte pairs is in the table contains no pattern, so its verdict is
// false without running the automaton. The table is indexed by the two
// bytes as loaded (little-endian), with every ASCII case variant of a pair
// entered, so a lookup is one 16-bit load, one byte load and an or; the
// lookups do not depend on one another, so the CPU overlaps them, where the
// automaton must wait for each state before loading the next. The pairs are
// chosen to be rare in human user agents, which then need no automaton at
// all; where a pair does occur, the automaton checks the stretch of the
// string where a pattern containing it could end.

// pairTable[a|b<<8] is non-zero if byte a followed by byte b may be part of
// a pattern occurrence.
type pairTable [1 << 16]uint8

// scan is Match without the cache. The prefilter looks at the pairs
// starting at s[i:i+8] for i = 0, 8, 16...; for each such group that holds a
// pair of the table (a hit), the automaton runs over every byte where a
// pattern containing one of those pairs could end, starting early enough to
// be in its exact state there.
//
// Why this gives the automaton's verdict on the whole of s: a pattern
// occurrence ending at e has a pair of the table starting at some j with
// e-maxLen < j <= e (inside it; or, for a one-byte pattern, the pair
// before or after it), so j is in a hit group i <= j < i+8, whose window
// [i-maxLen+1, i+8+maxLen) covers e. The automaton started fresh at k is in
// the exact state (the longest suffix of s[:e+1] that is a trie node) from
// e = k+maxLen-1 on, as trie nodes are at most maxLen deep. A window
// either continues the previous run, whose states are exact, or starts
// fresh at k = i-maxLen+1, after every byte run so far. In the latter case
// no pattern ends in s[k:i] (its pair would lie in an earlier hit group,
// whose window would have reached it), so the states there, possibly not
// exact, are not the match sink; from i on they are exact.
func (m *Matcher) scan(s []byte) bool {
	if len(s) < 2 { // no pairs
		return m.run(s)
	}
	next, sink := m.next, m.sink
	done := 0 // the automaton has run over s[:done] ...
	st := 0   // ... and is in state st
	for i := m.pairs.hit(s, 0); i >= 0; i = m.pairs.hit(s, i+8) {
		if k := i - m.maxLen + 1; k > done {
			done, st = k, 0
		}
		end := min(len(s), i+8+m.maxLen)
		for ; done < end; done++ {
			st = int(next[st+int(m.class[s[done]])])
			if st == sink {
				return true
			}
		}
	}
	return false
}

// hit returns the least j >= i, with j-i a multiple of eight, such that a
// pair of t starts in s[j:j+8]; or -1 if there is none.
func (t *pairTable) hit(s []byte, i int) int {
	for ; i+9 <= len(s); i += 8 {
		g := s[i : i+9 : i+9]
		if t[le16(g[0:])]|t[le16(g[1:])]|t[le16(g[2:])]|t[le16(g[3:])]|
			t[le16(g[4:])]|t[le16(g[5:])]|t[le16(g[6:])]|t[le16(g[7:])] != 0 {
			return i
		}
	}
	for j := i; j+2 <= len(s); j++ {
		if t[le16(s[j:])] != 0 {
			return i
		}
	}
	return -1
}

// le16 loads two bytes as a pair key.
func le16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }

// buildPairs chooses, for each pattern (lower case) that contains no other
// pattern, the byte pair in it least frequent (ignoring case) in sample,
// and returns the table of chosen pairs in all their case variants. Patterns that contain another pattern need no pair of their
// own: their occurrences contain an occurrence of the other. A one-byte
// pattern c is entered as (x, c) and (c, x) for every x (scan runs the
// automaton on strings of less than two bytes). The choice of pairs only
// affects speed: any choice keeps every verdict.
func buildPairs(pats, sample []string) *pairTable {
	key := func(a, b byte) int { return int(ascii.Lower(a)) | int(ascii.Lower(b))<<8 }
	freq := make([]int, 1<<16)
	for _, ua := range sample {
		for i := 1; i < len(ua); i++ {
			freq[key(ua[i-1], ua[i])]++
		}
	}
	t := new(pairTable)
	set := func(a, b byte) {
		for _, x := range [2]byte{a, ascii.Upper(a)} {
			for _, y := range [2]byte{b, ascii.Upper(b)} {
				t[int(x)|int(y)<<8] = 1
			}
		}
	}
	for i, p := range pats {
		if containsOther(pats, i) {
			continue
		}
		if len(p) == 1 {
			for x := 0; x < 256; x++ {
				set(byte(x), p[0])
				set(p[0], byte(x))
			}
			continue
		}
		best := 1
		for j := 1; j < len(p); j++ {
			k := key(p[j-1], p[j])
			if t[k] != 0 { // already chosen for another pattern: free
				best = j
				break
			}
			if freq[k] < freq[key(p[best-1], p[best])] {
				best = j
			}
		}
		set(p[best-1], p[best])
	}
	return t
}

// containsOther reports whether pats[i] contains another pattern, counting
// an equal pattern only if it comes first (so one of equals is kept).
func containsOther(pats []string, i int) bool {
	for j, q := range pats {
		if j == i {
			continue
		}
		if q == pats[i] {
			if j < i {
				return true
			}
			continue
		}
		if strings.Contains(pats[i], q) {
			return true
		}
	}
	return false
}

// humanSample is a sample of human user agents (browsers and in-app
// browsers, mobile first) used only to choose rare prefilter pairs.
var humanSample = [...]string{
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/125.0.6422.80 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
	"Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/460.0.0.48.109;IABMV/1;]",
	"Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
	"Mozilla/5.0 (Linux; Android 12; Redmi Note 11 Build/SKQ1.211103.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/118.0.5993.111 Mobile Safari/537.36",
	"Mozilla/5.0 (Linux; Android 13; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/116.0.0.0 Mobile Safari/537.36",
	"Mozilla/5.0 (Linux; U; Android 12; en-us; Pixel 6 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/117.0.0.0 Mobile Safari/537.36 EdgA/117.0.2045.53",
	"Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 300.0.0.13.112 (iPhone14,5; iOS 17_0; en_US; en; scale=3.00; 1170x2532; 516489580)",
	"Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230805.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/116.0.5845.163 Mobile Safari/537.36 Instagram 298.0.0.31.110 Android (33/13; 420dpi; 1080x2400; Google/google; Pixel 7; panther; panther; en_US; 509948000)",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 musical_ly_32.5.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/en Region/US ByteFullLocale/en isDarkMode/0 WKWebView/1 RevealType/Dialog BytedanceWebview/d8a21c6",
	"Mozilla/5.0 (Linux; Android 12; SM-G991B Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/112.0.5615.136 Mobile Safari/537.36 trill_300200 JsSdk/1.0 NetType/WIFI Channel/googleplay AppName/musical_ly app_version/30.2.0 ByteLocale/en ByteFullLocale/en Region/US AppVersion/30.2.0 BytedanceWebview/d8a21c6",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/436.0.0.33.109;FBBV/532144093;FBDV/iPhone13,2;FBMD/iPhone;FBSN/iOS;FBSV/16.6;FBSS/3;FBCR/;FBID/phone;FBLC/en_US;FBOP/80]",
	"Mozilla/5.0 (Linux; Android 13; V2227A Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/107.0.5304.141 Mobile Safari/537.36 XWEB/5023 MMWEBSDK/20230701 MicroMessenger/8.0.40.2420(0x28002837) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Snapchat/12.65.0.33 (like Safari/8617.2.4.10.8, panda)",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/13.21.0",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Twitter for iPhone/10.34",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
	"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 OPR/109.0.0.0",
	"Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Linux; Android 11; CUBOT X30 Build/RP1A.200720.011) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36",
	"Mozilla/5.0 (Linux; arm_64; Android 13; 2201117TY) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.230 YaBrowser/24.1.5.69.00 SA/3 Mobile Safari/537.36",
	"Mozilla/5.0 (Linux; Android 10; HUAWEI P30) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/99.0.4844.88 HuaweiBrowser/14.0.0.300 Mobile Safari/537.36",
	"Mozilla/5.0 (Linux; Android 9; Mi A2 Lite) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/88.0.4324.181 Mobile Safari/537.36 OPR/63.3.3216.58675",
	"Mozilla/5.0 (Linux; Android 13; OPPO CPH2365) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.5735.196 Mobile Safari/537.36 Pinterest/Android",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 LinkedInApp/9.29.5300",
	"Mozilla/5.0 (Linux; Android 12; motorola edge 30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile DuckDuckGo/5 Safari/537.36",
	"curl/8.5.0",
}
