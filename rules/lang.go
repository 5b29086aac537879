package rules

import "github.com/refrouter/refrouter/internal/ascii"

// maxLangEntries bounds how many Accept-Language entries are inspected.
const maxLangEntries = 32

// langEntry is one Accept-Language range with its weight in thousandths.
type langEntry struct {
	tag []byte
	q   int
}

// nextLang parses the Accept-Language entry at the start of b and returns it,
// whether it is usable, and the rest of b after the next comma.
func nextLang(b []byte) (e langEntry, ok bool, rest []byte) {
	end := len(b)
	for i, c := range b {
		if c == ',' {
			end = i
			rest = b[i+1:]
			break
		}
	}
	item := ascii.TrimOWS(b[:end])
	// tag [; param]...
	tagEnd := len(item)
	for i, c := range item {
		if c == ';' {
			tagEnd = i
			break
		}
	}
	e.tag = ascii.TrimOWS(item[:tagEnd])
	e.q = 1000
	if !validLangRange(e.tag) {
		return e, false, rest
	}
	params := item[tagEnd:]
	for len(params) > 0 {
		params = params[1:] // drop ';'
		pe := len(params)
		for i, c := range params {
			if c == ';' {
				pe = i
				break
			}
		}
		p := ascii.TrimOWS(params[:pe])
		params = params[pe:]
		if len(p) >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=' {
			q, qok := parseQ(ascii.TrimOWS(p[2:]))
			if !qok {
				return e, false, rest
			}
			e.q = q
		}
	}
	return e, true, rest
}

// parseQ parses an RFC 9110 qvalue into thousandths.
func parseQ(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 5 || (b[0] != '0' && b[0] != '1') {
		return 0, false
	}
	q := int(b[0]-'0') * 1000
	if len(b) == 1 {
		return q, true
	}
	if b[1] != '.' {
		return 0, false
	}
	scale := 100
	for _, c := range b[2:] {
		if c < '0' || c > '9' {
			return 0, false
		}
		q += int(c-'0') * scale
		scale /= 10
	}
	if q > 1000 {
		return 0, false
	}
	return q, true
}

// validLangRange accepts "*" or alphanumeric subtags of 1-8 characters
// joined by '-', the first alphabetic.
func validLangRange(t []byte) bool {
	if len(t) == 1 && t[0] == '*' {
		return true
	}
	if len(t) == 0 || len(t) > 64 {
		return false
	}
	n := 0
	for i, c := range t {
		switch {
		case c == '-':
			if n == 0 {
				return false
			}
			n = 0
			continue
		case isAlpha(c):
		case c >= '0' && c <= '9':
			if i == 0 {
				return false
			}
		default:
			return false
		}
		n++
		if n > 8 {
			return false
		}
	}
	return n > 0
}

// matchLanguage reports whether one of the client's most preferred languages
// (the entries of Accept-Language sharing the highest q > 0) is matched by one
// of want (lower-case language tags). A wanted tag matches a client tag equal to
// it or extending it by subtags ("de" matches "de-AT"; "en-GB" does not match
// "en"). The wildcard "*" matches nothing.
func matchLanguage(al []byte, want []string) bool {
	best := 0
	b := al
	for k := 0; k < maxLangEntries && len(b) > 0; k++ {
		e, ok, rest := nextLang(b)
		b = rest
		if ok && e.q > best && !(len(e.tag) == 1 && e.tag[0] == '*') {
			best = e.q
		}
		if rest == nil {
			break
		}
	}
	if best == 0 {
		return false
	}
	b = al
	for k := 0; k < maxLangEntries && len(b) > 0; k++ {
		e, ok, rest := nextLang(b)
		b = rest
		if ok && e.q == best {
			for _, w := range want {
				if langPrefix(e.tag, w) {
					return true
				}
			}
		}
		if rest == nil {
			break
		}
	}
	return false
}

// langPrefix reports whether want is tag or a subtag-prefix of tag, ignoring
// ASCII case.
func langPrefix(tag []byte, want string) bool {
	if len(tag) < len(want) {
		return false
	}
	for i := 0; i < len(want); i++ {
		if ascii.Lower(tag[i]) != want[i] {
			return false
		}
	}
	return len(tag) == len(want) || tag[len(want)] == '-'
}

func isAlpha(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }
