package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"unsafe"
)

func retainedMatch[V any](r *Retained[V], filter string) []string {
	var got []string
	r.Match(filter, func(name string, _ V) bool {
		got = append(got, name)
		return true
	})
	slices.Sort(got)
	return got
}

func TestRetainedBasics(t *testing.T) {
	r := NewRetained[int]()
	if _, ok := r.Get("a"); ok {
		t.Fatal("Get on empty index found a value")
	}
	r.Set("a/b", 1)
	r.Set("a/b", 2)
	r.Set("a", 3)
	r.Set("a//b", 4)
	r.Set("/", 5)
	if r.Len() != 4 {
		t.Fatalf("Len = %d, want 4", r.Len())
	}
	for name, want := range map[string]int{"a/b": 2, "a": 3, "a//b": 4, "/": 5} {
		if v, ok := r.Get(name); !ok || v != want {
			t.Errorf("Get(%q) = %d, %v; want %d", name, v, ok, want)
		}
	}
	for _, name := range []string{"a/", "b", "a/b/c", "", "//"} {
		if _, ok := r.Get(name); ok {
			t.Errorf("Get(%q) found a value", name)
		}
	}
	if r.Delete("a/") || r.Delete("zzz") || r.Delete("a/b/c") {
		t.Error("Delete of a missing name returned true")
	}
	if !r.Delete("a") {
		t.Error("Delete(a) = false")
	}
	if _, ok := r.Get("a"); ok {
		t.Error("Get(a) after Delete found a value")
	}
	if v, ok := r.Get("a/b"); !ok || v != 2 {
		t.Error("Delete(a) removed a/b")
	}
	var names []string
	r.Range(func(name string, _ int) bool {
		names = append(names, name)
		return true
	})
	slices.Sort(names)
	if want := []string{"/", "a//b", "a/b"}; !slices.Equal(names, want) {
		t.Errorf("Range = %q, want %q", names, want)
	}
	for _, n := range names {
		r.Delete(n)
	}
	if r.Len() != 0 || r.root.children != nil {
		t.Errorf("after deleting all: Len = %d, root children = %v", r.Len(), r.root.children)
	}
}

func TestRetainedMatchTable(t *testing.T) {
	r := NewRetained[string]()
	for _, tt := range matchTests {
		r.Set(tt.name, tt.name)
	}
	for _, tt := range matchTests {
		got := slices.Contains(retainedMatch(r, tt.filter), tt.name)
		if got != tt.want {
			t.Errorf("Match(%q) includes %q = %v, want %v", tt.filter, tt.name, got, tt.want)
		}
	}
}

func TestRetainedMatch(t *testing.T) {
	r := NewRetained[int]()
	names := []string{
		"sensors/1/temp", "sensors/1/hum", "sensors/2/temp", "sensors/2",
		"sensors", "sensors//temp", "/sensors", "$SYS/uptime", "$SYS/clients/n", "$", "other",
	}
	for i, n := range names {
		r.Set(n, i)
	}
	tests := []struct {
		filter string
		want   []string
	}{
		{"sensors/+/temp", []string{"sensors//temp", "sensors/1/temp", "sensors/2/temp"}},
		{"sensors/+", []string{"sensors/2"}},
		{"sensors/#", []string{"sensors", "sensors//temp", "sensors/1/hum", "sensors/1/temp", "sensors/2", "sensors/2/temp"}},
		{"sensors/2/#", []string{"sensors/2", "sensors/2/temp"}},
		{"+", []string{"other", "sensors"}},
		{"+/+", []string{"/sensors", "sensors/2"}},
		{"#", []string{"/sensors", "other", "sensors", "sensors//temp", "sensors/1/hum", "sensors/1/temp", "sensors/2", "sensors/2/temp"}},
		{"+/#", []string{"/sensors", "other", "sensors", "sensors//temp", "sensors/1/hum", "sensors/1/temp", "sensors/2", "sensors/2/temp"}},
		{"$SYS/#", []string{"$SYS/clients/n", "$SYS/uptime"}},
		{"$SYS/+", []string{"$SYS/uptime"}},
		{"$", []string{"$"}},
		{"+/uptime", nil},
		{"sensors/3/#", nil},
		{"nothing", nil},
	}
	for _, tt := range tests {
		if got := retainedMatch(r, tt.filter); !slices.Equal(got, tt.want) {
			t.Errorf("Match(%q) = %q, want %q", tt.filter, got, tt.want)
		}
	}
}

