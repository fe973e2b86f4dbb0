package acl

import (
	"strings"
	"unicode/utf8"
)

// maxTopicLen is the longest topic or filter MQTT can carry: its strings have
// a two-byte length prefix.
const maxTopicLen = 65535

// sharePrefix starts a shared subscription, "$share/GROUP/FILTER". The broker
// hands the whole string to ACL_CHECK for SUBSCRIBE; what the client will
// receive is decided by FILTER alone.
const sharePrefix = "$share/"

// ValidTopic reports whether t is a valid MQTT topic name, the kind a PUBLISH
// carries: 1 to 65535 bytes of UTF-8 without NUL and without the wildcard
// characters "+" and "#".
func ValidTopic(t string) bool {
	return t != "" && len(t) <= maxTopicLen && utf8.ValidString(t) &&
		strings.IndexAny(t, "+#\x00") < 0
}

// ValidFilter reports whether f is a valid MQTT topic filter: 1 to 65535
// bytes of UTF-8 without NUL, in which "+" only ever fills a whole level and
// "#" only fills the whole last level (MQTT 5.0 section 4.7.1).
func ValidFilter(f string) bool {
	if f == "" || len(f) > maxTopicLen || !utf8.ValidString(f) || strings.IndexByte(f, 0) >= 0 {
		return false
	}
	for {
		level, rest, more := strings.Cut(f, "/")
		switch {
		case level == "#":
			return !more
		case level != "+" && strings.ContainsAny(level, "+#"):
			return false
		case !more:
			return true
		}
		f = rest
	}
}

// Match reports whether the topic filter matches the topic name, following
// MQTT 5.0 section 4.7: "+" matches exactly one level, which may be empty;
// "#" matches any number of levels including the parent, so "a/#" matches
// "a"; and a filter starting with a wildcard does not match a topic starting
// with "$" (section 4.7.2), so "#" does not match "$SYS/broker/uptime". It is
// false when filter is not a valid filter or topic not a valid topic name.
func Match(filter, topic string) bool {
	return ValidFilter(filter) && ValidTopic(topic) && match(filter, topic)
}

// Covers reports whether the filter allowed matches every topic that the
// filter requested can match, so that granting allowed also grants a
// subscription to requested: "a/#" covers "a/+/c" and "a", "a/+/+" covers
// "a/+/c", but "users/alice/#" does not cover "users/#". It is false when
// either is not a valid filter.
func Covers(allowed, requested string) bool {
	return ValidFilter(allowed) && ValidFilter(requested) && covers(allowed, requested)
}

// match is Match without validation, for filters validated when the grants
// were built and topics the broker has validated.
func match(filter, topic string) bool {
	if dollar(topic) && wildFirst(filter) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore:
			return !tmore
		case !tmore:
			return frest == "#" // "a/#" matches "a"
		}
		filter, topic = frest, trest
	}
}

// covers is Covers without validation.
func covers(allowed, req string) bool {
	req = nonEmpty(req)
	if dollar(req) && wildFirst(allowed) {
		return false
	}
	for {
		al, arest, amore := strings.Cut(allowed, "/")
		if al == "#" {
			return true
		}
		rl, rrest, rmore := strings.Cut(req, "/")
		if rl == "#" || (al != "+" && (rl == "+" || al != rl)) {
			return false
		}
		switch {
		case !amore:
			return !rmore
		case !rmore:
			return arest == "#"
		}
		allowed, req = arest, rrest
	}
}

// literalPrefix returns the text that every topic matched by the valid filter
// f starts with: its levels up to the first wildcard, with the "/" before a
// "+" (which needs a level) but not before a "#" (which also matches the
// parent). A filter that a topic matches has a prefix of the topic, and one
// that covers another has a prefix of the other's. Checks use it to rule most
// filters out with a single comparison.
func literalPrefix(f string) string {
	f = nonEmpty(f) // "/#" only matches topics starting with "/"
	for i := 0; ; {
		level, _, more := strings.Cut(f[i:], "/")
		switch {
		case level == "+":
			return f[:i]
		case level == "#":
			return f[:max(i-1, 0)]
		case !more:
			return f
		}
		i += len(level) + 1
	}
}

// nonEmpty rewrites the two filters in which "#" can match its parent level
// only as the empty topic, which MQTT forbids: for real topics "#" matches
// what "+/#" does (every topic has a first level) and "/#" what "/+/#" does.
// covers walks levels and would otherwise count the empty topic: it would
// refuse to let "+/#" cover "#", and "/+/#" cover "/#".
func nonEmpty(f string) string {
	switch f {
	case "#":
		return "+/#"
	case "/#":
		return "/+/#"
	}
	return f
}

// dollar reports whether s starts with "$", as $SYS topics do.
func dollar(s string) bool { return s != "" && s[0] == '$' }

// wildFirst reports whether the valid filter f starts with a wildcard level;
// in a valid filter a level that starts with "+" or "#" is exactly that.
func wildFirst(f string) bool { return f != "" && (f[0] == '+' || f[0] == '#') }

// stripShare returns the filter of a shared subscription "$share/GROUP/FILTER",
// or f itself when it is not one. It is false for a malformed one (an empty
// group or filter, or a wildcard in the group), which is then denied.
func stripShare(f string) (string, bool) {
	rest, ok := strings.CutPrefix(f, sharePrefix)
	if !ok {
		return f, true
	}
	group, filter, ok := strings.Cut(rest, "/")
	if !ok || group == "" || filter == "" || strings.ContainsAny(group, "+#") {
		return "", false
	}
	return filter, true
}
