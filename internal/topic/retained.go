package topic

import (
	"strings"
	"sync"
)

// Retained indexes retained messages by topic name in a tree with one node
// per level, so that a new subscription's filter visits only the branches it
// can match: Match("sensors/+/temp") looks at the children of "sensors" and
// one grandchild each, not at every retained topic.
//
// It is safe for concurrent use. Match and Range call fn under a read lock:
// fn must not call Set or Delete on the same Retained (that would deadlock)
// and should be quick, since writers wait for it.
type Retained[V any] struct {
	// mu guards the following fields and every node reachable from root.
	mu    sync.RWMutex
	root  rnode[V]
	count int
}

// rnode is one topic level; it holds a value when a retained message was
// published to exactly the name it stands for.
type rnode[V any] struct {
	parent   *rnode[V]
	key      string // level under parent
	children map[string]*rnode[V]
	name     string // full topic name; set only with value
	value    V
	has      bool
}

// NewRetained returns an empty index.
func NewRetained[V any]() *Retained[V] {
	return &Retained[V]{}
}

// Set stores v as the retained value of the topic name, replacing any.
func (r *Retained[V]) Set(name string, v V) {
	r.mu.Lock()
	defer r.mu.Unlock()

	// The tree keeps the name (for Match and Range) and its levels (as node
	// keys). Copy it once, and only when it is new, rather than keep the
	// caller's string, maybe a slice of a larger buffer, alive.
	n := &r.root
	cloned := false
	for rest := name; ; {
		level, next, more := cut(rest)
		c := n.children[level]
		if c == nil {
			if !cloned {
				name, cloned = strings.Clone(name), true
				rest = name[len(name)-len(rest):]
				level, next, more = cut(rest)
			}
			c = &rnode[V]{parent: n, key: level}
			if n.children == nil {
				n.children = make(map[string]*rnode[V])
			}
			n.children[level] = c
		}
		n = c
		if !more {
			break
		}
		rest = next
	}
	if !n.has {
		if !cloned {
			name = strings.Clone(name)
		}
		n.has, n.name = true, name
		r.count++
	}
	n.value = v
}

// Delete removes the retained value of the topic name and reports whether
// there was one. Nodes left with neither value nor children are pruned.
func (r *Retained[V]) Delete(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()

	n := r.find(name)
	if n == nil || !n.has {
		return false
	}
	var zero V
	n.value, n.name, n.has = zero, "", false
	r.count--
	for n != &r.root && !n.has && len(n.children) == 0 {
		p := n.parent
		delete(p.children, n.key)
		if len(p.children) == 0 {
			p.children = nil
		}
		n.parent = nil
		n = p
	}
	return true
}

// Get returns the retained value of the topic name.
func (r *Retained[V]) Get(name string) (V, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if n := r.find(name); n != nil && n.has {
		return n.value, true
	}
	var zero V
	return zero, false
}

// find returns the node of the topic name, or nil. mu must be held.
func (r *Retained[V]) find(name string) *rnode[V] {
	n := &r.root
	for {
		level, rest, more := cut(name)
		n = n.children[level]
		if n == nil || !more {
			return n
		}
		name = rest
	}
}

// Len returns the number of retained topics.
func (r *Retained[V]) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.count
}

// Match calls fn for every retained topic name matching the (non-shared)
// filter, in no particular order, stopping when fn returns false. A filter
// starting with a wildcard does not match names starting with '$'.
func (r *Retained[V]) Match(filter string, fn func(name string, v V) bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	r.root.match(filter, true, fn)
}

// match visits the nodes below n matching filter, which has at least one
// level left; top is set at the root. It returns false when fn asked to stop.
func (n *rnode[V]) match(filter string, top bool, fn func(string, V) bool) bool {
	level, rest, more := cut(filter)
	switch level {
	case "#":
		// "a/#" matches "a" itself; at the root n holds no value.
		if n.has && !fn(n.name, n.value) {
			return false
		}
		for k, c := range n.children {
			if top && isDollar(k) {
				continue
			}
			if !c.all(fn) {
				return false
			}
		}
		return true
	case "+":
		for k, c := range n.children {
			if top && isDollar(k) {
				continue
			}
			if !c.step(rest, more, fn) {
				return false
			}
		}
		return true
	default:
		if c := n.children[level]; c != nil {
			return c.step(rest, more, fn)
		}
		return true
	}
}

// step continues at n, which matched one more level of the filter.
func (n *rnode[V]) step(rest string, more bool, fn func(string, V) bool) bool {
	if more {
		return n.match(rest, false, fn)
	}
	if n.has {
		return fn(n.name, n.value)
	}
	return true
}

// all calls fn for n and every node below it.
func (n *rnode[V]) all(fn func(string, V) bool) bool {
	if n.has && !fn(n.name, n.value) {
		return false
	}
	for _, c := range n.children {
		if !c.all(fn) {
			return false
		}
	}
	return true
}

// Range calls fn for every retained topic, in no particular order, stopping
// when fn returns false.
func (r *Retained[V]) Range(fn func(name string, v V) bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	r.root.all(fn)
}
