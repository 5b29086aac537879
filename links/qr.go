package links

import (
	"fmt"

	qrcode "github.com/skip2/go-qrcode"
)

// QR code image size bounds in pixels.
const (
	MinQRSize = 64
	MaxQRSize = 2048
	// maxQRContent keeps URLs within what a medium-recovery QR code holds.
	maxQRContent = 2048
)

// QRCodePNG renders url as a square PNG QR code (medium error recovery) of
// size x size pixels. size must be within [MinQRSize, MaxQRSize] and url must
// be non-empty and at most 2048 bytes; otherwise it fails with ErrInvalid.
// It is safe for concurrent use.
func QRCodePNG(url string, size int) ([]byte, error) {
	if url == "" || len(url) > maxQRContent {
		return nil, fmt.Errorf("qr code: url of %d bytes: %w", len(url), ErrInvalid)
	}
	if size < MinQRSize || size > MaxQRSize {
		return nil, fmt.Errorf("qr code: size %d outside [%d, %d]: %w", size, MinQRSize, MaxQRSize, ErrInvalid)
	}
	png, err := qrcode.Encode(url, qrcode.Medium, size)
	if err != nil {
		return nil, fmt.Errorf("qr code for %q: %w", url, err)
	}
	return png, nil
}
