package acl

import "strconv"

// Access is the operation an ACL check is about. The values are Mosquitto's
// MOSQ_ACL_* constants, so the plugin can pass the broker's access field
// through unchanged.
type Access uint8

const (
	// Read is the delivery of a message to the client; the topic is a
	// concrete topic name.
	Read Access = 1
	// Write is a PUBLISH from the client; the topic is a concrete topic name.
	Write Access = 2
	// Subscribe is one topic filter of a SUBSCRIBE from the client, possibly
	// with a "$share/GROUP/" prefix.
	Subscribe Access = 4
	// Unsubscribe is one topic filter of an UNSUBSCRIBE. It is always
	// allowed: denying it leaves a v3.1.1 client subscribed while it believes
	// it is not.
	Unsubscribe Access = 8
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Subscribe:
		return "subscribe"
	case Unsubscribe:
		return "unsubscribe"
	}
	return "access(" + strconv.Itoa(int(a)) + ")"
}

// Verdict is the answer of Grants.Check. NoMatch is distinct from Deny so
// that the caller can apply its acl_no_match setting (deny, or defer to the
// broker's other ACL sources).
type Verdict uint8

const (
	// NoMatch means no rule or claim applied to the request.
	NoMatch Verdict = iota
	// Allow means an allow applied and no deny did.
	Allow
	// Deny means a deny applied, which beats any allow, or the request was
	// malformed.
	Deny
)

func (v Verdict) String() string {
	switch v {
	case NoMatch:
		return "no match"
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}
