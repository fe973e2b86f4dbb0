package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/acl"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/introspect"
)

// base is the smallest valid configuration.
var base = []Option{
	{"introspection_endpoint", "https://idp.example/introspect"},
	{"client_id", "broker"},
	{"client_secret", "s3cret"},
}

func with(extra ...Option) []Option {
	return append(append([]Option{}, base...), extra...)
}

func jwtOnly(extra ...Option) []Option {
	return append([]Option{{"jwt_verification", "true"}, {"jwt_issuer", "https://idp.example"}}, extra...)
}

func TestDefaults(t *testing.T) {
	c, err := Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		IntrospectionEndpoint:  "https://idp.example/introspect",
		ClientID:               "broker",
		ClientSecret:           "s3cret",
		AuthMethod:             introspect.ClientSecretBasic,
		TLSVerification:        true,
		Timeout:                5 * time.Second,
		ValidationError:        Defer,
		ReplacementError:       Deny,
		TokenVerificationError: Deny,
		DisconnectOnExpiry:     true,
		CacheMaxEntries:        100000,
		NegativeCacheTTL:       10 * time.Second,
		BreakerFailures:        5,
		BreakerCooldown:        10 * time.Second,
		SysInterval:            10 * time.Second,
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *c, want)
	}
}

func TestValues(t *testing.T) {
	tests := []struct {
		name  string
		opts  []Option
		check func(*Config) bool
	}{
		{"tls off", with(Option{"tls_verification", "false"}), func(c *Config) bool { return !c.TLSVerification }},
		{"bool case and spaces", with(Option{"tls_verification", " FALSE  "}), func(c *Config) bool { return !c.TLSVerification }},
		{"fractional timeout", with(Option{"timeout", "0.25"}), func(c *Config) bool { return c.Timeout == 250*time.Millisecond }},
		{"post auth", with(Option{"introspection_auth_method", "client_secret_post"}), func(c *Config) bool { return c.AuthMethod == introspect.ClientSecretPost }},
		{"defer tokens", with(Option{"token_verification_error", "defer"}), func(c *Config) bool { return c.TokenVerificationError == Defer }},
		{"deny validation", with(Option{"username_validation_error", "deny"}), func(c *Config) bool { return c.ValidationError == Deny }},
		{"validation template", with(Option{"username_validation", "true"}, Option{"username_validation_template", "user-%%oidc-username%%"}),
			func(c *Config) bool { return c.UsernameValidation && c.ValidationTemplate.HasPlaceholders() }},
		{"replacement template", with(Option{"username_replacement", "true"}, Option{"username_replacement_template", "%%oidc-email%%"}),
			func(c *Config) bool {
				return c.UsernameReplacement && c.ReplacementTemplate.String() == "%%oidc-email%%"
			}},
		{"cache off", with(Option{"cache_ttl", "0"}, Option{"negative_cache_ttl", "0"}), func(c *Config) bool { return c.CacheTTL == 0 && c.NegativeCacheTTL == 0 }},
		{"cache size", with(Option{"cache_max_entries", "42"}), func(c *Config) bool { return c.CacheMaxEntries == 42 }},
		{"breaker", with(Option{"circuit_breaker_failures", "0"}, Option{"circuit_breaker_cooldown", "2.5"}),
			func(c *Config) bool { return c.BreakerFailures == 0 && c.BreakerCooldown == 2500*time.Millisecond }},
		{"reintrospection", with(Option{"reintrospection_interval", "60"}), func(c *Config) bool { return c.ReintrospectionInterval == time.Minute }},
		{"reintrospection off", with(Option{"reintrospection_interval", "0"}), func(c *Config) bool { return c.ReintrospectionInterval == 0 }},
		{"ca file", with(Option{"ca_file", "/etc/ssl/idp.pem"}), func(c *Config) bool { return c.CAFile == "/etc/ssl/idp.pem" }},
		{"jwt only, defaults", jwtOnly(), func(c *Config) bool {
			return c.JWTVerification && !c.Introspection() && c.JWTIssuer == "https://idp.example" &&
				c.JWTClockSkew == 30*time.Second && len(c.JWTAlgorithms) == 10 && len(c.JWTAudiences) == 0
		}},
		{"jwt and introspection", with(Option{"jwt_verification", "true"}, Option{"jwt_issuer", "https://idp.example/"}),
			func(c *Config) bool {
				return c.JWTVerification && c.Introspection() && c.JWTIssuer == "https://idp.example/"
			}},
		{"acl rules repeat", with(Option{"username_replacement", "true"}, Option{"username_replacement_template", "%%oidc-sub%%"},
			Option{"acl_rule", "allow all users/%u/#"}, Option{"acl_rule", "deny publish users/%u/admin"},
			Option{"acl_topics_claim", "topics"}, Option{"acl_no_match", "defer"}),
			func(c *Config) bool {
				return c.ACL != nil && c.ACL.String() == `2 rules, topics claim "topics"` && c.ACLNoMatch == Defer
			}},
		{"no acl", base, func(c *Config) bool { return c.ACL == nil && c.ACLNoMatch == Deny }},
		{"metrics", with(Option{"metrics_listen", "127.0.0.1:9883"}), func(c *Config) bool { return c.MetricsListen == "127.0.0.1:9883" }},
		{"metrics on IPv6", with(Option{"metrics_listen", "[::1]:9883"}), func(c *Config) bool { return c.MetricsListen == "[::1]:9883" }},
		{"sys off", with(Option{"sys_interval", "0"}), func(c *Config) bool { return c.SysInterval == 0 }},
		{"sys every minute", with(Option{"sys_interval", "60"}), func(c *Config) bool { return c.SysInterval == time.Minute }},
		{"jwt options", jwtOnly(Option{"jwt_audience", " urn:mqtt  urn:iot "}, Option{"jwt_algorithms", "ES256 EdDSA"},
			Option{"jwt_clock_skew", "0"}, Option{"jwks_endpoint", "https://idp.example/keys"}),
			func(c *Config) bool {
				return reflect.DeepEqual(c.JWTAudiences, []string{"urn:mqtt", "urn:iot"}) &&
					reflect.DeepEqual(c.JWTAlgorithms, []string{"ES256", "EdDSA"}) && c.JWTClockSkew == 0 &&
					c.JWKSEndpoint == "https://idp.example/keys"
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config %+v", *c)
			}
		})
	}
}

