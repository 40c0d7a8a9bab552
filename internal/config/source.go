package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// source remembers where each key of a configuration file is, so that
// problems found after decoding (cross-field checks, defaults that do not
// fit) can still name the file and the line.
//
// Paths look like "mqtt.max_qos", "listener[1].address",
// "auth.users[0].password_hash": dotted keys, with a 0-based index for each
// element of an array of tables (in file order) or of an inline array.
type source struct {
	name string
	// pos maps a path to the position of its key (for a [table] or
	// [[array table]], the header).
	pos map[string]position
	// byPos maps the position of a key or a value back to its path, to
	// name the key in errors reported by the TOML decoder.
	byPos map[position]string
	// byLine is the first path seen on each line: the fallback when an
	// error position is not exactly the start of a key or a value.
	byLine map[int]string
	// values records the kind and position of every scalar value, for
	// the type checks the decoder cannot place (see checkTypes).
	values []valueInfo
}

type valueInfo struct {
	path string
	kind unstable.Kind
	at   position
}

type position struct{ line, col int }

// newSource indexes data. A syntax error stops the indexing silently: the
// decoder reports it properly.
func newSource(name string, data []byte) *source {
	s := &source{
		name:   name,
		pos:    make(map[string]position),
		byPos:  make(map[position]string),
		byLine: make(map[int]string),
	}
	var p unstable.Parser
	p.Reset(data)
	arrays := make(map[string]int) // array-of-tables path -> elements so far
	table := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = s.tablePath(&p, e, arrays)
		case unstable.KeyValue:
			s.keyValue(&p, table, e)
		}
	}
	return s
}

// tablePath resolves a [table] or [[array table]] header to its path; a key
// part naming an array of tables refers to its last element, as in TOML.
func (s *source) tablePath(p *unstable.Parser, e *unstable.Node, arrays map[string]int) string {
	path := ""
	var first position
	it := e.Key()
	for it.Next() {
		k := it.Node()
		if path == "" {
			first = s.at(p, k.Raw)
		}
		path = joinKey(path, string(k.Data))
		if it.IsLast() && e.Kind == unstable.ArrayTable {
			n := arrays[path]
			arrays[path] = n + 1
			path = path + "[" + strconv.Itoa(n) + "]"
			continue
		}
		if n, ok := arrays[path]; ok {
			path = path + "[" + strconv.Itoa(n-1) + "]"
		}
	}
	s.record(path, first)
	return path
}

// keyValue records a key = value expression, descending into inline arrays
// and inline tables.
func (s *source) keyValue(p *unstable.Parser, prefix string, e *unstable.Node) {
	path := prefix
	var kpos position
	it := e.Key()
	for it.Next() {
		k := it.Node()
		if path == prefix {
			kpos = s.at(p, k.Raw)
		}
		path = joinKey(path, string(k.Data))
	}
	s.record(path, kpos)
	s.value(p, path, e.Value(), kpos)
}

func (s *source) value(p *unstable.Parser, path string, v *unstable.Node, fallback position) {
	vpos := fallback
	if v.Raw.Length > 0 {
		vpos = s.at(p, v.Raw)
		if _, ok := s.byPos[vpos]; !ok {
			s.byPos[vpos] = path
		}
	}
	switch v.Kind {
	case unstable.String, unstable.Integer, unstable.Float, unstable.Bool,
		unstable.DateTime, unstable.LocalDate, unstable.LocalDateTime, unstable.LocalTime:
		s.values = append(s.values, valueInfo{path, v.Kind, vpos})
	case unstable.Array:
		i := 0
		it := v.Children()
		for it.Next() {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			ep := path + "[" + strconv.Itoa(i) + "]"
			cpos := vpos
			if c.Raw.Length > 0 {
				cpos = s.at(p, c.Raw)
			}
			s.record(ep, cpos)
			s.value(p, ep, c, cpos)
			i++
		}
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				s.keyValue(p, path, c)
			}
		}
	}
}

func (s *source) at(p *unstable.Parser, r unstable.Range) position {
	sh := p.Shape(r)
	return position{sh.Start.Line, sh.Start.Column}
}

func (s *source) record(path string, at position) {
	if _, ok := s.pos[path]; !ok {
		s.pos[path] = at
	}
	if _, ok := s.byPos[at]; !ok {
		s.byPos[at] = path
	}
	if _, ok := s.byLine[at.line]; !ok {
		s.byLine[at.line] = path
	}
}

// has reports whether path was written in the file.
func (s *source) has(path string) bool {
	if s == nil {
		return false
	}
	_, ok := s.pos[path]
	return ok
}

// locate returns the position of path, or of its closest ancestor written
// in the file (a defaulted listener address points at its [[listener]]).
func (s *source) locate(path string) position {
	if s == nil {
		return position{}
	}
	for path != "" {
		if p, ok := s.pos[path]; ok {
			return p
		}
		path = parentKey(path)
	}
	return position{}
}

// pathAt names the key at a position reported by the decoder.
func (s *source) pathAt(line, col int) string {
	if p, ok := s.byPos[position{line, col}]; ok {
		return p
	}
	return s.byLine[line]
}

