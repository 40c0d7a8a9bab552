package auth

import (
	"errors"
	"fmt"
	"testing"

	"moat/internal/config"
)

func allow(action, topic string) config.ACLRule {
	return config.ACLRule{Permission: "allow", Action: action, Topic: topic}
}

func deny(action, topic string) config.ACLRule {
	return config.ACLRule{Permission: "deny", Action: action, Topic: topic}
}

func with(r config.ACLRule, f func(*config.ACLRule)) config.ACLRule {
	f(&r)
	return r
}

var (
	alice = &Principal{ID: "alice", Method: MethodPassword, Username: "alice"}
	bob   = &Principal{ID: "bob", Method: MethodPassword, Username: "bob"}
	anon  = &Principal{Method: MethodAnonymous}
	// A certificate device that also presented an MQTT username it was
	// not proven to own.
	cam = &Principal{ID: "cam-3", Method: MethodCert, Username: "admin"}
)

func mustACL(t *testing.T, def bool, rules ...config.ACLRule) *ACL {
	t.Helper()
	a, err := NewACL(rules, def)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

type check struct {
	op       string // pub, sub, recv
	p        *Principal
	clientID string
	topic    string
	want     bool
}

func run(t *testing.T, a Authorizer, checks []check) {
	t.Helper()
	for _, c := range checks {
		var got bool
		switch c.op {
		case "pub":
			got = a.CanPublish(c.p, c.clientID, c.topic)
		case "sub":
			got = a.CanSubscribe(c.p, c.clientID, c.topic)
		case "recv":
			got = a.CanReceive(c.p, c.clientID, c.topic)
		default:
			t.Fatalf("bad op %q", c.op)
		}
		if got != c.want {
			t.Errorf("%s(%v, client %q, %q) = %v, want %v", c.op, c.p, c.clientID, c.topic, got, c.want)
		}
	}
}

func TestACLDecisions(t *testing.T) {
	tests := []struct {
		name   string
		def    bool
		rules  []config.ACLRule
		checks []check
	}{
		{"no rules, default allow", true, nil, []check{
			{"pub", alice, "c", "a/b", true}, {"sub", alice, "c", "#", true}, {"recv", anon, "c", "$SYS/x", true},
		}},
		{"no rules, default deny", false, nil, []check{
			{"pub", alice, "c", "a/b", false}, {"sub", alice, "c", "a", false}, {"recv", alice, "c", "a", false},
		}},
		{"allow subtree, deny one topic", false, []config.ACLRule{allow("all", "a/#"), deny("all", "a/secret")}, []check{
			{"pub", alice, "c", "a/x", true},
			{"pub", alice, "c", "a", true},
			{"pub", alice, "c", "a/secret", false},
			{"pub", alice, "c", "a/secret/x", true}, // deny names exactly a/secret
			{"pub", alice, "c", "b", false},         // default
			{"recv", alice, "c", "a/secret", false},
			{"recv", alice, "c", "a/x", true},
			{"sub", alice, "c", "a/x", true},
			{"sub", alice, "c", "a/x/#", true},
			{"sub", alice, "c", "a/#", false},      // overlaps the deny
			{"sub", alice, "c", "a/+", false},      // overlaps the deny
			{"sub", alice, "c", "+/secret", false}, // overlaps the deny
			{"sub", alice, "c", "a/secret", false},
			{"sub", alice, "c", "+/x", false}, // not inside a/#: default deny
			{"sub", alice, "c", "#", false},
		}},
		{"default allow with a deny", true, []config.ACLRule{deny("all", "private/#")}, []check{
			{"pub", alice, "c", "x", true},
			{"pub", alice, "c", "private", false},
			{"pub", alice, "c", "private/x", false},
			{"sub", alice, "c", "x/#", true},
			{"sub", alice, "c", "#", false}, // conservative: overlaps private/#
			{"sub", alice, "c", "+", false}, // "+" matches "private"
			{"sub", alice, "c", "+/x", false},
		}},
		{"actions are separate", false, []config.ACLRule{allow("publish", "up/#"), allow("subscribe", "down/#"), deny("subscribe", "up/#"), deny("publish", "down/#")}, []check{
			{"pub", alice, "c", "up/1", true},
			{"recv", alice, "c", "up/1", false},
			{"sub", alice, "c", "up/1", false},
			{"pub", alice, "c", "down/1", false},
			{"sub", alice, "c", "down/#", true},
			{"recv", alice, "c", "down/1", true},
		}},
		{"templates", false, []config.ACLRule{allow("all", "users/%u/#"), allow("all", "clients/%c/#"), allow("all", "ids/%i"), allow("all", "mix/%u-%c/x")}, []check{
			{"pub", alice, "c1", "users/alice/x", true},
			{"pub", alice, "c1", "users/alice", true},
			{"pub", alice, "c1", "users/bob/x", false},
			{"pub", bob, "c1", "users/bob/x", true},
			{"pub", alice, "c1", "clients/c1/x", true},
			{"pub", alice, "c1", "clients/c2/x", false},
			{"pub", alice, "c1", "ids/alice", true},
			{"pub", alice, "c1", "mix/alice-c1/x", true},
			{"pub", alice, "c1", "mix/alice-c2/x", false},
			{"pub", alice, "c1", "users/%u/x", false}, // the literal text is not the template
			{"sub", alice, "c1", "users/alice/#", true},
			{"sub", alice, "c1", "users/+/#", false},
			{"sub", alice, "c1", "users/#", false},
		}},
		{"%i is the proven identity, %u the presented name", false, []config.ACLRule{allow("all", "id/%i/#"), allow("all", "name/%u/#")}, []check{
			{"pub", cam, "c", "id/cam-3/x", true},
			{"pub", cam, "c", "id/admin/x", false},
			{"pub", cam, "c", "name/admin/x", true}, // %u is whatever the client presented
		}},
		{"wildcard injection cannot widen an allow", false, []config.ACLRule{allow("all", "users/%u/#"), allow("all", "clients/%c"), allow("all", "%c/x")}, []check{
			{"pub", &Principal{ID: "#", Method: MethodPassword, Username: "#"}, "c", "users/bob/x", false},
			{"sub", &Principal{ID: "#", Method: MethodPassword, Username: "#"}, "c", "users/#", false},
			{"sub", &Principal{ID: "+", Method: MethodPassword, Username: "+"}, "c", "users/+/x", false},
			{"pub", &Principal{ID: "a/b", Method: MethodPassword, Username: "a/b"}, "c", "users/a/b/x", false},
			{"pub", &Principal{ID: "a\x00", Method: MethodPassword, Username: "a\x00"}, "c", "users/a\x00", false},
			{"pub", alice, "+", "clients/anything", false},
			{"sub", alice, "#", "clients/#", false},
			{"pub", alice, "a/b", "clients/a/b", false},
			{"pub", anon, "c", "users//x", false}, // empty username
			{"pub", alice, "", "clients/", false}, // empty client id
			{"recv", alice, "$SYS", "$SYS/x", false},
			{"sub", alice, "$SYS", "$SYS/x", false},
			{"pub", alice, "ok", "ok/x", true},
		}},
		{"deny with an unsafe value denies the subtree", true, []config.ACLRule{deny("all", "devices/%c/secret"), deny("publish", "%u/#")}, []check{
			{"pub", alice, "dev1", "devices/dev1/secret", false},
			{"pub", alice, "dev1", "devices/dev2/secret", true},
			{"pub", alice, "a/b", "devices/a/b/secret", false},
			{"pub", alice, "a/b", "devices/x/y", false}, // devices/# for this client
			{"pub", alice, "#", "devices/q", false},
			{"sub", alice, "+", "devices/+/secret", false},
			{"pub", anon, "c", "anything", false}, // "%u/#" with no username: "#"
			{"pub", anon, "c", "$SYS/x", false},   // ... including $ topics
			{"recv", anon, "c", "anything", true}, // the second rule is publish only
			{"pub", alice, "c", "alice/x", false},
			{"pub", alice, "c", "bob/x", true},
		}},
		{"method selector", false, []config.ACLRule{
			with(allow("all", "#"), func(r *config.ACLRule) { r.Method = "password" }),
			with(allow("subscribe", "public/#"), func(r *config.ACLRule) { r.Method = "anonymous" }),
			with(deny("publish", "#"), func(r *config.ACLRule) { r.Method = "cert" }),
		}, []check{
			{"pub", alice, "c", "x", true},
			{"pub", anon, "c", "x", false},
			{"sub", anon, "c", "public/#", true},
			{"sub", anon, "c", "x", false},
			{"pub", anon, "c", "public/x", false},
			{"pub", cam, "c", "x", false},
			{"recv", cam, "c", "x", false}, // default deny, no allow for cert
			{"pub", nil, "c", "x", false},  // nil is anonymous
			{"sub", nil, "c", "public/x", true},
		}},
		{"username selector: allow needs the identity, deny takes the claim", false, []config.ACLRule{
			with(allow("all", "admin/#"), func(r *config.ACLRule) { r.Username = "admin" }),
			with(allow("all", "#"), func(r *config.ACLRule) { r.Method = "cert" }),
			with(deny("all", "cams/#"), func(r *config.ACLRule) { r.Username = "admin" }),
		}, []check{
			{"pub", &Principal{ID: "admin", Method: MethodPassword, Username: "admin"}, "c", "admin/x", true},
			{"pub", cam, "c", "admin/x", true}, // via the cert rule, not the admin rule
			{"pub", cam, "c", "cams/x", false}, // the deny applies to the claimed name
			{"pub", &Principal{ID: "cam-4", Method: MethodPassword, Username: "cam-4"}, "c", "admin/x", false},
		}},
		{"client_id selector", false, []config.ACLRule{
			with(allow("all", "#"), func(r *config.ACLRule) { r.ClientID = "gw" }),
			with(deny("publish", "ctl/#"), func(r *config.ACLRule) { r.ClientID = "gw" }),
		}, []check{
			{"pub", alice, "gw", "x", true},
			{"pub", alice, "gw", "ctl/x", false},
			{"pub", alice, "gw2", "x", false},
			{"recv", alice, "gw", "ctl/x", true},
		}},
		{"$ topics: allow # does not grant them, deny # does deny them", false, []config.ACLRule{allow("all", "#"), allow("subscribe", "$SYS/broker/#")}, []check{
			{"pub", alice, "c", "x", true},
			{"pub", alice, "c", "$SYS/x", false},
			{"recv", alice, "c", "$SYS/x", false},
			{"sub", alice, "c", "$SYS/#", false},
			{"sub", alice, "c", "$SYS/broker/#", true},
			{"recv", alice, "c", "$SYS/broker/load", true},
			{"sub", alice, "c", "#", true},
			{"sub", alice, "c", "+/x", true},
		}},
		{"deny # covers $SYS", true, []config.ACLRule{deny("all", "#"), deny("all", "+/secret")}, []check{
			{"pub", alice, "c", "$SYS/x", false},
			{"recv", alice, "c", "$SYS/x", false},
			{"sub", alice, "c", "$SYS/#", false},
		}},
		{"deny +/secret covers $x/secret", true, []config.ACLRule{deny("all", "+/secret")}, []check{
			{"pub", alice, "c", "$x/secret", false},
			{"pub", alice, "c", "$x/public", true},
			{"sub", alice, "c", "$x/secret", false},
		}},
		{"deny $SYS/# does not stop #, which never receives $SYS", true, []config.ACLRule{deny("all", "$SYS/#")}, []check{
			{"sub", alice, "c", "#", true},
			{"sub", alice, "c", "$SYS/x", false},
			{"recv", alice, "c", "$SYS/x", false},
			{"recv", alice, "c", "x", true},
		}},
		{"subset needs one rule", false, []config.ACLRule{allow("subscribe", "a/b/#"), allow("subscribe", "a/c/#")}, []check{
			{"sub", alice, "c", "a/b/#", true},
			{"sub", alice, "c", "a/+/#", false},
			{"recv", alice, "c", "a/c/x", true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, mustACL(t, tt.def, tt.rules...), tt.checks)
		})
	}
}

// TestDenyWinsEverywhere: whatever the order of the rules, the default,
// the actions, the selectors and the filters, a deny rule that applies
// beats every allow rule.
func TestDenyWinsEverywhere(t *testing.T) {
	// Every selector here selects alice with client id "b".
	selectors := []func(*config.ACLRule){
		func(*config.ACLRule) {},
		func(r *config.ACLRule) { r.Username = "alice" },
		func(r *config.ACLRule) { r.ClientID = "b" },
		func(r *config.ACLRule) { r.Method = "password" },
	}
	allowTopics := []string{"#", "a/#", "a/b", "a/+", "+/b", "+/+", "a/%c", "%u/#", "x"}
	denyTopics := []string{"#", "a/#", "a/b", "a/+", "+/b", "+/+", "a/%c", "+/%c", "a/%c/#"}
	actions := []string{"all", "publish", "subscribe"}
	covers := func(action, op string) bool {
		return action == "all" || (action == "publish") == (op == "pub")
	}
	n := 0
	for _, def := range []bool{true, false} {
		for _, denyFirst := range []bool{true, false} {
			for _, aa := range actions {
				for _, da := range actions {
					for si, asel := range selectors {
						for sj, dsel := range selectors {
							for _, at := range allowTopics {
								for _, dt := range denyTopics {
									ar := with(allow(aa, at), asel)
									dr := with(deny(da, dt), dsel)
									rules := []config.ACLRule{ar, dr}
									if denyFirst {
										rules = []config.ACLRule{dr, ar}
									}
									a := mustACL(t, def, rules...)
									for _, op := range []string{"pub", "recv", "sub"} {
										if !covers(da, op) {
											continue
										}
										var got bool
										switch op {
										case "pub":
											got = a.CanPublish(alice, "b", "a/b")
										case "recv":
											got = a.CanReceive(alice, "b", "a/b")
										case "sub":
											got = a.CanSubscribe(alice, "b", "a/b")
										}
										n++
										if got {
											t.Fatalf("def=%v denyFirst=%v allow(%s %q sel%d) deny(%s %q sel%d): %s a/b allowed",
												def, denyFirst, aa, at, si, da, dt, sj, op)
										}
									}
								}
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d combinations", n)
}

func TestNewACLErrors(t *testing.T) {
	for _, r := range []config.ACLRule{
		{Permission: "permit", Topic: "a"},
		{Permission: "", Topic: "a"},
		{Permission: "allow", Action: "read", Topic: "a"},
		{Permission: "allow", Topic: ""},
		{Permission: "allow", Topic: "a/#/b"},
		{Permission: "allow", Topic: "a+"},
		{Permission: "allow", Topic: "$share/g/a"},
		{Permission: "allow", Topic: "a\x00"},
		{Permission: "allow", Topic: "a", Method: "kerberos"},
	} {
		if _, err := NewACL([]config.ACLRule{r}, false); !errors.Is(err, ErrInvalidRule) {
			t.Errorf("%+v: got %v, want ErrInvalidRule", r, err)
		}
	}
}

func TestAllOf(t *testing.T) {
	denyA := mustACL(t, true, deny("all", "a/#"))
	denyB := mustACL(t, true, deny("all", "b/#"))
	all := AllOf(AllowAll(), denyA, denyB)
	run(t, all, []check{
		{"pub", alice, "c", "a/x", false},
		{"pub", alice, "c", "b/x", false},
		{"pub", alice, "c", "c/x", true},
		{"sub", alice, "c", "b/#", false},
		{"sub", alice, "c", "c/#", true},
		{"recv", alice, "c", "a/x", false},
		{"recv", alice, "c", "c/x", true},
	})
	run(t, AllOf(), []check{{"pub", alice, "c", "x", false}, {"sub", alice, "c", "x", false}, {"recv", alice, "c", "x", false}})
	run(t, AllowAll(), []check{{"pub", nil, "", "$SYS/x", true}, {"sub", nil, "", "#", true}, {"recv", nil, "", "x", true}})
	defer func() {
		if recover() == nil {
			t.Error("AllOf(nil) did not panic")
		}
	}()
	AllOf(AllowAll(), nil)
}

func TestTemplateExpansion(t *testing.T) {
	for _, tt := range []struct {
		allow    bool
		filter   string
		p        *Principal
		clientID string
		want     string
		ok       bool
	}{
		{true, "a/%u/b", alice, "c", "a/alice/b", true},
		{true, "%c/%i", alice, "c", "c/alice", true},
		{true, "100%/x%y/%", alice, "c", "100%/x%y/%", true},
		{true, "a/%u/b", anon, "c", "", false},
		{false, "a/%u/b", anon, "c", "a/#", true},
		{false, "a/x%c/b", alice, "#", "a/#", true},
		{false, "%c/b", alice, "", "#", true},
		{false, "a/%i/%c", alice, "+", "a/alice/#", true},
		{true, "%c/x", alice, "$SYS", "", false},
		{true, "x/%c", alice, "$SYS", "x/$SYS", true},
	} {
		r := rule{allow: tt.allow, filter: tt.filter, tmpl: hasTemplate(tt.filter)}
		got, ok := r.expand(tt.p, tt.clientID)
		if got != tt.want || ok != tt.ok {
			t.Errorf("expand(allow=%v, %q, %v, %q) = %q, %v; want %q, %v", tt.allow, tt.filter, tt.p, tt.clientID, got, ok, tt.want, tt.ok)
		}
	}
}

func TestPrincipal(t *testing.T) {
	for _, tt := range []struct {
		p    *Principal
		want string
	}{
		{nil, "<nil>"},
		{anon, "anonymous"},
		{&Principal{}, "anonymous"},
		{alice, "password:alice"},
		{cam, "cert:cam-3"},
		{&Principal{ID: "a b\n", Method: MethodPSK}, `psk:"a b\n"`},
	} {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
	if !alice.Equal(&Principal{ID: "alice", Method: MethodPassword, Username: "other"}) {
		t.Error("same id and method must be equal")
	}
	if alice.Equal(&Principal{ID: "alice", Method: MethodCert}) || alice.Equal(bob) || alice.Equal(nil) {
		t.Error("different identities equal")
	}
	var n *Principal
	if !n.Equal(nil) {
		t.Error("nil != nil")
	}
	for _, m := range []Method{MethodAnonymous, MethodPassword, MethodCert, MethodPSK, MethodPinnedKey, MethodProxyTLS} {
		if !m.Valid() {
			t.Errorf("%s not valid", m)
		}
	}
	if Method("x").Valid() {
		t.Error("x valid")
	}
}

func BenchmarkACL(b *testing.B) {
	var rules []config.ACLRule
	for i := range 50 {
		rules = append(rules, allow("all", fmt.Sprintf("site/%d/+/data/#", i)))
	}
	rules = append(rules, allow("all", "devices/%i/#"), deny("publish", "devices/+/firmware/#"))
	a, err := NewACL(rules, false)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("static rules", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			a.CanReceive(alice, "c", "site/49/x/data/temp")
		}
	})
	b.Run("template rule", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			a.CanPublish(alice, "c", "devices/alice/temp")
		}
	})
	empty, _ := NewACL(nil, true)
	b.Run("no rules", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			empty.CanPublish(alice, "c", "devices/alice/temp")
		}
	})
}

// TestExampleConfig checks what the documented example promises.
func TestExampleConfig(t *testing.T) {
	c, err := config.Load("../config/testdata/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	a := mustACL(t, c.Auth.ACLDefault == "allow", c.ACL...)
	dev := &Principal{ID: "sensor-17", Method: MethodPassword, Username: "sensor-17"}
	dash := &Principal{ID: "dashboard", Method: MethodPassword, Username: "dashboard"}
	run(t, a, []check{
		{"pub", dev, "s17", "devices/sensor-17/temp", true},
		{"pub", dev, "s17", "devices/other/temp", false},
		{"pub", dev, "s17", "devices/sensor-17/firmware/v2", false},
		{"sub", dev, "s17", "commands/sensor-17/#", true},
		{"sub", dev, "s17", "commands/#", false},
		{"sub", dash, "d", "devices/#", true},
		{"sub", dash, "d", "$SYS/#", true},
		{"pub", dash, "d", "devices/x", false},
		{"pub", dev, "gateway-2019", "devices/sensor-17/temp", false},
		{"pub", anon, "a", "x", false},
		{"sub", anon, "a", "#", true},
		{"sub", anon, "a", "$SYS/#", false},
	})
	if testing.Short() {
		return // NewStatic below makes a 64 MiB argon2id dummy hash
	}
	if _, err := NewStatic(c.Auth.Users); err != nil {
		t.Fatal(err)
	}
}
