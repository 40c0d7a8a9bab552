package topic

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Subscription is one entry of the routing table: a client's subscription to
// a filter, with the options MQTT 5 attaches to it.
type Subscription struct {
	ClientID          string
	Filter            string // without the $share/{group}/ prefix
	Group             string // share group, "" when not shared
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	SubID             uint32 // 0 = none
}

// Trie is the subscription table the broker routes PUBLISH packets through:
// a tree with one node per filter level, so that Match visits only the
// branches a topic name can reach instead of every subscription.
//
// It is safe for concurrent use. Match runs under a read lock and allocates
// nothing once dst has room; writers (Add, Remove, RemoveClient) take the
// write lock. A copy-on-write tree would make Match lock-free, but every
// write would then copy the child maps along its path, and in IoT the
// levels under which subscriptions are written are the widest
// ("devices/{id}/..." has one child per device): a connect storm would copy
// a 100k-entry map per SUBSCRIBE. Read-mostly with cheap writes wins here.
type Trie struct {
	// mu guards the following fields, and every node reachable from root.
	// Share-group round-robin counters are atomics, advanced under the read
	// lock.
	mu      sync.RWMutex
	root    node
	clients map[string]map[subKey]*node // client id -> its subscriptions -> node of their filter
	count   int
}

// subKey identifies one subscription of a client.
type subKey struct {
	group, filter string
}

// node is one filter level. The subscriptions whose filter ends at this level
// live in subs (non-shared) and groups (shared, one entry per share name).
type node struct {
	parent   *node
	key      string // level under parent: a literal, "+" or "#"
	children map[string]*node
	plus     *node // "+" child
	hash     *node // "#" child
	subs     subList
	groups   []*shareGroup
}

// shareGroup is the members of one share group, identified by its name and
// the filter of the node it hangs from.
type shareGroup struct {
	// next is the round-robin position, written by every Match that
	// reaches the group. The padding keeps it alone on its cache line (the
	// struct is 128 bytes, an allocation size class aligned to 128), so
	// that routing goroutines on other cores do not invalidate the lines
	// holding other groups' fields.
	next atomic.Uint32
	_    [60]byte

	name    string
	members subList
	_       [16]byte
}

// subList holds subscriptions keyed by client id. Most filters have a handful
// of subscribers (often one: "devices/{id}/cmd/#"), so lookups scan the
// slice; a map index is built once the list grows past indexMin, so that
// broadcast filters with thousands of subscribers stay O(1) per change.
type subList struct {
	items []Subscription
	index map[string]int // client id -> position in items; nil while short
}

const indexMin = 16

func (l *subList) find(clientID string) int {
	if l.index != nil {
		if i, ok := l.index[clientID]; ok {
			return i
		}
		return -1
	}
	for i := range l.items {
		if l.items[i].ClientID == clientID {
			return i
		}
	}
	return -1
}

// put inserts or replaces s and reports whether it replaced one.
func (l *subList) put(s Subscription) bool {
	if i := l.find(s.ClientID); i >= 0 {
		l.items[i] = s
		return true
	}
	l.items = append(l.items, s)
	if l.index != nil {
		l.index[s.ClientID] = len(l.items) - 1
	} else if len(l.items) > indexMin {
		l.index = make(map[string]int, len(l.items))
		for i := range l.items {
			l.index[l.items[i].ClientID] = i
		}
	}
	return false
}

// remove deletes the subscription of clientID, moving the last one into its
// place.
func (l *subList) remove(clientID string) bool {
	i := l.find(clientID)
	if i < 0 {
		return false
	}
	last := len(l.items) - 1
	if i != last {
		l.items[i] = l.items[last]
		if l.index != nil {
			l.index[l.items[i].ClientID] = i
		}
	}
	l.items[last] = Subscription{} // drop string references
	l.items = l.items[:last]
	if l.index != nil {
		delete(l.index, clientID)
		if len(l.items) <= indexMin/2 {
			l.index = nil
		}
	}
	if len(l.items) == 0 {
		l.items = nil
	}
	return true
}

func (n *node) empty() bool {
	return len(n.subs.items) == 0 && len(n.groups) == 0 && len(n.children) == 0 && n.plus == nil && n.hash == nil
}

