package acl

import (
	"strings"
	"testing"
)

func TestParseRule(t *testing.T) {
	tests := []struct {
		line string
		want string // canonical form; empty when the line is invalid
		err  string // part of the error, when invalid
	}{
		{line: "allow all a/b", want: "allow all a/b"},
		{line: "  deny \t publish   x/#  ", want: "deny publish x/#"},
		{line: "allow subscribe +/status", want: "allow subscribe +/status"},
		{line: "allow all tenants/%u/#", want: "allow all tenants/%u/#"},
		{line: "allow publish devices/%c/up", want: "allow publish devices/%c/up"},
		{line: "allow all dev-%c/%u", want: "allow all dev-%c/%u"},
		{line: "allow all orgs/%%claim:org%%/#", want: "allow all orgs/%%claim:org%%/#"},
		{line: "allow all r/%%claim:https://example\\.com/tenant%%/#", want: "allow all r/%%claim:https://example\\.com/tenant%%/#"},
		{line: "allow all u/%%oidc-username%%/%%oidc-sub%%/%%oidc-email%%/%%zitadel-role%%", want: "allow all u/%%oidc-username%%/%%oidc-sub%%/%%oidc-email%%/%%zitadel-role%%"},
		{line: "allow all 100%/x", want: "allow all 100%/x"}, // a lone % is literal
		{line: "allow all $SYS/#", want: "allow all $SYS/#"},
		{line: "allow all # when admin", want: "allow all # when admin"},
		{line: "allow all # when urn:zitadel:iam:org:project:roles=admin", want: "allow all # when urn:zitadel:iam:org:project:roles=admin"},
		{line: `allow all # when a\=b=c=d`, want: `allow all # when a\=b=c=d`},
		{line: "allow all # when realm_access.roles=mqtt", want: "allow all # when realm_access.roles=mqtt"},
		{line: "allow all # when scope=mqtt:write", want: "allow all # when scope=mqtt:write"},
		{line: "allow all # when ext.scp=x", want: "allow all # when ext.scp=x"},

		{line: "", err: "want allow|deny"},
		{line: "allow all", err: "want allow|deny"},
		{line: "allow all a b", err: "want allow|deny"},
		{line: "allow all a if x", err: "want allow|deny"},
		{line: "allow all a when", err: "want allow|deny"},
		{line: "allow all a when x y", err: "want allow|deny"},
		{line: "permit all a", err: `first word "permit"`},
		{line: "Allow all a", err: `first word "Allow"`},
		{line: "allow readwrite a", err: `second word "readwrite"`},
		{line: "allow pub a", err: `second word "pub"`},
		{line: "allow all a/#/b", err: "not a valid MQTT topic filter"},
		{line: "allow all a+", err: "not a valid MQTT topic filter"},
		{line: "allow all %u#", err: "not a valid MQTT topic filter"},
		{line: "allow all +%c", err: "not a valid MQTT topic filter"},
		{line: "allow all #/%u", err: "not a valid MQTT topic filter"},
		{line: "allow all a\x00", err: "not a valid MQTT topic filter"},
		{line: "allow subscribe $share/g/a", err: "$share"},
		{line: "allow all %%oidc-name%%", err: "unknown placeholder"},
		{line: "allow all %%claim:%%", err: "empty path"},
		{line: "allow all %%claim:a.*%%", err: "not allowed"},
		{line: "allow all a/%%oidc-sub", err: "unterminated placeholder"},
		{line: "allow all # when a.", err: "ends with a dot"},
		{line: "allow all # when a=", err: `nothing after "="`},
		{line: "allow all # when =x", err: "empty path"},
		{line: "allow all # when roles.#", err: "not allowed"},
		{line: "allow all # when a|b", err: "not allowed"},
		{line: "allow all # when scp=mqtt", err: `write "when scope"`},
		{line: "allow all # when scp", err: `write "when scope"`},
	}
	for _, tt := range tests {
		var ph placeholders
		r, err := parseRule(tt.line, &ph)
		if tt.want == "" {
			if err == nil {
				t.Errorf("parseRule(%q) = %q, want an error", tt.line, r.String())
			} else if !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseRule(%q) error %q, want it to contain %q", tt.line, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseRule(%q): %v", tt.line, err)
			continue
		}
		if got := r.String(); got != tt.want {
			t.Errorf("parseRule(%q).String() = %q, want %q", tt.line, got, tt.want)
		}
	}
}

