package acl

import (
	"errors"
	"fmt"

	"github.com/tidwall/gjson"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/template"
)

// ErrClaimsNotObject is returned by Compile when the policy needs claims and
// they are not a valid JSON object.
var ErrClaimsNotObject = errors.New("acl: claims are not a JSON object")

// Options are the plugin's ACL options, as written in mosquitto.conf.
type Options struct {
	// Rules are the acl_rule lines, in any order: a deny beats an allow
	// whatever their order.
	Rules []string
	// TopicsClaim is the acl_topics_claim path: a claim holding topic filters
	// that each allow publish and subscribe.
	TopicsClaim string
	// ACLClaim is the acl_claim path: a claim holding an ACL in EMQX's format.
	ACLClaim string
}

// Policy is the parsed ACL configuration. It is immutable, so it is safe for
// concurrent use.
type Policy struct {
	rules       []rule
	claims      []*template.Template // the %%...%% placeholders of rules
	topicsClaim string
	aclClaim    string
	needsClaims bool
}

// NewPolicy parses the options once, at start-up, so that a mistake stops the
// broker before any client connects. Its error names every bad rule and path.
func NewPolicy(o Options) (*Policy, error) {
	p := &Policy{topicsClaim: o.TopicsClaim, aclClaim: o.ACLClaim}
	var errs []error
	for _, c := range [...]struct{ name, path string }{{"topics claim", o.TopicsClaim}, {"acl claim", o.ACLClaim}} {
		if c.path == "" {
			continue
		}
		if err := template.ValidatePath(c.path); err != nil {
			errs = append(errs, fmt.Errorf("acl: %s path %q: %w", c.name, c.path, err))
		}
		p.needsClaims = true
	}
	var ph placeholders
	for _, line := range o.Rules {
		r, err := parseRule(line, &ph)
		if err != nil {
			errs = append(errs, fmt.Errorf("acl: rule %q: %w", line, err))
			continue
		}
		p.rules = append(p.rules, r)
		p.needsClaims = p.needsClaims || r.cond != nil
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.claims = ph.list
	p.needsClaims = p.needsClaims || len(p.claims) > 0
	return p, nil
}

// String describes the policy for the plugin's start-up line: how many rules, and which claims it reads.
func (p *Policy) String() string {
	s := fmt.Sprintf("%d rules", len(p.rules))
	if p.topicsClaim != "" {
		s += fmt.Sprintf(", topics claim %q", p.topicsClaim)
	}
	if p.aclClaim != "" {
		s += fmt.Sprintf(", EMQX ACL claim %q", p.aclClaim)
	}
	return s
}

// UsesUsername reports whether an acl_rule substitutes the username (%u).
// The caller refuses that unless the username comes from the token: a
// username the client chose would let it name anyone's tree.
func (p *Policy) UsesUsername() bool {
	for i := range p.rules {
		for _, level := range p.rules[i].topic.levels {
			for _, pt := range level {
				if pt.kind == partUsername {
					return true
				}
			}
		}
	}
	return false
}

// Compile renders the policy for one session, once, at CONNECT: it evaluates
// the rules' conditions, substitutes their placeholders and reads the ACL
// claims. claims is the token's claims, a JSON object (an introspection
// response or a JWT payload); username is the MQTT username the session ends
// up with (after any replacement) and clientID its client id.
//
// It fails when the claims are not a JSON object although the policy reads
// them, and when an ACL claim is malformed or too long; the caller should then
// refuse the CONNECT, as EMQX does. Errors name claim paths but never claim
// values, which may be personal data.
func (p *Policy) Compile(claims []byte, username, clientID string) (*Grants, error) {
	b := builder{v: values{username: newValue(username), clientID: newValue(clientID)}}
	var doc string
	if p.needsClaims {
		// One copy lets every lookup return substrings of doc instead of
		// allocating; the template package validates the same way.
		doc = string(claims)
		if !gjson.Valid(doc) || !gjson.Parse(doc).IsObject() {
			return nil, ErrClaimsNotObject
		}
		b.v.claims = make([]value, len(p.claims))
		for i, t := range p.claims {
			if s, err := t.Render(claims); err == nil {
				b.v.claims[i] = newValue(s)
			}
		}
	}
	for i := range p.rules {
		r := &p.rules[i]
		if r.cond != nil && !r.cond.holds(doc) {
			continue
		}
		if f, ok := r.topic.render(&b.v, r.deny); ok {
			b.add(r.deny, r.actions, grant{filter: f, qos: allQoS})
		}
	}
	if p.topicsClaim != "" {
		if err := b.addTopicsClaim(gjson.Get(doc, p.topicsClaim)); err != nil {
			return nil, fmt.Errorf("acl: topics claim %q: %w", p.topicsClaim, err)
		}
	}
	if p.aclClaim != "" {
		if err := b.addACLClaim(gjson.Get(doc, p.aclClaim)); err != nil {
			return nil, fmt.Errorf("acl: acl claim %q: %w", p.aclClaim, err)
		}
	}
	return &b.g, nil
}