func (n *node) child(level string) *node {
	switch level {
	case "+":
		return n.plus
	case "#":
		return n.hash
	}
	return n.children[level]
}

// addChild creates the child for level, which must not exist yet.
func (n *node) addChild(level string) *node {
	c := &node{parent: n, key: level}
	switch level {
	case "+":
		n.plus = c
	case "#":
		n.hash = c
	default:
		if n.children == nil {
			n.children = make(map[string]*node)
		}
		n.children[level] = c
	}
	return c
}

func (n *node) group(name string) (int, *shareGroup) {
	for i, g := range n.groups {
		if g.name == name {
			return i, g
		}
	}
	return -1, nil
}

// NewTrie returns an empty subscription trie.
func NewTrie() *Trie {
	return &Trie{clients: make(map[string]map[subKey]*node)}
}

// Add inserts or replaces the subscription keyed by (ClientID, Group,
// Filter); replaced reports whether one existed. s.Filter must be a valid
// filter without the $share/{group}/ prefix (see ParseShared).
func (t *Trie) Add(s Subscription) (replaced bool) {
	t.mu.Lock()
	defer t.mu.Unlock()

	n := &t.root
	cloned := false
	for f := s.Filter; ; {
		level, rest, more := cut(f)
		c := n.child(level)
		if c == nil {
			if !cloned {
				// Node keys outlive this subscription: copy the rest of
				// the filter once rather than keep the caller's string
				// (maybe a slice of a larger buffer) alive.
				f, cloned = strings.Clone(f), true
				level, rest, more = cut(f)
			}
			c = n.addChild(level)
		}
		n = c
		if !more {
			break
		}
		f = rest
	}
	if s.Group == "" {
		replaced = n.subs.put(s)
	} else {
		_, g := n.group(s.Group)
		if g == nil {
			g = &shareGroup{name: s.Group}
			n.groups = append(n.groups, g)
		}
		replaced = g.members.put(s)
	}
	if replaced {
		return true
	}
	t.count++
	m := t.clients[s.ClientID]
	if m == nil {
		m = make(map[subKey]*node, 1)
		t.clients[s.ClientID] = m
	}
	m[subKey{s.Group, s.Filter}] = n
	return false
}

// Remove deletes the subscription keyed by (clientID, group, filter) and
// reports whether it existed.
func (t *Trie) Remove(clientID, group, filter string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()

	m := t.clients[clientID]
	k := subKey{group, filter}
	n, ok := m[k]
	if !ok {
		return false
	}
	t.removeAt(n, clientID, group)
	delete(m, k)
	if len(m) == 0 {
		delete(t.clients, clientID)
	}
	t.count--
	return true
}

// RemoveClient removes every subscription of clientID (used when a session
// ends) and returns how many there were. It costs one step per subscription
// of the client, not per subscription in the trie.
func (t *Trie) RemoveClient(clientID string) int {
	t.mu.Lock()
	defer t.mu.Unlock()

	m := t.clients[clientID]
	for k, n := range m {
		t.removeAt(n, clientID, k.group)
	}
	delete(t.clients, clientID)
	t.count -= len(m)
	return len(m)
}

// removeAt removes clientID's subscription (in group, "" for none) from node
// n and prunes the nodes left empty. mu must be held for writing.
func (t *Trie) removeAt(n *node, clientID, group string) {
	if group == "" {
		n.subs.remove(clientID)
	} else if i, g := n.group(group); g != nil {
		g.members.remove(clientID)
		if len(g.members.items) == 0 {
			last := len(n.groups) - 1
			n.groups[i] = n.groups[last]
			n.groups[last] = nil
			n.groups = n.groups[:last]
			if last == 0 {
				n.groups = nil
			}
		}
	}
	for n != &t.root && n.empty() {
		p := n.parent
		switch {
		case p.plus == n:
			p.plus = nil
		case p.hash == n:
			p.hash = nil
		default:
			delete(p.children, n.key)
			if len(p.children) == 0 {
				p.children = nil
			}
		}
		n.parent = nil
		n = p
	}
}

