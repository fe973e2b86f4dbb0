package acl

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/template"
)

// partKind says where a part of a topic template gets its text.
type partKind uint8

const (
	partLiteral  partKind = iota // the part's text
	partUsername                 // the session's MQTT username (%u, ${username})
	partClientID                 // the session's client id (%c, ${clientid})
	partClaim                    // a %%...%% placeholder: values.claims[idx]
	partUnknown                  // a ${...} placeholder this package cannot fill
)

// part is a piece of one topic level.
type part struct {
	kind partKind
	text string // literal text; the placeholder as written otherwise
	idx  int    // for partClaim, the index of its template in Policy.claims
}

// topicTemplate is a topic filter whose levels may hold placeholders. Parts
// never span levels: a substituted value must fill (part of) one level, so a
// username such as "alice/evil" cannot reach into another user's tree.
type topicTemplate struct {
	src    string   // as written
	filter string   // the filter itself when there are no placeholders
	levels [][]part // the levels, when there are placeholders
}

// value is the text a placeholder renders to in one session, with whether it
// is usable at all.
type value struct {
	s  string
	ok bool
}

// values holds the placeholder values of one session.
type values struct {
	username, clientID value
	claims             []value // by index of Policy.claims
}

// newValue checks s as a placeholder value.
func newValue(s string) value { return value{s: s, ok: safeValue(s)} }

