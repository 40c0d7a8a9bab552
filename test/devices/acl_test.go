package devices

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"moat/internal/config"
	"moat/internal/registry"
)

// TestDeviceACLDenyWins: a device's deny rule wins over its own allow rule
// that covers the same subtree, a configuration deny wins over a device
// allow, one device's rules do not leak to another, and rule changes apply
// to a live session at the next publish and delivery.
func TestDeviceACLDenyWins(t *testing.T) {
	t.Parallel()
	// The configuration denies devices/+/cfgdeny/# to password logins (not
	// to the anonymous watcher).
	e := start(t, withACL(config.ACLRule{Permission: config.PermissionDeny, Action: config.ActionAll, Topic: "devices/+/cfgdeny/#", Method: "password"}))
	rules := []registry.Rule{
		{Permission: registry.PermissionAllow, Action: registry.ActionPublish, Topic: "devices/%i/#"},
		{Permission: registry.PermissionDeny, Action: registry.ActionPublish, Topic: "devices/%i/secret/#"},
		{Permission: registry.PermissionAllow, Action: registry.ActionSubscribe, Topic: "devices/%i/#"},
		{Permission: registry.PermissionDeny, Action: registry.ActionSubscribe, Topic: "devices/%i/secret/#"},
	}
	e.add(registry.NewDevice{ID: "acl-a", ACL: rules, Credentials: []registry.NewCredential{{Kind: registry.KindPassword, PasswordHash: cheapHash("acl-a-password")}}})
	e.add(registry.NewDevice{ID: "acl-b", ACL: rules, Credentials: []registry.NewCredential{{Kind: registry.KindPassword, PasswordHash: cheapHash("acl-b-password")}}})
	login := func(id string) *client {
		return mustConnect(t, dialTCP(t, e.tcp), &paho.Connect{ClientID: id + "-c", Username: id, UsernameFlag: true, Password: []byte(id + "-password"), PasswordFlag: true})
	}
	a, b := login("acl-a"), login("acl-b")
	watch := e.subscriber("acl-watch", "devices/#")

	// Publish: each refusal is followed by an allowed sentinel, and the
	// watcher's next message must be that sentinel.
	for _, tc := range []struct {
		name, topic string
	}{
		{"device deny beats device allow", "devices/acl-a/secret/x"},
		{"device deny, deeper", "devices/acl-a/secret/x/y"},
		{"configuration deny beats device allow", "devices/acl-a/cfgdeny/x"},
		{"another device's topic", "devices/acl-b/x"},
	} {
		if rc := a.publish(tc.topic, "forbidden"); rc != rcNotAuthorized {
			t.Fatalf("%s: publish %s: 0x%02x, want 0x87", tc.name, tc.topic, rc)
		}
		if rc := a.publish("devices/acl-a/ok", tc.name); rc >= 0x80 {
			t.Fatalf("%s: sentinel publish: 0x%02x", tc.name, rc)
		}
		watch.recv("devices/acl-a/ok", tc.name)
	}
	// acl-b's identical rules apply to acl-b's own subtree (%i).
	if rc := b.publish("devices/acl-b/secret/x", "forbidden"); rc != rcNotAuthorized {
		t.Fatalf("acl-b: publish to its secret subtree: 0x%02x", rc)
	}
	if rc := b.publish("devices/acl-b/ok", "b-ok"); rc >= 0x80 {
		t.Fatalf("acl-b: publish to its own topic: 0x%02x", rc)
	}
	watch.recv("devices/acl-b/ok", "b-ok")

	// Subscribe: a filter that overlaps a denied subtree is refused even
	// though an allow rule covers it.
	for _, f := range []string{"devices/acl-a/secret/#", "devices/acl-a/#", "devices/acl-a/+/x", "devices/acl-a/cfgdeny/#", "devices/acl-b/inbox/#"} {
		if rc := a.subscribe(f); rc != rcNotAuthorized {
			t.Fatalf("subscribe %s: 0x%02x, want 0x87", f, rc)
		}
	}
	a.mustSubscribe("devices/acl-a/inbox/#")

	// A live rule change: deny part of the inbox for delivery and a topic
	// for publishing. The session is not closed; the next delivery and
	// publish obey the new rules.
	narrowed := append(append([]registry.Rule(nil), rules...),
		registry.Rule{Permission: registry.PermissionDeny, Action: registry.ActionSubscribe, Topic: "devices/%i/inbox/private/#"},
		registry.Rule{Permission: registry.PermissionDeny, Action: registry.ActionPublish, Topic: "devices/%i/ok"})
	if _, err := e.reg.Update("acl-a", registry.DeviceUpdate{ACL: &narrowed}); err != nil {
		t.Fatal(err)
	}
	if rc := watch.publish("devices/acl-a/inbox/private/x", "forbidden"); rc >= 0x80 {
		t.Fatalf("watcher publish: 0x%02x", rc)
	}
	if rc := watch.publish("devices/acl-a/inbox/public", "sentinel"); rc >= 0x80 {
		t.Fatalf("watcher publish: 0x%02x", rc)
	}
	a.recv("devices/acl-a/inbox/public", "sentinel")
	// The watcher sees its own two messages (it subscribes to devices/#).
	watch.recv("devices/acl-a/inbox/private/x", "forbidden")
	watch.recv("devices/acl-a/inbox/public", "sentinel")
	if rc := a.publish("devices/acl-a/ok", "forbidden"); rc != rcNotAuthorized {
		t.Fatalf("publish after the rule change: 0x%02x, want 0x87", rc)
	}
	if rc := a.publish("devices/acl-a/other", "after-update"); rc >= 0x80 {
		t.Fatalf("sentinel publish after the rule change: 0x%02x", rc)
	}
	watch.recv("devices/acl-a/other", "after-update")
	select {
	case d := <-a.disc:
		t.Fatalf("a rule change closed the session: 0x%02x", d.ReasonCode)
	default:
	}
}