func TestErrorsNameTheOption(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
		key  string
	}{
		{"unknown", with(Option{"tls_verify", "true"}), "tls_verify"},
		{"duplicate", with(Option{"client_id", "other"}), "client_id"},
		{"no endpoint", base[1:], "introspection_endpoint"},
		{"no client id", []Option{base[0], base[2]}, "client_id"},
		{"no secret", base[:2], "client_secret"},
		{"bad bool", with(Option{"tls_verification", "yes please"}), "tls_verification"},
		{"bad policy", with(Option{"token_verification_error", "allow"}), "token_verification_error"},
		{"bad timeout", with(Option{"timeout", "5s"}), "timeout"},
		{"zero timeout", with(Option{"timeout", "0"}), "timeout"},
		{"negative timeout", with(Option{"timeout", "-1"}), "timeout"},
		{"NaN timeout", with(Option{"timeout", "NaN"}), "timeout"},
		{"huge timeout", with(Option{"timeout", "1e300"}), "timeout"},
		{"negative cache ttl", with(Option{"cache_ttl", "-1"}), "cache_ttl"},
		{"fractional entries", with(Option{"cache_max_entries", "1.5"}), "cache_max_entries"},
		{"zero cooldown", with(Option{"circuit_breaker_cooldown", "0"}), "circuit_breaker_cooldown"},
		{"reintrospection too often", with(Option{"reintrospection_interval", "0.01"}), "reintrospection_interval"},
		{"reintrospection too seldom", with(Option{"reintrospection_interval", "86401"}), "reintrospection_interval"},
		{"reintrospection without introspection", jwtOnly(Option{"reintrospection_interval", "60"}), "reintrospection_interval"},
		{"bad auth method", with(Option{"introspection_auth_method", "private_key_jwt"}), "introspection_auth_method"},
		{"template without feature", with(Option{"username_replacement_template", "%%oidc-sub%%"}), "username_replacement_template"},
		{"feature without template", with(Option{"username_validation", "true"}), "username_validation_template"},
		{"unknown placeholder", with(Option{"username_replacement", "true"}, Option{"username_replacement_template", "%%oidc-name%%"}), "username_replacement_template"},
		{"secret twice", with(Option{"client_secret_file", "/run/secrets/x"}), "client_secret_file"},
		{"missing secret file", append(base[:2:2], Option{"client_secret_file", "/nonexistent/secret"}), "client_secret_file"},
		{"jwt option without jwt", with(Option{"jwt_issuer", "https://idp.example"}), "jwt_issuer"},
		{"jwt without issuer", []Option{{"jwt_verification", "true"}}, "jwt_issuer"},
		{"issuer not a URL", []Option{{"jwt_verification", "true"}, {"jwt_issuer", "idp.example"}}, "jwt_issuer"},
		{"bad jwks endpoint", jwtOnly(Option{"jwks_endpoint", "file:///etc/keys"}), "jwks_endpoint"},
		{"alg none", jwtOnly(Option{"jwt_algorithms", "RS256 none"}), "jwt_algorithms"},
		{"alg HS256", jwtOnly(Option{"jwt_algorithms", "HS256"}), "jwt_algorithms"},
		{"empty algs", jwtOnly(Option{"jwt_algorithms", " "}), "jwt_algorithms"},
		{"huge skew", jwtOnly(Option{"jwt_clock_skew", "3600"}), "jwt_clock_skew"},
		{"client id without endpoint", jwtOnly(Option{"client_id", "broker"}), "client_id"},
		{"neither jwt nor introspection", []Option{{"timeout", "1"}}, "introspection_endpoint"},
		{"bad acl rule", with(Option{"acl_rule", "allow all users/%c/#"}, Option{"acl_rule", "permit all x"}), "acl_rule"},
		{"%u not from the token", with(Option{"acl_rule", "allow all users/%u/#"}), "acl_rule"},
		{"%u with a fixed validation template", with(Option{"acl_rule", "allow all users/%u/#"},
			Option{"username_validation", "true"}, Option{"username_validation_template", "oauth2-token"}), "acl_rule"},
		{"acl wildcard inside a level", with(Option{"acl_rule", "allow all a/#/b"}), "acl_rule"},
		{"empty acl rule", with(Option{"acl_rule", ""}), "acl_rule"},
		{"bad topics claim path", with(Option{"acl_topics_claim", "topics.#"}), "acl_topics_claim"},
		{"bad acl claim path", with(Option{"acl_claim", "a|b"}), "acl_claim"},
		{"acl_no_match alone", with(Option{"acl_no_match", "defer"}), "acl_no_match"},
		{"bad acl_no_match", with(Option{"acl_claim", "acl"}, Option{"acl_no_match", "allow"}), "acl_no_match"},
		{"metrics port only", with(Option{"metrics_listen", ":9883"}), "metrics_listen"},
		{"metrics without port", with(Option{"metrics_listen", "127.0.0.1"}), "metrics_listen"},
		{"metrics port 0", with(Option{"metrics_listen", "127.0.0.1:0"}), "metrics_listen"},
		{"metrics port too high", with(Option{"metrics_listen", "127.0.0.1:65536"}), "metrics_listen"},
		{"metrics URL", with(Option{"metrics_listen", "http://127.0.0.1:9883/metrics"}), "metrics_listen"},
		{"empty metrics", with(Option{"metrics_listen", ""}), "metrics_listen"},
		{"fractional sys interval", with(Option{"sys_interval", "0.5"}), "sys_interval"},
		{"negative sys interval", with(Option{"sys_interval", "-10"}), "sys_interval"},
		{"huge sys interval", with(Option{"sys_interval", "65536"}), "sys_interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.opts)
			var oe *OptionError
			if !errors.As(err, &oe) {
				t.Fatalf("got %v, want an OptionError", err)
			}
			if oe.Key != tt.key || !strings.HasPrefix(err.Error(), "plugin_opt_"+tt.key+": ") {
				t.Errorf("error %q does not name %s", err, tt.key)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q leaks the secret", err)
			}
		})
	}
}

func TestSecretFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	if err := os.WriteFile(path, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]Option{base[0], base[1], {"client_secret_file", path}})
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientSecret != "from-file" {
		t.Errorf("secret %q, want the file's content without its newline", c.ClientSecret)
	}
	if strings.Contains(c.Summary(), "from-file") {
		t.Error("summary shows the secret")
	}

	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse([]Option{base[0], base[1], {"client_secret_file", empty}}); err == nil {
		t.Error("an empty secret file was accepted")
	}
}

// ReadSecretFile, at start-up and on reload: the secret without its line ending, or an error that names
// the file and never holds what is in it.
func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, content string // content "" with name "missing": no file
		want, err     string
	}{
		{"plain", "s3cret", "s3cret", ""},
		{"newline", "s3cret\n", "s3cret", ""},
		{"CRLF", "s3cret\r\n", "s3cret", ""},
		{"inner space kept", " s3 cret \n", " s3 cret ", ""},
		{"empty", "", "", "is empty"},
		{"only a newline", "\n", "", "is empty"},
		{"missing", "", "", "no such file"},
		{"a directory", "", "", "is a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			switch tc.name {
			case "missing":
			case "a directory":
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			default:
				if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ReadSecretFile(path)
			if tc.err == "" {
				if err != nil || got != tc.want {
					t.Errorf("got %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %v, want one naming %s and saying %q", err, path, tc.err)
			}
		})
	}
}

