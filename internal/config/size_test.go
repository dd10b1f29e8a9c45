package config

import "testing"

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want Size
		bad  bool
	}{
		{"0", 0, false},
		{"1048576", MiB, false},
		{"2GiB", 2 * GiB, false},
		{"2gib", 2 * GiB, false},
		{"512MiB", 512 * MiB, false},
		{"512 MiB", 512 * MiB, false},
		{"1.5GiB", 3 * GiB / 2, false},
		{"300MB", 300_000_000, false},
		{"64KiB", 64 * KiB, false},
		{"2G", 2 * GiB, false},
		{"1TiB", TiB, false},
		{"10B", 10, false},
		{"", 0, true},
		{"GiB", 0, true},
		{"-1GiB", 0, true},
		{"2 furlongs", 0, true},
		{"1.2.3MiB", 0, true},
		{"99999999999TiB", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, bad %t", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestSizeString(t *testing.T) {
	for s, want := range map[Size]string{0: "0", 2 * GiB: "2GiB", 512 * MiB: "512MiB", 1536 * MiB: "1536MiB", 1000: "1000", TiB: "1TiB"} {
		if got := s.String(); got != want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(s), got, want)
		}
		if back, err := ParseSize(s.String()); err != nil || back != s {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s.String(), back, err, int64(s))
		}
	}
}
