package topic

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

// key identifies a subscription the way the trie does.
func (s Subscription) key() string { return s.ClientID + "\x00" + s.Group + "\x00" + s.Filter }

func sortSubs(s []Subscription) []Subscription {
	s = slices.Clone(s)
	slices.SortFunc(s, func(a, b Subscription) int { return strings.Compare(a.key(), b.key()) })
	return s
}

func TestTrieMatchTable(t *testing.T) {
	tr := NewTrie()
	for _, tt := range matchTests {
		tr.Add(Subscription{ClientID: "c", Filter: tt.filter})
	}
	for _, tt := range matchTests {
		got := false
		for _, s := range tr.Match(tt.name, nil, nil) {
			if s.Filter == tt.filter {
				got = true
			}
		}
		if got != tt.want {
			t.Errorf("Match(%q) includes %q = %v, want %v", tt.name, tt.filter, got, tt.want)
		}
	}
}

func TestTrieAddRemove(t *testing.T) {
	tr := NewTrie()
	sub := Subscription{ClientID: "c1", Filter: "a/+", QoS: 1, SubID: 7}
	if tr.Add(sub) {
		t.Fatal("first Add reported a replacement")
	}
	sub.QoS = 2
	if !tr.Add(sub) {
		t.Fatal("second Add did not report a replacement")
	}
	if got := tr.Match("a/b", nil, nil); len(got) != 1 || got[0] != sub {
		t.Fatalf("Match after replace = %+v, want [%+v]", got, sub)
	}
	// Same filter, other client; same client, other filter; same client and
	// filter in a share group: all distinct keys.
	others := []Subscription{
		{ClientID: "c2", Filter: "a/+"},
		{ClientID: "c1", Filter: "a/#"},
		{ClientID: "c1", Filter: "a/+", Group: "g"},
		{ClientID: "c1", Filter: "a/+", Group: "h"},
	}
	for _, s := range others {
		if tr.Add(s) {
			t.Errorf("Add(%+v) reported a replacement", s)
		}
	}
	if tr.Len() != 5 {
		t.Fatalf("Len = %d, want 5", tr.Len())
	}
	if got := len(tr.Match("a/b", nil, nil)); got != 5 {
		t.Errorf("Match(a/b) returned %d subscriptions, want 5", got)
	}
	if tr.Remove("c1", "", "a/b") || tr.Remove("c3", "", "a/+") || tr.Remove("c1", "x", "a/+") {
		t.Error("Remove of a missing subscription returned true")
	}
	if !tr.Remove("c1", "g", "a/+") {
		t.Error("Remove of a shared subscription returned false")
	}
	if tr.Remove("c1", "g", "a/+") {
		t.Error("second Remove returned true")
	}
	if tr.Len() != 4 {
		t.Errorf("Len = %d, want 4", tr.Len())
	}
	want := []Subscription{{ClientID: "c1", Filter: "a/#"}, sub, {ClientID: "c1", Filter: "a/+", Group: "h"}}
	if got := tr.ClientSubscriptions("c1"); !slices.Equal(got, want) {
		t.Errorf("ClientSubscriptions(c1) = %+v, want %+v", got, want)
	}
	if n := tr.RemoveClient("c1"); n != 3 {
		t.Errorf("RemoveClient(c1) = %d, want 3", n)
	}
	if n := tr.RemoveClient("c1"); n != 0 {
		t.Errorf("second RemoveClient(c1) = %d, want 0", n)
	}
	if got := tr.ClientSubscriptions("c1"); got != nil {
		t.Errorf("ClientSubscriptions after RemoveClient = %+v", got)
	}
	if got := tr.Match("a/b", nil, nil); len(got) != 1 || got[0].ClientID != "c2" {
		t.Errorf("Match after RemoveClient = %+v", got)
	}
	if !tr.Remove("c2", "", "a/+") {
		t.Error("Remove(c2) returned false")
	}
	assertEmpty(t, tr)
}

func assertEmpty(t *testing.T, tr *Trie) {
	t.Helper()
	if tr.Len() != 0 {
		t.Errorf("Len = %d, want 0", tr.Len())
	}
	if !tr.root.empty() {
		t.Errorf("root not pruned: children=%d plus=%v hash=%v", len(tr.root.children), tr.root.plus, tr.root.hash)
	}
	if len(tr.clients) != 0 {
		t.Errorf("client index holds %d clients", len(tr.clients))
	}
}