func TestSummaryMasksSecret(t *testing.T) {
	c, err := Parse(with(Option{"username_replacement", "true"}, Option{"username_replacement_template", "group-%%zitadel-role%%"}))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Summary()
	if strings.Contains(s, "s3cret") {
		t.Errorf("summary leaks the secret: %s", s)
	}
	for _, want := range []string{"client_id=broker", "timeout=5s", `"group-%%zitadel-role%%"`, "token_verification_error=deny", "reintrospection_interval=0s", "sys_interval=10s"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary %q lacks %q", s, want)
		}
	}
}

func TestEveryOptionIsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../mosquitto.conf.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range Keys() {
		if !strings.Contains(string(readme), "`"+kv[0]+"`") {
			t.Errorf("README.md does not document %s", kv[0])
		}
		if !strings.Contains(string(example), "plugin_opt_"+kv[0]) {
			t.Errorf("mosquitto.conf.example does not show %s", kv[0])
		}
	}
}

// FuzzParse feeds arbitrary option values: Parse must never panic, and whatever it accepts must be
// usable (templates present when their feature is on, a positive bounded timeout).
func FuzzParse(f *testing.F) {
	f.Add("timeout", "1.5")
	f.Add("username_replacement_template", "%%claim:a.b%%")
	f.Add("tls_verification", "TRUE")
	f.Add("username_validation_template", "%%")
	f.Fuzz(func(t *testing.T, key, value string) {
		opts := with(Option{key, value})
		if strings.HasSuffix(key, "_template") {
			opts = append(opts, Option{strings.TrimSuffix(key, "_template"), "true"})
		}
		c, err := Parse(opts)
		if err != nil {
			return
		}
		if c.Timeout <= 0 || c.Timeout > maxTimeout {
			t.Errorf("accepted timeout %v", c.Timeout)
		}
		if c.UsernameValidation != (c.ValidationTemplate != nil) || c.UsernameReplacement != (c.ReplacementTemplate != nil) {
			t.Errorf("feature and template disagree: %+v", *c)
		}
		_ = c.Summary()
		_ = c.Warnings()
	})
}

