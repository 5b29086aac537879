package rules

import "testing"

var uaCases = []struct {
	name, ua, os, device string
}{
	{"iPhone Safari", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", OSiOS, DeviceMobile},
	{"iPad", "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1", OSiOS, DeviceTablet},
	{"WeChat on iPhone", "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.40(0x1800282a) NetType/WIFI Language/zh_HK", OSiOS, DeviceMobile},
	{"Android phone", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36", OSAndroid, DeviceMobile},
	{"Android tablet", "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", OSAndroid, DeviceTablet},
	{"Firefox Android tablet", "Mozilla/5.0 (Android 14; Tablet; rv:125.0) Gecko/125.0 Firefox/125.0", OSAndroid, DeviceTablet},
	{"Windows Chrome", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", OSWindows, DeviceDesktop},
	{"Windows Phone", "Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.14977", OSWindows, DeviceMobile},
	{"macOS Safari", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", OSMacOS, DeviceDesktop},
	{"Linux Firefox", "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0", OSLinux, DeviceDesktop},
	{"ChromeOS", "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", OSLinux, DeviceDesktop},
	{"HarmonyOS phone", "Mozilla/5.0 (Phone; OpenHarmony 4.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.0.0 Safari/537.36 ArkWeb/4.1.6.1 Mobile HuaweiBrowser/5.0.4.300", OSOther, DeviceMobile},
	{"KaiOS", "Mozilla/5.0 (Mobile; LYF/F300B/LYF-F300B-001-01-15-130718-i;Android; rv:48.0) Gecko/48.0 Firefox/48.0 KAIOS/2.5", OSAndroid, DeviceMobile},
	{"curl", "curl/8.5.0", OSOther, DeviceDesktop},
	{"empty", "", OSOther, DeviceDesktop},
	{"generic mobile", "SomeBrowser/1.0 (Mobile)", OSOther, DeviceMobile},
}

func TestClassifyUA(t *testing.T) {
	for _, tc := range uaCases {
		t.Run(tc.name, func(t *testing.T) {
			os, dev := ClassifyUA([]byte(tc.ua))
			if os != tc.os || dev != tc.device {
				t.Fatalf("ClassifyUA = (%s, %s), want (%s, %s)", os, dev, tc.os, tc.device)
			}
		})
	}
}

func TestContainsStr(t *testing.T) {
	tests := []struct {
		b, s string
		want bool
	}{
		{"hello", "", true}, {"hello", "lo", true}, {"hello", "hel", true}, {"hello", "hello!", false},
		{"aab", "ab", true}, {"", "a", false}, {"abc", "abd", false},
	}
	for _, tc := range tests {
		if got := containsStr([]byte(tc.b), tc.s); got != tc.want {
			t.Errorf("containsStr(%q, %q) = %v", tc.b, tc.s, got)
		}
	}
}

func BenchmarkClassifyUA(b *testing.B) {
	ua := []byte(uaCases[0].ua)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = ClassifyUA(ua)
	}
}

func FuzzClassifyUA(f *testing.F) {
	for _, tc := range uaCases {
		f.Add(tc.ua)
	}
	f.Fuzz(func(t *testing.T, ua string) {
		os, dev := ClassifyUA([]byte(ua))
		if os == "" || dev == "" {
			t.Fatalf("ClassifyUA(%q) = (%q, %q)", ua, os, dev)
		}
		// Only the first maxUAScan bytes count.
		if len(ua) > maxUAScan {
			if os2, dev2 := ClassifyUA([]byte(ua[:maxUAScan])); os2 != os || dev2 != dev {
				t.Fatalf("result depends on bytes past %d", maxUAScan)
			}
		}
	})
}