// TestTriePruneKeepsSiblings removes a leaf under a node that still has other
// children or subscriptions and checks those survive.
func TestTriePruneKeepsSiblings(t *testing.T) {
	tr := NewTrie()
	tr.Add(Subscription{ClientID: "c", Filter: "a"})
	tr.Add(Subscription{ClientID: "c", Filter: "a/b/c"})
	tr.Add(Subscription{ClientID: "c", Filter: "a/+/d"})
	tr.Add(Subscription{ClientID: "c", Filter: "a/#"})
	tr.Remove("c", "", "a/b/c")
	if tr.root.children["a"].children != nil {
		t.Error("a/b not pruned")
	}
	for name, want := range map[string]int{"a": 2, "a/x/d": 2, "a/b/c": 1} {
		if got := len(tr.Match(name, nil, nil)); got != want {
			t.Errorf("Match(%q) = %d subscriptions, want %d", name, got, want)
		}
	}
	tr.RemoveClient("c")
	assertEmpty(t, tr)
}

// TestSubListIndex moves a filter's subscriber list across the size where it
// gains and drops its map index.
func TestSubListIndex(t *testing.T) {
	tr := NewTrie()
	const n = 100
	for i := range n {
		tr.Add(Subscription{ClientID: fmt.Sprint("c", i), Filter: "bcast/#", QoS: byte(i % 3)})
		tr.Add(Subscription{ClientID: fmt.Sprint("c", i), Filter: "bcast/#", Group: "g", QoS: byte(i % 3)})
	}
	// Replace through the index.
	for i := range n {
		if !tr.Add(Subscription{ClientID: fmt.Sprint("c", i), Filter: "bcast/#", QoS: 1}) {
			t.Fatalf("replace c%d not detected", i)
		}
	}
	for i := 0; i < n; i += 2 {
		tr.RemoveClient(fmt.Sprint("c", i))
	}
	got := tr.Match("bcast/x", nil, nil)
	if len(got) != n/2+1 {
		t.Fatalf("Match = %d subscriptions, want %d", len(got), n/2+1)
	}
	for _, s := range got {
		var i int
		fmt.Sscanf(s.ClientID, "c%d", &i)
		if i%2 == 0 {
			t.Errorf("removed client %s still matched", s.ClientID)
		}
		if s.Group == "" && s.QoS != 1 {
			t.Errorf("client %s has QoS %d after replace", s.ClientID, s.QoS)
		}
	}
	for i := 1; i < n; i += 2 {
		if !tr.Remove(fmt.Sprint("c", i), "", "bcast/#") {
			t.Errorf("Remove(c%d) = false", i)
		}
		tr.Remove(fmt.Sprint("c", i), "g", "bcast/#")
	}
	assertEmpty(t, tr)
}

func TestShareGroupRoundRobin(t *testing.T) {
	tr := NewTrie()
	members := []string{"w1", "w2", "w3"}
	for _, m := range members {
		tr.Add(Subscription{ClientID: m, Filter: "jobs/+", Group: "workers"})
	}
	tr.Add(Subscription{ClientID: "solo", Filter: "jobs/+", Group: "single"})
	tr.Add(Subscription{ClientID: "w1", Filter: "jobs/#"}) // non-shared, same client

	count := func(prefer func(string) bool, rounds int) map[string]int {
		got := map[string]int{}
		var dst []Subscription
		for range rounds {
			dst = tr.Match("jobs/1", dst[:0], prefer)
			if len(dst) != 3 {
				t.Fatalf("Match returned %d subscriptions, want 3: %+v", len(dst), dst)
			}
			for _, s := range dst {
				if s.Group == "workers" {
					got[s.ClientID]++
				}
			}
		}
		return got
	}
	equal := func(name string, got, want map[string]int) {
		t.Helper()
		for _, m := range members {
			if got[m] != want[m] {
				t.Errorf("%s: picks = %v, want %v", name, got, want)
				return
			}
		}
	}
	equal("nil prefer", count(nil, 300), map[string]int{"w1": 100, "w2": 100, "w3": 100})
	equal("all preferred", count(func(string) bool { return true }, 300), map[string]int{"w1": 100, "w2": 100, "w3": 100})
	equal("none preferred", count(func(string) bool { return false }, 300), map[string]int{"w1": 100, "w2": 100, "w3": 100})
	// Turns stay even when a non-preferred member is skipped, whichever
	// position it has.
	for _, off := range members {
		want := map[string]int{}
		for _, m := range members {
			if m != off {
				want[m] = 150
			}
		}
		equal("skip "+off, count(func(id string) bool { return id != off }, 300), want)
	}
	equal("only w2", count(func(id string) bool { return id == "w2" }, 300), map[string]int{"w2": 300})
}