// A plain-http endpoint is warned about unless it is this host; TLS options are warned about when no
// endpoint uses TLS.
func TestWarnings(t *testing.T) {
	intro := func(u string, extra ...Option) []Option {
		return append([]Option{{"introspection_endpoint", u}, base[1], base[2]}, extra...)
	}
	tests := []struct {
		name string
		opts []Option
		want []string // one part of each warning, in order
	}{
		{"https", base, nil},
		{"http to another host", intro("http://hydra:4445/admin/oauth2/introspect"),
			[]string{"introspection_endpoint http://hydra:4445/admin/oauth2/introspect is plain http to a host other than loopback: every token"}},
		{"HTTP in capitals", intro("HTTP://hydra:4445/x"), []string{"introspection_endpoint HTTP://hydra:4445/x is plain http"}},
		{"http to a public address", intro("http://192.0.2.7/x"), []string{"is plain http"}},
		{"http to 127.0.0.1", intro("http://127.0.0.1:4445/x"), nil},
		{"http to 127.9.9.9", intro("http://127.9.9.9:4445/x"), nil},
		{"http to ::1", intro("http://[::1]:4445/x"), nil},
		{"http to a mapped loopback", intro("http://[::ffff:127.0.0.1]:4445/x"), nil},
		{"http to localhost", intro("http://localhost:4445/x"), nil},
		{"http to LOCALHOST.", intro("http://LOCALHOST.:4445/x"), nil},
		{"http to a .localhost name", intro("http://hydra.localhost:4445/x"), nil},
		{"http to a name that only starts like localhost", intro("http://localhost.example:4445/x"), []string{"is plain http"}},
		{"http issuer, discovery", []Option{{"jwt_verification", "true"}, {"jwt_issuer", "http://idp.example"}},
			[]string{"jwt_issuer http://idp.example is plain http to a host other than loopback, and the signing keys are found by discovery from it"}},
		{"http jwks endpoint", jwtOnly(Option{"jwks_endpoint", "http://idp.example/jwks"}),
			[]string{"jwks_endpoint http://idp.example/jwks is plain http to a host other than loopback: anyone on the way can replace the signing keys"}},
		{"http issuer with an https jwks endpoint", []Option{{"jwt_verification", "true"}, {"jwt_issuer", "http://idp.example"},
			{"jwks_endpoint", "https://idp.example/jwks"}}, nil},
		{"ca_file with http only", intro("http://127.0.0.1/x", Option{"ca_file", "/etc/ca.pem"}),
			[]string{"ca_file and tls_verification apply to https endpoints, and none is configured"}},
		{"tls_verification off with http only", intro("http://127.0.0.1/x", Option{"tls_verification", "false"}),
			[]string{"ca_file and tls_verification apply to https endpoints"}},
		{"ca_file with https", with(Option{"ca_file", "/etc/ca.pem"}), nil},
		{"both plain", []Option{{"introspection_endpoint", "http://hydra:4445/x"}, base[1], base[2], {"jwt_verification", "true"},
			{"jwt_issuer", "http://hydra:4444/"}, {"ca_file", "/etc/ca.pem"}},
			[]string{"introspection_endpoint http://hydra:4445/x", "jwt_issuer http://hydra:4444/ is plain http to a host other than loopback, and the signing keys are found by discovery",
				"ca_file and tls_verification apply"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := c.Warnings()
			if len(got) != len(tt.want) {
				t.Fatalf("warnings %q, want %d", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q, want it to hold %q", got[i], w)
				}
			}
		})
	}
}

