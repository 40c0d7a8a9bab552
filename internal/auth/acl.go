package auth

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"moat/internal/config"
	"moat/internal/topic"
)

// Action is what a client wants to do with a topic.
type Action int

// Actions.
const (
	ActionPublish Action = iota + 1
	ActionSubscribe
)

func (a Action) String() string {
	switch a {
	case ActionPublish:
		return "publish"
	case ActionSubscribe:
		return "subscribe"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Authorizer decides what a Principal may do. Implementations must be safe
// for concurrent use and fast: CanReceive runs for every delivered message.
type Authorizer interface {
	// CanPublish: may the client publish to this topic name?
	CanPublish(p *Principal, clientID, topic string) bool
	// CanSubscribe: may the client subscribe to this filter? The filter
	// is the non-shared part: the caller strips "$share/<group>/".
	CanSubscribe(p *Principal, clientID, filter string) bool
	// CanReceive: may this message (topic name) be delivered to the
	// client? Checked per message at delivery.
	CanReceive(p *Principal, clientID, topic string) bool
}

// ACL is an Authorizer built from config rules; see the package comment
// for the semantics. It is immutable and safe for concurrent use.
type ACL struct {
	def   bool
	empty bool
	pub   ruleSet // rules of action publish or all
	sub   ruleSet // rules of action subscribe or all (subscribe and receive)
}

type ruleSet struct {
	deny, allow []rule
}

type rule struct {
	allow    bool
	username string // "" = any
	clientID string // "" = any
	method   Method // "" = any
	filter   string
	tmpl     bool // filter contains %u, %c or %i
	// first is the filter's first level when it is literal (no wildcard,
	// no template), else "": a quick reject for topic names whose first
	// level differs, before any matching.
	first string
}

var anonymous = &Principal{Method: MethodAnonymous}

// NewACL compiles rules. defaultAllow is the decision when no rule
// matches (config: auth.acl_default == "allow"). A rule with an unknown
// permission, action or method, or an invalid topic filter, is an error
// wrapping ErrInvalidRule.
func NewACL(rules []config.ACLRule, defaultAllow bool) (*ACL, error) {
	a := &ACL{def: defaultAllow, empty: len(rules) == 0}
	for i, cr := range rules {
		r := rule{username: cr.Username, clientID: cr.ClientID, method: Method(cr.Method), filter: cr.Topic}
		switch cr.Permission {
		case config.PermissionAllow:
			r.allow = true
		case config.PermissionDeny:
		default:
			return nil, fmt.Errorf("auth: acl[%d]: %w: permission %q (want allow or deny)", i, ErrInvalidRule, cr.Permission)
		}
		if r.method != "" && !r.method.Valid() {
			return nil, fmt.Errorf("auth: acl[%d]: %w: unknown method %q", i, ErrInvalidRule, cr.Method)
		}
		if err := checkFilter(cr.Topic); err != nil {
			return nil, fmt.Errorf("auth: acl[%d]: %w: topic %q: %v", i, ErrInvalidRule, cr.Topic, err)
		}
		r.tmpl = hasTemplate(cr.Topic)
		if l, _, _ := strings.Cut(cr.Topic, "/"); l != "+" && l != "#" && !hasTemplate(l) {
			r.first = l
		}
		var sets []*ruleSet
		switch cr.Action {
		case config.ActionPublish:
			sets = []*ruleSet{&a.pub}
		case config.ActionSubscribe:
			sets = []*ruleSet{&a.sub}
		case config.ActionAll, "":
			sets = []*ruleSet{&a.pub, &a.sub}
		default:
			return nil, fmt.Errorf("auth: acl[%d]: %w: action %q (want publish, subscribe or all)", i, ErrInvalidRule, cr.Action)
		}
		for _, s := range sets {
			if r.allow {
				s.allow = append(s.allow, r)
			} else {
				s.deny = append(s.deny, r)
			}
		}
	}
	return a, nil
}

// CanPublish implements Authorizer.
func (a *ACL) CanPublish(p *Principal, clientID, name string) bool {
	if a.empty {
		return a.def
	}
	return a.pub.checkName(a.def, p, clientID, name)
}

// CanReceive implements Authorizer.
func (a *ACL) CanReceive(p *Principal, clientID, name string) bool {
	if a.empty {
		return a.def
	}
	return a.sub.checkName(a.def, p, clientID, name)
}

// CanSubscribe implements Authorizer.
func (a *ACL) CanSubscribe(p *Principal, clientID, filter string) bool {
	if a.empty {
		return a.def
	}
	if p == nil {
		p = anonymous
	}
	s := &a.sub
	for i := range s.deny {
		r := &s.deny[i]
		if !r.applies(p, clientID) {
			continue
		}
		if f, ok := r.expand(p, clientID); ok && denyOverlaps(f, filter) {
			return false
		}
	}
	for i := range s.allow {
		r := &s.allow[i]
		if !r.applies(p, clientID) {
			continue
		}
		if f, ok := r.expand(p, clientID); ok && subset(filter, f) {
			return true
		}
	}
	return a.def
}

// checkName decides for a topic name: deny wins, then allow, then def.
func (s *ruleSet) checkName(def bool, p *Principal, clientID, name string) bool {
	if p == nil {
		p = anonymous
	}
	first, _, _ := strings.Cut(name, "/")
	for i := range s.deny {
		r := &s.deny[i]
		if r.first != "" && r.first != first || !r.applies(p, clientID) {
			continue
		}
		if f, ok := r.expand(p, clientID); ok && denyMatches(f, name) {
			return false
		}
	}
	for i := range s.allow {
		r := &s.allow[i]
		if r.first != "" && r.first != first || !r.applies(p, clientID) {
			continue
		}
		if f, ok := r.expand(p, clientID); ok && topic.Matches(f, name) {
			return true
		}
	}
	return def
}

// applies reports whether the rule's selectors match the client. A
// username selector of an allow rule matches the proven identity only; a
// deny rule's also matches the presented username.
func (r *rule) applies(p *Principal, clientID string) bool {
	if r.method != "" && p.Method != r.method {
		return false
	}
	if r.clientID != "" && r.clientID != clientID {
		return false
	}
	if r.username != "" {
		if r.allow {
			return p.ID == r.username
		}
		return p.ID == r.username || p.Username == r.username
	}
	return true
}

// expand substitutes the templates of the rule's filter. For an allow rule
// a value that would change the filter's shape makes the rule match
// nothing (ok is false); for a deny rule it widens the filter to the
// subtree from the offending level ("a/%c/b" -> "a/#").
func (r *rule) expand(p *Principal, clientID string) (string, bool) {
	if !r.tmpl {
		return r.filter, true
	}
	f := r.filter
	var b strings.Builder
	b.Grow(len(f) + 32)
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c == '%' && i+1 < len(f) {
			var v string
			switch f[i+1] {
			case 'u':
				v = p.Username
			case 'c':
				v = clientID
			case 'i':
				v = p.ID
			default:
				b.WriteByte(c)
				continue
			}
			if !safeValue(v, b.Len() == 0) {
				if r.allow {
					return "", false
				}
				out := b.String()
				return out[:strings.LastIndexByte(out, '/')+1] + "#", true
			}
			b.WriteString(v)
			i++
			continue
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

// safeValue reports whether v can be substituted into a filter without
// changing its shape: not empty, no wildcard, separator or NUL, and no
// leading '$' at the start of the topic.
func safeValue(v string, atStart bool) bool {
	if v == "" || strings.ContainsAny(v, "+#/\x00") {
		return false
	}
	return !atStart || v[0] != '$'
}

func hasTemplate(f string) bool {
	for i := 0; i+1 < len(f); i++ {
		if f[i] == '%' && (f[i+1] == 'u' || f[i+1] == 'c' || f[i+1] == 'i') {
			return true
		}
	}
	return false
}

// denyMatches is topic.Matches without the '$' exception: a deny rule
// "#" or "+/x" also covers "$SYS/..." and "$x/x".
func denyMatches(filter, name string) bool {
	if topic.Matches(filter, name) {
		return true
	}
	if name != "" && name[0] == '$' && filter != "" && (filter[0] == '+' || filter[0] == '#') {
		// The filter's first level is a wildcard, so the first level's
		// text does not matter: drop the '$' to bypass the exception.
		return topic.Matches(filter, "_"+name[1:])
	}
	return false
}

// denyOverlaps is topic.Overlaps without the '$' exception for the deny
// filter: a deny rule "#" overlaps a subscription to "$SYS/#". (A
// subscription starting with a wildcard receives no '$' topics, so a deny
// rule "$SYS/#" rightly does not overlap "#".)
func denyOverlaps(deny, req string) bool {
	if topic.Overlaps(deny, req) {
		return true
	}
	if req != "" && req[0] == '$' && deny != "" && (deny[0] == '+' || deny[0] == '#') {
		return topic.Overlaps(deny, "_"+req[1:])
	}
	return false
}

// subset reports whether every name the requested filter matches is matched
// by the allow filter, honouring the '$' exception: an allow filter
// starting with a wildcard does not cover a request for "$..." topics.
func subset(req, allow string) bool {
	if req != "" && req[0] == '$' && allow != "" && (allow[0] == '+' || allow[0] == '#') {
		return false
	}
	return topic.Subset(req, allow)
}

// checkFilter checks an MQTT topic filter (templates are ordinary text):
// 1..65535 bytes of UTF-8 without NUL; '#' only as the whole last level;
// '+' only as a whole level; not a shared subscription.
func checkFilter(f string) error {
	switch {
	case f == "":
		return errors.New("empty topic filter")
	case len(f) > 65535:
		return errors.New("topic filter longer than 65535 bytes")
	case !utf8.ValidString(f) || strings.IndexByte(f, 0) >= 0:
		return errors.New("topic filter must be UTF-8 without NUL")
	case strings.HasPrefix(f, topic.SharePrefix):
		return errors.New("a shared subscription; give the filter after $share/<group>/")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return errors.New("'#' must be the whole last level")
		}
		if strings.Contains(l, "+") && l != "+" {
			return errors.New("'+' must be a whole level")
		}
	}
	return nil
}

// AllOf returns an Authorizer that allows only what every one of a allows
// (deny wins). With no authorizers it denies everything. A nil authorizer
// is a programming error and panics here rather than at the first check.
func AllOf(a ...Authorizer) Authorizer {
	for i, x := range a {
		if x == nil {
			panic(fmt.Sprintf("auth.AllOf: authorizer %d is nil", i))
		}
	}
	return allOf(append([]Authorizer(nil), a...))
}

type allOf []Authorizer

func (all allOf) CanPublish(p *Principal, clientID, name string) bool {
	for _, a := range all {
		if !a.CanPublish(p, clientID, name) {
			return false
		}
	}
	return len(all) > 0
}

func (all allOf) CanSubscribe(p *Principal, clientID, filter string) bool {
	for _, a := range all {
		if !a.CanSubscribe(p, clientID, filter) {
			return false
		}
	}
	return len(all) > 0
}

func (all allOf) CanReceive(p *Principal, clientID, name string) bool {
	for _, a := range all {
		if !a.CanReceive(p, clientID, name) {
			return false
		}
	}
	return len(all) > 0
}

// AllowAll returns an Authorizer that allows everything. It is for
// explicit use (tests, a deliberately open broker) and is never installed
// implicitly.
func AllowAll() Authorizer { return allowAll{} }

type allowAll struct{}

func (allowAll) CanPublish(*Principal, string, string) bool   { return true }
func (allowAll) CanSubscribe(*Principal, string, string) bool { return true }
func (allowAll) CanReceive(*Principal, string, string) bool   { return true }
