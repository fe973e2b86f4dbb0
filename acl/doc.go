// Package acl decides which MQTT topics a client may publish and subscribe
// to, from rules in the plugin's configuration and from its token's claims.
//
// Three options feed it, all optional:
//
//	acl_rule ALLOW_OR_DENY ACTION TOPIC [when CLAIM[=VALUE]]   (repeatable)
//	acl_topics_claim PATH   a claim listing topic filters, each allowing publish and subscribe
//	acl_claim PATH          a claim holding an ACL in EMQX's format (see emqx.go)
//
// # Rules
//
// ALLOW_OR_DENY is "allow" or "deny"; ACTION is "publish", "subscribe" or
// "all". TOPIC is a topic filter in which %u stands for the MQTT username
// (after any username replacement), %c for the client id, and the template
// package's placeholders (%%oidc-username%%, %%oidc-email%%, %%oidc-sub%%,
// %%zitadel-role%%, %%claim:PATH%%) for claims. Fields are separated by white
// space, so a TOPIC cannot contain any.
//
// "when CLAIM" keeps the rule for sessions whose claim is set: true, a
// non-zero number, a non-empty string, array or object. "when CLAIM=VALUE"
// keeps it when the claim is VALUE (a string, a number as written, true or
// false), an array holding VALUE, or an object with the key VALUE; so
// "when urn:zitadel:iam:org:project:roles=admin" selects ZITADEL admins. CLAIM
// is a path as in %%claim:PATH%%: keys joined by ".", with "\" escaping a
// literal ".", "=" or gjson character in a key; ":" and "/" need no escape.
//
// "scope" is the one CLAIM read differently: "when scope=VALUE" holds when the
// token grants the scope VALUE, whether its scopes come as a space-separated
// "scope" string, an "scp" array or an "scp" string, in either claim; "when
// scope" holds when it grants any. Identity providers differ in this, and Ory
// Hydra differs between the introspection answer and the JWT of one token, so
// one rule serves every verification mode. "scp" is refused as a CLAIM: as a
// plain claim, a space-separated scp would match only a token with one scope.
//
// # Placeholders
//
// A value substituted into a topic must fill (part of) one level safely: it
// must not be empty, contain "/", "+", "#" or a control character, or start
// with "$". Otherwise "allow all tenants/%u/#" would let the username
// "alice/evil" into alice's tree, and a client id "#" would match everything.
// A rule or claim entry whose value is unsafe or missing is not an error for
// the session: an allow is dropped, since anything it granted would be a
// guess, and a deny has the affected level widened to "+", so that a deny
// never disappears because a client picked an odd client id.
//
// Topic filters in claims are used as written, wildcards included: granting
// wildcards is their point. EMQX's ${username} and ${clientid} placeholders
// and its "eq " prefix work in both claims, with the same safe substitution;
// %u and %c do not (EMQX 4 used them; EMQX 5 does not). Invalid filters
// ("a/#/b", "a+", "", NUL) are ignored.
//
// # Decisions
//
// A matching deny beats any allow, across all three sources and whatever the
// order.
//
// "publish" governs PUBLISH (access Write, on the concrete topic).
// "subscribe" governs SUBSCRIBE (on the requested filter) and the delivery of
// each message to the subscriber (access Read, on the concrete topic, since
// Mosquitto checks every delivery). "all" is both.
//
// A SUBSCRIBE is allowed only when an allow filter covers the requested
// filter, that is matches every topic it can match: "users/alice/#" does not
// grant "users/#". It is refused when a deny filter covers it in the same
// way: "deny subscribe secret/#" refuses "secret/#", "secret/x" and
// "secret/+/y", since such a subscription could never receive anything. A
// deny that only overlaps the requested filter does not refuse it: "#" and
// "+/x" are not refused for that deny, and their deliveries of secret/...
// topics are denied one by one, because Mosquitto checks every delivery
// (retained messages included) with access Read. Refusing partially
// overlapping subscriptions added no safety and broke the common pattern of
// an allowed tree with a denied subtree: with "allow all users/%u/#" and
// "deny all users/%u/secret/#", alice could not subscribe to
// "users/alice/#". A "$share/GROUP/" prefix is removed before matching.
//
// UNSUBSCRIBE is always allowed.
//
// Filters follow MQTT 5.0 section 4.7: "+" and "#" never match a first level
// starting with "$", so "#" does not reach $SYS.
//
// # Cost
//
// Rules are parsed once by NewPolicy. Policy.Compile renders them and reads
// the claims once per session, at CONNECT. Grants.Check, which runs for every
// message on the broker's only thread, does no I/O, takes no lock and
// allocates nothing.
package acl
