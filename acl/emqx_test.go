package acl

import "testing"

func TestEMQXObjectFormat(t *testing.T) {
	// The example of EMQX's documentation, old format.
	g := compile(t, Options{ACLClaim: "acl"}, `{
		"exp": 1654254601,
		"username": "emqx_u",
		"acl": {
			"pub": ["testpub1/${username}", "eq testpub2/${username}"],
			"sub": ["testsub1/${username}", "testsub2/${clientid}", "testsub2/#"],
			"all": ["testall1/${username}", "testall2/${clientid}", "testall3/#"],
			"other": "ignored"
		}
	}`, "emqx_u", "emqx_c")
	checkAll(t, g, []req{
		{access: Write, topic: "testpub1/emqx_u", want: Allow},
		{access: Write, topic: "testpub1/other", want: NoMatch},
		{access: Write, topic: "testpub2/${username}", want: Allow}, // "eq": not expanded
		{access: Write, topic: "testpub2/emqx_u", want: NoMatch},
		{access: Subscribe, topic: "testpub1/emqx_u", want: NoMatch},
		{access: Subscribe, topic: "testsub1/emqx_u", want: Allow},
		{access: Subscribe, topic: "testsub2/emqx_c", want: Allow},
		{access: Subscribe, topic: "testsub2/+/x", want: Allow},
		{access: Read, topic: "testsub2/a", want: Allow},
		{access: Write, topic: "testsub2/a", want: NoMatch},
		{access: Write, topic: "testall1/emqx_u", want: Allow},
		{access: Subscribe, topic: "testall2/emqx_c", want: Allow},
		{access: Read, topic: "testall3/a/b", want: Allow},
		{access: Write, topic: "elsewhere", want: NoMatch}, // acl_no_match decides
	})
}

func TestEMQXArrayFormat(t *testing.T) {
	// The example of EMQX's documentation, new format, plus rules for the
	// other forms of each field.
	g := compile(t, Options{ACLClaim: "acl"}, `{
		"exp": 1706844358,
		"username": "emqx_u",
		"acl": [
			{"permission": "allow", "action": "publish", "topic": "t/${clientid}"},
			{"permission": "allow", "action": "subscribe", "topic": "eq t/1/#", "qos": [1]},
			{"permission": "deny", "action": "publish", "topic": "t/2", "retain": true},
			{"permission": "deny", "action": "all", "topic": "t/3"},
			{"permission": "allow", "action": "all", "topic": "t/#"},

			{"permission": "allow", "action": "pub", "topics": ["q/01/#", "q/012/#"], "qos": "0,1"},
			{"permission": "allow", "action": "pub", "topic": "q/2/#", "qos": 2},
			{"permission": "allow", "action": "sub", "topic": "q/s/#", "qos": ["0", 2]},
			{"permission": "allow", "action": "pub", "topic": "r/only/#", "retain": 1},
			{"permission": "allow", "action": "pub", "topic": "r/not/#", "retain": "false"},
			{"permission": "allow", "action": "pub", "topic": "r/all/#", "retain": "all"},
			{"permission": "allow", "action": "all", "topic": "r/null/#", "retain": null, "qos": null},
			{"permission": "allow", "action": "all", "topic": "never/#", "qos": []}
		]
	}`, "emqx_u", "emqx_c")
	checkAll(t, g, []req{
		{access: Write, topic: "t/emqx_c", want: Allow},

		// "eq t/1/#" grants exactly that subscription, at QoS 1 only...
		{access: Subscribe, topic: "t/1/#", qos: 1, want: Allow},
		{access: Subscribe, topic: "t/1/#", qos: 0, want: Allow}, // t/# allows any QoS
		// ...and its messages at any QoS, since the subscription was vetted.
		{access: Read, topic: "t/1/x", qos: 2, want: Allow},

		// Retained messages to t/2 are denied, others allowed by t/#.
		{access: Write, topic: "t/2", retain: true, want: Deny},
		{access: Write, topic: "t/2", retain: false, want: Allow},
		{access: Subscribe, topic: "t/2", want: Allow},
		{access: Read, topic: "t/2", retain: true, want: Allow}, // retain is for publish only

		// Deny beats the later allow of t/#, unlike EMQX's first match.
		{access: Write, topic: "t/3", want: Deny},
		{access: Subscribe, topic: "t/3", want: Deny},
		{access: Subscribe, topic: "t/#", want: Allow}, // only overlaps t/3, as in EMQX
		{access: Subscribe, topic: "t/+/x", want: Allow},
		{access: Read, topic: "t/3", want: Deny},

		// QoS lists.
		{access: Write, topic: "q/01/a", qos: 0, want: Allow},
		{access: Write, topic: "q/01/a", qos: 1, want: Allow},
		{access: Write, topic: "q/01/a", qos: 2, want: NoMatch},
		{access: Write, topic: "q/012/a", qos: 2, want: NoMatch},
		{access: Write, topic: "q/2/a", qos: 2, want: Allow},
		{access: Write, topic: "q/2/a", qos: 1, want: NoMatch},
		{access: Subscribe, topic: "q/s/#", qos: 0, want: Allow},
		{access: Subscribe, topic: "q/s/#", qos: 1, want: NoMatch},
		{access: Subscribe, topic: "q/s/#", qos: 2, want: Allow},
		{access: Read, topic: "q/s/a", qos: 1, want: Allow}, // delivered at the subscription's QoS

		// Retain conditions.
		{access: Write, topic: "r/only/a", retain: true, want: Allow},
		{access: Write, topic: "r/only/a", retain: false, want: NoMatch},
		{access: Write, topic: "r/not/a", retain: true, want: NoMatch},
		{access: Write, topic: "r/not/a", retain: false, want: Allow},
		{access: Write, topic: "r/all/a", retain: true, want: Allow},
		{access: Write, topic: "r/null/a", retain: true, qos: 2, want: Allow},

		// An empty QoS list matches nothing.
		{access: Write, topic: "never/a", want: NoMatch},
		{access: Subscribe, topic: "never/a", want: NoMatch},
		{access: Read, topic: "never/a", want: NoMatch},
	})
}