// TestShareGroupIdentity checks that a share group is (Group, Filter): the
// same share name on two filters forms two groups, each delivering once.
func TestShareGroupIdentity(t *testing.T) {
	tr := NewTrie()
	tr.Add(Subscription{ClientID: "a", Filter: "x/+", Group: "g"})
	tr.Add(Subscription{ClientID: "b", Filter: "x/+", Group: "g"})
	tr.Add(Subscription{ClientID: "a", Filter: "x/#", Group: "g"})
	tr.Add(Subscription{ClientID: "c", Filter: "x/#", Group: "g"})
	tr.Add(Subscription{ClientID: "d", Filter: "x/+", Group: "h"})

	got := tr.Match("x/1", nil, nil)
	perGroup := map[string]int{}
	for _, s := range got {
		perGroup[s.Group+" "+s.Filter]++
	}
	want := map[string]int{"g x/+": 1, "g x/#": 1, "h x/+": 1}
	if len(perGroup) != len(want) {
		t.Fatalf("groups delivered = %v, want %v", perGroup, want)
	}
	for k, v := range want {
		if perGroup[k] != v {
			t.Errorf("groups delivered = %v, want %v", perGroup, want)
		}
	}
	// "x" is matched by x/# only.
	if got := tr.Match("x", nil, nil); len(got) != 1 || got[0].Filter != "x/#" {
		t.Errorf("Match(x) = %+v", got)
	}
	// Removing the last member removes the group.
	tr.Remove("d", "h", "x/+")
	if got := tr.Match("x/1", nil, nil); len(got) != 2 {
		t.Errorf("Match after group removal = %+v", got)
	}
}

// TestTrieDollar checks the '$' rule inside the trie, including shared
// subscriptions and filters naming '$' levels explicitly.
func TestTrieDollar(t *testing.T) {
	tr := NewTrie()
	for _, f := range []string{"#", "+/#", "+", "+/broker/+", "$SYS/#", "$SYS/+/+", "$SYS/broker/load"} {
		tr.Add(Subscription{ClientID: "c", Filter: f})
		tr.Add(Subscription{ClientID: "c", Filter: f, Group: "g"})
	}
	got := map[string]int{}
	for _, s := range tr.Match("$SYS/broker/load", nil, nil) {
		got[s.Filter]++
	}
	want := map[string]int{"$SYS/#": 2, "$SYS/+/+": 2, "$SYS/broker/load": 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Match($SYS/broker/load) = %v, want %v", got, want)
	}
	got = map[string]int{}
	for _, s := range tr.Match("SYS/broker/load", nil, nil) {
		got[s.Filter]++
	}
	want = map[string]int{"#": 2, "+/#": 2, "+/broker/+": 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Match(SYS/broker/load) = %v, want %v", got, want)
	}
}

// TestTrieMatchNoAllocs holds Match to zero allocations once dst has room.
func TestTrieMatchNoAllocs(t *testing.T) {
	tr := NewTrie()
	for i := range 1000 {
		id := fmt.Sprint(i)
		tr.Add(Subscription{ClientID: "dev-" + id, Filter: "devices/" + id + "/cmd/#"})
		tr.Add(Subscription{ClientID: fmt.Sprint("app-", i%10), Filter: "devices/" + id + "/+/state"})
		tr.Add(Subscription{ClientID: fmt.Sprint("w-", i%7), Filter: "devices/+/cmd/#", Group: fmt.Sprint("g", i%5)})
	}
	online := func(id string) bool { return !strings.HasSuffix(id, "3") }
	dst := make([]Subscription, 0, 64)
	for _, name := range []string{"devices/42/cmd/reboot", "devices/42/temp/state", "devices/42", "nothing/here"} {
		allocs := testing.AllocsPerRun(100, func() {
			dst = tr.Match(name, dst[:0], online)
		})
		if allocs != 0 {
			t.Errorf("Match(%q) allocates %.1f times per call", name, allocs)
		}
	}
}

