// Package auth owns the answer to "who is this connection and what may it
// do": the Principal, the authenticators that produce it, password hashing,
// and the ACL that authorizes publish, subscribe and delivery.
//
// # Authentication
//
// An Authenticator turns a Request (listener, client id, credentials) into a
// Principal or an error wrapping ErrBadCredentials or ErrNotAuthorized. The
// static authenticator (NewStatic) checks usernames and passwords against
// argon2id or bcrypt hashes from the configuration; see Static for its
// rules, its verification cache and its concurrency limit. Secrets are never
// logged and never appear in error strings.
//
// # Authorization: the ACL (deny wins)
//
// An ACL is a list of rules (config.ACLRule) and a default. Each rule has a
// permission (allow or deny), an action (publish, subscribe or all), a topic
// filter, and optional selectors: username, client_id, method. The order of
// the rules does not matter.
//
// A rule applies to a client when every selector it has matches:
//   - method: the Principal's Method.
//   - client_id: the MQTT client identifier.
//   - username: for allow rules, the Principal's ID (the proven identity:
//     the username for password logins). For deny rules, the Principal's ID
//     or the MQTT username it presented: a deny rule may match on a claim,
//     an allow rule only on proof.
//
// Publish (CanPublish) and delivery (CanReceive) check a topic name against
// the rules of the publish, respectively subscribe, action:
//  1. any applicable deny rule whose filter matches the name: denied;
//  2. else any applicable allow rule whose filter matches: allowed;
//  3. else the default.
//
// Subscribe (CanSubscribe) checks a topic filter, which stands for many
// names:
//  1. any applicable deny rule whose filter overlaps the requested filter
//     (some name matches both): denied. This is conservative: subscribing
//     to "#" is refused if anything at all is denied for reading; subscribe
//     to the allowed part instead;
//  2. else, if the requested filter is a subset of one applicable allow
//     rule's filter (every name it matches, that rule matches): allowed.
//     Coverage by the union of several allow rules does not count;
//  3. else the default.
//
// A subscription that was allowed is not a blanket grant: the broker calls
// CanReceive for each message it delivers, so a message on a name denied to
// the subscriber is not delivered even through an allowed wildcard
// subscription (and rules that change on reload take effect on the next
// message). Shared subscriptions are the caller's business: it passes the
// filter after "$share/<group>/".
//
// # Templates
//
// A rule's topic may contain %u (the Principal's Username, i.e. the MQTT
// username presented), %c (the client id) and %i (the Principal's ID). For
// password logins %u and %i are the same; for other methods prefer %i, the
// proven identity. Any other '%' is an ordinary character.
//
// A substituted value that is empty, or contains '+', '#', '/' or NUL, or
// starts with '$' where it would begin the topic, would change the shape of
// the filter: a client id "#" must not turn "devices/%c/#" into
// "devices/#/#", and a client id "$SYS" must not turn "%c/#" into "$SYS/#".
// So:
//   - an allow rule with such a value matches nothing (no access gained);
//   - a deny rule with such a value denies the whole subtree from the level
//     of the first bad value: "devices/%c/secret" with client id "a/b"
//     denies "devices/#". A deny must never be escaped by choosing an odd
//     name, and a wider deny is the safe failure.
//
// # Topics starting with '$'
//
// MQTT says a filter starting with a wildcard does not match names starting
// with '$' ($SYS/...). Allow rules follow that: an allow rule "#" does not
// grant $SYS; grant it explicitly with "$SYS/#". Deny rules ignore the
// exception: a deny rule "#" also denies $SYS. Whether $SYS is readable by
// default is therefore the default's business (acl_default), or a rule's.
//
// # Composition
//
// AllOf combines authorizers so that every one must allow (deny wins): a
// permissive authorizer can never override a restrictive one. AllowAll
// exists for explicit use and is never installed implicitly.
package auth
