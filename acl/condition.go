package acl

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/template"
)

// condition is the "when PATH[=VALUE]" clause of a rule. It is evaluated once
// per session, at CONNECT, since the claims do not change afterwards.
type condition struct {
	path   string // gjson path, as written (escapes included)
	value  string // what the claim must hold, when equals
	equals bool   // PATH=VALUE rather than PATH
	scope  bool   // path is scopePath: the token's granted scopes, whichever claim holds them
}

// scopePath is the condition that reads the scopes granted to a token. Identity providers write
// them two ways, sometimes one way in an introspection answer and the other in a JWT of the same
// token (Ory Hydra): a space-separated "scope" string (RFC 7662, RFC 9068, Keycloak, Auth0, ZITADEL)
// or "scp", an array (Okta, Hydra's JWTs) or a space-separated string (Entra ID). "when
// scope=VALUE" holds when either claim, in either form, grants VALUE, so one rule serves every
// verification mode.
const scopePath = "scope"

// scopeClaims are the claims scopePath reads.
var scopeClaims = [...]string{"scope", "scp"}

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
	if path == "scp" {
		// As a plain claim, Entra ID's space-separated scp would match only a token with one scope,
		// and a deny rule written for the others would silently never apply.
		return nil, errors.New(`write "when scope" or "when scope=VALUE": it reads the scp claim too, as an array or a space-separated string`)
	}
	return &condition{path: path, value: value, equals: equals, scope: path == scopePath}, nil
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
	if c.scope {
		return grantsScope(doc, c.value)
	}
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

// grantsScope reports whether the token's scope or scp claim grants the scope want, or any scope when
// want is "". Each claim may be a string of scopes separated by spaces (RFC 6749 section 3.3: a scope
// token holds no space) or an array of them; other values grant nothing.
func grantsScope(doc, want string) bool {
	for _, name := range scopeClaims {
		found := false
		switch r := gjson.Get(doc, name); {
		case r.Type == gjson.String:
			found = listHolds(r.Str, want)
		case r.IsArray():
			r.ForEach(func(_, elem gjson.Result) bool {
				found = elem.Type == gjson.String && elem.Str != "" && (want == "" || elem.Str == want)
				return !found
			})
		}
		if found {
			return true
		}
	}
	return false
}

// listHolds reports whether the space-separated list holds want, or any item when want is "".
func listHolds(list, want string) bool {
	for list != "" {
		var item string
		item, list, _ = strings.Cut(list, " ")
		if item != "" && (want == "" || item == want) {
			return true
		}
	}
	return false
}
