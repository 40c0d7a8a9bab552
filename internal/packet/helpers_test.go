package packet

import (
	"reflect"
	"testing"
)

// deepEqual is reflect.DeepEqual except that a nil slice equals an empty
// one: decoding yields nil for absent data and reused values keep empty,
// non-nil slices.
func deepEqual(a, b any) bool {
	return equalValue(reflect.ValueOf(a), reflect.ValueOf(b))
}

func equalValue(a, b reflect.Value) bool {
	if a.IsValid() != b.IsValid() {
		return false
	}
	if !a.IsValid() {
		return true
	}
	if a.Type() != b.Type() {
		return false
	}
	switch a.Kind() {
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := 0; i < a.Len(); i++ {
			if !equalValue(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			if !equalValue(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equalValue(a.Elem(), b.Elem())
	}
	return a.Equal(b)
}

// pr returns p with the presence bits of ids set, and those of User
// Property and Subscription Identifier when their slices are non-empty
// (as decoding sets them).
func pr(p Properties, ids ...byte) Properties {
	for _, id := range ids {
		p.Set(id)
	}
	if len(p.User) > 0 {
		p.Set(PropUserProperty)
	}
	if len(p.SubscriptionIDs) > 0 {
		p.Set(PropSubscriptionID)
	}
	return p
}

// decodeAll parses a whole encoded packet (fixed header and body).
func decodeAll(t testing.TB, b []byte, version byte) (Packet, error) {
	t.Helper()
	fh, n, err := ParseFixedHeader(b)
	if err != nil {
		return nil, err
	}
	if n+fh.Remaining != len(b) {
		t.Fatalf("header says %d+%d bytes, have %d", n, fh.Remaining, len(b))
	}
	return Decode(fh, b[n:], version)
}

// cat concatenates bytes, byte slices and strings (a string is written
// raw, without a length prefix).
func cat(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case byte:
			b = append(b, v)
		case int:
			b = append(b, byte(v))
		case []byte:
			b = append(b, v...)
		case string:
			b = append(b, v...)
		default:
			panic("cat: bad part")
		}
	}
	return b
}

// str is a length-prefixed string.
func str(s string) []byte { return appendString(nil, s) }

// pkt builds a packet from its first byte and body parts, computing the
// remaining length.
func pkt(b0 byte, body ...any) []byte {
	bb := cat(body...)
	return append(AppendVarInt([]byte{b0}, len(bb)), bb...)
}

// props builds a property block with its length prefix.
func props(parts ...any) []byte {
	bb := cat(parts...)
	return append(AppendVarInt(nil, len(bb)), bb...)
}
