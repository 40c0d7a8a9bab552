package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// $SYS topics: published by the broker, retained, and kept apart from
// ordinary wildcard subscriptions.

// sysTopics are the $SYS topics moat publishes as mosquitto does.
var sysTopics = []string{
	"$SYS/broker/uptime",
	"$SYS/broker/version",
	"$SYS/broker/clients/connected",
	"$SYS/broker/messages/received",
	"$SYS/broker/messages/sent",
	"$SYS/broker/bytes/received",
	"$SYS/broker/bytes/sent",
}

// sysUpdateTimeout bounds the wait for a periodic $SYS update.
const sysUpdateTimeout = 15 * time.Second

func TestSysTopicsPublished(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	c := connectV5(t, b, &paho.Connect{ClientID: uniqueID("sys"), CleanStart: true})
	for _, topic := range sysTopics {
		c.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 0})
	}
	seen := map[string]bool{}
	for len(seen) < len(sysTopics) {
		select {
		case m := <-c.msgs:
			if len(m.Payload) == 0 {
				t.Errorf("%s: empty payload", m.Topic)
			}
			if !seen[m.Topic] && !m.Retain {
				t.Errorf("%s: first delivery not flagged retained", m.Topic)
			}
			seen[m.Topic] = true
		case <-time.After(sysUpdateTimeout):
			var missing []string
			for _, s := range sysTopics {
				if !seen[s] {
					missing = append(missing, s)
				}
			}
			t.Fatalf("no message on %v", missing)
		}
	}
}

func TestSysNotMatchedByWildcards(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	all := connectV5(t, b, &paho.Connect{ClientID: uniqueID("all"), CleanStart: true})
	all.subscribe(
		paho.SubscribeOptions{Topic: "#", QoS: 1},
		paho.SubscribeOptions{Topic: "+/broker/uptime", QoS: 1},
		paho.SubscribeOptions{Topic: "+/+/+", QoS: 1},
	)

	// $SYS/broker/uptime exists (retained) and is refreshed periodically.
	sys := connectV5(t, b, &paho.Connect{ClientID: uniqueID("sys"), CleanStart: true})
	sys.subscribe(paho.SubscribeOptions{Topic: "$SYS/broker/uptime", QoS: 0})
	first := sys.recv()
	if first.Topic != "$SYS/broker/uptime" || !first.Retain {
		t.Fatalf("$SYS/broker/uptime: got %q retain=%v", first.Topic, first.Retain)
	}
	select {
	case m := <-sys.msgs:
		if m.Topic != "$SYS/broker/uptime" {
			t.Fatalf("unexpected %q", m.Topic)
		}
	case <-time.After(sysUpdateTimeout):
		t.Fatalf("no periodic update of $SYS/broker/uptime within %v", sysUpdateTimeout)
	}

	// The update above was routed before this sentinel is published.
	sentinel := uniqueTopic("sys")
	pub := connectV5(t, b, &paho.Connect{ClientID: uniqueID("pub"), CleanStart: true})
	pub.pub(sentinel, 1, false, "sentinel")
	for {
		m := all.recv()
		if strings.HasPrefix(m.Topic, "$") {
			t.Fatalf("wildcard subscription at the first level matched %q", m.Topic)
		}
		if m.Topic == sentinel {
			break
		}
	}
}
