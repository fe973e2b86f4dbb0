// Package strictjson checks that a JSON document means the same to every parser that reads it.
//
// RFC 8259 §4 leaves duplicate member names to the parser: encoding/json and go-jose keep the last,
// gjson the first. A document that decides something (a JWT header or claims set, an introspection
// answer) and is read by more than one of them must therefore have none, or one check can read one
// value while another reads its twin. RFC 7519 §4 asks JWT parsers to refuse them, or take the last.
//
// Names are compared as encoding/json decodes them. gjson decodes an escaped unpaired surrogate
// differently, but always into U+FFFD or a non-ASCII character, so a name it reads as an ASCII one
// (alg, exp, active...) is that name for encoding/json too.
package strictjson

import (
	"bytes"
	"errors"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The errors Check returns. Their texts are fixed and never quote the input, so callers may put them
// in logs as they are.
var (
	ErrSyntax    = errors.New("malformed JSON")
	ErrDuplicate = errors.New("duplicate member name")
	ErrDepth     = errors.New("nested deeper than 64 levels")
)

// maxDepth bounds how deeply arrays and objects may nest, so that hostile input cannot make this
// checker, or the recursive parsers that read the document after it, use an unbounded stack.
const maxDepth = 64

// smallObject is how many member names of one object are compared by a linear scan of the raw names
// already seen; past it, names are unescaped into a map.
const smallObject = 16

// Check returns nil when data is one valid JSON value (RFC 8259) in which no object has two members of
// the same name and arrays and objects nest at most 64 deep; otherwise ErrSyntax, ErrDuplicate or
// ErrDepth (whichever it meets first). Names are compared as encoding/json decodes them: after
// unescaping, with each byte of invalid UTF-8 and each unpaired surrogate read as U+FFFD.
//
// Cost: one pass over data, with recursion bounded by the depth limit. It allocates nothing for
// objects of up to 16 members, whose names are compared with those before them (at most 120
// comparisons per object, each stopping at the first differing character); a larger object costs one
// map of its names, one string per name.
func Check(data []byte) error {
	s := scanner{data: data}
	s.space()
	if err := s.value(0); err != nil {
		return err
	}
	s.space()
	if s.pos != len(data) {
		return ErrSyntax
	}
	return nil
}

type scanner struct {
	data []byte
	pos  int
}

// peek returns the next byte, or 0 at the end.
func (s *scanner) peek() byte {
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

func (s *scanner) space() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// value scans one value inside depth levels of nesting.
func (s *scanner) value(depth int) error {
	switch c := s.peek(); {
	case c == '{' || c == '[':
		return s.composite(depth + 1)
	case c == '"':
		_, err := s.str()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	}
	return ErrSyntax
}

// composite scans an object or an array, at nesting level depth.
func (s *scanner) composite(depth int) error {
	if depth > maxDepth {
		return ErrDepth
	}
	object := s.data[s.pos] == '{'
	end := s.data[s.pos] + 2 // '}' or ']'
	s.pos++
	s.space()
	if s.peek() == end {
		s.pos++
		return nil
	}
	var seen names
	for {
		if object {
			if s.peek() != '"' {
				return ErrSyntax
			}
			name, err := s.str()
			if err != nil {
				return err
			}
			if err := seen.add(name); err != nil {
				return err
			}
			s.space()
			if s.peek() != ':' {
				return ErrSyntax
			}
			s.pos++
			s.space()
		}
		if err := s.value(depth); err != nil {
			return err
		}
		s.space()
		switch s.peek() {
		case ',':
			s.pos++
			s.space()
		case end:
			s.pos++
			return nil
		default:
			return ErrSyntax
		}
	}
}

// names are the member names of one object met so far: raw while there are few, decoded into a map
// past smallObject.
type names struct {
	small [smallObject][]byte
	n     int
	big   map[string]struct{}
}

// add adds a raw name, or returns ErrDuplicate if it is there already.
func (ns *names) add(raw []byte) error {
	if ns.big == nil && ns.n < smallObject {
		for _, prev := range ns.small[:ns.n] {
			if sameName(prev, raw) {
				return ErrDuplicate
			}
		}
		ns.small[ns.n] = raw
		ns.n++
		return nil
	}
	if ns.big == nil {
		ns.big = make(map[string]struct{}, 2*smallObject)
		for _, prev := range ns.small {
			ns.big[decode(prev)] = struct{}{}
		}
	}
	name := decode(raw)
	if _, dup := ns.big[name]; dup {
		return ErrDuplicate
	}
	ns.big[name] = struct{}{}
	return nil
}

// str scans a string and returns its raw contents, between the quotes.
func (s *scanner) str() ([]byte, error) {
	s.pos++
	start := s.pos
	for s.pos < len(s.data) {
		switch c := s.data[s.pos]; {
		case c == '"':
			s.pos++
			return s.data[start : s.pos-1], nil
		case c == '\\':
			switch s.peekAt(1) {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				if s.pos+6 > len(s.data) || hex4(s.data[s.pos+2:s.pos+6]) < 0 {
					return nil, ErrSyntax
				}
				s.pos += 6
			default:
				return nil, ErrSyntax
			}
		case c < 0x20:
			return nil, ErrSyntax
		default:
			s.pos++
		}
	}
	return nil, ErrSyntax
}

func (s *scanner) peekAt(i int) byte {
	if s.pos+i < len(s.data) {
		return s.data[s.pos+i]
	}
	return 0
}

func (s *scanner) literal(lit string) error {
	if !bytes.HasPrefix(s.data[s.pos:], []byte(lit)) {
		return ErrSyntax
	}
	s.pos += len(lit)
	return nil
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	if s.peek() == '-' {
		s.pos++
	}
	switch c := s.peek(); {
	case c == '0':
		s.pos++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return ErrSyntax
	}
	if s.peek() == '.' {
		s.pos++
		if !s.digits() {
			return ErrSyntax
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.pos++
		if c := s.peek(); c == '+' || c == '-' {
			s.pos++
		}
		if !s.digits() {
			return ErrSyntax
		}
	}
	return nil
}

// digits scans [0-9]* and reports whether there was at least one.
func (s *scanner) digits() bool {
	start := s.pos
	for c := s.peek(); c >= '0' && c <= '9'; c = s.peek() {
		s.pos++
	}
	return s.pos > start
}

// decode returns a raw (escaped, valid) name as encoding/json decodes it.
func decode(raw []byte) string {
	var b strings.Builder
	b.Grow(len(raw)) // enough unless invalid UTF-8 bytes, each read as U+FFFD, make it longer
	for i := 0; i < len(raw); {
		var r rune
		r, i = nextRune(raw, i)
		b.WriteRune(r)
	}
	return b.String()
}

// sameName reports whether two raw (escaped, valid) names decode to the same string.
func sameName(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		var ra, rb rune
		ra, i = nextRune(a, i)
		rb, j = nextRune(b, j)
		if ra != rb {
			return false
		}
	}
	return i == len(a) && j == len(b)
}

// nextRune decodes the character of the raw string contents s that starts at i, as encoding/json
// does, and returns it with the index of the next one. s has been checked by str.
func nextRune(s []byte, i int) (rune, int) {
	c := s[i]
	if c == '\\' {
		switch s[i+1] {
		case 'b':
			return '\b', i + 2
		case 'f':
			return '\f', i + 2
		case 'n':
			return '\n', i + 2
		case 'r':
			return '\r', i + 2
		case 't':
			return '\t', i + 2
		case 'u':
			r := hex4(s[i+2 : i+6])
			if !utf16.IsSurrogate(r) {
				return r, i + 6
			}
			if i+12 <= len(s) && s[i+6] == '\\' && s[i+7] == 'u' {
				if pair := utf16.DecodeRune(r, hex4(s[i+8:i+12])); pair != unicode.ReplacementChar {
					return pair, i + 12
				}
			}
			return unicode.ReplacementChar, i + 6
		}
		return rune(s[i+1]), i + 2 // \" \\ \/
	}
	if c < utf8.RuneSelf {
		return rune(c), i + 1
	}
	r, n := utf8.DecodeRune(s[i:]) // utf8.RuneError, 1 for each invalid byte, as encoding/json reads it
	return r, i + n
}

// hex4 returns the value of four hex digits, or -1.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}