// TestEMQXQoSDenyOnRead checks that a deny limited to some QoS levels refuses
// those subscriptions without blocking deliveries to subscriptions at the
// other levels; a deny for every level blocks them.
func TestEMQXQoSDenyOnRead(t *testing.T) {
	g := compile(t, Options{ACLClaim: "acl"}, `{"acl": [
		{"permission": "allow", "action": "all", "topic": "#"},
		{"permission": "deny", "action": "subscribe", "topic": "big/#", "qos": 2},
		{"permission": "deny", "action": "subscribe", "topic": "gone/#", "qos": [0, 1]},
		{"permission": "deny", "action": "subscribe", "topic": "gone/#", "qos": [2]},
		{"permission": "deny", "action": "subscribe", "topic": "eq exact/#"},
		{"permission": "allow", "action": "subscribe", "topic": "only2/#", "qos": 2},
		{"permission": "deny", "action": "subscribe", "topic": "only2/#", "qos": [0, 1]}
	]}`, "u", "c")
	checkAll(t, g, []req{
		{access: Subscribe, topic: "big/#", qos: 2, want: Deny},
		{access: Subscribe, topic: "big/#", qos: 1, want: Allow},
		{access: Read, topic: "big/x", qos: 2, want: Allow},
		{access: Subscribe, topic: "gone/x", qos: 0, want: Deny},
		{access: Read, topic: "gone/x", want: Deny},

		// "deny eq exact/#" refuses that one subscription, not deliveries.
		{access: Subscribe, topic: "exact/#", want: Deny},
		{access: Subscribe, topic: "exact/+", want: Allow},
		{access: Read, topic: "exact/a", want: Allow},

		{access: Subscribe, topic: "only2/a", qos: 2, want: Allow},
		{access: Subscribe, topic: "only2/a", qos: 0, want: Deny},
		{access: Read, topic: "only2/a", want: Allow},
	})
}

func TestEMQXPlaceholders(t *testing.T) {
	const acl = `{"acl": [
		{"permission": "allow", "action": "all", "topic": "u/${username}/#"},
		{"permission": "allow", "action": "all", "topic": "c/dev-${clientid}"},
		{"permission": "allow", "action": "all", "topic": "p/${peerhost}"},
		{"permission": "allow", "action": "all", "topic": "lit/%u/%c"},
		{"permission": "allow", "action": "all", "topic": "brace/${username"},
		{"permission": "deny", "action": "all", "topic": "u/${clientid}/#"},
		{"permission": "deny", "action": "all", "topic": "d/${peerhost}"},
		{"permission": "allow", "action": "all", "topic": "d/#"}
	]}`
	g := compile(t, Options{ACLClaim: "acl"}, acl, "alice", "c1")
	checkAll(t, g, []req{
		{access: Write, topic: "u/alice/x", want: Allow},
		{access: Write, topic: "u/c1/x", want: Deny},
		{access: Write, topic: "c/dev-c1", want: Allow},
		{access: Write, topic: "p/127.0.0.1", want: NoMatch},
		{access: Write, topic: "p/${peerhost}", want: NoMatch},
		{access: Write, topic: "lit/%u/%c", want: Allow},
		{access: Write, topic: "lit/alice/c1", want: NoMatch},
		{access: Write, topic: "brace/${username", want: Allow},
		// A deny with a placeholder we cannot fill denies every value.
		{access: Write, topic: "d/anything", want: Deny},
		{access: Write, topic: "d/a/b", want: Allow},
	})
	g = compile(t, Options{ACLClaim: "acl"}, acl, "alice/evil", "$c")
	checkAll(t, g, []req{
		{access: Write, topic: "u/alice/evil/x", want: Deny}, // the deny widened to u/+/#
		{access: Write, topic: "c/dev-$c", want: NoMatch},
	})
}
