package acl

import (
	"errors"
	"fmt"

	"github.com/tidwall/gjson"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/template"
)

// condition is the "when PATH[=VALUE]" clause of a rule. It is evaluated once
// per session, at CONNECT, since the claims do not change afterwards.
type condition struct {
	path   string // gjson path, as written (escapes included)
	value  string // what the claim must hold, when equals
	equals bool   // PATH=VALUE rather than PATH
}

// parseCondition parses "PATH" or "PATH=VALUE". The path follows the template
// package's rules for %%claim:PATH%%: keys and array indices joined by ".",
// "\" escaping the next character. The first "=" that is not escaped ends the
// path, so a key holding "=" is written with "\=". ":" needs no escape, so
// ZITADEL's roles are "urn:zitadel:iam:org:project:roles=admin".
func parseCondition(s string) (*condition, error) {
	path, value, equals := cutUnescaped(s, '=')
	if err := template.ValidatePath(path); err != nil {
		return nil, fmt.Errorf("claim path %q: %w", path, err)
	}
	if equals && value == "" {
		return nil, errors.New(`nothing after "=": write "when PATH" to test that a claim is set`)
	}
	return &condition{path: path, value: value, equals: equals}, nil
}

// cutUnescaped is strings.Cut on the first sep not escaped by "\".
func cutUnescaped(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func (c *condition) String() string {
	if c.equals {
		return c.path + "=" + c.value
	}
	return c.path
}

// holds reports whether the condition holds in doc, a valid JSON object.
func (c *condition) holds(doc string) bool {
	r := gjson.Get(doc, c.path)
	if c.equals {
		return holdsValue(r, c.value)
	}
	return truthy(r)
}

// truthy reports whether r is set to something: true, a non-zero number, a
// non-empty string, array or object. false, 0, "", [], {}, null and a missing
// claim are not.
func truthy(r gjson.Result) bool {
	switch r.Type {
	case gjson.True:
		return true
	case gjson.Number:
		return r.Num != 0
	case gjson.String:
		return r.Str != ""
	case gjson.JSON:
		found := false
		r.ForEach(func(_, _ gjson.Result) bool {
			found = true
			return false
		})
		return found
	}
	return false
}

// holdsValue reports whether claim r is v (in its text form: a string as is,
// a number as written, true or false), is an array with such an element, or
// is an object with the key v. The object case is how ZITADEL lists roles:
// {"urn:zitadel:iam:org:project:roles": {"admin": {...}}}.
func holdsValue(r gjson.Result, v string) bool {
	isObject := r.IsObject()
	if !isObject && !r.IsArray() {
		return scalarIs(r, v)
	}
	found := false
	r.ForEach(func(key, elem gjson.Result) bool {
		if isObject {
			found = key.Str == v
		} else {
			found = scalarIs(elem, v)
		}
		return !found
	})
	return found
}

// scalarIs reports whether the string, number or boolean r has the text v.
func scalarIs(r gjson.Result, v string) bool {
	switch r.Type {
	case gjson.String:
		return r.Str == v
	case gjson.Number:
		return r.Raw == v
	case gjson.True:
		return v == "true"
	case gjson.False:
		return v == "false"
	}
	return false
}