// safeValue reports whether s may be substituted into a topic level. The
// rules are those of auth.CheckName, because the same attacks apply: "/"
// would cross into another level (tenants/%u/# with username "alice/evil"
// reaches tenants/alice/evil, inside alice's tree), "+" and "#" would act as
// wildcards, a leading "$" would reach $SYS-like trees, and an empty value
// would turn tenants/%u/# into tenants//#, shared by everyone without a name.
// Control characters (NUL included) have no business in a topic.
func safeValue(s string) bool {
	if s == "" || s[0] == '$' || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == '/' || r == '+' || r == '#' || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// lookup returns the text of part p in the session with values v.
func (v *values) lookup(p part) value {
	switch p.kind {
	case partLiteral:
		return value{s: p.text, ok: true}
	case partUsername:
		return v.username
	case partClientID:
		return v.clientID
	case partClaim:
		return v.claims[p.idx]
	}
	return value{} // partUnknown
}

// render returns the filter of t for the session with values v. A level with a
// placeholder that has no usable value makes an allow unusable (false), since
// granting anything there would be a guess. For a deny (widen true) that level
// becomes "+" instead: a deny must never disappear because a client chose an
// odd client id or a claim is missing, so it denies every value the
// placeholder could have taken. A deny that should only apply when a claim is
// present says so with "when".
func (t *topicTemplate) render(v *values, widen bool) (string, bool) {
	if t.levels == nil {
		return t.filter, true
	}
	buf := make([]byte, 0, len(t.src))
	for i, level := range t.levels {
		if i > 0 {
			buf = append(buf, '/')
		}
		start := len(buf)
		for _, p := range level {
			val := v.lookup(p)
			if !val.ok {
				if !widen {
					return "", false
				}
				buf = append(buf[:start], '+')
				break
			}
			buf = append(buf, val.s...)
		}
	}
	return string(buf), true
}

// templateBuilder assembles the levels of a topic template from a stream of
// literal text and placeholders.
type templateBuilder struct {
	levels  [][]part
	dynamic bool
	lit     strings.Builder // literal text not yet split into levels
}

func (b *templateBuilder) literal(s string) { b.lit.WriteString(s) }

func (b *templateBuilder) placeholder(p part) {
	b.flush()
	b.levels[len(b.levels)-1] = append(b.levels[len(b.levels)-1], p)
	b.dynamic = true
}

// flush splits the pending literal text at "/" into the current and new levels.
func (b *templateBuilder) flush() {
	if b.levels == nil {
		b.levels = [][]part{nil}
	}
	for i, s := range strings.Split(b.lit.String(), "/") {
		if i > 0 {
			b.levels = append(b.levels, nil)
		}
		if s != "" {
			b.levels[len(b.levels)-1] = append(b.levels[len(b.levels)-1], part{kind: partLiteral, text: s})
		}
	}
	b.lit.Reset()
}

// finish returns the template with source text src, after checking that it
// is a valid filter whatever safe values fill its placeholders.
func (b *templateBuilder) finish(src string) (topicTemplate, error) {
	b.flush()
	t := topicTemplate{src: src, filter: src}
	if b.dynamic {
		t.filter, t.levels = "", b.levels
	}
	if err := checkFilter(t.probe()); err != nil {
		return topicTemplate{}, err
	}
	return t, nil
}

// probe returns the filter of t with every placeholder replaced by "x". Any
// safe value would do: none can add, remove or wildcard a level, so the
// template is a valid filter for every session exactly when the probe is.
func (t *topicTemplate) probe() string {
	if t.levels == nil {
		return t.filter
	}
	var b strings.Builder
	for i, level := range t.levels {
		if i > 0 {
			b.WriteByte('/')
		}
		for _, p := range level {
			if p.kind == partLiteral {
				b.WriteString(p.text)
			} else {
				b.WriteByte('x')
			}
		}
	}
	return b.String()
}

// checkFilter says what is wrong with a rule or claim filter. Besides MQTT's
// rules it refuses "$share/...": SUBSCRIBE is checked on the filter after the
// share prefix, so such a filter could never match anything.
func checkFilter(f string) error {
	switch {
	case !ValidFilter(f):
		return errors.New(`not a valid MQTT topic filter ("+" and "#" must fill a whole level, "#" only the last; no NUL; 1 to 65535 bytes of UTF-8)`)
	case strings.HasPrefix(f, sharePrefix):
		return errors.New(`filters are matched after "$share/GROUP/" is removed from a subscription; leave it out`)
	}
	return nil
}

// placeholders collects the %%...%% placeholders of a policy's rules, each
// parsed once by the template package and rendered once per session however
// many rules use it.
type placeholders struct {
	index map[string]int
	list  []*template.Template
}

// add returns the index of placeholder text (such as "%%claim:tenant%%").
func (ph *placeholders) add(text string) (int, error) {
	if i, ok := ph.index[text]; ok {
		return i, nil
	}
	t, err := template.Parse(text)
	if err != nil {
		return 0, err
	}
	if ph.index == nil {
		ph.index = make(map[string]int)
	}
	ph.index[text] = len(ph.list)
	ph.list = append(ph.list, t)
	return len(ph.list) - 1, nil
}

// parseRuleTopic parses the TOPIC of an acl_rule: a filter that may hold %u
// (the username), %c (the client id) and the template package's %%...%%
// placeholders. A "%" that starts none of them is literal text.
func parseRuleTopic(s string, ph *placeholders) (topicTemplate, error) {
	var b templateBuilder
	for i := 0; i < len(s); {
		rest := s[i:]
		switch {
		case strings.HasPrefix(rest, "%%"):
			end := strings.Index(rest[2:], "%%")
			if end < 0 {
				return topicTemplate{}, fmt.Errorf("unterminated placeholder %q", rest)
			}
			text := rest[:end+4]
			idx, err := ph.add(text)
			if err != nil {
				return topicTemplate{}, err
			}
			b.placeholder(part{kind: partClaim, text: text, idx: idx})
			i += len(text)
		case strings.HasPrefix(rest, "%u"):
			b.placeholder(part{kind: partUsername, text: "%u"})
			i += 2
		case strings.HasPrefix(rest, "%c"):
			b.placeholder(part{kind: partClientID, text: "%c"})
			i += 2
		default:
			b.literal(rest[:1])
			i++
		}
	}
	return b.finish(s)
}

// eqPrefix marks an EMQX claim filter that is compared as a plain string and
// not expanded, e.g. "eq t/#" grants a subscription to exactly "t/#".
const eqPrefix = "eq "

// parseClaimFilter parses a topic filter found in a claim, in EMQX's syntax:
// ${username} and ${clientid} are placeholders; any other ${...} is one this
// package cannot fill; and the prefix "eq " makes the rest an exact filter
// (exact true) with no placeholders. It is false for an invalid filter, which
// the caller ignores.
func parseClaimFilter(s string) (t topicTemplate, exact, ok bool) {
	if f, isEq := strings.CutPrefix(s, eqPrefix); isEq {
		if checkFilter(f) != nil {
			return topicTemplate{}, false, false
		}
		return topicTemplate{src: s, filter: f}, true, true
	}
	var b templateBuilder
	for rest := s; rest != ""; {
		open := strings.Index(rest, "${")
		if open < 0 {
			b.literal(rest)
			break
		}
		closing := strings.IndexByte(rest[open:], '}')
		if closing < 0 {
			b.literal(rest)
			break
		}
		b.literal(rest[:open])
		text := rest[open : open+closing+1]
		switch text {
		case "${username}":
			b.placeholder(part{kind: partUsername, text: text})
		case "${clientid}":
			b.placeholder(part{kind: partClientID, text: text})
		default:
			b.placeholder(part{kind: partUnknown, text: text})
		}
		rest = rest[open+closing+1:]
	}
	t, err := b.finish(s)
	return t, false, err == nil
}
