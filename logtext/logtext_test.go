package logtext

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// oneLine reports why s could not stand in a log line as one line of printable text, or "".
func oneLine(s string) string {
	if !utf8.ValidString(s) {
		return "invalid UTF-8"
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' || r == '\u202e' {
			return "control or line-breaking rune " + string(rune(r))
		}
	}
	return ""
}

func TestQuote(t *testing.T) {
	long := strings.Repeat("a", MaxValue+10)
	for _, tc := range []struct{ in, want string }{
		{"alice", `"alice"`},
		{"", `""`},
		{"a\nb", `"a\nb"`},
		{"x\r\n1999999999: New client connected", `"x\r\n1999999999: New client connected"`},
		{`say "hi"\`, `"say \"hi\"\\"`},
		{"\xff\xfe", `"\xff\xfe"`},
		{"\u202egnp.exe", `"\u202egnp.exe"`},
		{"line\u2028sep", `"line\u2028sep"`},
		{"\x1b[31mred", `"\x1b[31mred"`},
		{"héllo", `"héllo"`},
		{long, `"` + long[:MaxValue] + `"…`},
		// A cut never splits a rune or an escape, and the bound counts escapes.
		{strings.Repeat("a", MaxValue-1) + "é", `"` + strings.Repeat("a", MaxValue-1) + `"…`},
		{strings.Repeat("\n", MaxValue), `"` + strings.Repeat(`\n`, MaxValue/2) + `"…`},
		{strings.Repeat("a", MaxValue-3) + "\x00", `"` + strings.Repeat("a", MaxValue-3) + `"…`},
	} {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`client "a" from 127.0.0.1: token verification failed (deny)`, `client "a" from 127.0.0.1: token verification failed (deny)`},
		{"jwt: malformed\n1999999999: New client connected from 6.6.6.6", `jwt: malformed\n1999999999: New client connected from 6.6.6.6`},
		{"tab\there", `tab\there`},
		{"bad \xc3 byte", `bad \xc3 byte`},
		{strings.Repeat("x", MaxLine+5), strings.Repeat("x", MaxLine) + "…"},
		{strings.Repeat("\x80", MaxLine), strings.Repeat(`\x80`, MaxLine/4) + "…"},
	} {
		if got := Line(tc.in); got != tc.want {
			t.Errorf("Line(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Whatever comes in, Quote gives one quoted line of bounded size and Line one line; neither loses the
// text of a short, clean input.
func FuzzLogText(f *testing.F) {
	for _, s := range []string{"", "alice", "a\nb", "\r\n", "\xff", "\u2028", "\u202e", strings.Repeat("é", 40),
		"P-256\n1999999999: New client connected from 6.6.6.6 as admin (p2, c1, k60, u'admin')."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := Quote(s)
		if why := oneLine(q); why != "" {
			t.Fatalf("Quote(%q) = %q: %s", s, q, why)
		}
		if !strings.HasPrefix(q, `"`) {
			t.Fatalf("Quote(%q) = %q: not quoted", s, q)
		}
		if len(q) > MaxValue+2+len("…") {
			t.Fatalf("Quote(%q) is %d bytes", s, len(q))
		}
		l := Line(s)
		if why := oneLine(l); why != "" {
			t.Fatalf("Line(%q) = %q: %s", s, l, why)
		}
		if len(l) > MaxLine+len("…") {
			t.Fatalf("Line(%q) is %d bytes", s, len(l))
		}
		printable := utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !strconv.IsPrint(r) })
		if len(s) <= MaxLine && printable && l != s {
			t.Fatalf("Line changed the clean line %q to %q", s, l)
		}
	})
}
