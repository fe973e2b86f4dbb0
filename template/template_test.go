package template

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// claims is a token payload exercising every kind of claim value.
const claims = `{
	"username": "alice",
	"email": "alice@example.com",
	"sub": "248289761001",
	"urn:zitadel:iam:org:project:roles": {
		"writer": {"123": "org.example"},
		"admin": {"123": "org.example"}
	},
	"tenant": "acme",
	"realm_access": {"roles": ["operator", "viewer"]},
	"int": 42,
	"float": 1.5,
	"exp": 1.7e9,
	"neg": -0,
	"yes": true,
	"no": false,
	"nothing": null,
	"empty": "",
	"list": [1, 2],
	"emptylist": [],
	"emptyobj": {},
	"obj": {"zeta": 1, "alpha": 2},
	"first.last": "dotted",
	"a": {"b": {"c": "deep"}},
	"unicode": "jürgen-日本",
	"escaped": "tab\there \u00e9",
	"weird@key": "at",
	"weird|key": "pipe",
	"https://example.com/roles": {"ops": {}},
	"p%ct": "percent"
}`

func mustParse(t testing.TB, s string) *Template {
	t.Helper()
	tmpl, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return tmpl
}

func TestRender(t *testing.T) {
	tests := []struct {
		name, tmpl, want string
	}{
		// Fixed placeholders.
		{"username", "%%oidc-username%%", "alice"},
		{"email", "%%oidc-email%%", "alice@example.com"},
		{"sub", "%%oidc-sub%%", "248289761001"},
		{"zitadel role is first key in document order", "%%zitadel-role%%", "writer"},

		// Claim paths.
		{"claim top level", "%%claim:tenant%%", "acme"},
		{"claim nested object", "%%claim:a.b.c%%", "deep"},
		{"claim array index", "%%claim:realm_access.roles.0%%", "operator"},
		{"claim second array index", "%%claim:realm_access.roles.1%%", "viewer"},
		{"claim escaped dot", `%%claim:first\.last%%`, "dotted"},
		{"claim escaped at", `%%claim:weird\@key%%`, "at"},
		{"claim escaped pipe", `%%claim:weird\|key%%`, "pipe"},
		{"claim url key", `%%claim:https://example\.com/roles%%`, "ops"},
		{"claim key with percent", `%%claim:p%ct%%`, "percent"},
		{"claim colon key", "%%claim:urn:zitadel:iam:org:project:roles%%", "writer"},

		// Conversions.
		{"string", "%%claim:tenant%%", "acme"},
		{"integer as written", "%%claim:int%%", "42"},
		{"float as written", "%%claim:float%%", "1.5"},
		{"exponent as written", "%%claim:exp%%", "1.7e9"},
		{"negative zero as written", "%%claim:neg%%", "-0"},
		{"true", "%%claim:yes%%", "true"},
		{"false", "%%claim:no%%", "false"},
		{"object is its first key", "%%claim:obj%%", "zeta"},
		{"empty string", "%%claim:empty%%", ""},
		{"unicode", "%%claim:unicode%%", "jürgen-日本"},
		{"json escapes decoded", "%%claim:escaped%%", "tab\there é"},

		// Literal text.
		{"empty template", "", ""},
		{"literal only", "static-user", "static-user"},
		{"single percent is literal", "100%", "100%"},
		{"percent around placeholder", "%-%%oidc-sub%%-%", "%-248289761001-%"},
		{"percent after placeholder", "%%oidc-sub%%%", "248289761001%"},
		{"prefix and suffix", "user-%%oidc-sub%%@mqtt", "user-248289761001@mqtt"},
		{"unicode literal", "ü-%%oidc-username%%-日本", "ü-alice-日本"},

		// Several placeholders.
		{"two placeholders", "%%claim:tenant%%/%%oidc-username%%", "acme/alice"},
		{"adjacent placeholders", "%%oidc-username%%%%claim:int%%", "alice42"},
		{"repeated placeholder", "%%oidc-sub%%-%%oidc-sub%%", "248289761001-248289761001"},
		{"many placeholders", strings.Repeat("%%claim:int%%.", 10), strings.Repeat("42.", 10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mustParse(t, tt.tmpl).Render([]byte(claims))
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got != tt.want {
				t.Errorf("Render = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRenderMissingClaim(t *testing.T) {
	tests := []struct {
		name, tmpl, claims, placeholder string
	}{
		{"missing", "%%oidc-email%%", `{"sub":"x"}`, "%%oidc-email%%"},
		{"null", "%%claim:nothing%%", claims, "%%claim:nothing%%"},
		{"array", "%%claim:list%%", claims, "%%claim:list%%"},
		{"empty array", "%%claim:emptylist%%", claims, "%%claim:emptylist%%"},
		{"empty object has no first key", "%%claim:emptyobj%%", claims, "%%claim:emptyobj%%"},
		{"index out of range", "%%claim:realm_access.roles.5%%", claims, "%%claim:realm_access.roles.5%%"},
		{"unescaped dot is a path", "%%claim:first.last%%", claims, "%%claim:first.last%%"},
		{"first failing placeholder is named", "%%oidc-sub%%-%%claim:nope%%-%%claim:list%%", claims, "%%claim:nope%%"},
		{"zitadel roles missing", "%%zitadel-role%%", `{"sub":"x"}`, "%%zitadel-role%%"},
		{"zitadel roles empty", "%%zitadel-role%%", `{"urn:zitadel:iam:org:project:roles":{}}`, "%%zitadel-role%%"},
		{"zitadel roles not an object", "%%zitadel-role%%", `{"urn:zitadel:iam:org:project:roles":"admin"}`, "%%zitadel-role%%"},
		{"zitadel roles array", "%%zitadel-role%%", `{"urn:zitadel:iam:org:project:roles":["admin"]}`, "%%zitadel-role%%"},
		{"zitadel key is literal, not a prefix match", "%%zitadel-role%%", `{"urn:zitadel:iam:org:project:roles2":{"admin":1}}`, "%%zitadel-role%%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mustParse(t, tt.tmpl).Render([]byte(tt.claims))
			var mce *MissingClaimError
			if !errors.As(err, &mce) {
				t.Fatalf("Render = %q, %v; want *MissingClaimError", got, err)
			}
			if mce.Placeholder != tt.placeholder {
				t.Errorf("Placeholder = %q, want %q", mce.Placeholder, tt.placeholder)
			}
			if got != "" {
				t.Errorf("Render returned %q with an error", got)
			}
		})
	}
}

// TestMissingClaimErrorHidesValues checks that an error never echoes the
// claims, which may hold personal data, into logs.
func TestMissingClaimErrorHidesValues(t *testing.T) {
	_, err := mustParse(t, "%%oidc-sub%%:%%claim:realm_access.roles%%").Render([]byte(claims))
	if err == nil {
		t.Fatal("Render succeeded; want an error for the array claim")
	}
	msg := err.Error()
	for _, secret := range []string{"248289761001", "operator", "viewer"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error %q contains claim value %q", msg, secret)
		}
	}
	if !strings.Contains(msg, "%%claim:realm_access.roles%%") {
		t.Errorf("error %q does not name the placeholder", msg)
	}
}

func TestRenderClaimsNotObject(t *testing.T) {
	tests := []struct{ name, claims string }{
		{"nil", ""},
		{"whitespace", " \n"},
		{"array", `[{"sub":"x"}]`},
		{"string", `"sub"`},
		{"number", `42`},
		{"null", `null`},
		{"truncated", `{"sub":"x"`},
		{"trailing garbage", `{"sub":"x"} {"sub":"y"}`},
		{"unquoted key", `{sub:"x"}`},
		{"bare garbage", "sub=x"},
		{"NUL bytes", "\x00\x00"},
	}
	tmpl := mustParse(t, "u-%%oidc-sub%%")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tmpl.Render([]byte(tt.claims))
			if !errors.Is(err, ErrClaimsNotObject) {
				t.Fatalf("Render = %q, %v; want ErrClaimsNotObject", got, err)
			}
		})
	}
}

