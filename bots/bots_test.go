package bots

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

var uaTests = []struct {
	name string
	ua   string
	bot  bool
}{
	// People.
	{"iPhone Safari", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1", false},
	{"Android Chrome", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", false},
	{"Instagram in-app", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 300.0.0.13.112 (iPhone14,5; iOS 17_0; en_US; en; scale=3.00; 1170x2532; 516489580)", false},
	{"TikTok in-app iOS", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 musical_ly_32.5.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/en Region/US ByteFullLocale/en isDarkMode/0 WKWebView/1 RevealType/Dialog BytedanceWebview/d8a21c6", false},
	{"TikTok in-app Android", "Mozilla/5.0 (Linux; Android 12; SM-G991B Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/112.0.5615.136 Mobile Safari/537.36 trill_300200 JsSdk/1.0 NetType/WIFI Channel/googleplay AppName/musical_ly app_version/30.2.0 ByteLocale/en ByteFullLocale/en Region/US AppVersion/30.2.0 BytedanceWebview/d8a21c6", false},
	{"Facebook in-app", "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/436.0.0.33.109;FBBV/532144093;FBDV/iPhone13,2;FBMD/iPhone;FBSN/iOS;FBSV/16.6;FBSS/3;FBCR/;FBID/phone;FBLC/en_US;FBOP/80]", false},
	{"WeChat in-app", "Mozilla/5.0 (Linux; Android 13; V2227A Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/107.0.5304.141 Mobile Safari/537.36 XWEB/5023 MMWEBSDK/20230701 MicroMessenger/8.0.40.2420(0x28002837) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64", false},
	{"Desktop Firefox", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0", false},
	{"curl is a person", "curl/8.5.0", false},
	{"Cubot phone", "Mozilla/5.0 (Linux; Android 11; CUBOT X30 Build/RP1A.200720.011) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36", false},
	{"cubot lower case", "cubot", false},
	// Bots.
	{"empty", "", true},
	{"TikTok preloader", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36 musical_ly_2023101030 thirdLandingPageFeInfra", true},
	{"Bytespider", "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)", true},
	{"TikTokSpider", "Mozilla/5.0 (compatible; TikTokSpider; ttspider-feedback@tiktok.com)", true},
	{"facebookexternalhit", "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", true},
	{"Facebot", "Facebot", true},
	{"facebookcatalog", "facebookcatalog/1.0", true},
	{"meta-externalagent", "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)", true},
	{"WhatsApp", "WhatsApp/2.23.20.0 A", true},
	{"TelegramBot", "TelegramBot (like TwitterBot)", true},
	{"Slackbot", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", true},
	{"Slack-ImgProxy", "Slack-ImgProxy (+https://api.slack.com/robots)", true},
	{"Discordbot", "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)", true},
	{"Twitterbot", "Twitterbot/1.0", true},
	{"LinkedInBot", "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)", true},
	{"Googlebot", "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.129 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", true},
	{"bingbot", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", true},
	{"Applebot", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)", true},
	{"python-requests", "python-requests/2.31.0", true},
	{"Go-http-client", "Go-http-client/1.1", true},
	{"HeadlessChrome", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.71 Safari/537.36", true},
	{"generic crawler", "SomeCrawler/3.0", true},
	{"generic preview", "SkypeUriPreview Preview/0.5", true},
	{"Nuclei", "Mozilla/5.0 (compatible; Nuclei - Open-source project (github.com/projectdiscovery/nuclei))", true},
	{"zgrab", "Mozilla/5.0 zgrab/0.x", true},
	{"masscan", "masscan/1.3 (https://github.com/robertdavidgraham/masscan)", true},
	{"CensysInspect", "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)", true},
	{"Expanse", "Expanse, a Palo Alto Networks company, searches across the global IPv4 space multiple times per day", true},
	{"nmap", "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)", true},
	{"upper case", "GOOGLEBOT", true},
	{"mixed case", "gOoGlEbOt", true},
	{"cubot device but Googlebot", "Mozilla/5.0 (Linux; Android 11; CUBOT X30) (compatible; Googlebot/2.1)", true},
	{"cubot then bot", "cubotbot", true},
	{"bot before cubot", "bot cubot", true},
	{"pattern at start", "bot", true},
	{"pattern at end", "Mozilla/5.0 spider", true},
}

func TestIsBot(t *testing.T) {
	for _, tt := range uaTests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsBot([]byte(tt.ua)); got != tt.bot {
				t.Fatalf("IsBot(%q) = %v, want %v", tt.ua, got, tt.bot)
			}
			if got := refIsBot(tt.ua, DefaultPatterns(), DefaultExceptions()); got != tt.bot {
				t.Fatalf("reference(%q) = %v, want %v", tt.ua, got, tt.bot)
			}
		})
	}
}

// refIsBot is a slow, obvious reference: at every end position, some pattern
// ending there is longer than every exception ending there.
func refIsBot(ua string, pats, excs []string) bool {
	if ua == "" {
		return true
	}
	return refMatch(ua, pats, excs)
}

func refMatch(s string, pats, excs []string) bool {
	s = strings.ToLower(asciiOnlyLowerRef(s))
	lp := make([]string, len(pats))
	for i, p := range pats {
		lp[i] = strings.ToLower(p)
	}
	le := make([]string, len(excs))
	for i, e := range excs {
		le[i] = strings.ToLower(e)
	}
	for end := 1; end <= len(s); end++ {
		prefix := s[:end]
		longestExc := 0
		for _, e := range le {
			if strings.HasSuffix(prefix, e) && len(e) > longestExc {
				longestExc = len(e)
			}
		}
		for _, p := range lp {
			if len(p) > longestExc && strings.HasSuffix(prefix, p) {
				return true
			}
		}
	}
	return false
}

// asciiOnlyLowerRef maps non-ASCII bytes to a byte in no pattern, so that
// strings.ToLower does not fold Unicode in the reference.
func asciiOnlyLowerRef(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 0x80 {
			b[i] = 0x01
		}
	}
	return string(b)
}

func TestDefaultListsRequired(t *testing.T) {
	have := strings.ToLower(strings.Join(DefaultPatterns(), "\n"))
	for _, p := range []string{"thirdlandingpagefeinfra", "bytespider", "tiktokspider", "facebookexternalhit", "facebot",
		"meta-externalagent", "whatsapp", "telegrambot", "slackbot", "slack-imgproxy", "discordbot", "twitterbot",
		"linkedinbot", "googlebot", "bingbot", "applebot", "python-requests", "go-http-client", "headlesschrome",
		"bot", "spider", "crawler", "preview", "nuclei", "zgrab", "masscan", "censysinspect", "expanse", "nmap"} {
		if !strings.Contains("\n"+have+"\n", "\n"+p+"\n") {
			t.Errorf("default patterns lack %q", p)
		}
	}
	if strings.Contains(have, "curl") {
		t.Error("curl must not be a bot pattern")
	}
	// The copies are the caller's to change.
	DefaultPatterns()[0] = "x"
	if DefaultPatterns()[0] == "x" {
		t.Error("DefaultPatterns returned shared storage")
	}
}

func TestNewMatcher(t *testing.T) {
	tests := []struct {
		name    string
		pats    []string
		excs    []string
		in      string
		want    bool
		wantErr bool
	}{
		{"single", []string{"abc"}, nil, "xxABCxx", true, false},
		{"absent", []string{"abc"}, nil, "xxabxcx", false, false},
		{"overlap fail link", []string{"aab"}, nil, "aaab", true, false},
		{"suffix pattern", []string{"abcd", "bc"}, nil, "xabcx", true, false},
		{"non-letter bytes", []string{"go-http"}, nil, "GO-HTTP", true, false},
		{"non-ascii not folded", []string{"é"}, nil, "É", false, false},
		{"exception masks", []string{"bot"}, []string{"cubot"}, "CuBot", false, false},
		{"exception does not mask longer", []string{"bot", "xcubot"}, []string{"cubot"}, "xcubot", true, false},
		{"no patterns", nil, nil, "", false, true},
		{"empty pattern", []string{""}, nil, "", false, true},
		{"empty exception", []string{"a"}, []string{""}, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMatcher(tt.pats, tt.excs)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Match([]byte(tt.in)); got != tt.want {
				t.Fatalf("Match(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if got := refMatch(tt.in, tt.pats, tt.excs); got != tt.want {
				t.Fatalf("reference(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestMatcherAgreesWithReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	pats := []string{"ab", "abc", "bca", "cab", "aaa", "b-c"}
	excs := []string{"xab", "cabc"}
	m, err := NewMatcher(pats, excs)
	if err != nil {
		t.Fatal(err)
	}
	const letters = "abcABCx-"
	for i := 0; i < 20000; i++ {
		b := make([]byte, r.IntN(12))
		for j := range b {
			b[j] = letters[r.IntN(len(letters))]
		}
		if got, want := m.Match(b), refMatch(string(b), pats, excs); got != want {
			t.Fatalf("Match(%q) = %v, reference %v", b, got, want)
		}
	}
}

func FuzzIsBot(f *testing.F) {
	for _, tt := range uaTests {
		f.Add([]byte(tt.ua))
	}
	pats, excs := DefaultPatterns(), DefaultExceptions()
	f.Fuzz(func(t *testing.T, ua []byte) {
		got := IsBot(ua)
		want := refIsBot(string(ua), pats, excs)
		if got != want {
			t.Fatalf("IsBot(%q) = %v, reference %v", ua, got, want)
		}
		// Uncached, cached, and the automaton alone agree.
		if len(ua) > 0 {
			agree(t, defaultMatcher, ua, want)
		}
		// Case of ASCII letters never matters.
		up := bytes.Map(func(r rune) rune {
			if 'a' <= r && r <= 'z' {
				return r - 'a' + 'A'
			}
			return r
		}, ua)
		if bytes.Equal(bytes.ToValidUTF8(ua, nil), ua) && IsBot(up) != got {
			t.Fatalf("IsBot(%q) differs from IsBot(%q)", up, ua)
		}
	})
}

const typicalUA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"

func BenchmarkIsBot(b *testing.B) {
	ua := []byte(typicalUA)
	b.ReportAllocs()
	for b.Loop() {
		if IsBot(ua) {
			b.Fatal("typical UA classed as bot")
		}
	}
	b.ReportMetric(float64(len(ua)), "bytes/ua")
}

func TestNewMatcherTooLarge(t *testing.T) {
	// 600 distinct 200-byte patterns over 60 byte classes exceed the table.
	r := rand.New(rand.NewPCG(9, 9))
	const alpha = "abcdefghijklmnopqrstuvwxyz0123456789-_./:;!#$%&()*+,<=>?@[]^"
	pats := make([]string, 600)
	for i := range pats {
		b := make([]byte, 200)
		for j := range b {
			b[j] = alpha[r.IntN(len(alpha))]
		}
		pats[i] = string(b)
	}
	if _, err := NewMatcher(pats, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
}
