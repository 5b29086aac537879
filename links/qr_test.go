package links

import (
	"bytes"
	"errors"
	"image/png"
	"strings"
	"testing"
)

func TestQRCodePNG(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		size    int
		wantErr bool
	}{
		{"typical", "https://hk-1.example.com/0123456789ABCDEF", 256, false},
		{"min size", "https://x/y", MinQRSize, false},
		{"max size", "https://x/y", MaxQRSize, false},
		{"long url", "https://x/" + strings.Repeat("a", 2000), 1024, false},
		{"empty url", "", 256, true},
		{"url too long", strings.Repeat("a", 2049), 256, true},
		{"too small", "https://x/y", MinQRSize - 1, true},
		{"too big", "https://x/y", MaxQRSize + 1, true},
		{"negative", "https://x/y", -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := QRCodePNG(tt.url, tt.size)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("decode png: %v", err)
			}
			if r := img.Bounds(); r.Dx() != tt.size || r.Dy() != tt.size {
				t.Fatalf("image %v, want %dx%d", r, tt.size, tt.size)
			}
		})
	}
}
