package config

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// checkACLFilter checks an ACL topic: a valid MQTT topic filter (templates
// %u %c %i are ordinary characters here), not a shared subscription.
func checkACLFilter(f string) error {
	if strings.HasPrefix(f, "$share/") {
		return errors.New("an ACL topic cannot be a shared subscription; write the filter without $share/<group>/ (rules apply to the filter part)")
	}
	return checkFilter(f)
}

// checkFilter checks an MQTT topic filter: 1..65535 bytes of UTF-8 without
// NUL; '#' only as the whole last level; '+' only as a whole level.
func checkFilter(f string) error {
	if f == "" {
		return errors.New("empty topic filter")
	}
	if len(f) > 65535 {
		return errors.New("topic filter longer than 65535 bytes")
	}
	if !utf8.ValidString(f) || strings.IndexByte(f, 0) >= 0 {
		return errors.New("topic filter must be UTF-8 without NUL characters")
	}
	for i := 0; i < len(f); {
		end := strings.IndexByte(f[i:], '/')
		last := end < 0
		if last {
			end = len(f)
		} else {
			end += i
		}
		level := f[i:end]
		if strings.Contains(level, "#") && (level != "#" || !last) {
			return errors.New("'#' must be a whole level and the last one, as in \"a/#\"")
		}
		if strings.Contains(level, "+") && level != "+" {
			return errors.New("'+' must be a whole level, as in \"a/+/b\"")
		}
		i = end + 1
		if last {
			break
		}
	}
	return nil
}
