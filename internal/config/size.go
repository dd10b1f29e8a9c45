package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Size is an amount of memory in bytes. In YAML it is written with a unit —
// "2GiB", "512MiB", "300MB", "64KiB" — or as a bare integer number of bytes;
// 0 means "no limit" where a key says so.
type Size int64

// Binary and decimal size units.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// ParseSize reads a size such as "2GiB", "1.5GiB", "512MiB", "300MB" or
// "1048576". Units are case-insensitive; KiB/MiB/GiB/TiB (and K/M/G/T) are
// powers of 1024, KB/MB/GB/TB powers of 1000.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("invalid size %q (want e.g. 2GiB, 512MiB or a number of bytes)", s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	v := f * mult
	if v > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Size(math.Round(v)), nil
}

// String renders the size in the largest binary unit that divides it
// ("2GiB", "512MiB"), or in bytes.
func (s Size) String() string {
	for _, u := range []struct {
		n    Size
		name string
	}{{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if s != 0 && s%u.n == 0 {
			return fmt.Sprintf("%d%s", s/u.n, u.name)
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// MarshalYAML writes the size as String does.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

var sizeType = reflect.TypeFor[Size]()

// decodeSize stores a YAML scalar size into v.
func decodeSize(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.ScalarNode {
		return typeErr(path, n, `a size such as "2GiB"`)
	}
	sz, err := ParseSize(n.Value)
	if err != nil {
		return &Error{Key: path, Line: n.Line, Msg: err.Error()}
	}
	v.SetInt(int64(sz))
	return nil
}
