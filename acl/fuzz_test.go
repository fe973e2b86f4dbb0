package acl

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzMatch checks the laws that tie Match, Covers and Check together:
// covering is sound (whatever the requested filter matches, the covering one
// does) and complete (when it is false, a topic proves it), and a deny
// refuses exactly the subscriptions it covers while still refusing every
// delivery it matches through those it lets pass.
func FuzzMatch(f *testing.F) {
	for _, s := range [][3]string{
		{"a/#", "a/+/c", "a/b/c"},
		{"+/#", "#", "x"},
		{"#", "$SYS/#", "$SYS/x"},
		{"a/+/#", "a/#", "a"},
		{"/+", "+/+", "/finance"},
		{"secret/#", "+/x", "secret/x"},
		{"a//b", "a/+/b", "a//b"},
		{"$share/g/a", "a", "a"},
		{"+", "/#", "/"},
		{"/+/#", "/#", "/x"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, a, b, topic string) {
		mb, ma := Match(b, topic), Match(a, topic)
		if !ValidFilter(a) || !ValidFilter(b) {
			if Covers(a, b) {
				t.Fatalf("Covers(%q, %q) with an invalid filter", a, b)
			}
			return
		}
		if !Covers(a, a) {
			t.Fatalf("%q does not cover itself", a)
		}
		if !strings.ContainsAny(a, "+#") && ValidTopic(topic) && ma != (a == topic) {
			t.Fatalf("Match(%q, %q) = %v for a filter without wildcards", a, topic, ma)
		}
		pa, pb := literalPrefix(a), literalPrefix(b)
		if ma && !strings.HasPrefix(topic, pa) {
			t.Fatalf("Match(%q, %q) but the topic does not start with %q", a, topic, pa)
		}
		c := Covers(a, b)
		if c && !strings.HasPrefix(pb, pa) {
			t.Fatalf("Covers(%q, %q) but %q does not start with %q", a, b, pb, pa)
		}
		if c && mb && !ma {
			t.Fatalf("Covers(%q, %q) but only the latter matches %q", a, b, topic)
		}
		if !c && !hasCounterexample(a, b) {
			t.Fatalf("Covers(%q, %q) = false but every topic %q matches, %q does too", a, b, b, a)
		}

		// A session allowed b and denied a may subscribe to b unless a covers
		// it, and receives through it what b matches and a does not.
		if strings.HasPrefix(b, sharePrefix) {
			return // Check would subscribe to the shared subscription's filter
		}
		var s builder
		s.add(true, actSubscribe, grant{filter: a, qos: allQoS})
		s.add(false, actSubscribe, grant{filter: b, qos: allQoS})
		want := Allow
		if c {
			want = Deny
		}
		if got := s.g.Check(Subscribe, b, 0, false); got != want {
			t.Fatalf("deny %q, allow %q: Check(Subscribe, %q) = %v, want %v", a, b, b, got, want)
		}
		if ValidTopic(topic) {
			want = NoMatch
			switch {
			case ma:
				want = Deny
			case mb:
				want = Allow
			}
			if got := s.g.Check(Read, topic, 0, false); got != want {
				t.Fatalf("deny %q, allow %q: Check(Read, %q) = %v, want %v", a, b, topic, got, want)
			}
		}
	})
}

// instantiate returns the levels of a topic that filter f matches, with tok
// for each "+" and extra levels of tok for a final "#".
func instantiate(f, tok string, extra int) []string {
	var levels []string
	for _, l := range strings.Split(f, "/") {
		switch l {
		case "+":
			levels = append(levels, tok)
		case "#":
			for range extra {
				levels = append(levels, tok)
			}
		default:
			levels = append(levels, l)
		}
	}
	return levels
}

// joinTopic joins levels, giving "x" for none: a topic has at least one level.
func joinTopic(levels []string) string {
	if len(levels) == 0 {
		return "x"
	}
	return strings.Join(levels, "/")
}

// hasCounterexample reports whether some topic matched by b is not matched
// by a. It tries b with every "+" replaced by a token absent from a, and its
// "#" replaced by zero to two such levels: a literal of a then never matches
// a wildcard of b, and the lengths straddle any fixed length of a.
func hasCounterexample(a, b string) bool {
	tok := "z"
	for strings.Contains(a, tok) {
		tok += "z"
	}
	for extra := range 3 {
		t := joinTopic(instantiate(b, tok, extra))
		if Match(b, t) && !Match(a, t) {
			return true
		}
	}
	return false
}

