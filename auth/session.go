package auth

import (
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/acl"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/config"
)

// Session is what the engine keeps of an accepted client for its ACL checks: its grants, rendered once
// at CONNECT, and when its token expires. It never changes, so the broker thread reads it without a lock.
type Session struct {
	grants *acl.Grants
	expiry time.Time // zero: the token had no exp
}

// Authorize decides one ACL check, made at now. s is the session of the client, nil for a client this
// plugin did not admit (a password_file user, say), whose checks are left to acl_file or the next
// plugin. It does no I/O, reads no clock and allocates nothing: it runs for every message on the broker
// thread, and the caller has the time of the check at hand more cheaply than a clock read here.
//
// UNSUBSCRIBE is always allowed. From the token's exp on (now at or after it) every other check is
// denied, since the client keeps its connection but not its rights. A check no rule applies to answers
// acl_no_match.
func (e *Engine) Authorize(s *Session, access acl.Access, topic string, qos byte, retain bool, now time.Time) Result {
	if access == acl.Unsubscribe {
		return Allow
	}
	if s == nil {
		return Defer
	}
	if !s.expiry.IsZero() && !now.Before(s.expiry) {
		return Deny
	}
	switch s.grants.Check(access, topic, qos, retain) {
	case acl.Allow:
		return Allow
	case acl.NoMatch:
		if e.cfg.ACLNoMatch == config.Defer {
			return Defer
		}
	}
	return Deny
}

// Holds is until when every answer Authorize gives for s at now stays its answer, as far as time goes:
// the token's exp for an answer made before it (from exp on every check is denied), and for ever (the
// zero time) for an answer made at or after exp, or for a session without an exp, or for no session
// (nil: Defer). Nothing else in s changes; what changes a client's session is the caller's business.
// The plugin remembers answers in C until then (see the memo in plugin/plugin.c).
func (s *Session) Holds(now time.Time) time.Time {
	if s == nil || s.expiry.IsZero() || !now.Before(s.expiry) {
		return time.Time{}
	}
	return s.expiry
}

// AuthorizesTopics says whether the plugin must register for ACL checks: only when an acl_* option is
// set, so users of acl_file or dynamic security pay nothing.
func (e *Engine) AuthorizesTopics() bool { return e.cfg.ACL != nil }