func TestNewPolicyErrors(t *testing.T) {
	_, err := NewPolicy(Options{
		Rules:       []string{"allow all ok/#", "allow all a/#/b", "grant all x", "deny all # when a..b"},
		TopicsClaim: "mqtt.topics.#",
		ACLClaim:    "acl",
	})
	if err == nil {
		t.Fatal("NewPolicy accepted bad rules")
	}
	msg := err.Error()
	for _, want := range []string{
		`acl: rule "allow all a/#/b": topic "a/#/b"`,
		`acl: rule "grant all x": first word "grant"`,
		`acl: rule "deny all # when a..b": when "a..b"`,
		`acl: topics claim path "mqtt.topics.#"`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if strings.Contains(msg, "ok/#") {
		t.Errorf("error %q names a good rule", msg)
	}
}

func TestUsesUsername(t *testing.T) {
	for _, tt := range []struct {
		rules []string
		want  bool
	}{
		{nil, false},
		{[]string{"allow all #"}, false},
		{[]string{"allow all devices/%c/#", "deny publish x/%%oidc-sub%%"}, false},
		{[]string{"allow all #", "allow all users/%u/#"}, true},
		{[]string{"deny publish a/pre-%u-post/b"}, true},
	} {
		p, err := NewPolicy(Options{Rules: tt.rules, TopicsClaim: "topics"})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.UsesUsername(); got != tt.want {
			t.Errorf("%q: UsesUsername = %v, want %v", tt.rules, got, tt.want)
		}
	}
}

// conditionClaims exercises every kind of claim value a condition can test.
const conditionClaims = `{
	"yes": true, "no": false, "nothing": null,
	"one": 1, "zero": 0, "negzero": -0, "fzero": 0.0, "half": 0.5, "big": 1e3,
	"str": "x", "empty": "", "falsestr": "false",
	"list": ["a", 2, true], "emptylist": [],
	"obj": {"k": 1}, "emptyobj": {},
	"urn:zitadel:iam:org:project:roles": {"admin": {"123": "org.example"}, "reader": {}},
	"realm_access": {"roles": ["mqtt", "offline_access"]},
	"a=b": "eq", "first.last": "dot",
	"nested": [["deep"]], "objs": [{"a": 1}]
}`

func TestCondition(t *testing.T) {
	tests := []struct {
		cond string
		want bool
	}{
		// Truthiness.
		{"yes", true},
		{"no", false},
		{"nothing", false},
		{"missing", false},
		{"one", true},
		{"zero", false},
		{"negzero", false},
		{"fzero", false},
		{"half", true},
		{"big", true},
		{"str", true},
		{"empty", false},
		{"falsestr", true}, // a non-empty string, whatever it says
		{"list", true},
		{"emptylist", false},
		{"obj", true},
		{"emptyobj", false},
		{"realm_access.roles.1", true},
		{"realm_access.roles.2", false},
		{`first\.last`, true},
		{"first.last", false},

		// Equality with a scalar.
		{"str=x", true},
		{"str=y", false},
		{"one=1", true},
		{"big=1e3", true}, // numbers compare as written
		{"big=1000", false},
		{"yes=true", true},
		{"no=false", true},
		{"no=true", false},
		{"nothing=null", false},
		{"missing=x", false},
		{"falsestr=false", true},
		{`a\=b=eq`, true},

		// Arrays hold the value.
		{"list=a", true},
		{"list=2", true},
		{"list=true", true},
		{"list=b", false},
		{"emptylist=a", false},
		{"realm_access.roles=mqtt", true},
		{"realm_access.roles=admin", false},
		{"nested=deep", false},
		{"objs=a", false},

		// Objects have the key.
		{"urn:zitadel:iam:org:project:roles=admin", true},
		{"urn:zitadel:iam:org:project:roles=reader", true},
		{"urn:zitadel:iam:org:project:roles=writer", false},
		{"urn:zitadel:iam:org:project:roles=123", false}, // not a key at the top
		{"urn:zitadel:iam:org:project:roles.admin", true},
		{"obj=k", true},
		{"obj=1", false},
		{"emptyobj=k", false},
	}
	for _, tt := range tests {
		c, err := parseCondition(tt.cond)
		if err != nil {
			t.Errorf("parseCondition(%q): %v", tt.cond, err)
			continue
		}
		if got := c.holds(conditionClaims); got != tt.want {
			t.Errorf("when %s = %v, want %v", tt.cond, got, tt.want)
		}
	}
}

// when scope reads the granted scopes as each identity provider writes them: a space-separated scope
// string, an scp array, an scp string, or both claims at once.
func TestScopeCondition(t *testing.T) {
	tests := []struct {
		claims string
		cond   string
		want   bool
	}{
		// A space-separated scope string (RFC 7662, Keycloak, Auth0, ZITADEL).
		{`{"scope": "openid mqtt:read mqtt:write"}`, "scope=mqtt:write", true},
		{`{"scope": "openid mqtt:read mqtt:write"}`, "scope=openid", true},
		{`{"scope": "openid mqtt:read mqtt:write"}`, "scope=mqtt", false},
		{`{"scope": "openid mqtt:read mqtt:write"}`, "scope=openid mqtt:read", false}, // not a rule anyone can write; never a whole-string match
		{`{"scope": "mqtt:write"}`, "scope=mqtt:write", true},
		{`{"scope": "  mqtt:write  "}`, "scope=mqtt:write", true},
		{`{"scope": "mqtt:writer"}`, "scope=mqtt:write", false},
		{`{"scope": "a\tmqtt:write"}`, "scope=mqtt:write", false}, // only a space separates scopes
		{`{"scope": ""}`, "scope=mqtt:write", false},
		// An scp array (Okta, Ory Hydra's JWTs).
		{`{"scp": ["openid", "mqtt:write"]}`, "scope=mqtt:write", true},
		{`{"scp": ["openid", "mqtt:read"]}`, "scope=mqtt:write", false},
		{`{"scp": ["openid mqtt:write"]}`, "scope=mqtt:write", false}, // an element is one scope
		{`{"scp": [1, true, null, {"mqtt:write": 1}, ["mqtt:write"]]}`, "scope=mqtt:write", false},
		// An scp string (Entra ID).
		{`{"scp": "User.Read mqtt.write"}`, "scope=mqtt.write", true},
		{`{"scp": "User.Read"}`, "scope=mqtt.write", false},
		// A scope array (some issuers), and both claims at once.
		{`{"scope": ["mqtt:write"]}`, "scope=mqtt:write", true},
		{`{"scope": "openid", "scp": ["mqtt:write"]}`, "scope=mqtt:write", true},
		{`{"scope": "mqtt:write", "scp": []}`, "scope=mqtt:write", true},
		// Other shapes grant nothing.
		{`{"scope": 7}`, "scope=7", false},
		{`{"scope": {"mqtt:write": true}}`, "scope=mqtt:write", false},
		{`{"scope": null}`, "scope=null", false},
		{`{}`, "scope=mqtt:write", false},
		{`{"ext": {"scope": "mqtt:write"}}`, "scope=mqtt:write", false},
		// Nested paths are ordinary claims, compared as whole values.
		{`{"ext": {"scope": "mqtt:write"}}`, "ext.scope=mqtt:write", true},
		{`{"ext": {"scope": "openid mqtt:write"}}`, "ext.scope=mqtt:write", false},
		{`{"ext": {"scope": "mqtt:write"}}`, "ext.scope", true},
		// "when scope": any scope granted.
		{`{"scope": "openid"}`, "scope", true},
		{`{"scp": ["openid"]}`, "scope", true},
		{`{"scp": "openid"}`, "scope", true},
		{`{"scope": " ", "scp": [""]}`, "scope", false},
		{`{"scope": "", "scp": []}`, "scope", false},
		{`{}`, "scope", false},
	}
	for _, tt := range tests {
		c, err := parseCondition(tt.cond)
		if err != nil {
			t.Errorf("parseCondition(%q): %v", tt.cond, err)
			continue
		}
		if got := c.holds(tt.claims); got != tt.want {
			t.Errorf("when %s on %s = %v, want %v", tt.cond, tt.claims, got, tt.want)
		}
	}
}
