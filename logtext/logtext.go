// Package logtext makes text that a client, a token or an identity provider influenced safe to write
// into the broker's log.
//
// Mosquitto writes each log line as it is, to files, syslog and $SYS topics. A client id, a claim, an
// IdP's error body or a library's error text that quotes its input could otherwise start a line of its
// own (a forged "New client connected" event), hide text behind terminal escapes or bidi overrides,
// break a SIEM's UTF-8 parser, or make one refusal cost kilobytes of log. Every such value goes through
// Quote; every whole line goes through Line before the broker sees it, so a value that escaped quoting
// still cannot split a line.
package logtext

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxValue is how many bytes Quote writes between the quotes, escapes included; the rest is replaced by
// "…". Enough for a client id, a kid or a claim name; a value longer than this is not worth more log.
const MaxValue = 64

// MaxLine is how many bytes Line writes, escapes included; the rest is replaced by "…".
const MaxLine = 1024

// Quote returns s as a double-quoted Go string literal with at most MaxValue bytes between its quotes:
// control characters, newlines, quotes, backslashes, invalid UTF-8 and non-printing runes (bidi
// overrides, U+2028) are escaped as strconv.Quote escapes them, so the result is one line of printable
// text. A value cut short is followed by "…".
func Quote(s string) string { return QuoteN(s, MaxValue) }

// QuoteN is Quote with room for max bytes between the quotes, for longer texts such as a library's
// error message. The bound is on what is written, escapes included, so the caller knows what a value
// costs in a log line or in memory however hostile it is.
func QuoteN(s string, max int) string {
	var b strings.Builder
	b.Grow(min(len(s), max) + 2 + len("…"))
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		out := s[i : i+n]
		if needsEscape(r, n) || r == '"' || r == '\\' {
			q := strconv.Quote(out)
			out = q[1 : len(q)-1]
		}
		if b.Len()-1+len(out) > max {
			b.WriteString(`"…`)
			return b.String()
		}
		b.WriteString(out)
		i += n
	}
	b.WriteByte('"')
	return b.String()
}

// Line returns msg with control characters, invalid UTF-8 and non-printing runes escaped as
// strconv.Quote would escape them, and nothing else changed, cut to at most MaxLine bytes of output
// (then followed by "…"): a line of our own reads as written, and no byte of it can start another line.
func Line(msg string) string {
	clean := len(msg) <= MaxLine
	for i := 0; clean && i < len(msg); {
		r, n := utf8.DecodeRuneInString(msg[i:])
		clean = !needsEscape(r, n)
		i += n
	}
	if clean {
		return msg
	}
	var b strings.Builder
	b.Grow(min(len(msg), MaxLine) + len("…"))
	for i := 0; i < len(msg); {
		r, n := utf8.DecodeRuneInString(msg[i:])
		out := msg[i : i+n]
		if needsEscape(r, n) {
			q := strconv.Quote(out)
			out = q[1 : len(q)-1]
		}
		if b.Len()+len(out) > MaxLine {
			b.WriteString("…")
			break
		}
		b.WriteString(out)
		i += n
	}
	return b.String()
}

// needsEscape reports whether the rune r, n bytes long, must not reach a log line as it is.
func needsEscape(r rune, n int) bool {
	return (r == utf8.RuneError && n == 1) || !strconv.IsPrint(r)
}