// FuzzParseRule checks that parsing never panics, that a parsed rule prints
// in a form that parses back to itself, and that its topic is a valid filter.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{
		"allow all tenants/%u/#",
		"deny publish a/%c/b when x=y",
		"allow subscribe %%claim:a\\.b%%/+ when urn:zitadel:iam:org:project:roles=admin",
		"allow all %%oidc-username%%x%%oidc-sub%%",
		`allow all # when a\=b=c`,
		"allow all %%%u%%",
		"deny all a/#/b",
		"deny publish a/# when scope=mqtt:read",
		"allow all # when scope",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var ph placeholders
		r, err := parseRule(line, &ph)
		if err != nil {
			return
		}
		s := r.String()
		r2, err := parseRule(s, &placeholders{})
		if err != nil {
			t.Fatalf("%q parsed, but its form %q does not: %v", line, s, err)
		}
		if s2 := r2.String(); s2 != s {
			t.Fatalf("%q prints as %q, which prints as %q", line, s, s2)
		}
		if !ValidFilter(r.topic.probe()) {
			t.Fatalf("%q has the invalid filter %q", line, r.topic.probe())
		}
	})
}

// FuzzCompile feeds arbitrary claims, usernames and client ids through every
// source and checks that nothing panics, that granted filters are valid, that
// a substituted value is always safe, and that UNSUBSCRIBE stays allowed.
func FuzzCompile(f *testing.F) {
	f.Add([]byte(`{"t": ["a/${username}/#", "eq b/#"], "acl": [{"permission": "deny", "action": "all", "topic": "a/${clientid}", "qos": "0,1"}], "org": "o", "r": {"admin": {}}}`), "alice", "c1", "a/alice/x")
	f.Add([]byte(`{"acl": {"pub": ["x/${clientid}"], "sub": ["#"]}}`), "a/b", "#", "$SYS/x")
	f.Add([]byte(`[]`), "", "", "")
	rules := []string{
		"allow all u/%u/#",
		"deny publish c/%c",
		"allow all o/%%claim:org%%/%%zitadel-role%%",
		"allow subscribe admin/# when r=admin",
	}
	all, err := NewPolicy(Options{TopicsClaim: "t", ACLClaim: "acl", Rules: rules})
	if err != nil {
		f.Fatal(err)
	}
	// Alone, the rules' grants can be traced back to the rule they come from.
	ruled, err := NewPolicy(Options{Rules: rules})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, claims []byte, username, clientID, topic string) {
		if g, err := ruled.Compile(claims, username, clientID); err == nil {
			for _, gr := range g.publish.allow {
				if strings.HasPrefix(gr.filter, "u/") && (gr.filter != "u/"+username+"/#" || !safeValue(username)) {
					t.Fatalf("username %q gave the grant %q", username, gr.filter)
				}
			}
			for _, gr := range g.publish.deny {
				if gr.filter != "c/"+clientID && (gr.filter != "c/+" || safeValue(clientID)) {
					t.Fatalf("client id %q gave the deny %q", clientID, gr.filter)
				}
			}
		}
		g, err := all.Compile(claims, username, clientID)
		if err != nil {
			return
		}
		for _, l := range []grantList{g.publish, g.subscribe} {
			for _, gr := range append(l.allow, l.deny...) {
				if !ValidFilter(gr.filter) {
					t.Fatalf("invalid filter %q granted", gr.filter)
				}
			}
		}
		for _, a := range []Access{Read, Write, Subscribe} {
			for qos := range byte(4) {
				g.Check(a, topic, qos, qos%2 == 0)
			}
		}
		if g.Check(Unsubscribe, topic, 0, false) != Allow {
			t.Fatal("UNSUBSCRIBE refused")
		}
	})
}

// FuzzScopeCondition checks "when scope=WANT" against its definition: WANT is one of the
// space-separated items of a scope or scp string, or an element of a scope or scp array, and
// the two claims count alike.
func FuzzScopeCondition(f *testing.F) {
	f.Add("openid mqtt:write", "mqtt:write")
	f.Add("  a  b ", "b")
	f.Add("a\tb", "b")
	f.Add("mqtt:writer", "mqtt:write")
	f.Fuzz(func(t *testing.T, list, want string) {
		if want == "" || strings.ContainsAny(want, " \t\n\r\v\f") {
			return // a rule's VALUE is one non-empty field
		}
		if !utf8.ValidString(list) || !utf8.ValidString(want) {
			return // JSON would carry another text than the one compared
		}
		c, err := parseCondition("scope=" + want)
		if err != nil {
			return // not a path and value the rule syntax takes
		}
		js, _ := json.Marshal(list)
		expect := slices.Contains(strings.Split(list, " "), want)
		for _, doc := range []string{`{"scope":` + string(js) + `}`, `{"scp":` + string(js) + `}`} {
			if got := c.holds(doc); got != expect {
				t.Fatalf("when scope=%s on %s = %v, want %v", want, doc, got, expect)
			}
		}
		w, _ := json.Marshal(want)
		for _, doc := range []string{`{"scp":[` + string(w) + `]}`, `{"scope":"x","scp":["y",` + string(w) + `]}`} {
			if !c.holds(doc) {
				t.Fatalf("when scope=%s does not hold on %s", want, doc)
			}
		}
	})
}
