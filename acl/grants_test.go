package acl

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// req is one request and the verdict it should get.
type req struct {
	access Access
	topic  string
	qos    byte
	retain bool
	want   Verdict
}

func (r req) String() string {
	return fmt.Sprintf("%v %q qos=%d retain=%v", r.access, r.topic, r.qos, r.retain)
}

func compile(t *testing.T, o Options, claims, username, clientID string) *Grants {
	t.Helper()
	p, err := NewPolicy(o)
	if err != nil {
		t.Fatalf("NewPolicy: %v", err)
	}
	g, err := p.Compile([]byte(claims), username, clientID)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return g
}

func checkAll(t *testing.T, g *Grants, reqs []req) {
	t.Helper()
	for _, r := range reqs {
		if got := g.Check(r.access, r.topic, r.qos, r.retain); got != r.want {
			t.Errorf("Check(%v) = %v, want %v", r, got, r.want)
		}
	}
}

func TestRules(t *testing.T) {
	g := compile(t, Options{Rules: []string{
		"allow publish up/%c",
		"allow subscribe down/%c/#",
		"allow all shared/#",
		"deny all shared/secret/#",
		"allow subscribe $SYS/broker/uptime",
	}}, `{}`, "alice", "dev1")
	checkAll(t, g, []req{
		{access: Write, topic: "up/dev1", want: Allow},
		{access: Write, topic: "up/dev2", want: NoMatch},
		{access: Read, topic: "up/dev1", want: NoMatch}, // publish only
		{access: Subscribe, topic: "up/dev1", want: NoMatch},
		{access: Subscribe, topic: "down/dev1/#", want: Allow},
		{access: Subscribe, topic: "down/dev1", want: Allow},
		{access: Subscribe, topic: "down/dev1/+/x", want: Allow},
		{access: Subscribe, topic: "down/#", want: NoMatch}, // not covered
		{access: Subscribe, topic: "down/+/cfg", want: NoMatch},
		{access: Read, topic: "down/dev1/cfg", want: Allow},
		{access: Write, topic: "down/dev1/cfg", want: NoMatch}, // subscribe only

		// Deny beats allow. It refuses the subscriptions it covers; those it
		// only overlaps are allowed, and their deliveries checked one by one.
		{access: Write, topic: "shared/x", want: Allow},
		{access: Write, topic: "shared/secret", want: Deny},
		{access: Write, topic: "shared/secret/a/b", want: Deny},
		{access: Read, topic: "shared/secret/a", want: Deny},
		{access: Read, topic: "shared/secret", want: Deny},
		{access: Read, topic: "shared/x", want: Allow},
		{access: Subscribe, topic: "shared/x/#", want: Allow},
		{access: Subscribe, topic: "shared/#", want: Allow},
		{access: Subscribe, topic: "shared/+", want: Allow},
		{access: Subscribe, topic: "shared/+/a", want: Allow},
		{access: Subscribe, topic: "#", want: NoMatch}, // overlaps the deny, not covered by an allow
		{access: Subscribe, topic: "+/x", want: NoMatch},
		{access: Subscribe, topic: "shared/secret", want: Deny},
		{access: Subscribe, topic: "shared/secret/#", want: Deny},
		{access: Subscribe, topic: "shared/secret/+/a", want: Deny},
		{access: Subscribe, topic: "shared/secret/a", want: Deny},

		// $SYS is only reached by filters naming it.
		{access: Subscribe, topic: "$SYS/broker/uptime", want: Allow},
		{access: Read, topic: "$SYS/broker/uptime", want: Allow},
		{access: Subscribe, topic: "$SYS/#", want: NoMatch},

		// Shared subscriptions are checked on their filter.
		{access: Subscribe, topic: "$share/g/down/dev1/#", want: Allow},
		{access: Subscribe, topic: "$share/g/shared/#", want: Allow},
		{access: Subscribe, topic: "$share/g/shared/secret/#", want: Deny},
		{access: Subscribe, topic: "$share/g/other", want: NoMatch},
		{access: Subscribe, topic: "$share/g", want: Deny},
		{access: Subscribe, topic: "$share/+/down/dev1", want: Deny},

		// Malformed requests.
		{access: Subscribe, topic: "down/dev1/#/x", want: Deny},
		{access: Write, topic: "", want: Deny},
		{access: Write, topic: "up/dev1", qos: 3, want: Deny},
		{access: Read | Write, topic: "up/dev1", want: Deny},
		{access: 0, topic: "up/dev1", want: Deny},

		// UNSUBSCRIBE is always allowed.
		{access: Unsubscribe, topic: "anything/#", want: Allow},
		{access: Unsubscribe, topic: "shared/secret", want: Allow},
	})
}

