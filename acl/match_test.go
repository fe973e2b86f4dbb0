package acl

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		// MQTT 5.0 section 4.7.1.2, multi-level wildcard.
		{"sport/tennis/player1/#", "sport/tennis/player1", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
		{"sport/#", "sport", true},
		{"sport/#", "sports", false},
		{"#", "sport", true},
		{"#", "sport/tennis", true},
		{"#", "/", true},
		{"#", "/finance", true},

		// 4.7.1.3, single-level wildcard.
		{"sport/tennis/+", "sport/tennis/player1", true},
		{"sport/tennis/+", "sport/tennis/player2", true},
		{"sport/tennis/+", "sport/tennis/player1/ranking", false},
		{"sport/+", "sport", false},
		{"sport/+", "sport/", true},
		{"+", "sport", true},
		{"+/tennis/#", "sport/tennis/player1", true},
		{"+/tennis/#", "sport/tennis", true},
		{"+/+", "/finance", true},
		{"/+", "/finance", true},
		{"+", "/finance", false},
		{"+", "", false}, // empty topics are invalid
		{"sport/+/player1", "sport//player1", true},

		// 4.7.2, topics beginning with $.
		{"#", "$SYS", false},
		{"#", "$SYS/broker/uptime", false},
		{"+/monitor/Clients", "$SYS/monitor/Clients", false},
		{"$SYS/#", "$SYS/monitor/Clients", true},
		{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
		{"$SYS/#", "$SYS", true},
		{"+", "$", false},
		{"a/+", "a/$x", true}, // only the first level is special

		// Literal matching is exact, byte for byte.
		{"a/b", "a/b", true},
		{"a/b", "a/b/", false},
		{"a/b", "A/b", false},
		{"a/b/", "a/b/", true},
		{"/", "/", true},
		{"//", "/", false},
		{"a/b/c/d/e", "a/b/c/d/e", true},
		{"a/+/c/+/e", "a/b/c/d/e", true},
		{"a/+/c/+/e", "a/b/c/d/f", false},
		{"日本/+", "日本/語", true},

		// Invalid filters and topics never match.
		{"sport/tennis#", "sport/tennis#", false},
		{"sport/tennis/#/ranking", "sport/tennis/x/ranking", false},
		{"sport+", "sport+", false},
		{"a/#/b", "a/x/b", false},
		{"", "", false},
		{"a\x00", "a\x00", false},
		{"a", "a+", false},
		{"+", "#", false},
		{"\xff", "\xff", false},
		{"#", strings.Repeat("a", maxTopicLen+1), false},
		{"#", strings.Repeat("a", maxTopicLen), true},
	}
	for _, tt := range tests {
		if got := Match(tt.filter, tt.topic); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestValidFilterAndTopic(t *testing.T) {
	tests := []struct {
		s            string
		filter, name bool
	}{
		{"a", true, true},
		{"/", true, true},
		{"a/b/c", true, true},
		{"$SYS/x", true, true},
		{"#", true, false},
		{"+", true, false},
		{"a/#", true, false},
		{"+/+/#", true, false},
		{"a/+/b", true, false},
		{"", false, false},
		{"a/#/b", false, false},
		{"#/a", false, false},
		{"a#", false, false},
		{"a+", false, false},
		{"+a/b", false, false},
		{"a/b+", false, false},
		{"##", false, false},
		{"++", false, false},
		{"a\x00b", false, false},
		{"\xc3\x28", false, false}, // invalid UTF-8
		{"tab\there", true, true},  // MQTT only forbids NUL
	}
	for _, tt := range tests {
		if got := ValidFilter(tt.s); got != tt.filter {
			t.Errorf("ValidFilter(%q) = %v, want %v", tt.s, got, tt.filter)
		}
		if got := ValidTopic(tt.s); got != tt.name {
			t.Errorf("ValidTopic(%q) = %v, want %v", tt.s, got, tt.name)
		}
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		allowed, requested string
		want               bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"#", "a/b", true},
		{"#", "#", true},
		{"#", "+", true},
		{"#", "+/+/#", true},
		{"+", "#", false},
		{"+", "+", true},
		{"+", "a", true},
		{"a/#", "a", true}, // "a/#" matches "a"
		{"a/#", "a/#", true},
		{"a/#", "a/+/c", true},
		{"a/+/+", "a/+/c", true},
		{"a/+/c", "a/+/+", false},
		{"a/+/c", "a/b/c", true},
		{"a/+", "a/#", false},
		{"a/+/#", "a/#", false}, // "a/#" matches "a", "a/+/#" does not
		{"a/+/#", "a/b/#", true},
		{"a/+/#", "a/b", true},
		{"a", "a/#", false},
		{"users/alice/#", "users/#", false},
		{"users/alice/#", "users/+/x", false},
		{"users/alice/#", "users/alice", true},
		{"users/alice/#", "users/alice/x/y", true},
		{"+/#", "#", true},   // equal: every topic has a first level
		{"/+/#", "/#", true}, // equal: "/#" cannot match its parent, the empty topic
		{"+/+/#", "/#", true},
		{"/+", "/#", false},
		{"+/#", "a", true},
		{"a/+/#", "a/+", true},
		{"/#", "#", false},
		{"+/+", "/", true},
		{"a/b", "a/b/", false},

		// $-topics: wildcards at the first level do not reach them.
		{"#", "$SYS/#", false},
		{"+/#", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"#", "a/$x", true},
		{"$SYS/#", "#", false},

		// Invalid filters cover nothing and are covered by nothing.
		{"#", "a/#/b", false},
		{"a/#/b", "a/x/b", false},
		{"#", "", false},
	}
	for _, tt := range tests {
		if got := Covers(tt.allowed, tt.requested); got != tt.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tt.allowed, tt.requested, got, tt.want)
		}
	}
}

