package acl

import "strings"

// allQoS is the QoS mask of an entry without a QoS condition.
const allQoS uint8 = 1<<0 | 1<<1 | 1<<2

// retainCond is an EMQX rule's "retain" condition, which only PUBLISH has.
type retainCond uint8

const (
	retainAny  retainCond = iota // no condition
	retainOnly                   // "retain": true, only retained messages
	retainNot                    // "retain": false, only messages that are not retained
)

func (c retainCond) holds(retain bool) bool {
	switch c {
	case retainOnly:
		return retain
	case retainNot:
		return !retain
	}
	return true
}

// grant is one rendered topic filter of a session with its conditions.
type grant struct {
	filter string
	prefix string // literalPrefix(filter)
	exact  bool   // an EMQX "eq" filter: compared as a string, not as a pattern
	qos    uint8  // bit q set: applies to QoS q
	retain retainCond
}

// grantList holds a session's allow and deny grants for one kind of access.
type grantList struct {
	deny, allow []grant
}

// Grants is what one session may do: every rule and claim entry that applies
// to it, rendered for its username, client id and claims. It is built once at
// CONNECT by Policy.Compile, never changes afterwards, and is safe for
// concurrent use.
type Grants struct {
	publish   grantList // WRITE
	subscribe grantList // SUBSCRIBE and READ
}

// Check decides a request of the session. topic is the topic name for Read
// and Write, and the requested filter for Subscribe. qos is the message's QoS
// for Read and Write and the requested QoS for Subscribe; retain is the
// message's retain flag.
//
// A matching deny beats any allow. For Subscribe, an allow must cover the
// whole requested filter, and a deny refuses it only when it covers the whole
// requested filter too: a deny that merely overlaps a subscription does not
// refuse it, and the denied part of what it matches is refused at Read. Read
// is the delivery of a message that the session subscribed to: it is decided
// as a Subscribe to the concrete topic at the most favourable QoS, because
// QoS conditions are about the subscription, which was checked when it was
// made, and the broker passes the message's QoS, not the subscription's; an
// EMQX "eq" deny, which refuses one exact subscription filter, does not apply
// to Read. Retain conditions only apply to Write, as in EMQX.
//
// Unsubscribe is always allowed, even for a nil *Grants. Anything else is
// denied for a nil *Grants, an empty topic, a QoS above 2, an unknown access
// or a malformed subscription. Check does no I/O, takes no lock and does not
// allocate.
func (g *Grants) Check(access Access, topic string, qos byte, retain bool) Verdict {
	if access == Unsubscribe {
		return Allow
	}
	if g == nil || topic == "" || qos > 2 {
		return Deny
	}
	switch access {
	case Write:
		return g.publish.checkWrite(topic, 1<<qos, retain)
	case Subscribe:
		return g.subscribe.checkSubscribe(topic, 1<<qos)
	case Read:
		return g.subscribe.checkRead(topic)
	}
	return Deny
}

func (l *grantList) checkWrite(topic string, qos uint8, retain bool) Verdict {
	for i := range l.deny {
		if l.deny[i].matchesWrite(topic, qos, retain) {
			return Deny
		}
	}
	for i := range l.allow {
		if l.allow[i].matchesWrite(topic, qos, retain) {
			return Allow
		}
	}
	return NoMatch
}

func (g *grant) matchesWrite(topic string, qos uint8, retain bool) bool {
	if g.qos&qos == 0 || !g.retain.holds(retain) {
		return false
	}
	if g.exact {
		return g.filter == topic
	}
	return strings.HasPrefix(topic, g.prefix) && match(g.filter, topic)
}

func (l *grantList) checkSubscribe(req string, qos uint8) Verdict {
	f, ok := stripShare(req)
	if !ok || !ValidFilter(f) {
		return Deny
	}
	p := literalPrefix(f)
	for i := range l.deny {
		if l.deny[i].coversSubscribe(f, p, qos) {
			return Deny
		}
	}
	for i := range l.allow {
		if l.allow[i].coversSubscribe(f, p, qos) {
			return Allow
		}
	}
	return NoMatch
}

// coversSubscribe reports whether g applies to a subscription to the filter
// f, whose literal prefix is p, at the requested QoS: whether g covers f, or
// for an "eq" grant whether f is its filter. It decides denies and allows
// alike. A deny that covers f leaves the subscription nothing it could ever
// deliver, so it is refused outright; a deny that only overlaps f does not
// refuse it, and checkRead enforces it on every delivery.
func (g *grant) coversSubscribe(f, p string, qos uint8) bool {
	switch {
	case g.qos&qos == 0:
		return false
	case g.exact:
		return g.filter == f
	}
	return strings.HasPrefix(p, g.prefix) && covers(g.filter, f)
}

// checkRead allows when, for some QoS, an allow matches and no deny does. An
// "eq" deny is about one exact subscription filter and never about delivery:
// EMQX's "deny subscribe eq #" forbids subscribing to "#", not receiving
// messages through other subscriptions. An "eq" allow let the session
// subscribe to its filter, so it lets the messages that filter matches through.
func (l *grantList) checkRead(topic string) Verdict {
	var denied uint8
	for i := range l.deny {
		d := &l.deny[i]
		if !d.exact && strings.HasPrefix(topic, d.prefix) && match(d.filter, topic) {
			if denied |= d.qos; denied == allQoS {
				return Deny
			}
		}
	}
	for i := range l.allow {
		a := &l.allow[i]
		if a.qos&^denied != 0 && strings.HasPrefix(topic, a.prefix) && match(a.filter, topic) {
			return Allow
		}
	}
	return NoMatch
}

// builder collects the grants of one session.
type builder struct {
	g        Grants
	v        values
	nFilters int // topic filters read from claims, against maxClaimFilters
}

func (b *builder) add(deny bool, acts action, gr grant) {
	gr.prefix = literalPrefix(gr.filter)
	for _, l := range [...]struct {
		act  action
		list *grantList
	}{{actPublish, &b.g.publish}, {actSubscribe, &b.g.subscribe}} {
		switch {
		case acts&l.act == 0:
		case deny:
			l.list.deny = append(l.list.deny, gr)
		default:
			l.list.allow = append(l.list.allow, gr)
		}
	}
}