// TestAllowTreeDenySubtree is the common pattern that refusing every
// subscription a deny overlaps made unusable: a user's tree is allowed except
// for a subtree. The tree stays subscribable, shared or not; the deny refuses
// subscriptions inside the subtree and every delivery from it.
func TestAllowTreeDenySubtree(t *testing.T) {
	sessions := map[string]*Grants{
		"acl_rule": compile(t, Options{Rules: []string{
			"allow all users/%u/#",
			"deny all users/%u/secret/#",
		}}, `{}`, "alice", "c1"),
		"acl_claim": compile(t, Options{ACLClaim: "acl"}, `{"acl": [
			{"permission": "allow", "action": "all", "topic": "users/${username}/#"},
			{"permission": "deny", "action": "all", "topic": "users/${username}/secret/#"}
		]}`, "alice", "c1"),
	}
	for name, g := range sessions {
		t.Run(name, func(t *testing.T) {
			checkAll(t, g, []req{
				{access: Subscribe, topic: "users/alice/#", want: Allow},
				{access: Subscribe, topic: "$share/g/users/alice/#", want: Allow},
				{access: Subscribe, topic: "users/alice/+", want: Allow},
				{access: Subscribe, topic: "users/alice/+/x", want: Allow},
				{access: Subscribe, topic: "users/alice/secret/#", want: Deny},
				{access: Subscribe, topic: "users/alice/secret/x", want: Deny},
				{access: Subscribe, topic: "users/alice/secret", want: Deny}, // "#" matches its parent
				{access: Subscribe, topic: "$share/g/users/alice/secret/#", want: Deny},
				{access: Subscribe, topic: "users/#", want: NoMatch},
				{access: Read, topic: "users/alice/secret/x", want: Deny},
				{access: Read, topic: "users/alice/secret", want: Deny},
				{access: Read, topic: "users/alice/x", want: Allow},
				{access: Read, topic: "users/alice/secrets", want: Allow},
				{access: Write, topic: "users/alice/secret/x", want: Deny},
				{access: Write, topic: "users/alice/x", want: Allow},
			})
		})
	}
}

func TestNilGrants(t *testing.T) {
	var g *Grants
	checkAll(t, g, []req{
		{access: Write, topic: "a", want: Deny},
		{access: Read, topic: "a", want: Deny},
		{access: Subscribe, topic: "a", want: Deny},
		{access: Unsubscribe, topic: "a", want: Allow},
	})
}

func TestDisabledPolicyMatchesNothing(t *testing.T) {
	g := compile(t, Options{}, "", "alice", "c1")
	checkAll(t, g, []req{
		{access: Write, topic: "a", want: NoMatch},
		{access: Subscribe, topic: "#", want: NoMatch},
	})
}

