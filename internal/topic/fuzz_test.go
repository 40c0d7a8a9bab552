package topic

import (
	"slices"
	"strings"
	"testing"
)

// fuzzFilters are filters added to the trie next to the fuzzed one, so that
// the fuzzed name is checked against a crowd of wildcards.
var fuzzFilters = []string{"#", "+", "+/#", "+/+", "/#", "$SYS/#", "+/+/#", "a/#"}

// FuzzMatch fuzzes the matcher with a filter and a topic name. For any input,
// Matches, Subset, Overlaps, ParseShared and the validators must not panic.
// For a valid filter and name:
//   - a name used as a filter agrees with Matches through Subset and Overlaps;
//   - Subset and Overlaps are consistent with Matches on the fuzzed name;
//   - Trie.Match and Retained.Match agree with Matches, shared groups
//     included, and removing everything leaves empty structures.
func FuzzMatch(f *testing.F) {
	// The seed corpus lives in testdata/fuzz/FuzzMatch.
	f.Fuzz(func(t *testing.T, filter, name string) {
		want := Matches(filter, name)
		Subset(filter, name)
		Subset(name, filter)
		Overlaps(filter, name)
		ParseShared(filter)
		ValidShareName(name)
		validF, validN := ValidFilter(filter), ValidName(name)
		if !validF || !validN {
			return
		}

		if got := Subset(name, filter); got != want {
			t.Errorf("Subset(%q, %q) = %v, Matches = %v", name, filter, got, want)
		}
		if got := Overlaps(name, filter); got != want {
			t.Errorf("Overlaps(%q, %q) = %v, Matches = %v", name, filter, got, want)
		}
		if got := Overlaps(filter, name); got != want {
			t.Errorf("Overlaps(%q, %q) = %v, Matches = %v", filter, name, got, want)
		}
		if !Subset(filter, filter) || !Overlaps(filter, filter) {
			t.Errorf("filter %q is not a subset of / overlapping itself", filter)
		}
		for _, other := range fuzzFilters {
			om := Matches(other, name)
			if want && Subset(filter, other) && !om {
				t.Errorf("Subset(%q, %q) but only the first matches %q", filter, other, name)
			}
			if want && om && !Overlaps(filter, other) {
				t.Errorf("!Overlaps(%q, %q) but both match %q", filter, other, name)
			}
		}

		// Trie: the fuzzed filter plain and shared, among the fixed crowd.
		tr := NewTrie()
		model := map[string]Subscription{}
		add := func(s Subscription) {
			tr.Add(s)
			model[s.key()] = s
		}
		add(Subscription{ClientID: "f", Filter: filter, QoS: 1})
		add(Subscription{ClientID: "m1", Filter: filter, Group: "g"})
		add(Subscription{ClientID: "m2", Filter: filter, Group: "g"})
		for i, o := range fuzzFilters {
			add(Subscription{ClientID: "x", Filter: o, SubID: uint32(i + 1)})
			add(Subscription{ClientID: "y", Filter: o, Group: "g"})
		}
		checkMatch(t, tr, model, name)
		for _, n := range fuzzNames(name) {
			checkMatch(t, tr, model, n)
		}
		for _, id := range []string{"f", "m1", "m2", "x", "y"} {
			tr.RemoveClient(id)
		}
		assertEmpty(t, tr)

		// Retained: the fuzzed name and its relatives, matched by the
		// fuzzed filter.
		r := NewRetained[string]()
		names := append(fuzzNames(name), name)
		for _, n := range names {
			r.Set(n, n)
		}
		var wantNames []string
		for _, n := range names {
			if Matches(filter, n) && !slices.Contains(wantNames, n) {
				wantNames = append(wantNames, n)
			}
		}
		slices.Sort(wantNames)
		if got := retainedMatch(r, filter); !slices.Equal(got, wantNames) {
			t.Errorf("Retained.Match(%q) = %q, want %q", filter, got, wantNames)
		}
		for _, n := range names {
			r.Delete(n)
		}
		if r.Len() != 0 || r.root.children != nil {
			t.Errorf("retained index not empty after deleting %q", names)
		}
	})
}

// fuzzNames derives a few valid names from a valid name: its parent, a
// child, the name with a '$' or an empty first level.
func fuzzNames(name string) []string {
	out := []string{name + "/x", "$" + name, "/" + name}
	if i := strings.LastIndexByte(name, '/'); i > 0 {
		out = append(out, name[:i])
	}
	return out
}
