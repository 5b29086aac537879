package edgehttp

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/refrouter/refrouter/internal/ascii"
)

// parseRequestRef is parseRequest as first written: line by line, with
// bytes.IndexByte for each delimiter and a pass per check. It shares
// Request.setField (which fields a request carries, and which send it to the
// fallback) with parseRequest: what the two must agree on is the scanning. The fast parser
// must agree with it on every input (FuzzParseRequestMatchesReference).
func parseRequestRef(b []byte, r *Request, match func(path []byte) bool) (parseResult, int) {
	*r = Request{Remote: r.Remote}
	// Request line.
	eol := bytes.IndexByte(b, '\n')
	if eol < 0 {
		if len(b) > 0 && !couldStartFast(b) {
			return fallback, 0
		}
		return needMore, 0
	}
	line, ok := crlfLineRef(b[:eol+1])
	if !ok {
		return fallback, 0
	}
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		line = line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		r.Head = true
		line = line[5:]
	default:
		return fallback, 0
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || string(line[sp+1:]) != "HTTP/1.1" {
		return fallback, 0
	}
	target := line[:sp]
	if target[0] != '/' || !visible(target) {
		return fallback, 0
	}
	r.Path = target
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		r.Path, r.Query = target[:q], target[q+1:]
	}
	if bytes.IndexByte(target, '#') >= 0 || !match(r.Path) {
		return fallback, 0
	}

	// Header fields.
	off := eol + 1
	for {
		rest := b[off:]
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			return needMore, 0
		}
		field, ok := crlfLineRef(rest[:nl+1])
		if !ok {
			return fallback, 0
		}
		off += nl + 1
		if len(field) == 0 {
			break // end of the header block
		}
		colon := bytes.IndexByte(field, ':')
		if colon <= 0 || !isToken(field[:colon]) {
			return fallback, 0 // includes obs-fold (a leading blank)
		}
		name, value := field[:colon], ascii.TrimOWS(field[colon+1:])
		if !fieldValue(value) {
			return fallback, 0
		}
		if !r.setField(name, value) {
			return fallback, 0
		}
	}
	if len(r.Host) == 0 {
		return fallback, 0 // missing (setField rejects an empty one): the fallback answers 400
	}
	return fast, off
}

// crlfLineRef returns line without its CRLF end; false for a bare LF or a CR
// inside the line.
func crlfLineRef(line []byte) ([]byte, bool) {
	n := len(line)
	if n < 2 || line[n-2] != '\r' {
		return nil, false
	}
	line = line[:n-2]
	return line, bytes.IndexByte(line, '\r') < 0
}

// visible reports whether b is all visible ASCII (0x21-0x7e).
func visible(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// fieldValue reports whether b is a valid field value without control
// characters (horizontal tab allowed, obs-text allowed).
func fieldValue(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func isToken(b []byte) bool {
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return len(b) > 0
}

// FuzzParseRequestMatchesReference: the one-pass parser and the reference
// agree on the verdict and the length for every input and two of its
// prefixes, and on every field of the requests they answer.
func FuzzParseRequestMatchesReference(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, k := range []int{len(b), len(b) / 2, len(b) - 1} {
			if k < 0 {
				continue
			}
			var got, want Request
			gr, gn := parseRequest(b[:k], &got, matchCode)
			wr, wn := parseRequestRef(b[:k], &want, matchCode)
			if gr != wr || gn != wn || gr == fast && !reflect.DeepEqual(got, want) {
				t.Fatalf("%q: got %v, %d, %+v; reference %v, %d, %+v", b[:k], gr, gn, got, wr, wn, want)
			}
		}
	})
}

// TestFirstCtl: the eight-bytes-at-a-time search finds what a plain loop
// finds, at every position and alignment, with matches before and after.
func TestFirstCtl(t *testing.T) {
	plain := func(b []byte) int {
		for i, c := range b {
			if c < 0x20 || c == 0x7f {
				return i
			}
		}
		return len(b)
	}
	for _, c := range []byte{0x00, 0x01, '\t', '\n', '\r', 0x1f, 0x7f} {
		for n := 0; n <= 24; n++ {
			for at := 0; at <= n; at++ {
				for _, fill := range []byte{'a', ' ', 0x80, 0xff, 0x7e, 0x20} {
					b := bytes.Repeat([]byte{fill}, n)
					if at < n {
						b[at] = c
						if at+1 < n {
							b[at+1] = 0x01 // a later match must not win
						}
					}
					if got, want := firstCtl(b), plain(b); got != want {
						t.Fatalf("firstCtl(%q) = %d, want %d", b, got, want)
					}
				}
			}
		}
	}
}
