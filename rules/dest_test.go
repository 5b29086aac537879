package rules

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

var testAllowed = []string{"live.example.com", "shop.example.com:8443", "liveapp://", "xn--bcher-kva.example"}

var destCases = []struct {
	name string
	dest string
	ok   bool
}{
	{"plain https", "https://live.example.com/room/42", true},
	{"plain http", "http://live.example.com", true},
	{"query and fragment", "https://live.example.com/r?x=1&y=2#top", true},
	{"upper-case host", "https://LIVE.Example.COM/room", true},
	{"upper-case scheme", "HTTPS://live.example.com/", true},
	{"listed port", "https://shop.example.com:8443/x", true},
	{"punycode as given", "https://xn--bcher-kva.example/", true},
	{"deep link listed", "liveapp://room/42?ref=1", true},
	{"deep link with a broken escape", "liveapp://room/%zz", false},
	{"deep link upper scheme", "LiveApp://room/42", true},

	{"other host", "https://evil.net/", false},
	{"suffix host", "https://live.example.com.evil.net/", false},
	{"prefix host", "https://evillive.example.com/", false},
	{"subdomain not listed", "https://a.live.example.com/", false},
	{"userinfo trick", "https://live.example.com@evil.net/", false},
	{"userinfo with password", "https://user:pw@live.example.com/", false},
	{"empty userinfo", "https://@live.example.com/", false},
	{"scheme relative", "//evil.net/", false},
	{"scheme relative to allowed", "//live.example.com/", false},
	{"backslashes", "\\\\evil.net", false},
	{"slash backslash", "/\\evil.net", false},
	{"backslash in authority", "https://live.example.com\\@evil.net/", false},
	{"backslash scheme", "https:\\\\evil.net", false},
	{"single slash", "https:/evil.net", false},
	{"no slashes", "https:evil.net", false},
	{"path only", "/room/42", false},
	{"empty", "", false},
	{"javascript", "javascript://live.example.com/%0aalert(1)", false},
	{"javascript listed still refused", "javascript://x", false},
	{"data", "data:text/html,<script>", false},
	{"file", "file:///etc/passwd", false},
	{"unlisted deep link", "otherapp://room", false},
	{"unlisted port", "https://live.example.com:444/", false},
	{"default port explicit", "https://live.example.com:443/", false},
	{"empty port", "https://live.example.com:/", false},
	{"port on deep-linked host only", "https://shop.example.com/", false},
	{"idn unicode host", "https://bücher.example/", false},
	{"fullwidth dot", "https://live.example\uff0ecom/", false},
	{"percent in host", "https://live%2eexample.com/", false},
	{"percent encoded evil", "https://%65vil.net/", false},
	{"trailing dot", "https://live.example.com./", false},
	{"tab inside", "https://live.exam\tple.com/", false},
	{"newline", "https://live.example.com/\r\nLocation: evil", false},
	{"space", "https://live.example.com/a b", false},
	{"ip literal", "https://127.0.0.1/", false},
	{"ipv6 literal", "https://[::1]/", false},
	{"no host", "https:///room", false},
	{"too long", "https://live.example.com/" + strings.Repeat("a", MaxDestinationLen), false},
	{"bad scheme chars", "ht_tp://live.example.com/", false},
}

func TestCheckDestination(t *testing.T) {
	allowed := append(append([]string(nil), testAllowed...), "javascript://")
	for _, tc := range destCases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckDestination(tc.dest, allowed)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckDestination(%q) = %v, want ok=%v", tc.dest, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrDestination) {
				t.Fatalf("error %v does not wrap ErrDestination", err)
			}
			if err == nil {
				assertSafe(t, tc.dest)
			}
		})
	}
}

// assertSafe is the reference check: what a URL parser sees as the target is
// on the allow-list.
func assertSafe(t *testing.T, dest string) {
	t.Helper()
	u, err := url.Parse(dest)
	if err != nil {
		t.Fatalf("accepted %q that net/url rejects: %v", dest, err)
	}
	if u.User != nil {
		t.Fatalf("accepted %q with userinfo", dest)
	}
	switch u.Scheme {
	case "http", "https":
		h := strings.ToLower(u.Host)
		if h != "live.example.com" && h != "shop.example.com:8443" && h != "xn--bcher-kva.example" {
			t.Fatalf("accepted %q with host %q", dest, u.Host)
		}
	case "liveapp":
	default:
		t.Fatalf("accepted %q with scheme %q", dest, u.Scheme)
	}
	if strings.ContainsAny(dest, "\\ \t\r\n") {
		t.Fatalf("accepted %q with whitespace or backslash", dest)
	}
}

func FuzzCheckDestination(f *testing.F) {
	for _, tc := range destCases {
		f.Add(tc.dest)
	}
	f.Fuzz(func(t *testing.T, dest string) {
		if CheckDestination(dest, testAllowed) == nil {
			assertSafe(t, dest)
		}
	})
}

func TestCheckAllowedHosts(t *testing.T) {
	tests := []struct {
		hosts   []string
		wantErr string
	}{
		{[]string{"live.example.com", "shop.example.com:8443", "liveapp://", "xn--bcher-kva.example"}, ""},
		{nil, ""},
		{[]string{"live.example.com", "https://"}, `allowed_hosts[1] "https://"`},
		{[]string{"javascript://"}, `allowed_hosts[0]`},
		{[]string{"bücher.example"}, `allowed_hosts[0]`},
		{[]string{"live.example.com:"}, `allowed_hosts[0]`},
		{[]string{"live.example.com:80x"}, `allowed_hosts[0]`},
		{[]string{"https://live.example.com"}, `allowed_hosts[0]`},
		{[]string{"*.example.com"}, `allowed_hosts[0]`},
		{[]string{""}, `allowed_hosts[0]`},
	}
	for _, tc := range tests {
		err := CheckAllowedHosts(tc.hosts)
		if tc.wantErr == "" && err != nil {
			t.Errorf("CheckAllowedHosts(%q) = %v", tc.hosts, err)
		}
		if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalid)) {
			t.Errorf("CheckAllowedHosts(%q) = %v, want error naming %s", tc.hosts, err, tc.wantErr)
		}
	}
}