// TestSafeSubstitution is the cross-tenant case: a value that does not fill
// exactly one level must not grant anything.
func TestSafeSubstitution(t *testing.T) {
	o := Options{Rules: []string{
		"allow all tenants/%u/#",
		"allow publish devices/%c/up",
		"allow all orgs/%%claim:org%%/#",
		"allow all mail/%%oidc-email%%",
	}}
	claims := func(org string) string {
		b, err := json.Marshal(map[string]string{"org": org, "email": "a@b"})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	bob := compile(t, o, claims("acme"), "bob", "bob-1")
	checkAll(t, bob, []req{
		{access: Write, topic: "tenants/bob/x", want: Allow},
		{access: Write, topic: "tenants/alice/x", want: NoMatch},
		{access: Subscribe, topic: "tenants/alice/#", want: NoMatch},
		{access: Subscribe, topic: "tenants/+/x", want: NoMatch},
		{access: Subscribe, topic: "tenants/#", want: NoMatch},
		{access: Write, topic: "devices/bob-1/up", want: Allow},
		{access: Write, topic: "orgs/acme/x", want: Allow},
		{access: Write, topic: "mail/a@b", want: Allow},
	})

	for _, tt := range []struct{ name, username, clientID, org string }{
		{"slash", "alice/evil", "a/b", "acme/evil"},
		{"plus", "+", "+", "+"},
		{"hash", "#", "#", "#"},
		{"empty", "", "", ""},
		{"dollar", "$SYS", "$c", "$x"},
		{"NUL", "alice\x00", "c\x00", "a\x00"},
		{"control", "alice\n", "c\x7f", "a\u0085"},
		{"bad UTF-8", "alice\xff", "c\xff", "a/\ufffd"}, // JSON cannot carry bad UTF-8
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := compile(t, o, claims(tt.org), tt.username, tt.clientID)
			// Only the email rule, which holds a safe value, survives.
			if n := len(g.publish.allow); n != 1 {
				t.Errorf("%d publish grants survived, want 1: %+v", n, g.publish.allow)
			}
			checkAll(t, g, []req{
				{access: Write, topic: "tenants/alice/evil/cmd", want: NoMatch},
				{access: Write, topic: "tenants/alice/x", want: NoMatch},
				{access: Subscribe, topic: "tenants/alice/#", want: NoMatch},
				{access: Write, topic: "devices/a/b/up", want: NoMatch},
				{access: Write, topic: "orgs/acme/evil/x", want: NoMatch},
				{access: Write, topic: "mail/a@b", want: Allow},
			})
		})
	}

	// A missing claim, or one without a text form, drops the rule too.
	for _, c := range []string{`{}`, `{"org": null}`, `{"org": ["a"]}`, `{"org": ""}`} {
		g := compile(t, Options{Rules: []string{"allow all orgs/%%claim:org%%/#"}}, c, "u", "c")
		if n := len(g.publish.allow) + len(g.subscribe.allow); n != 0 {
			t.Errorf("claims %s: %d grants, want none", c, n)
		}
	}
}

// TestDenyWidening checks that a deny whose placeholder has no safe value
// denies every value the placeholder could have taken, instead of vanishing.
func TestDenyWidening(t *testing.T) {
	o := Options{Rules: []string{
		"allow all devices/#",
		"deny publish devices/%c/config",
		"deny all blocked/%%claim:site%%-x/#",
		"allow all blocked/#",
	}}
	g := compile(t, o, `{}`, "u", "a/b")
	checkAll(t, g, []req{
		{access: Write, topic: "devices/a/b/config", want: Allow}, // 4 levels: not devices/+/config
		{access: Write, topic: "devices/a/config", want: Deny},
		{access: Write, topic: "devices/anyone/config", want: Deny},
		{access: Write, topic: "devices/a/state", want: Allow},
		{access: Write, topic: "blocked/s1-x/y", want: Deny},
		{access: Subscribe, topic: "blocked/any/#", want: Deny}, // the deny widened to blocked/+/#
		{access: Subscribe, topic: "blocked/#", want: Allow},    // it only overlaps blocked/#...
		{access: Read, topic: "blocked/s2-x/y", want: Deny},     // ...whose deliveries below it are denied
		{access: Read, topic: "blocked", want: Allow},
	})
	g = compile(t, o, `{"site": "s1"}`, "u", "dev1")
	checkAll(t, g, []req{
		{access: Write, topic: "devices/dev1/config", want: Deny},
		{access: Write, topic: "devices/dev2/config", want: Allow},
		{access: Write, topic: "blocked/s1-x/y", want: Deny},
		{access: Write, topic: "blocked/s2-x/y", want: Allow},
	})
	// "when" makes a deny conditional instead.
	g = compile(t, Options{Rules: []string{
		"allow all blocked/#",
		"deny all blocked/%%claim:site%%/# when site",
	}}, `{}`, "u", "c")
	checkAll(t, g, []req{{access: Write, topic: "blocked/s1/y", want: Allow}})
}

func TestWhen(t *testing.T) {
	o := Options{Rules: []string{
		"allow all admin/# when urn:zitadel:iam:org:project:roles=admin",
		"allow subscribe ops/# when realm_access.roles=operator",
		"allow publish beta/# when beta",
		"deny publish ro/# when readonly",
		"allow all ro/#",
	}}
	tests := []struct {
		claims string
		reqs   []req
	}{
		{`{"urn:zitadel:iam:org:project:roles": {"admin": {"1": "org"}}}`, []req{
			{access: Write, topic: "admin/x", want: Allow},
			{access: Subscribe, topic: "ops/#", want: NoMatch},
			{access: Write, topic: "beta/x", want: NoMatch},
			{access: Write, topic: "ro/x", want: Allow},
		}},
		{`{"urn:zitadel:iam:org:project:roles": {"reader": {}}, "realm_access": {"roles": ["operator"]}, "beta": true, "readonly": 1}`, []req{
			{access: Write, topic: "admin/x", want: NoMatch},
			{access: Subscribe, topic: "ops/#", want: Allow},
			{access: Write, topic: "beta/x", want: Allow},
			{access: Write, topic: "ro/x", want: Deny},
			{access: Read, topic: "ro/x", want: Allow},
		}},
		{`{"beta": false, "readonly": 0}`, []req{
			{access: Write, topic: "beta/x", want: NoMatch},
			{access: Write, topic: "ro/x", want: Allow},
		}},
	}
	for _, tt := range tests {
		checkAll(t, compile(t, o, tt.claims, "u", "c"), tt.reqs)
	}
}

