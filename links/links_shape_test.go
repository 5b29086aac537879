package links

import "testing"

func TestIsCodeShaped(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"0123456789abcdef", true},
		{"ABCDEFGHIJKLMNOP", true},
		{"0123456789abcde", false},
		{"0123456789abcdefg", false},
		{"0123456789abcde-", false},
		{"0123456789abcdé", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := IsCodeShaped(tt.in); got != tt.want {
			t.Errorf("IsCodeShaped(%q) = %v, want %v", tt.in, got, tt.want)
		}
		if got := IsCodeShaped([]byte(tt.in)); got != tt.want {
			t.Errorf("IsCodeShaped([]byte(%q)) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
