// Package topic owns MQTT topic semantics beyond the wire format: matching
// topic names against filters, shared-subscription names, the subscription
// trie the broker routes through, and the index of retained messages.
package topic

import "strings"

// SharePrefix starts a shared subscription filter: $share/{group}/{filter}.
const SharePrefix = "$share/"

// ParseShared splits a shared subscription filter into its group and the
// filter proper. ok is false when f is not a shared subscription.
func ParseShared(f string) (group, filter string, ok bool) {
	if !strings.HasPrefix(f, SharePrefix) {
		return "", f, false
	}
	rest := f[len(SharePrefix):]
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return "", f, false
	}
	return rest[:i], rest[i+1:], true
}

// Matches reports whether the topic name matches the (non-shared) filter.
// A name starting with '$' is not matched by a filter whose first level is a
// wildcard. Both arguments are assumed valid.
func Matches(filter, name string) bool {
	if len(name) > 0 && name[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
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
			return fmore && frest == "#"
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
	for {
		bl, brest, bmore := cut(b)
		if bl == "#" {
			// "#" as a first level does not cover "$" topics that a
			// filter starting with "$" names explicitly.
			return true
		}
		al, arest, amore := cut(a)
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
			return bmore && brest == "#"
		}
		if !bmore {
			return false
		}
		a, b = arest, brest
	}
}

// Overlaps reports whether some topic name is matched by both filters.
func Overlaps(a, b string) bool {
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
