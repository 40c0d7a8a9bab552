package topic

import (
	"strings"
	"testing"
)

func TestParseShared(t *testing.T) {
	tests := []struct {
		in            string
		group, filter string
		ok            bool
	}{
		{"a/b", "", "a/b", false},
		{"#", "", "#", false},
		{"$SYS/x", "", "$SYS/x", false},
		{"$share", "", "$share", false},
		{"$sharex/g/a", "", "$sharex/g/a", false},
		{"$SHARE/g/a", "", "$SHARE/g/a", false}, // case-sensitive
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/g/#", "g", "#", true},
		{"$share/g/+/x", "g", "+/x", true},
		{"$share/g//a", "g", "/a", true},
		{"$share/g/$SYS/x", "g", "$SYS/x", true},
		{"$share/g/$share/h/a", "g", "$share/h/a", true},
		// Malformed shared filters are still reported as shared, so that
		// validation rejects them instead of routing them as plain filters.
		{"$share/g", "g", "", true},
		{"$share/", "", "", true},
		{"$share//a", "", "a", true},
		{"$share/g/", "g", "", true},
	}
	for _, tt := range tests {
		g, f, ok := ParseShared(tt.in)
		if g != tt.group || f != tt.filter || ok != tt.ok {
			t.Errorf("ParseShared(%q) = %q, %q, %v; want %q, %q, %v", tt.in, g, f, ok, tt.group, tt.filter, tt.ok)
		}
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"a", true},
		{"a/b/c", true},
		{"/", true},
		{"a//b", true},
		{"$SYS/broker", true},
		{" ", true},
		{"sensors/température", true},
		{"", false},
		{"a/+", false},
		{"a/#", false},
		{"a+b", false},
		{"a\x00b", false},
		{"\xff", false},
		{"\xed\xa0\x80", false}, // UTF-16 surrogate encoded in UTF-8
		{strings.Repeat("a", 65535), true},
		{strings.Repeat("a", 65536), false},
	}
	for _, tt := range tests {
		if got := ValidName(tt.in); got != tt.want {
			t.Errorf("ValidName(%.20q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestValidFilter(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"a", true},
		{"#", true},
		{"+", true},
		{"/", true},
		{"+/+", true},
		{"a/+/c", true},
		{"a/#", true},
		{"+/#", true},
		{"/#", true},
		{"a//#", true},
		{"$SYS/#", true},
		{"$share/g/a", true}, // the shared prefix is ParseShared's business
		{"", false},
		{"a#", false},
		{"a/#/b", false},
		{"#/", false},
		{"#/a", false},
		{"a+", false},
		{"+a/b", false},
		{"a/b+", false},
		{"++", false},
		{"##", false},
		{"a/\x00", false},
		{"\xc3", false},
		{strings.Repeat("+/", 32767) + "#", true},
		{strings.Repeat("a", 65536), false},
	}
	for _, tt := range tests {
		if got := ValidFilter(tt.in); got != tt.want {
			t.Errorf("ValidFilter(%.20q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestValidShareName(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"g", true},
		{"workers-1", true},
		{"$g", true},
		{"", false},
		{"a/b", false},
		{"a+", false},
		{"#", false},
		{"a\x00", false},
		{"\xff", false},
	}
	for _, tt := range tests {
		if got := ValidShareName(tt.in); got != tt.want {
			t.Errorf("ValidShareName(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

var matchTests = []struct {
	filter, name string
	want         bool
}{
	// Literal filters.
	{"a", "a", true},
	{"a", "b", false},
	{"A", "a", false},
	{"a/b/c", "a/b/c", true},
	{"a/b/c", "a/b", false},
	{"a/b", "a/b/c", false},
	{"a/b", "a/bc", false},
	{"ab", "a/b", false},
	{"a//b", "a//b", true},
	{"a//b", "a/b", false},
	{"a/", "a/", true},
	{"a/", "a", false},
	{"/a", "/a", true},
	{"/", "/", true},
	// Single-level wildcard.
	{"+", "a", true},
	{"+", "a/b", false},
	{"+", "/a", false},
	{"+", "/", false},
	{"+/+", "/", true},
	{"+/+", "/a", true},
	{"/+", "/a", true},
	{"a/+", "a", false},
	{"a/+", "a/", true},
	{"a/+", "a/b", true},
	{"a/+", "a/b/c", false},
	{"a/+/c", "a/b/c", true},
	{"a/+/c", "a//c", true},
	{"a/+/c", "a/b/d", false},
	{"+/+/+", "a/b/c", true},
	{"+/b/+", "a/b/c", true},
	{"+/b/+", "a/x/c", false},
	// Multi-level wildcard.
	{"#", "a", true},
	{"#", "a/b/c", true},
	{"#", "/", true},
	{"#", "/a", true},
	{"a/#", "a", true}, // the parent level too
	{"a/#", "a/", true},
	{"a/#", "a/b", true},
	{"a/#", "a/b/c", true},
	{"a/#", "ab", false},
	{"a/#", "b/a", false},
	{"a/b/#", "a", false},
	{"a/b/c/#", "a/b", false},
	{"+/#", "a", true},
	{"+/#", "a/b", true},
	{"/#", "/", true},
	{"/#", "a", false},
	{"+/+/#", "a", false},
	// MQTT spec examples (4.7.1).
	{"sport/tennis/player1/#", "sport/tennis/player1", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
	{"sport/#", "sport", true},
	{"sport/tennis/+", "sport/tennis/player1", true},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"sport/+", "sport", false},
	{"sport/+", "sport/", true},
	{"+/+", "/finance", true},
	{"/+", "/finance", true},
	{"+", "/finance", false},
	// '$' names are not matched by a leading wildcard (4.7.2).
	{"#", "$SYS", false},
	{"#", "$SYS/broker/load", false},
	{"#", "$", false},
	{"+/#", "$SYS", false},
	{"+/broker/load", "$SYS/broker/load", false},
	{"+", "$SYS", false},
	{"$SYS/#", "$SYS", true},
	{"$SYS/#", "$SYS/broker/load", true},
	{"$SYS/+/load", "$SYS/broker/load", true},
	{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
	{"$SYS", "$SYS", true},
	{"$SYS", "$sys", false},
	// ... only at the first level.
	{"a/+", "a/$x", true},
	{"a/#", "a/$x/y", true},
	{"+/a", "x/a", true},
	{"#", "a$", true},
}

func TestMatches(t *testing.T) {
	for _, tt := range matchTests {
		if got := Matches(tt.filter, tt.name); got != tt.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tt.filter, tt.name, got, tt.want)
		}
	}
}

func TestSubset(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"a", "a", true},
		{"a", "b", false},
		{"a/b", "a/+", true},
		{"a/+", "a/b", false},
		{"a/+", "a/+", true},
		{"a/+", "a/#", true},
		{"a/#", "a/+", false}, // "a/#" matches "a"
		{"a/#", "a/#", true},
		{"a/b/#", "a/#", true},
		{"a/#", "a/b/#", false},
		{"a", "a/#", true},
		{"a", "a/+", false},
		{"a/", "a/+", true},
		{"a/b", "#", true},
		{"+", "#", true},
		{"#", "#", true},
		{"#", "+", false},
		{"+", "+/#", true},
		{"+/#", "#", true},
		{"#", "+/#", true}, // every name has a first level
		{"+/#", "+/#", true},
		{"#", "+/+/#", false},
		{"a/#", "+/#", true},
		{"a/b/c", "+/+/+", true},
		{"a/b/c", "+/+", false},
		{"a/b", "+/+/+", false},
		{"a/+/c", "a/+/+", true},
		{"a/+/c", "+/b/c", false},
		{"/#", "/+/#", true}, // the empty string is not a name
		{"/#", "+/+/#", true},
		{"/#", "/+", false},
		{"a/#", "a/+/#", false},
		{"+/#", "+/+/#", false},
		// '$' filters versus leading wildcards.
		{"$SYS/#", "#", false},
		{"$SYS/x", "#", false},
		{"$SYS/x", "+/x", false},
		{"$SYS", "+", false},
		{"$SYS", "+/#", false},
		{"$SYS/#", "$SYS/#", true},
		{"$SYS/x", "$SYS/+", true},
		{"$SYS/x/y", "$SYS/#", true},
		{"$SYS", "$SYS/#", true},
		{"#", "$SYS/#", false},
		{"+/x", "$SYS/x", false},
		{"a/$x", "a/+", true},
		{"a/$x", "#", true},
	}
	for _, tt := range tests {
		if got := Subset(tt.a, tt.b); got != tt.want {
			t.Errorf("Subset(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestOverlaps(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"a", "a", true},
		{"a", "b", false},
		{"a/b", "a/+", true},
		{"a/+", "+/b", true},
		{"a/+", "b/+", false},
		{"a", "a/+", false},
		{"a", "a/#", true},
		{"a/#", "a", true},
		{"+", "+/#", true},
		{"+", "+/+", false},
		{"a/b/c", "a/+", false},
		{"a/b/c", "a/#", true},
		{"a/#", "a/b/c", true},
		{"a/#", "b/#", false},
		{"#", "a/b", true},
		{"a/b", "#", true},
		{"#", "#", true},
		{"+/#", "#", true},
		{"a//b", "a/+/b", true},
		{"+", "/#", false}, // only the empty string, not a name
		{"+/#", "/#", true},
		{"+", "/+", false},
		{"a//b", "a/b", false},
		// '$' filters versus leading wildcards.
		{"#", "$SYS/x", false},
		{"$SYS/x", "#", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/x", "+/x", false},
		{"+", "$SYS", false},
		{"+/#", "$SYS/#", false},
		{"$SYS/#", "$SYS/x", true},
		{"$SYS/+", "$SYS/x", true},
		{"$SYS/#", "$other/#", false},
		{"a/+", "a/$x", true},
		{"a/#", "a/$x", true},
	}
	for _, tt := range tests {
		if got := Overlaps(tt.a, tt.b); got != tt.want {
			t.Errorf("Overlaps(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := Overlaps(tt.b, tt.a); got != tt.want {
			t.Errorf("Overlaps(%q, %q) = %v, want %v (symmetry)", tt.b, tt.a, got, tt.want)
		}
	}
}

// TestSubsetOverlapsExhaustive checks Subset and Overlaps against their
// definitions over every valid filter of up to four levels built from
// {a, "", $s, +, #}. The names enumerated have up to five levels from
// {a, "", $s, z}: one level more than any filter, and one literal ("z") that
// no filter names, which is enough to tell any two such filters apart.
func TestSubsetOverlapsExhaustive(t *testing.T) {
	filters := genFilters([]string{"a", "", "$s", "+", "#"}, 4)
	names := genNames([]string{"a", "", "$s", "z"}, 5)

	// matched[i] is the set of names (a bitset by index) filter i matches.
	words := (len(names) + 63) / 64
	matched := make([][]uint64, len(filters))
	for i, f := range filters {
		matched[i] = make([]uint64, words)
		for j, n := range names {
			if Matches(f, n) {
				matched[i][j/64] |= 1 << (j % 64)
			}
		}
	}
	for i, a := range filters {
		for j, b := range filters {
			subset, overlap := true, false
			for k := range words {
				subset = subset && matched[i][k]&^matched[j][k] == 0
				overlap = overlap || matched[i][k]&matched[j][k] != 0
			}
			if got := Subset(a, b); got != subset {
				t.Errorf("Subset(%q, %q) = %v, want %v", a, b, got, subset)
			}
			if got := Overlaps(a, b); got != overlap {
				t.Errorf("Overlaps(%q, %q) = %v, want %v", a, b, got, overlap)
			}
		}
	}
}

// TestNameAsFilter checks that a topic name used as a filter (it has no
// wildcards, so it matches exactly itself) agrees with Matches.
func TestNameAsFilter(t *testing.T) {
	for _, tt := range matchTests {
		if got := Subset(tt.name, tt.filter); got != tt.want {
			t.Errorf("Subset(%q, %q) = %v, want %v (as Matches)", tt.name, tt.filter, got, tt.want)
		}
		if got := Overlaps(tt.filter, tt.name); got != tt.want {
			t.Errorf("Overlaps(%q, %q) = %v, want %v (as Matches)", tt.filter, tt.name, got, tt.want)
		}
	}
}

// genFilters returns every valid filter of 1..depth levels drawn from levels.
func genFilters(levels []string, depth int) []string {
	var out []string
	for _, s := range genJoin(levels, depth) {
		if ValidFilter(s) {
			out = append(out, s)
		}
	}
	return out
}

// genNames returns every valid topic name of 1..depth levels drawn from
// levels.
func genNames(levels []string, depth int) []string {
	var out []string
	for _, s := range genJoin(levels, depth) {
		if ValidName(s) {
			out = append(out, s)
		}
	}
	return out
}

func genJoin(levels []string, depth int) []string {
	var out []string
	cur := []string{""}
	for d := 1; d <= depth; d++ {
		var next []string
		for _, p := range cur {
			for _, l := range levels {
				if d == 1 {
					next = append(next, l)
				} else {
					next = append(next, p+"/"+l)
				}
			}
		}
		out = append(out, next...)
		cur = next
	}
	return out
}