func TestStripShare(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"a/b", "a/b", true},
		{"$share/g/a/b", "a/b", true},
		{"$share/g/#", "#", true},
		{"$share/g/$SYS/#", "$SYS/#", true},
		{"$share", "$share", true}, // a plain topic named "$share"
		{"$share/g", "", false},
		{"$share/g/", "", false},
		{"$share//a", "", false},
		{"$share/+/a", "", false},
		{"$share/g#/a", "", false},
	}
	for _, tt := range tests {
		got, ok := stripShare(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("stripShare(%q) = %q, %v, want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestCoversExhaustive checks covers against its definition, for every
// filter of up to three levels over a small alphabet: covers(a, b) must hold
// exactly when every topic b matches is matched by a. The topics have up to
// four levels, one more than any filter, and include a level ("c") that no
// filter names, standing for every other value.
func TestCoversExhaustive(t *testing.T) {
	expand := func(alphabet []string, maxLevels int) []string {
		var out, prev []string
		prev = []string{""}
		for n := 1; n <= maxLevels; n++ {
			var next []string
			for _, p := range prev {
				for _, l := range alphabet {
					if n == 1 {
						next = append(next, l)
					} else {
						next = append(next, p+"/"+l)
					}
				}
			}
			out = append(out, next...)
			prev = next
		}
		return out
	}
	var filters []string
	for _, f := range expand([]string{"a", "", "$x", "+", "#"}, 3) {
		if ValidFilter(f) {
			filters = append(filters, f)
		}
	}
	topics := expand([]string{"a", "", "$x", "c"}, 4)
	matched := make(map[string][]bool, len(filters))
	for _, f := range filters {
		m := make([]bool, len(topics))
		for i, tp := range topics {
			m[i] = ValidTopic(tp) && Match(f, tp)
		}
		matched[f] = m
	}
	for _, a := range filters {
		for _, b := range filters {
			subset := true
			for i := range topics {
				subset = subset && (!matched[b][i] || matched[a][i])
			}
			if got := Covers(a, b); got != subset {
				t.Errorf("Covers(%q, %q) = %v, want %v", a, b, got, subset)
			}
			// Check, with its literal-prefix shortcut, must agree: an allow
			// grants and a deny refuses exactly the subscriptions it covers.
			var allow, deny builder
			allow.add(false, actSubscribe, grant{filter: a, qos: allQoS})
			deny.add(true, actSubscribe, grant{filter: a, qos: allQoS})
			if got := allow.g.Check(Subscribe, b, 0, false) == Allow; got != subset {
				t.Errorf("allow %q: Check(Subscribe, %q) allowed = %v, want %v", a, b, got, subset)
			}
			if got := deny.g.Check(Subscribe, b, 0, false) == Deny; got != subset {
				t.Errorf("deny %q: Check(Subscribe, %q) denied = %v, want %v", a, b, got, subset)
			}
		}
		for i, tp := range topics {
			var allow builder
			allow.add(false, actAll, grant{filter: a, qos: allQoS})
			want := NoMatch
			if matched[a][i] {
				want = Allow
			}
			if tp != "" {
				if got := allow.g.Check(Read, tp, 0, false); got != want {
					t.Errorf("allow %q: Check(Read, %q) = %v, want %v", a, tp, got, want)
				}
			}
		}
	}
}