func TestTopicsClaim(t *testing.T) {
	o := Options{TopicsClaim: "mqtt.topics", Rules: []string{"deny all sensors/secret"}}
	g := compile(t, o, `{"mqtt": {"topics": [
		"sensors/#", "users/${username}/#", "dev/${clientid}", "eq exact/#",
		"a/#/b", "a+", "", "x\u0000", "$share/g/y", "${peerhost}/z"
	]}}`, "alice", "c1")
	checkAll(t, g, []req{
		{access: Write, topic: "sensors/a", want: Allow},
		{access: Subscribe, topic: "sensors/#", want: Allow}, // only overlaps the deny
		{access: Subscribe, topic: "sensors/secret", want: Deny},
		{access: Subscribe, topic: "sensors/+/x", want: Allow},
		{access: Read, topic: "sensors/secret", want: Deny},
		{access: Write, topic: "users/alice/x", want: Allow},
		{access: Write, topic: "users/bob/x", want: NoMatch},
		{access: Write, topic: "users/${username}/x", want: NoMatch},
		{access: Subscribe, topic: "dev/c1", want: Allow},
		{access: Subscribe, topic: "exact/#", want: Allow},
		{access: Subscribe, topic: "exact/a", want: NoMatch},
		{access: Read, topic: "exact/a", want: Allow},
		{access: Write, topic: "a/x/b", want: NoMatch},
		{access: Subscribe, topic: "y", want: NoMatch},
	})
	if n := len(g.publish.allow); n != 4 {
		t.Errorf("%d grants from the claim, want 4 (invalid filters ignored)", n)
	}

	// A single string is a one-element list; missing and null grant nothing.
	for claims, want := range map[string]Verdict{
		`{"mqtt": {"topics": "s/#"}}`:  Allow,
		`{"mqtt": {"topics": null}}`:   NoMatch,
		`{"mqtt": {}}`:                 NoMatch,
		`{"mqtt": {"topics": []}}`:     NoMatch,
		`{"mqtt": {"topics": ["s/"]}}`: NoMatch,
	} {
		g := compile(t, Options{TopicsClaim: "mqtt.topics"}, claims, "u", "c")
		checkAll(t, g, []req{{access: Write, topic: "s/x", want: want}})
	}
	// Unsafe placeholder values drop the entry.
	g = compile(t, Options{TopicsClaim: "t"}, `{"t": ["users/${username}/#"]}`, "alice/evil", "c")
	checkAll(t, g, []req{{access: Write, topic: "users/alice/evil/x", want: NoMatch}})
}

