package acl

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tidwall/gjson"
)

// The acl_claim holds an ACL in one of the two formats of EMQX's JWT and HTTP
// authentication (docs.emqx.com, "Access Control List"; EMQX's
// emqx_authz_rule_raw.erl), so that tokens minted for EMQX work unchanged:
//
// The object format lists filters that are allowed:
//
//	{"pub": ["t/${username}"], "sub": ["s/#"], "all": ["eq x/#"]}
//
// The array format lists rules:
//
//	[{"permission": "allow", "action": "publish", "topic": "t/${clientid}", "qos": [0, 1], "retain": false},
//	 {"permission": "deny", "action": "all", "topics": ["secret/#"]}]
//
// What is taken from EMQX, and why:
//
//   - "action" is "publish" or "pub", "subscribe" or "sub", or "all".
//     "topic" holds one filter, else "topics" a list of them.
//   - "qos" is 0, 1 or 2, an array of them, or a string such as "0,1"; each
//     element may also be a string "0".."2". It limits the rule to those QoS:
//     the message's for a publish, the requested one for a subscribe. Missing
//     or null means every QoS; an empty array matches nothing, as in EMQX.
//   - "retain" is true, false, 1, 0, "true", "false", "1", "0" or "all". It
//     limits a publish to retained (true) or non-retained (false) messages;
//     missing, null and "all" mean both. Like EMQX, it is only read for
//     "publish" and "all" rules, and it does not restrict subscriptions.
//   - ${username} and ${clientid} are replaced by the MQTT username and client
//     id, each of which must fill one level safely (see safeValue). EMQX's
//     other placeholders (${peerhost}, ${client_attrs.NAME}, ...) cannot be
//     filled here, and count as having no value: the allow is dropped, the
//     deny widened. %u and %c are literal text, as in EMQX 5.
//   - The prefix "eq " makes a filter exact: "eq t/#" matches a subscription
//     to exactly "t/#", not to "t/a", and is not expanded.
//   - A malformed ACL (not an object or an array; a rule that is not an
//     object, lacks "permission", "action" or a topic, or has a value outside
//     the lists above) rejects the whole session, as EMQX refuses the CONNECT:
//     guessing at half a rule could grant what the issuer did not mean.
//   - EMQX 5.9's client conditions ("username_re", "clientid_re", "ipaddr",
//     "zone", "zone_re", "listener", "listener_re") are not supported: a rule
//     holding one is malformed. Ignoring the condition would apply an allow
//     meant for someone else.
//
// Where this package departs from EMQX, it is to be stricter:
//
//   - Rules are not first-match in order: a matching deny beats any allow, in
//     the claim, in acl_topics_claim and in acl_rule alike.
//   - A subscription is allowed only when an allow filter covers it, that is
//     matches every topic it can match (EMQX matches the requested filter
//     against the allow filter as if it were a topic name).
//   - A deny refuses a subscription when the deny filter covers it, close to
//     EMQX, which refuses when the deny filter matches the requested filter.
//     A deny that only overlaps it ("deny secret/#" against "#") does not
//     refuse it, in EMQX either, but unlike EMQX every delivery through the
//     subscription is checked, so the deny still keeps its topics from the
//     subscriber.
//   - When nothing matches, EMQX denies for the object format and passes on to
//     its other sources for the array format. Here both give NoMatch, and the
//     plugin's acl_no_match decides.

// emqxConditionFields are EMQX's per-rule client conditions, see above.
var emqxConditionFields = []string{"username_re", "clientid_re", "ipaddr", "zone", "zone_re", "listener", "listener_re"}

// addACLClaim adds the grants of the EMQX ACL r; a missing or null claim
// grants nothing.
func (b *builder) addACLClaim(r gjson.Result) error {
	switch {
	case !r.Exists() || r.Type == gjson.Null:
		return nil
	case r.IsObject():
		return b.addEMQXLists(r)
	case r.IsArray():
		var err error
		i := 0
		r.ForEach(func(_, rule gjson.Result) bool {
			if err = b.addEMQXRule(rule); err != nil {
				err = fmt.Errorf("rule %d: %w", i, err)
			}
			i++
			return err == nil
		})
		return err
	}
	return errors.New("neither an object nor an array of rules")
}

// addEMQXLists adds the object format's "pub", "sub" and "all" lists. Other
// keys are ignored, as EMQX ignores them.
func (b *builder) addEMQXLists(r gjson.Result) error {
	for _, l := range [...]struct {
		key  string
		acts action
	}{{"pub", actPublish}, {"sub", actSubscribe}, {"all", actAll}} {
		list := r.Get(l.key)
		switch {
		case !list.Exists() || list.Type == gjson.Null:
			continue
		case !list.IsArray():
			return fmt.Errorf("%q is not an array of topic filters", l.key)
		}
		if err := b.addFilterList(list, false, l.acts); err != nil {
			return fmt.Errorf("%q: %w", l.key, err)
		}
	}
	return nil
}

