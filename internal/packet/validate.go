package packet

import (
	"bytes"
	"encoding/binary"
	"strings"
	"unicode/utf8"
)

// maxString is the longest UTF-8 string or binary field MQTT can carry.
const maxString = 65535

// sharePrefix starts a shared subscription filter: $share/{group}/{filter}.
const sharePrefix = "$share/"

// ValidUTF8 reports whether b is a well-formed MQTT UTF-8 string body:
// well-formed UTF-8 (no overlong forms, no UTF-16 surrogate code points,
// nothing above U+10FFFF) and no U+0000 [MQTT-1.5.4-1, 1.5.4-2]. Other
// control characters and non-characters are allowed (the spec makes them
// SHOULD NOTs).
func ValidUTF8(b []byte) bool {
	// Fast path for the common case, short ASCII strings: 8 bytes at a
	// time while no byte is 0 or >= 0x80.
	i := 0
	for ; len(b)-i >= 8; i += 8 {
		if !asciiNoNUL(binary.LittleEndian.Uint64(b[i:])) {
			break
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c == 0 || c >= 0x80 {
			return bytes.IndexByte(b[i:], 0) < 0 && utf8.Valid(b[i:])
		}
	}
	return true
}

// ValidUTF8String is ValidUTF8 for a string.
func ValidUTF8String(s string) bool {
	return strings.IndexByte(s, 0) < 0 && utf8.ValidString(s)
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// asciiNoNUL reports whether the 8 bytes of x are all in 0x01..0x7F.
func asciiNoNUL(x uint64) bool {
	return (x|(x-lsb))&msb == 0
}

// hasByte reports whether any of the 8 bytes of x equals c (exact: the
// borrow only creates false positives above a true match).
func hasByte(x uint64, c byte) bool {
	y := x ^ (lsb * uint64(c))
	return (y-lsb)&^y&msb != 0
}

// ValidTopicName checks a topic name as carried by PUBLISH or a will:
// well-formed UTF-8 (else MalformedPacket), 1 to 65,535 bytes and no '+'
// or '#' (else TopicNameInvalid). It knows nothing about topic aliases: an
// MQTT 5 PUBLISH may carry an empty topic together with a Topic Alias, and
// the caller resolves the alias before validating.
func ValidTopicName(s string) error {
	if !ValidUTF8String(s) {
		return errBadUTF8
	}
	return checkTopicName(s)
}

var (
	errTopicEmpty    = &Error{Code: TopicNameInvalid, Msg: "empty topic name"}
	errTopicLong     = &Error{Code: TopicNameInvalid, Msg: "topic name longer than 65535 bytes"}
	errTopicWildcard = &Error{Code: TopicNameInvalid, Msg: "wildcard in topic name"}
)

// checkTopicName is ValidTopicName without the UTF-8 check.
func checkTopicName[S string | []byte](s S) error {
	switch {
	case len(s) == 0:
		return errTopicEmpty
	case len(s) > maxString:
		return errTopicLong
	}
	i := 0
	if b, ok := any(s).([]byte); ok {
		for ; len(b)-i >= 8; i += 8 {
			x := binary.LittleEndian.Uint64(b[i:])
			if hasByte(x, '+') || hasByte(x, '#') {
				break
			}
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c == '+' || c == '#' {
			return errTopicWildcard
		}
	}
	return nil
}

func filterErr(msg string) error { return &Error{Code: TopicFilterInvalid, Msg: msg} }

// ValidTopicFilter checks a topic filter as carried by SUBSCRIBE or
// UNSUBSCRIBE: well-formed UTF-8 (else MalformedPacket), then (else
// TopicFilterInvalid) 1 to 65,535 bytes, '#' only as the last character
// and alone in its level, '+' alone in its level, and for a shared
// subscription "$share/{group}/{filter}" a non-empty group without '+',
// '#' or '/' and a non-empty valid filter [MQTT-4.7.1, 4.8.2].
func ValidTopicFilter(s string) error {
	if !ValidUTF8String(s) {
		return errBadUTF8
	}
	switch {
	case len(s) == 0:
		return filterErr("empty topic filter")
	case len(s) > maxString:
		return filterErr("topic filter longer than 65535 bytes")
	}
	if rest, ok := strings.CutPrefix(s, sharePrefix); ok {
		group, filter, found := strings.Cut(rest, "/")
		switch {
		case !found:
			return filterErr("shared subscription without a topic filter")
		case group == "":
			return filterErr("shared subscription with an empty share name")
		case strings.ContainsAny(group, "+#"):
			return filterErr("wildcard in share name")
		case filter == "":
			return filterErr("shared subscription with an empty topic filter")
		}
		s = filter
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '#':
			if i != len(s)-1 || (i > 0 && s[i-1] != '/') {
				return filterErr("'#' not alone in the last level")
			}
		case '+':
			if (i > 0 && s[i-1] != '/') || (i < len(s)-1 && s[i+1] != '/') {
				return filterErr("'+' not alone in its level")
			}
		}
	}
	return nil
}
