package topic

import (
	"fmt"
	"strconv"
	"testing"
)

// iotTrie builds a trie of 100,000 subscriptions shaped like an IoT fleet:
//
//	45,000 devices on their own command topic      devices/{id}/cmd/#
//	45,000 state watchers (500 apps, 90 ids each)  devices/{id}/+/state
//	 5,000 per-id monitors with a leading wildcard +/{id}/#
//	 5,000 shared workers: 50 groups of 100        $share/g{k}/devices/+/cmd/#
func iotTrie() *Trie {
	tr := NewTrie()
	for i := range 45000 {
		id := strconv.Itoa(i)
		tr.Add(Subscription{ClientID: "dev-" + id, Filter: "devices/" + id + "/cmd/#", QoS: 1})
		tr.Add(Subscription{ClientID: "app-" + strconv.Itoa(i%500), Filter: "devices/" + id + "/+/state"})
	}
	for i := range 5000 {
		tr.Add(Subscription{ClientID: "mon-" + strconv.Itoa(i), Filter: "+/" + strconv.Itoa(i) + "/#"})
	}
	for i := range 5000 {
		tr.Add(Subscription{ClientID: "worker-" + strconv.Itoa(i), Filter: "devices/+/cmd/#", Group: "g" + strconv.Itoa(i%50)})
	}
	if tr.Len() != 100000 {
		panic(fmt.Sprint("iotTrie: Len = ", tr.Len()))
	}
	return tr
}

func BenchmarkMatch100k(b *testing.B) {
	tr := iotTrie()
	online := func(id string) bool { return id[len(id)-1] != '7' } // 1 in 10 offline
	cases := []struct {
		name, topic string
		prefer      func(string) bool
		want        int
	}{
		// dev-1234 + mon-1234 + one member of each of 50 groups.
		{"cmd", "devices/1234/cmd/reboot", nil, 52},
		{"cmd-prefer", "devices/1234/cmd/reboot", online, 52},
		// app-234 (state watcher) + mon-1234.
		{"state", "devices/1234/temp/state", nil, 2},
		{"miss", "factory/line1/temp", nil, 0},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			dst := make([]Subscription, 0, 128)
			if got := len(tr.Match(c.topic, dst[:0], c.prefer)); got != c.want {
				b.Fatalf("Match(%q) = %d subscriptions, want %d", c.topic, got, c.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				dst = tr.Match(c.topic, dst[:0], c.prefer)
			}
		})
	}
	// Many routing goroutines at once: the read lock and the share-group
	// counters are the shared state.
	b.Run("cmd-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			dst := make([]Subscription, 0, 128)
			for pb.Next() {
				dst = tr.Match("devices/1234/cmd/reboot", dst[:0], online)
			}
		})
	})
}

// BenchmarkAdd measures inserting new subscriptions into a 100k trie, the
// cost of a SUBSCRIBE during a connect storm; the subscriptions are removed
// again outside the timer.
func BenchmarkAdd(b *testing.B) {
	tr := iotTrie()
	const batch = 10000
	subs := make([]Subscription, batch)
	for i := range subs {
		id := strconv.Itoa(100000 + i)
		subs[i] = Subscription{ClientID: "dev-" + id, Filter: "devices/" + id + "/cmd/#", QoS: 1}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tr.Add(subs[i])
		i++
		if i == batch {
			b.StopTimer()
			for _, s := range subs {
				tr.RemoveClient(s.ClientID)
			}
			i = 0
			b.StartTimer()
		}
	}
}

// BenchmarkAddRemoveClient measures a device session coming and going: one
// Add of its command filter and one RemoveClient.
func BenchmarkAddRemoveClient(b *testing.B) {
	tr := iotTrie()
	b.ReportAllocs()
	for b.Loop() {
		tr.Add(Subscription{ClientID: "dev-new", Filter: "devices/new/cmd/#", QoS: 1})
		tr.RemoveClient("dev-new")
	}
}

// BenchmarkRetainedMatch matches filters against 100,000 retained topics
// (10,000 sensors x 10 metrics).
func BenchmarkRetainedMatch(b *testing.B) {
	r := NewRetained[int]()
	metrics := []string{"temp", "hum", "pressure", "co2", "battery", "rssi", "lux", "noise", "pm25", "status"}
	for i := range 10000 {
		for j, m := range metrics {
			r.Set("sensors/"+strconv.Itoa(i)+"/"+m, j)
		}
	}
	cases := []struct {
		name, filter string
		want         int
	}{
		{"exact", "sensors/1234/temp", 1},
		{"one-sensor", "sensors/1234/+", 10},
		{"one-sensor-hash", "sensors/1234/#", 10},
		{"one-metric", "sensors/+/temp", 10000},
		{"miss", "actuators/+/temp", 0},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			n := 0
			count := func(string, int) bool { n++; return true }
			r.Match(c.filter, count)
			if n != c.want {
				b.Fatalf("Match(%q) = %d, want %d", c.filter, n, c.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				r.Match(c.filter, count)
			}
		})
	}
}

// BenchmarkRetainedSet measures replacing the retained value of an existing
// topic, the common case for devices that publish retained state.
func BenchmarkRetainedSet(b *testing.B) {
	r := NewRetained[int]()
	for i := range 10000 {
		r.Set("sensors/"+strconv.Itoa(i)+"/temp", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Set("sensors/1234/temp", 1)
	}
}