func joinKey(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// parentKey strips the last ".key" or "[n]" from path.
func parentKey(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// checkTypes reports durations written as something other than a string
// ("interval = 10"). The decoder hands such values to
// Duration.UnmarshalText without a position, so they are caught here, with
// the line, before decoding.
func (s *source) checkTypes() error {
	var errs []*Error
	durationType := reflect.TypeFor[Duration]()
	for _, v := range s.values {
		if v.kind == unstable.String {
			continue
		}
		if t, ok := typeAt(v.path); ok && t == durationType {
			errs = append(errs, &Error{
				File: s.name, Line: v.at.line, Column: v.at.col, Key: v.path,
				Msg: "expected " + describeType(t) + ", got " + article(kindName(v.kind)),
				Err: ErrType,
			})
		}
	}
	return joinErrors(errs)
}

// decodeError turns an error of the TOML decoder into *Error values naming
// the file, the position and the key.
func (s *source) decodeError(err error) error {
	var sm *toml.StrictMissingError
	if errors.As(err, &sm) {
		errs := make([]*Error, 0, len(sm.Errors))
		for i := range sm.Errors {
			de := &sm.Errors[i]
			line, col := de.Position()
			key := s.pathAt(line, col)
			if key == "" {
				key = strings.Join(de.Key(), ".")
			}
			msg := "unknown key"
			if hint := suggestKey(key); hint != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", hint)
			}
			errs = append(errs, &Error{File: s.name, Line: line, Column: col, Key: key, Msg: msg, Err: ErrUnknownKey})
		}
		return joinErrors(errs)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, col := de.Position()
		key := s.pathAt(line, col)
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		kind := ErrSyntax
		switch {
		case strings.HasPrefix(msg, "cannot decode TOML "):
			kind = ErrType
			msg = typeMessage(key, msg)
		case key != "" && s.isValue(line, col, key):
			// Rejected by a value's own parser (a duration, an
			// integer out of range): the syntax was fine.
			kind = ErrInvalid
		default:
			key = "" // a syntax error is about the text, not a key
		}
		return &Error{File: s.name, Line: line, Column: col, Key: key, Msg: msg, Err: kind}
	}
	return &Error{File: s.name, Msg: err.Error(), Err: ErrSyntax}
}

// isValue reports whether (line, col) is the start of the value of key.
func (s *source) isValue(line, col int, key string) bool {
	p, ok := s.byPos[position{line, col}]
	return ok && p == key && s.pos[key] != (position{line, col})
}

// typeMessage rewrites go-toml's "cannot decode TOML string into *int" into
// words about the key: "expected an integer, got a string".
func typeMessage(key, msg string) string {
	got := strings.TrimPrefix(msg, "cannot decode TOML ")
	if i := strings.Index(got, " into "); i >= 0 {
		got = got[:i]
	}
	t, ok := typeAt(key)
	if !ok {
		return msg
	}
	return "expected " + describeType(t) + ", got " + article(got)
}

func kindName(k unstable.Kind) string {
	switch k {
	case unstable.Bool:
		return "boolean"
	case unstable.LocalDate:
		return "date"
	case unstable.LocalTime:
		return "time"
	case unstable.LocalDateTime, unstable.DateTime:
		return "datetime"
	}
	return strings.ToLower(k.String())
}

func article(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case 'a', 'e', 'i', 'o', 'u':
		return "an " + s
	}
	return "a " + s
}

var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

func describeType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[Duration]() {
		return `a duration string such as "10s", "5m", "24h" or "7d"`
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return "a string"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return "an array of tables ([[...]])"
		}
		return "an array"
	case reflect.Struct:
		return "a table"
	}
	return t.String()
}

// typeAt follows a key path through the Config type.
func typeAt(path string) (reflect.Type, bool) {
	t := reflect.TypeFor[Config]()
	if path == "" {
		return t, true
	}
	for part := range strings.SplitSeq(path, ".") {
		idx := strings.Count(part, "[")
		if i := strings.IndexByte(part, '['); i >= 0 {
			part = part[:i]
		}
		f, ok := fieldByTag(t, part)
		if !ok {
			return nil, false
		}
		t = f.Type
		for ; idx > 0; idx-- {
			if t.Kind() != reflect.Slice {
				return nil, false
			}
			t = t.Elem()
		}
	}
	return t, true
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return reflect.StructField{}, false
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if tagName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func tagName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if tag == "-" {
		return ""
	}
	if tag == "" {
		return f.Name
	}
	return tag
}

// suggestKey proposes the known key closest to an unknown one, or "".
func suggestKey(path string) string {
	parent, name := path, path
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		parent, name = path[:i], path[i+1:]
	} else {
		parent = ""
	}
	t, ok := typeAt(parent)
	if !ok {
		return ""
	}
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return ""
	}
	best, bestDist := "", 3 // suggest only close matches
	for i := range t.NumField() {
		cand := tagName(t.Field(i))
		if cand == "" {
			continue
		}
		if d := editDistance(strings.ToLower(name), cand); d < bestDist {
			best, bestDist = cand, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (short keys).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
