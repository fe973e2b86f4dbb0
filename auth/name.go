package auth

import (
	"errors"
	"unicode"
	"unicode/utf8"
)

// CheckName refuses a username or client id that would be unsafe in a topic pattern. Mosquitto's
// acl_file substitutes %u and %c textually, and a v5 plugin gets no special-character filtering from the
// broker, so a name holding "/" can write into another tenant's tree (users/alice/evil under users/%u/#)
// and one holding "+" or "#" acts as a wildcard. A leading "$" would reach $SYS-like trees.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("empty")
	case !utf8.ValidString(name):
		return errors.New("not valid UTF-8")
	case name[0] == '$':
		return errors.New(`starts with "$"`)
	}
	for _, r := range name {
		switch {
		case r == '/' || r == '+' || r == '#':
			return errors.New(`contains "/", "+" or "#"`)
		case unicode.IsControl(r):
			return errors.New("contains a control character")
		}
	}
	return nil
}