// randomTopic builds a topic of 1..maxDepth levels from levels, at random.
func randomTopic(r *rand.Rand, levels []string, maxDepth int) string {
	n := 1 + r.IntN(maxDepth)
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(levels[r.IntN(len(levels))])
	}
	return b.String()
}

var (
	propFilterLevels = []string{"a", "b", "", "$s", "+", "+", "#"}
	propNameLevels   = []string{"a", "b", "", "$s", "c"}
)

func randomFilter(r *rand.Rand) string {
	for {
		if f := randomTopic(r, propFilterLevels, 5); ValidFilter(f) {
			return f
		}
	}
}

func randomName(r *rand.Rand) string {
	for {
		if n := randomTopic(r, propNameLevels, 5); ValidName(n) {
			return n
		}
	}
}

// checkMatch compares Trie.Match(name) against Matches applied to every
// subscription in model. Every matching non-shared subscription must appear
// once; every matching share group must appear once, as one of its members.
func checkMatch(t *testing.T, tr *Trie, model map[string]Subscription, name string) {
	t.Helper()
	got := tr.Match(name, nil, nil)
	var wantPlain []Subscription
	wantGroups := map[string]bool{} // group\x00filter
	for _, s := range model {
		if !Matches(s.Filter, name) {
			continue
		}
		if s.Group == "" {
			wantPlain = append(wantPlain, s)
		} else {
			wantGroups[s.Group+"\x00"+s.Filter] = true
		}
	}
	var gotPlain []Subscription
	gotGroups := map[string]bool{}
	for _, s := range got {
		if s.Group == "" {
			gotPlain = append(gotPlain, s)
			continue
		}
		g := s.Group + "\x00" + s.Filter
		if gotGroups[g] {
			t.Errorf("Match(%q): group %q delivered twice", name, g)
		}
		gotGroups[g] = true
		if m, ok := model[s.key()]; !ok || m != s {
			t.Errorf("Match(%q) returned %+v, not a member as stored (%+v)", name, s, m)
		}
	}
	if a, b := sortSubs(gotPlain), sortSubs(wantPlain); !slices.Equal(a, b) {
		t.Errorf("Match(%q) non-shared:\n got  %+v\n want %+v", name, a, b)
	}
	if len(gotGroups) != len(wantGroups) {
		t.Errorf("Match(%q) groups: got %v, want %v", name, gotGroups, wantGroups)
	}
	for g := range wantGroups {
		if !gotGroups[g] {
			t.Errorf("Match(%q): group %q not delivered", name, g)
		}
	}
}

// TestTrieMatchProperty drives the trie with random adds and removes and
// compares every Match with a brute-force scan using Matches.
func TestTrieMatchProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	rounds := 40
	if testing.Short() {
		rounds = 5
	}
	for round := range rounds {
		tr := NewTrie()
		model := map[string]Subscription{}
		for range 400 {
			s := Subscription{
				ClientID: fmt.Sprint("c", r.IntN(30)),
				Filter:   randomFilter(r),
				QoS:      byte(r.IntN(3)),
				SubID:    r.Uint32N(4),
			}
			if r.IntN(4) == 0 {
				s.Group = fmt.Sprint("g", r.IntN(3))
			}
			switch op := r.IntN(10); {
			case op < 7:
				_, had := model[s.key()]
				if replaced := tr.Add(s); replaced != had {
					t.Fatalf("Add(%+v) replaced = %v, want %v", s, replaced, had)
				}
				model[s.key()] = s
			case op < 9:
				_, had := model[s.key()]
				if got := tr.Remove(s.ClientID, s.Group, s.Filter); got != had {
					t.Fatalf("Remove(%+v) = %v, want %v", s, got, had)
				}
				delete(model, s.key())
			default:
				n := 0
				for k, m := range model {
					if m.ClientID == s.ClientID {
						delete(model, k)
						n++
					}
				}
				if got := tr.RemoveClient(s.ClientID); got != n {
					t.Fatalf("RemoveClient(%s) = %d, want %d", s.ClientID, got, n)
				}
			}
		}
		if tr.Len() != len(model) {
			t.Fatalf("round %d: Len = %d, want %d", round, tr.Len(), len(model))
		}
		for range 300 {
			checkMatch(t, tr, model, randomName(r))
		}
		// ClientSubscriptions agrees with the model.
		for i := range 30 {
			id := fmt.Sprint("c", i)
			var want []Subscription
			for _, s := range model {
				if s.ClientID == id {
					want = append(want, s)
				}
			}
			slices.SortFunc(want, func(a, b Subscription) int {
				return cmp.Or(strings.Compare(a.Filter, b.Filter), strings.Compare(a.Group, b.Group))
			})
			if got := tr.ClientSubscriptions(id); !slices.Equal(got, want) {
				t.Fatalf("ClientSubscriptions(%s) = %+v, want %+v", id, got, want)
			}
		}
		for i := range 30 {
			tr.RemoveClient(fmt.Sprint("c", i))
		}
		assertEmpty(t, tr)
		if t.Failed() {
			return
		}
	}
}