// addEMQXRule adds the grants of one rule of the array format.
func (b *builder) addEMQXRule(r gjson.Result) error {
	if !r.IsObject() {
		return errors.New("not an object")
	}
	for _, field := range emqxConditionFields {
		if r.Get(field).Exists() {
			return fmt.Errorf("%q conditions are not supported", field)
		}
	}
	var deny bool
	switch perm := r.Get("permission"); {
	case perm.Type != gjson.String:
		return errors.New(`"permission" is missing or not a string`)
	case perm.Str == "allow":
	case perm.Str == "deny":
		deny = true
	default:
		return errors.New(`"permission" is neither "allow" nor "deny"`)
	}
	acts, err := emqxAction(r.Get("action"))
	if err != nil {
		return err
	}
	qos, err := emqxQoS(r.Get("qos"))
	if err != nil {
		return err
	}
	retain := retainAny
	if acts&actPublish != 0 {
		if retain, err = emqxRetain(r.Get("retain")); err != nil {
			return err
		}
	}
	if topic := r.Get("topic"); topic.Exists() {
		if topic.Type != gjson.String {
			return errors.New(`"topic" is not a string`)
		}
		return b.addClaimFilter(topic.Str, deny, acts, qos, retain)
	}
	topics := r.Get("topics")
	if !topics.IsArray() {
		return errors.New(`neither "topic" nor a "topics" array is set`)
	}
	var ferr error
	i := 0
	topics.ForEach(func(_, t gjson.Result) bool {
		if t.Type != gjson.String {
			ferr = fmt.Errorf(`"topics" element %d is not a string`, i)
		} else {
			ferr = b.addClaimFilter(t.Str, deny, acts, qos, retain)
		}
		i++
		return ferr == nil
	})
	return ferr
}

func emqxAction(r gjson.Result) (action, error) {
	if r.Type == gjson.String {
		switch r.Str {
		case "publish", "pub":
			return actPublish, nil
		case "subscribe", "sub":
			return actSubscribe, nil
		case "all":
			return actAll, nil
		}
	}
	return 0, errors.New(`"action" is missing or not one of "publish", "pub", "subscribe", "sub", "all"`)
}

var errQoS = errors.New(`"qos" is not 0, 1, 2, a list of them or a string such as "0,1"`)

// emqxQoS returns the QoS mask of a rule's "qos" field.
func emqxQoS(r gjson.Result) (uint8, error) {
	switch {
	case !r.Exists() || r.Type == gjson.Null:
		return allQoS, nil
	case r.Type == gjson.Number:
		return qosBit(r.Raw)
	case r.Type == gjson.String:
		var mask uint8
		for _, s := range strings.Split(r.Str, ",") {
			bit, err := qosBit(s)
			if err != nil {
				return 0, err
			}
			mask |= bit
		}
		return mask, nil
	case r.IsArray():
		var mask uint8
		var err error
		r.ForEach(func(_, elem gjson.Result) bool {
			var bit uint8
			switch elem.Type {
			case gjson.Number:
				bit, err = qosBit(elem.Raw)
			case gjson.String:
				bit, err = qosBit(elem.Str)
			default:
				err = errQoS
			}
			mask |= bit
			return err == nil
		})
		return mask, err
	}
	return 0, errQoS
}

// qosBit returns the mask bit of the QoS written s ("0", "1" or "2").
func qosBit(s string) (uint8, error) {
	if len(s) != 1 || s[0] < '0' || s[0] > '2' {
		return 0, errQoS
	}
	return 1 << (s[0] - '0'), nil
}

// emqxRetain returns the condition of a rule's "retain" field.
func emqxRetain(r gjson.Result) (retainCond, error) {
	switch {
	case !r.Exists() || r.Type == gjson.Null:
		return retainAny, nil
	case r.Type == gjson.True:
		return retainOnly, nil
	case r.Type == gjson.False:
		return retainNot, nil
	case r.Type == gjson.Number || r.Type == gjson.String:
		s := r.Raw // a number as written: 1.0 is not 1, as in EMQX
		if r.Type == gjson.String {
			s = r.Str
		}
		switch s {
		case "1", "true":
			return retainOnly, nil
		case "0", "false":
			return retainNot, nil
		case "all":
			return retainAny, nil
		}
	}
	return 0, errors.New(`"retain" is not true, false, 1, 0, "true", "false", "1", "0" or "all"`)
}
