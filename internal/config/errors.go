package config

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors. Every problem found in a configuration is reported as an
// *Error that wraps one of these, so callers can test the kind of problem
// with errors.Is while users read a message that names the file, the line
// and the key.
var (
	// ErrSyntax: the file is not valid TOML.
	ErrSyntax = errors.New("config: syntax error")
	// ErrUnknownKey: a key that moat does not know (often a typo).
	ErrUnknownKey = errors.New("config: unknown key")
	// ErrType: a value of the wrong TOML type (a string where a number is
	// expected, ...).
	ErrType = errors.New("config: wrong type")
	// ErrInvalid: a value that is not allowed (enum value, range, format).
	ErrInvalid = errors.New("config: invalid value")
	// ErrRequired: a required key is missing or empty.
	ErrRequired = errors.New("config: required key missing")
	// ErrDuplicate: a value that must be unique is used twice.
	ErrDuplicate = errors.New("config: duplicate value")
	// ErrNotSupported: a valid option of a feature that is not built yet.
	ErrNotSupported = errors.New("config: not supported yet")
	// ErrPlaintextPassword: password_hash holds something that is not a
	// password hash, most likely a plaintext password.
	ErrPlaintextPassword = errors.New("config: password_hash must be an argon2id or bcrypt hash; run `moat passwd`")
)

// Error is one problem in a configuration. File, Line and Column are set
// when the configuration came from a file and the position is known
// (Line and Column are 1-based; 0 means unknown). Key is the path of the
// offending key, such as "listener[1].address" (array indexes are 0-based,
// in file order).
type Error struct {
	File   string
	Line   int
	Column int
	Key    string
	Msg    string
	Err    error // one of the sentinels above
}

func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Column))
		}
		b.WriteString(": ")
	case e.File != "":
		b.WriteString(e.File)
		b.WriteString(": ")
	default:
		b.WriteString("config: ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// maxReported bounds how many problems one load reports; the rest are
// summarised so a badly broken file does not produce pages of output.
const maxReported = 20

// joinErrors turns the collected problems into one error (nil if none). The
// result matches every wrapped sentinel with errors.Is and each *Error with
// errors.As; its text is one problem per line.
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	n := min(len(errs), maxReported)
	out := make([]error, 0, n+1)
	for _, e := range errs[:n] {
		out = append(out, e)
	}
	if len(errs) > n {
		out = append(out, errors.New("config: "+strconv.Itoa(len(errs)-n)+" more problems not shown"))
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}
