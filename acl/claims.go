package acl

import (
	"errors"
	"fmt"

	"github.com/tidwall/gjson"
)

// maxClaimFilters bounds the topic filters a session may take from its
// claims. Every check scans a session's grants, on the broker's only thread,
// so a token with thousands of them would slow every message of the session;
// EMQX likewise expects "not many" rules in a token.
const maxClaimFilters = 1000

// errTooManyFilters is returned when the claims hold more than maxClaimFilters.
var errTooManyFilters = fmt.Errorf("the claims hold more than %d topic filters", maxClaimFilters)

// addClaimFilter adds the grant of the filter src found in a claim. Invalid
// filters are ignored, as EMQX ignores them by never matching them: the
// claim's other filters still apply.
func (b *builder) addClaimFilter(src string, deny bool, acts action, qos uint8, retain retainCond) error {
	if b.nFilters++; b.nFilters > maxClaimFilters {
		return errTooManyFilters
	}
	t, exact, ok := parseClaimFilter(src)
	if !ok {
		return nil
	}
	f, ok := t.render(&b.v, deny)
	if !ok {
		return nil
	}
	b.add(deny, acts, grant{filter: f, exact: exact, qos: qos, retain: retain})
	return nil
}

// addTopicsClaim adds the acl_topics_claim r: an array of topic filters each
// allowing publish and subscribe. A single string counts as a one-element
// array, because identity providers often flatten single-valued claims
// (Keycloak's mappers do unless "multivalued" is set). A missing or null claim
// grants nothing.
func (b *builder) addTopicsClaim(r gjson.Result) error {
	switch {
	case !r.Exists() || r.Type == gjson.Null:
		return nil
	case r.Type == gjson.String:
		return b.addClaimFilter(r.Str, false, actAll, allQoS, retainAny)
	case r.IsArray():
		return b.addFilterList(r, false, actAll)
	}
	return errors.New("neither an array of topic filters nor a string")
}

// addFilterList adds the allow or deny grants of r, an array of filters.
func (b *builder) addFilterList(r gjson.Result, deny bool, acts action) error {
	var err error
	i := 0
	r.ForEach(func(_, elem gjson.Result) bool {
		if elem.Type != gjson.String {
			err = fmt.Errorf("element %d is not a string", i)
		} else {
			err = b.addClaimFilter(elem.Str, deny, acts, allQoS, retainAny)
		}
		i++
		return err == nil
	})
	return err
}
