// Package topic owns MQTT topic semantics beyond the wire format: matching
// topic names against filters, shared-subscription names, the subscription
// trie the broker routes through, and the index of retained messages.
//
// The functions here assume their arguments are valid (see ValidName,
// ValidFilter, ValidShareName); they never panic on invalid input, but their
// answers for invalid input are unspecified. Callers validate at the edge,
// when a PUBLISH or SUBSCRIBE is decoded.
package topic

import (
	"strings"
	"unicode/utf8"
)

// SharePrefix starts a shared subscription filter: $share/{group}/{filter}.
const SharePrefix = "$share/"

// maxLen is the longest topic name or filter MQTT can carry (a UTF-8 string
// with a two-byte length prefix).
const maxLen = 65535

// ParseShared splits a shared subscription filter into its group and the
// filter proper. ok is false when f is not a shared subscription, that is
// when it does not start with SharePrefix; then filter is f.
//
// ok is true for every f starting with SharePrefix, even a malformed one such
// as "$share/g" (no filter; group "g", filter "") or "$share//a" (empty
// group): MQTT 5 makes those protocol errors [MQTT-4.8.2-1, 4.8.2-2], so they
// must not be mistaken for ordinary filters. Callers check the parts with
// ValidShareName and ValidFilter.
func ParseShared(f string) (group, filter string, ok bool) {
	if !strings.HasPrefix(f, SharePrefix) {
		return "", f, false
	}
	rest := f[len(SharePrefix):]
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return rest, "", true
	}
	return rest[:i], rest[i+1:], true
}

// ValidName reports whether name is a valid topic name for a PUBLISH: at
// least one character, at most 65535 bytes, valid UTF-8 without U+0000, and
// no wildcard characters.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > maxLen || !utf8.ValidString(name) {
		return false
	}
	return !strings.ContainsAny(name, "+#\x00")
}

// ValidFilter reports whether f is a valid (non-shared) topic filter: at
// least one character, at most 65535 bytes, valid UTF-8 without U+0000, '+'
// only as a whole level and '#' only as the whole last level.
func ValidFilter(f string) bool {
	if len(f) == 0 || len(f) > maxLen || !utf8.ValidString(f) || strings.IndexByte(f, 0) >= 0 {
		return false
	}
	for {
		level, rest, more := cut(f)
		switch {
		case level == "#":
			return !more
		case level == "+":
		case strings.ContainsAny(level, "+#"):
			return false
		}
		if !more {
			return true
		}
		f = rest
	}
}

// ValidShareName reports whether g is a valid share name (the {group} of
// $share/{group}/{filter}): at least one character, valid UTF-8 without
// U+0000, and none of '/', '+', '#'.
func ValidShareName(g string) bool {
	return len(g) > 0 && len(g) <= maxLen && utf8.ValidString(g) && !strings.ContainsAny(g, "/+#\x00")
}

// Matches reports whether the topic name matches the (non-shared) filter.
// A name starting with '$' is not matched by a filter whose first level is a
// wildcard [MQTT-4.7.2-1]. Empty levels are levels: "a//b" has three.
func Matches(filter, name string) bool {
	if isDollar(name) && startsWild(filter) {
		return false
	}
	for {
		fl, frest, fmore := cut(filter)
		if fl == "#" {
			return true
		}
		nl, nrest, nmore := cut(name)
		if fl != "+" && fl != nl {
			return false
		}
		if !fmore && !nmore {
			return true
		}
		if !nmore {
			// "a/#" matches "a": the remaining filter must be exactly "#".
			return frest == "#"
		}
		if !fmore {
			return false
		}
		filter, name = frest, nrest
	}
}

// Subset reports whether every topic name matched by filter a is also matched
// by filter b (a is at most as broad as b). Used to decide whether a
// subscription stays inside what an access rule allows.
func Subset(a, b string) bool {
	// b starting with a wildcard matches no '$' name, while a starting with
	// a '$' level matches only such names: "$SYS/#" is not inside "#".
	if startsWild(b) && isDollar(a) {
		return false
	}
	emptyFirst := false // a's first level is empty
	for depth := 0; ; depth++ {
		// A '#' matches its parent level too ("x/#" matches "x"), except
		// where the levels above it form no name: none at all (a name has
		// at least one level), or a single empty one (the empty string is
		// not a name). There "#" is exactly as broad as "+/#".
		if a == "#" && b == "+/#" && (depth == 0 || depth == 1 && emptyFirst) {
			return true
		}
		bl, brest, bmore := cut(b)
		if bl == "#" {
			return true
		}
		al, arest, amore := cut(a)
		if depth == 0 {
			emptyFirst = al == ""
		}
		if al == "#" {
			return false
		}
		if bl != "+" && (al == "+" || al != bl) {
			return false
		}
		if !amore && !bmore {
			return true
		}
		if !amore {
			// a ends where b has more: only "x/#" also matches "x".
			return brest == "#"
		}
		if !bmore {
			return false
		}
		a, b = arest, brest
	}
}

// Overlaps reports whether some topic name is matched by both filters.
func Overlaps(a, b string) bool {
	// A filter starting with a wildcard and one starting with a '$' level
	// have no name in common: "#" does not overlap "$SYS/x".
	if (startsWild(a) && isDollar(b)) || (startsWild(b) && isDollar(a)) {
		return false
	}
	// The one name both "+" and "/#" match, a single empty level, is the
	// empty string, which is not a name.
	if (a == "+" && b == "/#") || (a == "/#" && b == "+") {
		return false
	}
	for {
		al, arest, amore := cut(a)
		bl, brest, bmore := cut(b)
		if al == "#" || bl == "#" {
			return true
		}
		if al != "+" && bl != "+" && al != bl {
			return false
		}
		if !amore && !bmore {
			return true
		}
		if !amore {
			return brest == "#"
		}
		if !bmore {
			return arest == "#"
		}
		a, b = arest, brest
	}
}

// cut splits s at its first '/': the first level, the rest, and whether
// there was a separator.
func cut(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// isDollar reports whether s (a name, or a filter's first level) starts with
// '$', the mark of broker-internal topics such as $SYS.
func isDollar(s string) bool { return len(s) > 0 && s[0] == '$' }

// startsWild reports whether filter f starts with a wildcard character.
func startsWild(f string) bool { return len(f) > 0 && (f[0] == '+' || f[0] == '#') }