// The start-up line shows tls_verification and ca_file only where they apply: with an https endpoint.
func TestSummaryShowsTLSWhereItApplies(t *testing.T) {
	tests := []struct {
		name      string
		opts      []Option
		want, not []string
	}{
		{"https introspection", with(Option{"ca_file", "/etc/ca.pem"}), []string{"tls_verification=true ca_file=/etc/ca.pem timeout=5s"}, nil},
		{"https, verification off", with(Option{"tls_verification", "false"}), []string{"tls_verification=false timeout=5s"}, []string{"ca_file"}},
		{"http introspection", []Option{{"introspection_endpoint", "http://127.0.0.1:4445/x"}, base[1], base[2], {"ca_file", "/etc/ca.pem"}},
			[]string{"introspection_auth_method=client_secret_basic timeout=5s"}, []string{"tls_verification", "ca_file"}},
		{"https issuer by discovery", jwtOnly(), []string{"introspection=off tls_verification=true timeout=5s"}, nil},
		{"http issuer, https jwks", []Option{{"jwt_verification", "true"}, {"jwt_issuer", "http://idp.example"}, {"jwks_endpoint", "https://idp.example/k"}},
			[]string{"tls_verification=true"}, nil},
		{"http issuer by discovery", []Option{{"jwt_verification", "true"}, {"jwt_issuer", "http://127.0.0.1:4444"}},
			[]string{"introspection=off timeout=5s"}, []string{"tls_verification"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			s := c.Summary()
			for _, w := range tt.want {
				if !strings.Contains(s, w) {
					t.Errorf("summary %q lacks %q", s, w)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(s, n) {
					t.Errorf("summary %q shows %q", s, n)
				}
			}
		})
	}
}

// Every recipe's lines in the README's "Identity provider recipes" parse, with no warning: a recipe
// that stops the broker or draws a warning would be a wrong recipe.
func TestREADMERecipesParse(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Identity provider recipes\n")
	if !ok {
		t.Fatal("README.md has no Identity provider recipes section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	blocks := 0
	for _, heading := range strings.Split(section, "\n### ")[1:] {
		name, _, _ := strings.Cut(heading, "\n")
		_, block, ok := strings.Cut(heading, "\n```\n")
		if !ok {
			t.Errorf("%s: no configuration block", name)
			continue
		}
		block, _, _ = strings.Cut(block, "\n```")
		var opts []Option
		for _, line := range strings.Split(block, "\n") {
			key, value, ok := strings.Cut(strings.TrimPrefix(line, "plugin_opt_"), " ")
			if !ok || !strings.HasPrefix(line, "plugin_opt_") {
				t.Errorf("%s: %q is not a plugin_opt line", name, line)
				continue
			}
			if key == "client_secret_file" {
				value = secret
			}
			opts = append(opts, Option{key, value})
		}
		c, err := Parse(opts)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if w := c.Warnings(); len(w) > 0 {
			t.Errorf("%s: warnings %q", name, w)
		}
		checkRecipe(t, name, c)
		blocks++
	}
	if blocks != 6 {
		t.Errorf("%d recipes parsed, want 6 (Keycloak, ZITADEL, Ory Hydra, Entra ID, Auth0, Okta)", blocks)
	}
}

// recipeTokens are claims shaped as each identity provider documents them, in each verification mode
// its recipe covers, with what the recipe's rules must allow for them (username dev-7).
var recipeTokens = map[string][]struct {
	mode, claims string
	allowed      []string // "publish TOPIC" or "subscribe FILTER"
}{
	"Keycloak": {{"JWT", `{"realm_access": {"roles": ["fleet-reader", "offline_access"]},
		"resource_access": {"mqtt-broker": {"roles": ["admin"]}, "account": {"roles": ["view-profile"]}},
		"scope": "openid profile telemetry:write", "preferred_username": "dev-7"}`,
		[]string{"publish devices/dev-7/up", "subscribe fleet/#", "subscribe admin/x", "publish telemetry/dev-7/t"}}},
	"ZITADEL": {{"introspection", `{"active": true, "scope": "openid telemetry:write",
		"urn:zitadel:iam:org:project:roles": {"reader": {"123": "acme.zitadel.cloud"}}}`,
		[]string{"subscribe fleet/#", "publish telemetry/t"}}},
	"Ory Hydra (v2)": {
		{"introspection", `{"active": true, "sub": "dev-7", "scope": "offline telemetry:write",
			"ext": {"roles": ["fleet-reader"], "tenant": "acme"}}`,
			[]string{"publish devices/dev-7/up", "subscribe fleet/#", "subscribe tenants/acme/#", "publish telemetry/dev-7/t"}},
		{"JWT", `{"sub": "dev-7", "scp": ["offline", "telemetry:write"], "roles": ["fleet-reader"],
			"ext": {"roles": ["fleet-reader"], "tenant": "acme"}}`,
			[]string{"publish devices/dev-7/up", "subscribe fleet/#", "subscribe tenants/acme/#", "publish telemetry/dev-7/t"}}},
	"Microsoft Entra ID": {{"JWT", `{"ver": "2.0", "roles": ["Fleet.Read"], "scp": "User.Read Commands.Send", "oid": "dev-7"}`,
		[]string{"publish devices/dev-7/up", "subscribe fleet/#", "publish commands/reboot"}}},
	"Auth0": {{"JWT", `{"sub": "dev-7", "scope": "openid read:fleet", "permissions": ["read:fleet"],
		"https://example.com/tenant": "acme", "https://example.com/topics": ["extra/#"]}`,
		[]string{"publish devices/dev-7/up", "subscribe fleet/#", "subscribe tenants/acme/#", "publish extra/1"}}},
	"Okta": {{"JWT", `{"sub": "dev-7", "scp": ["openid", "telemetry:write"], "groups": ["fleet-readers"]}`,
		[]string{"publish devices/dev-7/up", "subscribe fleet/#", "publish telemetry/dev-7/t"}}},
}

func checkRecipe(t *testing.T, name string, c *Config) {
	t.Helper()
	tokens, ok := recipeTokens[name]
	if !ok {
		t.Errorf("%s: no token shapes to check the recipe against", name)
		return
	}
	for _, tok := range tokens {
		g, err := c.ACL.Compile([]byte(tok.claims), "dev-7", "dev-7")
		if err != nil {
			t.Errorf("%s (%s): %v", name, tok.mode, err)
			continue
		}
		for _, a := range tok.allowed {
			verb, topic, _ := strings.Cut(a, " ")
			access := acl.Write
			if verb == "subscribe" {
				access = acl.Subscribe
			}
			if got := g.Check(access, topic, 0, false); got != acl.Allow {
				t.Errorf("%s (%s): %s is %v, want allow", name, tok.mode, a, got)
			}
		}
		if got := g.Check(acl.Subscribe, "#", 0, false); got == acl.Allow {
			t.Errorf("%s (%s): subscribe # allowed", name, tok.mode)
		}
	}
}
