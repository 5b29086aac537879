package edgehttp

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// matchCode stands in for refrouter's share-code match: "/" and 3+ letters.
func matchCode(path []byte) bool {
	if len(path) < 4 || path[0] != '/' {
		return false
	}
	for _, c := range path[1:] {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func TestParseRequest(t *testing.T) {
	const ok = "GET /abc123 HTTP/1.1\r\nHost: x\r\n\r\n"
	cases := []struct {
		name string
		in   string
		want parseResult
	}{
		{"minimal", ok, fast},
		{"head", "HEAD /abc123 HTTP/1.1\r\nHost: x\r\n\r\n", fast},
		{"query", "GET /abc123?rr_hop=1&x=y HTTP/1.1\r\nHost: x\r\n\r\n", fast},
		{"empty", "", needMore},
		{"partial method", "GE", needMore},
		{"partial line", "GET /abc1", needMore},
		{"partial headers", "GET /abc123 HTTP/1.1\r\nHost: x\r\nUser-Ag", needMore},
		{"no final CRLF yet", "GET /abc123 HTTP/1.1\r\nHost: x\r\n", needMore},
		{"POST", "POST /abc123 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", fallback},
		{"partial POST", "POS", fallback},
		{"lower-case method", "get /abc123 HTTP/1.1\r\nHost: x\r\n\r\n", fallback},
		{"HTTP/1.0", "GET /abc123 HTTP/1.0\r\nHost: x\r\n\r\n", fallback},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", fallback},
		{"other path", "GET /v1/campaigns HTTP/1.1\r\nHost: x\r\n\r\n", fallback},
		{"absolute form", "GET http://x/abc123 HTTP/1.1\r\nHost: x\r\n\r\n", fallback},
		{"fragment", "GET /abc123#f HTTP/1.1\r\nHost: x\r\n\r\n", fallback},
		{"two spaces", "GET  /abc123 HTTP/1.1\r\nHost: x\r\n\r\n", fallback},
		{"control in target", "GET /abc\x01123 HTTP/1.1\r\nHost: x\r\n\r\n", fallback},
		{"bare LF request line", "GET /abc123 HTTP/1.1\nHost: x\r\n\r\n", fallback},
		{"bare LF header", "GET /abc123 HTTP/1.1\r\nHost: x\n\r\n", fallback},
		{"bare LF end", "GET /abc123 HTTP/1.1\r\nHost: x\r\n\n", fallback},
		{"CR in header", "GET /abc123 HTTP/1.1\r\nHost: x\ry\r\n\r\n", fallback},
		{"no host", "GET /abc123 HTTP/1.1\r\nUser-Agent: a\r\n\r\n", fallback},
		{"two hosts", "GET /abc123 HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", fallback},
		{"two XFF", "GET /abc123 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\nx-forwarded-for: 5.6.7.8\r\n\r\n", fallback},
		{"content-length 0", "GET /abc123 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", fallback},
		{"chunked", "GET /abc123 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", fallback},
		{"expect", "GET /abc123 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", fallback},
		{"upgrade", "GET /abc123 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", fallback},
		{"connection Close", "GET /abc123 HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n", fallback},
		{"connection upgrade", "GET /abc123 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\r\n", fallback},
		{"obs-fold", "GET /abc123 HTTP/1.1\r\nHost: x\r\nUser-Agent: a\r\n b\r\n\r\n", fallback},
		{"space before colon", "GET /abc123 HTTP/1.1\r\nHost : x\r\n\r\n", fallback},
		{"empty name", "GET /abc123 HTTP/1.1\r\n: x\r\nHost: x\r\n\r\n", fallback},
		{"no colon", "GET /abc123 HTTP/1.1\r\nHost x\r\n\r\n", fallback},
		{"NUL in value", "GET /abc123 HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x00b\r\n\r\n", fallback},
		{"empty host", "GET /abc123 HTTP/1.1\r\nHost: \r\n\r\n", fallback},
	}
	for _, h := range []string{"x", "Example.COM:8080", "127.0.0.1:80", "a-b_c.d", "[::1]", "[::1]:8081",
		"[2001:DB8::7]", "[1:2:3:4:5:6:7:8]", "[::]", "[1::]", "[::1:2:3:4:5:6:7]"} {
		cases = append(cases, struct {
			name string
			in   string
			want parseResult
		}{"host " + h, "GET /abc123 HTTP/1.1\r\nHost: " + h + "\r\n\r\n", fast})
	}
	// Invalid hosts (fasthttp answers 400), and valid ones outside the
	// plain forms the fast path takes.
	for _, h := range []string{"x y", "a:b:c", "a:port", "[::1", "a]", "%zz", "a%20b", "a\tb", "[x]", "[::1]x",
		"[1:2:3:4:5:6:7:8:9]", "[1::2::3]", "[]", "[:]", "[1:]", "[:1]", "[1:::2]", "[12345::]", "[::1]:x", "x:80:",
		"a@b", "a/b", "x:", ":80", "[::1]:", "[::ffff:1.2.3.4]", "[fe80::1%25eth0]", "a~b", "a!b", "\x80x"} {
		cases = append(cases, struct {
			name string
			in   string
			want parseResult
		}{"host " + h, "GET /abc123 HTTP/1.1\r\nHost: " + h + "\r\n\r\n", fallback})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			got, n := parseRequest([]byte(tc.in), &r, matchCode)
			if got != tc.want {
				t.Fatalf("parseRequest(%q) = %v, want %v", tc.in, got, tc.want)
			}
			if got == fast && n != len(tc.in) {
				t.Fatalf("parseRequest(%q) used %d bytes, want %d", tc.in, n, len(tc.in))
			}
		})
	}
}