func TestClaimErrors(t *testing.T) {
	const secret = "s3cr3t-personal-data"
	tests := []struct {
		o      Options
		claims string
		err    string
	}{
		{Options{TopicsClaim: "t"}, `{"t": 42}`, `topics claim "t": neither an array`},
		{Options{TopicsClaim: "t"}, `{"t": {"` + secret + `": 1}}`, `topics claim "t": neither an array`},
		{Options{TopicsClaim: "t"}, `{"t": ["a", 1]}`, `element 1 is not a string`},
		{Options{ACLClaim: "acl"}, `{"acl": "` + secret + `"}`, `acl claim "acl": neither an object nor an array`},
		{Options{ACLClaim: "acl"}, `{"acl": {"pub": "` + secret + `"}}`, `"pub" is not an array`},
		{Options{ACLClaim: "acl"}, `{"acl": {"sub": [true]}}`, `"sub": element 0 is not a string`},
		{Options{ACLClaim: "acl"}, `{"acl": [1]}`, `rule 0: not an object`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"action": "all", "topic": "a"}]}`, `rule 0: "permission" is missing`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"permission": "` + secret + `", "action": "all", "topic": "a"}]}`, `"permission" is neither`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"permission": "allow", "topic": "a"}]}`, `"action" is missing`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"permission": "allow", "action": "readwrite", "topic": "a"}]}`, `"action" is missing or not one of`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"permission": "allow", "action": "all"}]}`, `neither "topic" nor a "topics"`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"permission": "allow", "action": "all", "topic": 1}]}`, `"topic" is not a string`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"permission": "allow", "action": "all", "topics": ["a", 2]}]}`, `"topics" element 1`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"permission": "allow", "action": "all", "topic": "a", "qos": 3}]}`, `"qos"`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"permission": "allow", "action": "all", "topic": "a", "qos": 1.0}]}`, `"qos"`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"permission": "allow", "action": "all", "topic": "a", "qos": "0, 1"}]}`, `"qos"`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"permission": "allow", "action": "all", "topic": "a", "qos": [0, null]}]}`, `"qos"`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"permission": "allow", "action": "all", "topic": "a", "qos": {}}]}`, `"qos"`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"permission": "allow", "action": "pub", "topic": "a", "retain": "yes"}]}`, `"retain"`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"permission": "allow", "action": "all", "topic": "a", "retain": 2}]}`, `"retain"`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"permission": "allow", "action": "all", "topic": "a", "username_re": "^a"}]}`, `"username_re" conditions are not supported`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"permission": "deny", "action": "all", "topic": "a", "ipaddr": "10.0.0.0/8"}]}`, `"ipaddr"`},
		{Options{ACLClaim: "acl"}, `{"acl": [{"permission": "allow", "action": "all", "topic": "ok"}, {"permission": "allow"}]}`, `rule 1:`},
		{Options{ACLClaim: "acl"}, `[1, 2]`, `claims are not a JSON object`},
		{Options{Rules: []string{"allow all # when x"}}, `not json`, `claims are not a JSON object`},
		{Options{Rules: []string{"allow all %%oidc-sub%%"}}, ``, `claims are not a JSON object`},
	}
	for _, tt := range tests {
		p, err := NewPolicy(tt.o)
		if err != nil {
			t.Fatal(err)
		}
		g, err := p.Compile([]byte(tt.claims), "u", "c")
		if err == nil {
			t.Errorf("Compile(%s) succeeded, want error %q", tt.claims, tt.err)
			continue
		}
		if g != nil {
			t.Errorf("Compile(%s) returned grants with its error", tt.claims)
		}
		if !strings.Contains(err.Error(), tt.err) {
			t.Errorf("Compile(%s) error %q, want it to contain %q", tt.claims, err, tt.err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Compile(%s) error %q repeats a claim value", tt.claims, err)
		}
	}

	// The retain field of a subscribe rule is not read, as in EMQX.
	p, _ := NewPolicy(Options{ACLClaim: "acl"})
	if _, err := p.Compile([]byte(`{"acl": [{"permission": "allow", "action": "sub", "topic": "a", "retain": "yes"}]}`), "u", "c"); err != nil {
		t.Errorf("retain of a subscribe rule: %v", err)
	}
	// Claims are only required when the policy reads them.
	p, _ = NewPolicy(Options{Rules: []string{"allow all users/%u/#"}})
	if _, err := p.Compile(nil, "u", "c"); err != nil {
		t.Errorf("claim-free policy with no claims: %v", err)
	}
}

func TestTooManyClaimFilters(t *testing.T) {
	list := func(n int) string {
		topics := make([]string, n)
		for i := range topics {
			topics[i] = fmt.Sprintf("%q", fmt.Sprintf("t/%d", i))
		}
		return `{"t": [` + strings.Join(topics, ",") + `], "acl": {"pub": ["x"]}}`
	}
	p, err := NewPolicy(Options{TopicsClaim: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Compile([]byte(list(maxClaimFilters)), "u", "c"); err != nil {
		t.Errorf("%d filters: %v", maxClaimFilters, err)
	}
	if _, err := p.Compile([]byte(list(maxClaimFilters+1)), "u", "c"); !errors.Is(err, errTooManyFilters) {
		t.Errorf("%d filters: error %v, want %v", maxClaimFilters+1, err, errTooManyFilters)
	}
	// The limit counts both claims together.
	p, err = NewPolicy(Options{TopicsClaim: "t", ACLClaim: "acl"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Compile([]byte(list(maxClaimFilters)), "u", "c"); !errors.Is(err, errTooManyFilters) {
		t.Errorf("%d+1 filters in two claims: error %v, want %v", maxClaimFilters, err, errTooManyFilters)
	}
}