// TestTrieConcurrent runs writers and readers at once (meant for -race).
// Each writer owns its clients, so the final state is known.
func TestTrieConcurrent(t *testing.T) {
	tr := NewTrie()
	const writers, readers = 4, 4
	ops := 3000
	if testing.Short() {
		ops = 300
	}
	models := make([]map[string]Subscription, writers)
	var wg sync.WaitGroup
	for w := range writers {
		models[w] = map[string]Subscription{}
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			model := models[w]
			for range ops {
				s := Subscription{ClientID: fmt.Sprintf("w%d-c%d", w, r.IntN(10)), Filter: randomFilter(r)}
				if r.IntN(3) == 0 {
					s.Group = "g"
				}
				switch r.IntN(10) {
				case 0:
					tr.RemoveClient(s.ClientID)
					for k, m := range model {
						if m.ClientID == s.ClientID {
							delete(model, k)
						}
					}
				case 1, 2, 3:
					tr.Remove(s.ClientID, s.Group, s.Filter)
					delete(model, s.key())
				default:
					tr.Add(s)
					model[s.key()] = s
				}
			}
		})
	}
	for i := range readers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 10))
			dst := make([]Subscription, 0, 128)
			prefer := func(id string) bool { return !strings.HasSuffix(id, "1") }
			for range ops {
				name := randomName(r)
				dst = tr.Match(name, dst[:0], prefer)
				for _, s := range dst {
					if !Matches(s.Filter, name) {
						t.Errorf("Match(%q) returned %+v", name, s)
						return
					}
				}
				tr.ClientSubscriptions(fmt.Sprintf("w%d-c%d", r.IntN(writers), r.IntN(10)))
				tr.Len()
			}
		})
	}
	wg.Wait()

	all := map[string]Subscription{}
	for _, m := range models {
		for k, s := range m {
			all[k] = s
		}
	}
	if tr.Len() != len(all) {
		t.Fatalf("Len = %d, want %d", tr.Len(), len(all))
	}
	r := rand.New(rand.NewPCG(3, 3))
	for range 200 {
		checkMatch(t, tr, all, randomName(r))
	}
	for w := range writers {
		for c := range 10 {
			tr.RemoveClient(fmt.Sprintf("w%d-c%d", w, c))
		}
	}
	assertEmpty(t, tr)
}

func TestShareGroupLayout(t *testing.T) {
	if size := unsafe.Sizeof(shareGroup{}); size != 128 {
		t.Errorf("shareGroup is %d bytes; the padding assumes 128", size)
	}
}

// TestShareGroupShrink removes members while the round-robin position
// points past the end of the group.
func TestShareGroupShrink(t *testing.T) {
	tr := NewTrie()
	for _, m := range []string{"w1", "w2", "w3", "w4"} {
		tr.Add(Subscription{ClientID: m, Filter: "q", Group: "g"})
	}
	for range 3 {
		tr.Match("q", nil, nil) // position is now 3, the last member
	}
	tr.Remove("w3", "g", "q")
	tr.Remove("w4", "g", "q")
	got := map[string]int{}
	for range 10 {
		for _, s := range tr.Match("q", nil, nil) {
			got[s.ClientID]++
		}
	}
	if got["w1"] != 5 || got["w2"] != 5 {
		t.Errorf("picks after shrink = %v, want w1 and w2 5 each", got)
	}
}
