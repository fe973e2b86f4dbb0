package acl

import (
	"errors"
	"fmt"
	"strings"
)

// action is the set of operations a rule or claim entry governs.
type action uint8

const (
	actPublish   action = 1 << iota // WRITE
	actSubscribe                    // SUBSCRIBE, and READ of what was subscribed
	actAll       = actPublish | actSubscribe
)

var actionNames = map[string]action{"publish": actPublish, "subscribe": actSubscribe, "all": actAll}

func (a action) String() string {
	switch a {
	case actPublish:
		return "publish"
	case actSubscribe:
		return "subscribe"
	}
	return "all"
}

// ruleSyntax is the form of an acl_rule, quoted in errors.
const ruleSyntax = "allow|deny publish|subscribe|all TOPIC [when CLAIM[=VALUE]]"

// rule is one parsed acl_rule.
type rule struct {
	deny    bool
	actions action
	topic   topicTemplate
	cond    *condition // nil: always applies
}

// parseRule parses one acl_rule line. Its fields are separated by white
// space, so TOPIC and VALUE cannot contain any; topics with spaces are rare
// enough not to be worth a quoting syntax. Keywords are lower case, like the
// option names. Errors describe the problem without repeating the line; the
// caller adds it.
func parseRule(line string, ph *placeholders) (rule, error) {
	f := strings.Fields(line)
	if len(f) != 3 && (len(f) != 5 || f[3] != "when") {
		return rule{}, errors.New("want " + ruleSyntax)
	}
	var r rule
	switch f[0] {
	case "allow":
	case "deny":
		r.deny = true
	default:
		return rule{}, fmt.Errorf(`first word %q: want "allow" or "deny"`, f[0])
	}
	var ok bool
	if r.actions, ok = actionNames[f[1]]; !ok {
		return rule{}, fmt.Errorf(`second word %q: want "publish", "subscribe" or "all"`, f[1])
	}
	var err error
	if r.topic, err = parseRuleTopic(f[2], ph); err != nil {
		return rule{}, fmt.Errorf("topic %q: %w", f[2], err)
	}
	if len(f) == 5 {
		if r.cond, err = parseCondition(f[4]); err != nil {
			return rule{}, fmt.Errorf("when %q: %w", f[4], err)
		}
	}
	return r, nil
}

// String returns the rule in the form parseRule reads, with single spaces.
func (r *rule) String() string {
	perm := "allow"
	if r.deny {
		perm = "deny"
	}
	s := perm + " " + r.actions.String() + " " + r.topic.src
	if r.cond != nil {
		s += " when " + r.cond.String()
	}
	return s
}