func TestRenderWithoutPlaceholdersIgnoresClaims(t *testing.T) {
	tmpl := mustParse(t, "static")
	for _, c := range []string{"", "not json", claims} {
		got, err := tmpl.Render([]byte(c))
		if err != nil || got != "static" {
			t.Errorf("Render(%q) = %q, %v; want %q, nil", c, got, err, "static")
		}
	}
}

func TestRenderWhitespaceAroundObject(t *testing.T) {
	got, err := mustParse(t, "%%oidc-sub%%").Render([]byte(" \t\r\n{\"sub\":\"x\"}\n"))
	if err != nil || got != "x" {
		t.Errorf("Render = %q, %v; want %q, nil", got, err, "x")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, tmpl string
		want       []string // substrings of the error message
	}{
		{"unknown", "x-%%oidc-foo%%", []string{`unknown placeholder "%%oidc-foo%%"`}},
		{"unknown is case sensitive", "%%OIDC-SUB%%", []string{`unknown placeholder "%%OIDC-SUB%%"`}},
		{"unknown with spaces", "%% oidc-sub %%", []string{`unknown placeholder "%% oidc-sub %%"`}},
		{"unterminated", "u-%%oidc-sub", []string{`unterminated placeholder "%%oidc-sub"`}},
		{"unterminated after placeholder", "%%oidc-sub%%-%%", []string{`unterminated placeholder "%%"`}},
		{"triple percent", "%%%", []string{`unterminated placeholder "%%%"`}},
		{"empty", "a%%%%b", []string{`empty placeholder "%%%%"`}},
		{"percent before placeholder", "%%%oidc-sub%%", []string{`unknown placeholder "%%%oidc-sub%%"`}},
		{"claim without path", "%%claim:%%", []string{`"%%claim:%%"`, "empty path"}},
		{"claim modifier", "%%claim:@reverse%%", []string{`"%%claim:@reverse%%"`, `'@'`}},
		{"claim modifier after dot", "%%claim:a.@this%%", []string{`'@'`}},
		{"claim pipe", "%%claim:a|b%%", []string{`'|'`}},
		{"claim query", `%%claim:roles.#(name=="admin").id%%`, []string{`'#'`}},
		{"claim array count", "%%claim:roles.#%%", []string{`'#'`}},
		{"claim wildcard star", "%%claim:ro*%%", []string{`'*'`}},
		{"claim wildcard question", "%%claim:ro?es%%", []string{`'?'`}},
		{"claim literal", "%%claim:!true%%", []string{`'!'`}},
		{"claim multipath array", "%%claim:[sub,email]%%", []string{`'['`}},
		{"claim multipath object", "%%claim:{sub}%%", []string{`'{'`}},
		{"claim json lines", "%%claim:..0%%", []string{"empty key"}},
		{"claim leading dot", "%%claim:.sub%%", []string{"empty key"}},
		{"claim double dot", "%%claim:a..b%%", []string{"empty key"}},
		{"claim trailing dot", "%%claim:a.%%", []string{"ends with a dot"}},
		{"claim dangling escape", `%%claim:a\%%`, []string{"unfinished"}},
		{"second placeholder bad", "%%oidc-sub%%%%nope%%", []string{`unknown placeholder "%%nope%%"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := Parse(tt.tmpl)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded; want an error", tt.tmpl)
			}
			if tmpl != nil {
				t.Errorf("Parse(%q) returned a template with an error", tt.tmpl)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	tests := []struct {
		tmpl   string
		places []string
	}{
		{"", []string{}},
		{"static 100%", []string{}},
		{"%%oidc-sub%%", []string{"%%oidc-sub%%"}},
		{
			"%%zitadel-role%%/%%claim:a\\.b%%-%%oidc-email%%%%oidc-username%%%%oidc-email%%",
			[]string{"%%zitadel-role%%", "%%claim:a\\.b%%", "%%oidc-email%%", "%%oidc-username%%", "%%oidc-email%%"},
		},
	}
	for _, tt := range tests {
		tmpl := mustParse(t, tt.tmpl)
		if got := tmpl.String(); got != tt.tmpl {
			t.Errorf("String() = %q, want %q", got, tt.tmpl)
		}
		if got := tmpl.Placeholders(); !reflect.DeepEqual(got, tt.places) {
			t.Errorf("%q: Placeholders() = %q, want %q", tt.tmpl, got, tt.places)
		}
		if got, want := tmpl.HasPlaceholders(), len(tt.places) > 0; got != want {
			t.Errorf("%q: HasPlaceholders() = %v, want %v", tt.tmpl, got, want)
		}
	}
}

// TestConcurrentRender lets the race detector check that Render does not
// mutate the shared template.
func TestConcurrentRender(t *testing.T) {
	tmpl := mustParse(t, "%%claim:tenant%%/%%oidc-username%%/%%zitadel-role%%")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if got, err := tmpl.Render([]byte(claims)); err != nil || got != "acme/alice/writer" {
					t.Errorf("Render = %q, %v", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkRender(b *testing.B) {
	tmpl := mustParse(b, "tenant-%%claim:tenant%%/%%oidc-username%%")
	c := []byte(claims)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tmpl.Render(c); err != nil {
			b.Fatal(err)
		}
	}
}

// fuzzClaims are the fixed claims FuzzParse renders each parsed template with.
var fuzzClaims = [][]byte{
	[]byte(claims),
	[]byte(`{}`),
	[]byte(`{"a":[{"b":{"c":[1,{"d":"e"}]}}]}`),
	[]byte(`[]`),
	[]byte(`{"sub":`),
	nil,
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "static", "100%", "%%", "%%%", "%%%%", "%%%%%",
		"%%oidc-username%%", "%%oidc-email%%", "%%oidc-sub%%", "%%zitadel-role%%",
		"%%claim:realm_access.roles.0%%", `%%claim:first\.last%%`, "%%claim:%%",
		"%%claim:@reverse%%", "%%claim:a|b%%", "%%claim:a.#(b==1)%%", "%%claim:..0%%",
		"u-%%oidc-sub%%@%%claim:tenant%%", "%%oidc-foo%%", "ü%%claim:日本%%",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tmpl, err := Parse(s)
		if err != nil {
			if tmpl != nil {
				t.Fatalf("Parse(%q) returned a template and error %v", s, err)
			}
			return
		}
		if got := tmpl.String(); got != s {
			t.Fatalf("String() = %q, want %q", got, s)
		}
		if tmpl.HasPlaceholders() != (len(tmpl.Placeholders()) > 0) {
			t.Fatalf("%q: HasPlaceholders disagrees with Placeholders %q", s, tmpl.Placeholders())
		}
		for _, c := range fuzzClaims {
			got, err := tmpl.Render(c)
			if !tmpl.HasPlaceholders() && (err != nil || got != s) {
				t.Fatalf("%q has no placeholders but Render = %q, %v", s, got, err)
			}
		}
	})
}

// fuzzTemplates are the fixed templates FuzzRender renders arbitrary claims
// with; together they use every placeholder and conversion.
var fuzzTemplates = []string{
	"%%oidc-username%%",
	"u-%%oidc-email%%-%%oidc-sub%%",
	"%%zitadel-role%%",
	"%%claim:a.b.0%%",
	`%%claim:a\.b%%`,
	"%%claim:0%%",
}

func FuzzRender(f *testing.F) {
	for _, c := range fuzzClaims {
		f.Add(c)
	}
	for _, s := range []string{
		`{"username":"x","email":1,"sub":true}`,
		`{"urn:zitadel:iam:org:project:roles":{"r":{}}}`,
		`{"a":{"b":[{"k":1}]},"a.b":"dot","0":null}`,
		`{"username":"\ud800"}`, `{"username":"a\u0000b"}`, `{"username":1e400}`,
	} {
		f.Add([]byte(s))
	}
	tmpls := make([]*Template, len(fuzzTemplates))
	for i, s := range fuzzTemplates {
		tmpls[i] = mustParse(f, s)
	}
	f.Fuzz(func(t *testing.T, c []byte) {
		for _, tmpl := range tmpls {
			_, err := tmpl.Render(c)
			// A username must never come from claims that are not JSON,
			// by the standard library's judgement too.
			if err == nil && !json.Valid(c) {
				t.Fatalf("%s rendered from invalid JSON %q", tmpl, c)
			}
		}
	})
}