// Len returns the number of subscriptions, shared ones included.
func (t *Trie) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.count
}

// ClientSubscriptions returns a copy of a client's subscriptions (for session
// listing and persistence), sorted by filter then group.
func (t *Trie) ClientSubscriptions(clientID string) []Subscription {
	t.mu.RLock()
	defer t.mu.RUnlock()

	m := t.clients[clientID]
	if len(m) == 0 {
		return nil
	}
	out := make([]Subscription, 0, len(m))
	for k, n := range m {
		l := &n.subs
		if k.group != "" {
			_, g := n.group(k.group)
			l = &g.members
		}
		out = append(out, l.items[l.find(clientID)])
	}
	slices.SortFunc(out, func(a, b Subscription) int {
		return cmp.Or(strings.Compare(a.Filter, b.Filter), strings.Compare(a.Group, b.Group))
	})
	return out
}

// Match appends to dst every subscription matching the topic name and
// returns it. Non-shared subscriptions are all returned, so a client whose
// filters overlap appears once per matching filter. For each matching share
// group exactly one member is returned, chosen round-robin among the members
// for which prefer(clientID) is true; when prefer is nil every member is
// preferred, and when none is, the choice is round-robin among all.
//
// Match holds the trie's read lock while calling prefer: prefer must be quick
// and must not call back into the trie. Match allocates nothing when dst has
// enough capacity.
func (t *Trie) Match(name string, dst []Subscription, prefer func(clientID string) bool) []Subscription {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return matchLevel(&t.root, name, isDollar(name), dst, prefer)
}

// matchLevel matches the levels of name below node n, which stands for the
// levels already consumed. name has at least one level left. dollar is set
// at the root for '$' names, which wildcards there do not match.
func matchLevel(n *node, name string, dollar bool, dst []Subscription, prefer func(string) bool) []Subscription {
	level, rest, more := cut(name)
	if n.hash != nil && !dollar {
		dst = collect(n.hash, dst, prefer)
	}
	if c := n.children[level]; c != nil {
		dst = descend(c, rest, more, dst, prefer)
	}
	if n.plus != nil && !dollar {
		dst = descend(n.plus, rest, more, dst, prefer)
	}
	return dst
}

// descend continues matching at c, the node that matched one more level.
func descend(c *node, rest string, more bool, dst []Subscription, prefer func(string) bool) []Subscription {
	if more {
		return matchLevel(c, rest, false, dst, prefer)
	}
	dst = collect(c, dst, prefer)
	if c.hash != nil {
		// "a/#" matches "a".
		dst = collect(c.hash, dst, prefer)
	}
	return dst
}

// collect appends the subscriptions of a node whose filter matched.
func collect(n *node, dst []Subscription, prefer func(string) bool) []Subscription {
	dst = append(dst, n.subs.items...)
	for _, g := range n.groups {
		dst = append(dst, g.members.items[g.pick(prefer)])
	}
	return dst
}

// pick returns the index of the member of a share group that receives the
// next message. The turn is claimed with a compare-and-swap, so that
// concurrent Match calls take distinct turns without a division per pick.
// When the member whose turn it is is not preferred, the turn moves past the
// member chosen instead, so preferred members keep taking turns evenly
// rather than the first one after a non-preferred member taking its turns
// too.
func (g *shareGroup) pick(prefer func(string) bool) int {
	size := uint32(len(g.members.items))
	if size == 1 {
		return 0
	}
	var start, next uint32
	for {
		c := g.next.Load()
		start = c
		if start >= size { // members were removed since
			start = 0
		}
		if next = start + 1; next == size {
			next = 0
		}
		if g.next.CompareAndSwap(c, next) {
			break
		}
	}
	m := g.members.items
	if prefer == nil || prefer(m[start].ClientID) {
		return int(start)
	}
	for k := uint32(1); k < size; k++ {
		i := start + k
		if i >= size {
			i -= size
		}
		if prefer(m[i].ClientID) {
			after := i + 1
			if after == size {
				after = 0
			}
			// Best effort: a concurrent pick may have moved on already.
			g.next.CompareAndSwap(next, after)
			return int(i)
		}
	}
	return int(start)
}
