// Package template renders MQTT usernames from OAuth 2.0 token claims.
//
// A template is literal text with placeholders delimited by a pair of percent
// signs on each side, for example "%%oidc-username%%" or
// "tenant-%%claim:tenant%%". Each placeholder is replaced by the text form of a
// claim taken from the token's claims, a JSON object (an RFC 7662
// introspection response or a JWT payload):
//
//	%%oidc-username%%  claim "username"
//	%%oidc-email%%     claim "email"
//	%%oidc-sub%%       claim "sub"
//	%%zitadel-role%%   first key, in document order, of the object claim
//	                   "urn:zitadel:iam:org:project:roles"
//	%%claim:PATH%%     the claim at gjson path PATH, e.g. "realm_access.roles.0";
//	                   escape a literal dot in a key as "\."
//
// A claim's text form is the same as in the C plugin this package replaces:
// a string as is, a number as its JSON text, true and false as "true" and
// "false", an object as its first key. Arrays, null and missing claims have no
// text form and make Render fail. A single "%" is literal text; "%%" always
// starts or ends a placeholder, so a template cannot contain a literal "%%".
//
// Templates are parsed once at start-up so that configuration mistakes are
// reported before any client connects, and so that Render, which runs on every
// connection, only looks values up.
package template

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tidwall/gjson"
)

// delim opens and closes a placeholder.
const delim = "%%"

// claimPrefix introduces a placeholder that names a claim by gjson path.
const claimPrefix = "claim:"

// zitadelRolesClaim is the claim in which ZITADEL lists a user's project roles,
// as an object whose keys are the role names.
const zitadelRolesClaim = "urn:zitadel:iam:org:project:roles"

// ErrClaimsNotObject is returned by Render when the claims are not a valid JSON
// object, so no placeholder can be looked up in them.
var ErrClaimsNotObject = errors.New("template: claims are not a JSON object")

// MissingClaimError reports a placeholder whose claim is missing, null or has
// no text form (an array, an empty object, or for %%zitadel-role%% anything but
// a non-empty object). It deliberately carries no claim
// values: errors end up in broker logs, and claims may hold personal data.
type MissingClaimError struct {
	// Placeholder is the placeholder as written in the template,
	// for example "%%oidc-email%%".
	Placeholder string
}

func (e *MissingClaimError) Error() string {
	return fmt.Sprintf("template: claim for placeholder %q is missing, null or has no text form", e.Placeholder)
}

// kind says how a segment produces its text.
type kind uint8

const (
	kindLiteral  kind = iota // the segment's literal text
	kindValue                // the text form of the claim at path
	kindFirstKey             // the first key of the object claim at path
)

// segment is one piece of a parsed template.
type segment struct {
	kind kind
	text string // literal text, or the placeholder as written
	path string // gjson path of the claim; empty for literals
}

// named maps the fixed placeholder names to how they are rendered. Their paths
// are top-level keys; the ZITADEL one goes through gjson.Escape so that it stays
// a literal key even if gjson ever gives ':' a meaning.
var named = map[string]segment{
	"oidc-username": {kind: kindValue, path: "username"},
	"oidc-email":    {kind: kindValue, path: "email"},
	"oidc-sub":      {kind: kindValue, path: "sub"},
	"zitadel-role":  {kind: kindFirstKey, path: gjson.Escape(zitadelRolesClaim)},
}

// Template is a parsed username template. It is immutable, so it is safe for
// concurrent use.
type Template struct {
	src     string
	segs    []segment
	nPlaces int // number of placeholder segments
	litLen  int // total length of the literal segments
}

// Parse parses the template s. It rejects unknown, empty and unterminated
// placeholders and claim paths that use gjson features beyond plain keys and
// array indices (see validatePath).
func Parse(s string) (*Template, error) {
	t := &Template{src: s}
	rest := s
	for rest != "" {
		open := strings.Index(rest, delim)
		if open < 0 {
			t.addLiteral(rest)
			break
		}
		t.addLiteral(rest[:open])
		body := rest[open+len(delim):]
		end := strings.Index(body, delim)
		if end < 0 {
			return nil, fmt.Errorf("template: unterminated placeholder %q: no closing %s", rest[open:], delim)
		}
		text := rest[open : open+2*len(delim)+end]
		seg, err := parsePlaceholder(text, body[:end])
		if err != nil {
			return nil, fmt.Errorf("template: %w", err)
		}
		t.segs = append(t.segs, seg)
		t.nPlaces++
		rest = body[end+len(delim):]
	}
	return t, nil
}

func (t *Template) addLiteral(s string) {
	if s != "" {
		t.segs = append(t.segs, segment{kind: kindLiteral, text: s})
		t.litLen += len(s)
	}
}

// parsePlaceholder returns the segment for the placeholder text, whose name
// (the text between the delimiters) is name.
func parsePlaceholder(text, name string) (segment, error) {
	if name == "" {
		return segment{}, fmt.Errorf("empty placeholder %q", text)
	}
	if path, ok := strings.CutPrefix(name, claimPrefix); ok {
		if err := validatePath(path); err != nil {
			return segment{}, fmt.Errorf("invalid claim path in placeholder %q: %w", text, err)
		}
		return segment{kind: kindValue, text: text, path: path}, nil
	}
	seg, ok := named[name]
	if !ok {
		return segment{}, fmt.Errorf("unknown placeholder %q", text)
	}
	seg.text = text
	return seg, nil
}