func TestRetainedMatchStops(t *testing.T) {
	r := NewRetained[int]()
	for i := range 50 {
		r.Set(fmt.Sprintf("a/%d/x", i), i)
		r.Set(fmt.Sprintf("a/%d", i), i)
	}
	for _, f := range []string{"#", "a/#", "a/+", "a/+/x", "+/+/+"} {
		for _, stop := range []int{1, 7} {
			n := 0
			r.Match(f, func(string, int) bool {
				n++
				return n < stop
			})
			if n != stop {
				t.Errorf("Match(%q) called fn %d times after it returned false at call %d", f, n, stop)
			}
		}
	}
	n := 0
	r.Range(func(string, int) bool { n++; return n < 3 })
	if n != 3 {
		t.Errorf("Range called fn %d times, want 3", n)
	}
}

// TestRetainedMatchProperty compares Retained.Match with a brute-force scan
// using Matches over random names and filters, with deletions in between.
func TestRetainedMatchProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	rounds := 40
	if testing.Short() {
		rounds = 5
	}
	for range rounds {
		r := NewRetained[string]()
		model := map[string]string{}
		for i := range 300 {
			name := randomName(rng)
			if rng.IntN(4) == 0 {
				_, had := model[name]
				if got := r.Delete(name); got != had {
					t.Fatalf("Delete(%q) = %v, want %v", name, got, had)
				}
				delete(model, name)
				continue
			}
			v := fmt.Sprint(i)
			r.Set(name, v)
			model[name] = v
		}
		if r.Len() != len(model) {
			t.Fatalf("Len = %d, want %d", r.Len(), len(model))
		}
		for range 300 {
			f := randomFilter(rng)
			var want []string
			for n := range model {
				if Matches(f, n) {
					want = append(want, n)
				}
			}
			slices.Sort(want)
			var got []string
			r.Match(f, func(name, v string) bool {
				if model[name] != v {
					t.Errorf("Match(%q) gave %q = %q, want %q", f, name, v, model[name])
				}
				got = append(got, name)
				return true
			})
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("Match(%q) = %q, want %q", f, got, want)
			}
		}
		for n := range model {
			r.Delete(n)
		}
		if r.Len() != 0 || r.root.children != nil {
			t.Fatalf("after deleting all: Len = %d, root children = %d", r.Len(), len(r.root.children))
		}
	}
}

// TestRetainedConcurrent runs Set/Delete against Match/Get/Range (for -race).
func TestRetainedConcurrent(t *testing.T) {
	r := NewRetained[int]()
	var wg sync.WaitGroup
	ops := 3000
	if testing.Short() {
		ops = 300
	}
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range ops {
				name := fmt.Sprintf("w%d/%s", w, randomName(rng))
				if i%3 == 0 {
					r.Delete(name)
				} else {
					r.Set(name, i)
				}
			}
		})
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for range ops {
				f := randomFilter(rng)
				r.Match(f, func(name string, _ int) bool {
					if !Matches(f, name) {
						t.Errorf("Match(%q) gave %q", f, name)
					}
					return true
				})
				r.Get(randomName(rng))
				r.Len()
			}
		})
	}
	wg.Wait()
	var names []string
	r.Range(func(n string, _ int) bool { names = append(names, n); return true })
	if len(names) != r.Len() {
		t.Fatalf("Range saw %d names, Len = %d", len(names), r.Len())
	}
	for _, n := range names {
		r.Delete(n)
	}
	if r.Len() != 0 || r.root.children != nil {
		t.Fatal("index not empty after deleting every name")
	}
}

// TestNoBufferRetention checks that names and filters kept by the index and
// the trie are copies, not slices of the caller's (maybe larger) string.
func TestNoBufferRetention(t *testing.T) {
	buf := "xxxx/sensors/1/temp/yyyy"
	inside := func(s string) bool {
		p, b := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(buf)))
		return len(s) > 0 && p >= b && p < b+uintptr(len(buf))
	}
	r := NewRetained[int]()
	r.Set(buf[5:19], 1) // "sensors/1/temp"
	for n := r.find("sensors/1/temp"); n != &r.root; n = n.parent {
		if inside(n.key) || inside(n.name) {
			t.Errorf("retained node %q shares the caller's buffer", n.key)
		}
	}
	tr := NewTrie()
	tr.Add(Subscription{ClientID: "c", Filter: buf[5:19]})
	for n := tr.clients["c"][subKey{"", "sensors/1/temp"}]; n != &tr.root; n = n.parent {
		if inside(n.key) {
			t.Errorf("trie node %q shares the caller's buffer", n.key)
		}
	}
}