func TestParseRequestFields(t *testing.T) {
	in := "HEAD /abc123?a=b HTTP/1.1\r\n" +
		"hOsT:   refrouter.example \t\r\n" +
		"User-Agent: Mozilla/5.0 (iPhone)\r\n" +
		"X-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n" +
		"Forwarded: for=198.51.100.2\r\n" +
		"Accept-Language: de-CH, en;q=0.5\r\n" +
		"Cookie: rr_ab_1=b; x=y\r\n" +
		"Connection: close\r\n" +
		"X-Other: ignored\r\n" +
		"\r\nGET /next"
	var r Request
	res, n := parseRequest([]byte(in), &r, matchCode)
	if res != fast || n != strings.Index(in, "GET /next") {
		t.Fatalf("parse = %v, %d", res, n)
	}
	for _, f := range []struct{ name, got, want string }{
		{"path", string(r.Path), "/abc123"},
		{"query", string(r.Query), "a=b"},
		{"host", string(r.Host), "refrouter.example"},
		{"ua", string(r.UserAgent), "Mozilla/5.0 (iPhone)"},
		{"xff", string(r.XForwardedFor), "203.0.113.7, 10.0.0.1"},
		{"forwarded", string(r.Forwarded), "for=198.51.100.2"},
		{"accept-language", string(r.AcceptLanguage), "de-CH, en;q=0.5"},
		{"cookie", string(r.Cookie), "rr_ab_1=b; x=y"},
	} {
		if f.got != f.want {
			t.Errorf("%s = %q, want %q", f.name, f.got, f.want)
		}
	}
	if !r.Head || !r.Close {
		t.Errorf("Head, Close = %v, %v; want true, true", r.Head, r.Close)
	}

	// An empty header is present (non-nil) but empty; an absent one is nil.
	res, _ = parseRequest([]byte("GET /abc123 HTTP/1.1\r\nHost: x\r\nUser-Agent:\r\n\r\n"), &r, matchCode)
	if res != fast || r.UserAgent == nil || len(r.UserAgent) != 0 || r.Cookie != nil {
		t.Fatalf("empty UA: res %v, UA %q (nil %v), Cookie nil %v", res, r.UserAgent, r.UserAgent == nil, r.Cookie == nil)
	}
}

// TestParseRequestPrefixes: every strict prefix of a fast request is
// needMore, never a fast request of another length, never a hand-off.
func TestParseRequestPrefixes(t *testing.T) {
	in := "GET /abc123?q=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: ua\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n"
	var r Request
	for k := 0; k < len(in); k++ {
		if res, _ := parseRequest([]byte(in[:k]), &r, matchCode); res != needMore {
			t.Fatalf("prefix %q: %v, want needMore", in[:k], res)
		}
	}
}

func TestParseRequestAllocs(t *testing.T) {
	in := []byte("GET /abc123 HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0 (iPhone) Mobile\r\nX-Forwarded-For: 203.0.113.10\r\n\r\n")
	var r Request
	if n := testing.AllocsPerRun(100, func() { parseRequest(in, &r, matchCode) }); n != 0 {
		t.Fatalf("parseRequest allocates %v times", n)
	}
}

