package auth

import (
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
	}{
		{"RFC 7628 example", "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="},
		{"no authzid", "n,,\x01auth=Bearer tok\x01\x01", "tok"},
		{"scheme in lower case", "y,,\x01auth=bearer tok\x01\x01", "tok"},
		{"channel binding", "p=tls-unique,,\x01auth=Bearer tok\x01\x01", ""},
		{"no auth pair", "n,,\x01host=x\x01\x01", ""},
		{"two auth pairs", "n,,\x01auth=Bearer a\x01auth=Bearer b\x01\x01", ""},
		{"basic scheme", "n,,\x01auth=Basic dXNlcjpwdw==\x01\x01", ""},
		{"no closing separator", "n,,\x01auth=Bearer tok\x01", ""},
		{"no separator at all", "Bearer tok", ""},
		{"empty token", "n,,\x01auth=Bearer \x01\x01", ""},
		{"pair without =", "n,,\x01auth\x01\x01", ""},
		{"empty", "", ""},
	} {
		got, err := bearerToken([]byte(tc.data))
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// The parser takes any bytes a client sends: it never panics, and a token it returns is what followed
// "auth=Bearer " in the data.
func FuzzBearerToken(f *testing.F) {
	f.Add([]byte("n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4q\x01\x01"))
	f.Add([]byte("n,,\x01auth=Bearer tok\x01\x01"))
	f.Add([]byte("n,,\x01\x01"))
	f.Add([]byte("\x01\x01\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := bearerToken(data)
		if err != nil {
			if tok != "" {
				t.Fatalf("token %q with error %v", tok, err)
			}
			return
		}
		if tok == "" || strings.ContainsRune(tok, '\x01') || !strings.Contains(strings.ToLower(string(data)), "auth=bearer "+strings.ToLower(tok)+"\x01") {
			t.Fatalf("token %q from %q", tok, data)
		}
	})
}