// ValidatePath reports whether path is a claim path that %%claim:PATH%%
// accepts, so that other options naming a claim (such as the acl package's)
// follow the same rules and read the same claim. See validatePath.
func ValidatePath(path string) error { return validatePath(path) }

// validatePath accepts gjson paths made of plain keys and array indices
// separated by dots, with "\" escaping the next character. It rejects the rest
// of the gjson syntax — modifiers (@), literals (!), array counts and queries
// (#), wildcards (* ?), pipes (|) and multipaths ([ {) — because a path that
// matches something other than the one claim the operator meant could let a
// token choose its own username. Such characters can still be matched in a key
// by escaping them.
func validatePath(path string) error {
	if path == "" {
		return errors.New("empty path")
	}
	compLen := 0 // length of the current dot-separated component
	for i := 0; i < len(path); i++ {
		switch c := path[i]; c {
		case '\\':
			if i+1 == len(path) {
				return errors.New(`path ends with an unfinished "\" escape`)
			}
			i++
			compLen++
		case '.':
			if compLen == 0 {
				return fmt.Errorf("empty key before the dot at offset %d", i)
			}
			compLen = 0
		case '@', '!', '#', '*', '?', '|', '[', '{':
			return fmt.Errorf("gjson syntax %q at offset %d is not allowed (escape it with \"\\\" to match it in a key)", c, i)
		default:
			compLen++
		}
	}
	if compLen == 0 {
		return errors.New("path ends with a dot")
	}
	return nil
}

// String returns the template's source text.
func (t *Template) String() string { return t.src }

// HasPlaceholders reports whether the template contains any placeholder, that
// is whether its rendering depends on the claims.
func (t *Template) HasPlaceholders() bool { return t.nPlaces > 0 }

// Placeholders returns the template's placeholders as written (for example
// "%%claim:tenant%%"), in order and with repeats, for logging the effective
// configuration.
func (t *Template) Placeholders() []string {
	out := make([]string, 0, t.nPlaces)
	for _, seg := range t.segs {
		if seg.kind != kindLiteral {
			out = append(out, seg.text)
		}
	}
	return out
}

// Render substitutes each placeholder with the text form of its claim from
// claims, which must be a JSON object. It returns a *MissingClaimError for the
// first placeholder whose claim is missing, null or has no text form, and
// ErrClaimsNotObject if claims is not a valid JSON object. A template without
// placeholders renders as its source text whatever the claims. An empty result
// is not an error; callers that need a non-empty username check for it.
func (t *Template) Render(claims []byte) (string, error) {
	if t.nPlaces == 0 {
		return t.src, nil
	}
	// One copy of the claims lets every lookup return substrings of doc
	// instead of fresh allocations (which gjson.GetBytes would make). The
	// builder then copies the values, so the result does not pin the claims.
	doc := string(claims)
	// gjson does not validate, and on malformed input it returns arbitrary
	// matches rather than failing; never build a username from those.
	if !gjson.Valid(doc) || !gjson.Parse(doc).IsObject() {
		return "", ErrClaimsNotObject
	}

	// Look every value up first so the builder can be sized exactly.
	var buf [8]string
	vals := buf[:0]
	n := t.litLen
	for _, seg := range t.segs {
		if seg.kind == kindLiteral {
			continue
		}
		v, ok := seg.lookup(doc)
		if !ok {
			return "", &MissingClaimError{Placeholder: seg.text}
		}
		vals = append(vals, v)
		n += len(v)
	}

	var b strings.Builder
	b.Grow(n)
	for _, seg := range t.segs {
		if seg.kind == kindLiteral {
			b.WriteString(seg.text)
			continue
		}
		b.WriteString(vals[0])
		vals = vals[1:]
	}
	return b.String(), nil
}

// lookup returns the text of placeholder segment seg in the valid JSON object
// doc, and false if it has none.
func (seg segment) lookup(doc string) (string, bool) {
	r := gjson.Get(doc, seg.path)
	if seg.kind == kindFirstKey {
		if !r.IsObject() {
			return "", false
		}
		return firstKey(r)
	}
	return text(r)
}

// text returns the text form of a claim value, and false if it has none.
func text(r gjson.Result) (string, bool) {
	switch r.Type {
	case gjson.String:
		return r.Str, true
	case gjson.Number:
		return r.Raw, true // as written: "42" stays "42", not "42.0"
	case gjson.True:
		return "true", true
	case gjson.False:
		return "false", true
	case gjson.JSON:
		if r.IsObject() {
			return firstKey(r)
		}
	}
	return "", false // null, missing or array
}

// firstKey returns the first key, in document order, of object r, and false
// if r is empty.
func firstKey(r gjson.Result) (key string, ok bool) {
	r.ForEach(func(k, _ gjson.Result) bool {
		key, ok = k.Str, true
		return false
	})
	return key, ok
}