// FuzzParseRequest checks parseRequest against fasthttp's parser (the
// fallback): whatever this parser claims as a whole fast request, fasthttp
// reads as the same request, of the same length, without a body; and no
// prefix of it is claimed with another length.
// parseSeeds start the parser's fuzz targets.
var parseSeeds = []string{
	"GET /abc123 HTTP/1.1\r\nHost: x\r\n\r\n",
	"HEAD /abc123?x=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: a b\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
	"GET /abc123 HTTP/1.1\r\nHost: x\r\nCookie: a=b\r\nConnection: close\r\n\r\nGET /abc123 HTTP/1.1\r\n",
	"GET /abc123 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
	"GET /abc123 HTTP/1.1\r\nHost: x\r\nAccept-Language: en\r\nForwarded: for=1.2.3.4\r\n\r\n",
	"GET /abc123 HTTP/1.1\r\nHost:\tx \t\r\nUser-Agent: Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) \x80\xff\r\n\r\n",
	"GET /abc123 HTTP/1.1\r\nHost: x\ny\r\n\r\n",
	"GET /abc123 HTTP/1.1\r\nHost: x\x7f\r\n\r\n",
	"GET /abc123#f HTTP/1.1\r\nHost: x\r\n\r\n",
	// Hosts: valid ones the fast path takes, and invalid ones fasthttp
	// answers with 400 (its URI parsing, not RequestHeader.Read, rejects them).
	"GET /abc123 HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n",
	"GET /abc123 HTTP/1.1\r\nHost: [2001:db8::7]:443\r\n\r\n",
	"GET /abc123 HTTP/1.1\r\nHost: a:b:c\r\n\r\n",
	"GET /abc123 HTTP/1.1\r\nHost: x y\r\n\r\n",
	"GET /abc123 HTTP/1.1\r\nHost: a:port\r\n\r\n",
	"GET /abc123 HTTP/1.1\r\nHost: [::1\r\n\r\n",
	"GET /abc123 HTTP/1.1\r\nHost: a]\r\n\r\n",
	"GET /abc123 HTTP/1.1\r\nHost: %zz\r\n\r\n",
	"GET /abc123 HTTP/1.1\r\nHost: a%20b\r\n\r\n",
	"GET /abc123 HTTP/1.1\r\nHost: a\tb\r\n\r\n",
	"GET /abc123 HTTP/1.1\r\nHost: u@x\r\n\r\n",
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		res, n := parseRequest(b, &r, matchCode)
		if res != fast {
			if n != 0 {
				t.Fatalf("%v with n = %d", res, n)
			}
			return
		}
		if n <= 0 || n > len(b) || !bytes.HasSuffix(b[:n], []byte("\r\n\r\n")) {
			t.Fatalf("fast with n = %d of %d", n, len(b))
		}
		for k := 0; k < n; k++ {
			if res, _ := parseRequest(b[:k], &r, matchCode); res == fast {
				t.Fatalf("prefix of %d bytes is fast too", k)
			}
		}
		parseRequest(b, &r, matchCode)
		var h fasthttp.RequestHeader
		br := bufio.NewReader(bytes.NewReader(b[:n]))
		if err := h.Read(br); err != nil {
			t.Fatalf("fasthttp rejects %q: %v", b[:n], err)
		}
		if br.Buffered() != 0 {
			t.Fatalf("fasthttp's request head is shorter than %d bytes", n)
		}
		if h.ContentLength() > 0 || h.ContentLength() == -1 {
			t.Fatalf("fasthttp sees a body (Content-Length %d)", h.ContentLength())
		}
		// The fasthttp server goes on to parse the URI from the Host header
		// and the target (Request.parseURI), answering 400 when that fails.
		var u fasthttp.URI
		if err := u.Parse(h.Host(), h.RequestURI()); err != nil {
			t.Fatalf("fasthttp rejects the URI of %q: %v", b[:n], err)
		}
		if !bytes.EqualFold(u.Host(), r.Host) || string(u.Path()) != string(r.Path) || string(u.QueryString()) != string(r.Query) {
			t.Fatalf("fasthttp reads host %q, path %q, query %q; ours %q, %q, %q, in %q",
				u.Host(), u.Path(), u.QueryString(), r.Host, r.Path, r.Query, b[:n])
		}
		wantMethod := "GET"
		if r.Head {
			wantMethod = "HEAD"
		}
		target := string(r.Path)
		if r.Query != nil {
			target += "?" + string(r.Query)
		}
		for _, c := range []struct{ what, ours, theirs string }{
			{"method", wantMethod, string(h.Method())},
			{"target", target, string(h.RequestURI())},
			{"host", string(r.Host), string(h.Host())},
			{"user-agent", string(r.UserAgent), string(h.UserAgent())},
			{"x-forwarded-for", string(r.XForwardedFor), string(h.Peek("X-Forwarded-For"))},
			{"forwarded", string(r.Forwarded), string(h.Peek("Forwarded"))},
			{"accept-language", string(r.AcceptLanguage), string(h.Peek("Accept-Language"))},
		} {
			if c.ours != c.theirs {
				t.Fatalf("%s: ours %q, fasthttp %q, in %q", c.what, c.ours, c.theirs, b[:n])
			}
		}
		if r.Close != h.ConnectionClose() {
			t.Fatalf("close: ours %v, fasthttp %v", r.Close, h.ConnectionClose())
		}
	})
}

// FuzzValidHost: every Host value the fast path takes is one fasthttp's URI
// parsing (which its server runs on every request, answering 400 when it
// fails) takes too, and reads as the same host.
func FuzzValidHost(f *testing.F) {
	for _, h := range []string{"x", "Example.COM:8080", "127.0.0.1:80", "[::1]", "[2001:db8::7]:443",
		"[1:2:3:4:5:6:7:8]", "[1::]", "a:b:c", "[::1", "a]", "%zz", "a%20b", "[1::2::3]", "x:", "u@x"} {
		f.Add([]byte(h))
	}
	f.Fuzz(func(t *testing.T, h []byte) {
		if !validHost(h) {
			return
		}
		var u fasthttp.URI
		if err := u.Parse(bytes.Clone(h), []byte("/abc123")); err != nil {
			t.Fatalf("validHost(%q), fasthttp: %v", h, err)
		}
		if !bytes.EqualFold(u.Host(), h) {
			t.Fatalf("validHost(%q), fasthttp reads host %q", h, u.Host())
		}
	})
}
