package grant

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestCacheFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mqtt-oauth2")
	c := NewCache(filepath.Join(dir, "tokens.json"))
	if err := c.save("k", &oauth2.Token{AccessToken: testAccess}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]fs.FileMode{dir: 0o700, c.path: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", path, got, want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("the directory holds %d files, want only tokens.json (no temporary file left)", len(entries))
	}
}

func TestCacheRefusesReadableFile(t *testing.T) {
	for _, mode := range []fs.FileMode{0o640, 0o604, 0o660} {
		c := NewCache(filepath.Join(t.TempDir(), "tokens.json"))
		if err := c.save("k", &oauth2.Token{AccessToken: testAccess}); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(c.path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := c.load("k")
		if err == nil || !strings.Contains(err.Error(), c.path) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: err = %v, want one naming the file and chmod 600", mode, err)
		}
		if err := c.save("k", &oauth2.Token{AccessToken: "new"}); err == nil {
			t.Errorf("mode %04o: save over a readable cache succeeded", mode)
		}
	}
}

func TestCacheRoundTrip(t *testing.T) {
	c := NewCache(filepath.Join(t.TempDir(), "tokens.json"))
	exp := time.Now().Add(time.Hour).Round(0)
	toks := map[string]*oauth2.Token{
		"expiring":  {AccessToken: testAccess, TokenType: "Bearer", Expiry: exp, RefreshToken: testRefresh},
		"no expiry": {AccessToken: "a2", TokenType: "Bearer"},
		"refresh":   {RefreshToken: "r3"},
	}
	for k, tok := range toks {
		if err := c.save(k, tok); err != nil {
			t.Fatal(err)
		}
	}
	for k, want := range toks {
		got, err := c.load(k)
		if err != nil {
			t.Fatal(err)
		}
		if got.AccessToken != want.AccessToken || got.TokenType != want.TokenType || got.RefreshToken != want.RefreshToken || !got.Expiry.Equal(want.Expiry) {
			t.Errorf("%s: got %+v, want %+v", k, got, want)
		}
	}
	if tok, err := c.load("absent"); tok != nil || err != nil {
		t.Errorf("absent entry: %v, %v", tok, err)
	}
	if tok, err := NewCache(filepath.Join(t.TempDir(), "none.json")).load("k"); tok != nil || err != nil {
		t.Errorf("absent file: %v, %v", tok, err)
	}
}

func TestCacheDamaged(t *testing.T) {
	for name, content := range map[string]string{
		"not JSON":      `{"version":1,"entries":{"k":{"access_token":"` + testAccess + `"`,
		"wrong shape":   `{"version":1,"entries":["` + testAccess + `"]}`,
		"other version": `{"version":2,"entries":{}}`,
		"empty":         ``,
	} {
		path := filepath.Join(t.TempDir(), "tokens.json")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := NewCache(path).load("k")
		if err == nil || !strings.Contains(err.Error(), "damaged") {
			t.Errorf("%s: err = %v", name, err)
			continue
		}
		assertNoSecrets(t, name, err.Error())
	}
}

func TestCacheNotAFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "tokens.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := NewCache(filepath.Join(dir, "tokens.json")).load("k"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("err = %v", err)
	}
}

func TestCacheBadPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// The cache's directory is a file: this fails whoever runs the test, root included.
	err := NewCache(filepath.Join(file, "tokens.json")).save("k", &oauth2.Token{AccessToken: testAccess})
	if err == nil || !strings.Contains(err.Error(), "token cache") {
		t.Errorf("err = %v", err)
	}
}

func TestCacheKey(t *testing.T) {
	base := Config{
		Endpoints: Endpoints{Issuer: "https://idp.example", TokenURL: "https://idp.example/token"},
		ClientID:  "dev", Scopes: []string{"mqtt", "offline_access"}, Audience: "a", Resource: "r",
	}
	cases := []struct {
		name   string
		change func(*Config)
		grant  string
		same   bool
	}{
		{name: "same", change: func(*Config) {}, same: true},
		{name: "scopes in another order", change: func(c *Config) { c.Scopes = []string{"offline_access", "mqtt"} }, same: true},
		{name: "secret is no part of it", change: func(c *Config) { c.ClientSecret = "x" }, same: true},
		{name: "issuer", change: func(c *Config) { c.Issuer = "https://other.example" }},
		{name: "token URL", change: func(c *Config) { c.TokenURL = "https://idp.example/token2" }},
		{name: "client", change: func(c *Config) { c.ClientID = "dev2" }},
		{name: "grant", change: func(*Config) {}, grant: grantClientCredentials},
		{name: "a scope fewer", change: func(c *Config) { c.Scopes = []string{"mqtt"} }},
		{name: "scopes that join alike", change: func(c *Config) { c.Scopes = []string{"mqtt offline_access"} }, same: true},
		{name: "audience", change: func(c *Config) { c.Audience = "b" }},
		{name: "resource", change: func(c *Config) { c.Resource = "s" }},
		{name: "audience and resource swapped", change: func(c *Config) { c.Audience, c.Resource = c.Resource, c.Audience }},
		{name: "fields shifted", change: func(c *Config) { c.Audience, c.Resource = "ar", "" }},
	}
	want := cacheKey(&base, grantDevice)
	for _, tc := range cases {
		c := base
		c.Scopes = append([]string(nil), base.Scopes...)
		tc.change(&c)
		grant := grantDevice
		if tc.grant != "" {
			grant = tc.grant
		}
		if got := cacheKey(&c, grant); (got == want) != tc.same {
			t.Errorf("%s: same key = %v, want %v", tc.name, got == want, tc.same)
		}
	}
}

func TestCacheEntriesDoNotMix(t *testing.T) {
	c := NewCache(filepath.Join(t.TempDir(), "tokens.json"))
	a := Config{Endpoints: Endpoints{TokenURL: "https://a.example/token"}, ClientID: "x", Cache: c}
	b := a
	b.ClientID = "y"
	if err := c.save(cacheKey(&a, grantDevice), &oauth2.Token{AccessToken: "token-of-a"}); err != nil {
		t.Fatal(err)
	}
	if tok, err := c.load(cacheKey(&b, grantDevice)); tok != nil || err != nil {
		t.Fatalf("b's entry: %v, %v", tok, err)
	}
	if err := c.save(cacheKey(&b, grantDevice), &oauth2.Token{AccessToken: "token-of-b"}); err != nil {
		t.Fatal(err)
	}
	for cfg, want := range map[*Config]string{&a: "token-of-a", &b: "token-of-b"} {
		tok, err := c.load(cacheKey(cfg, grantDevice))
		if err != nil || tok == nil || tok.AccessToken != want {
			t.Errorf("client %s: %v, %v; want %s", cfg.ClientID, tok, err, want)
		}
	}
}

func TestDefaultCachePath(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	t.Setenv("HOME", "/x/home")
	p, err := DefaultCachePath()
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := os.UserCacheDir()
	if want := filepath.Join(dir, "mqtt-oauth2", "tokens.json"); p != want {
		t.Errorf("got %s, want %s", p, want)
	}
}

// FuzzCache feeds parseCache any bytes: it must never panic, and what it accepts must survive a
// save and load unchanged.
func FuzzCache(f *testing.F) {
	f.Add([]byte(`{"version":1,"entries":{"k":{"access_token":"a","token_type":"Bearer","expiry":"2030-01-02T03:04:05Z","refresh_token":"r"}}}`))
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"entries":{"k":{"expiry":"not a time"}}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"version":1,"entries":{"k":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cf, err := parseCache(data)
		if err != nil {
			return
		}
		c := NewCache(filepath.Join(t.TempDir(), "tokens.json"))
		for k, e := range cf.Entries {
			tok := &oauth2.Token{AccessToken: e.AccessToken, TokenType: e.TokenType, Expiry: e.Expiry, RefreshToken: e.RefreshToken}
			if err := c.save(k, tok); err != nil {
				t.Fatal(err)
			}
			got, err := c.load(k)
			if err != nil {
				t.Fatal(err)
			}
			if got.AccessToken != tok.AccessToken || got.RefreshToken != tok.RefreshToken || !got.Expiry.Equal(tok.Expiry) {
				t.Fatalf("entry %q changed: %+v, want %+v", k, got, tok)
			}
		}
	})
}
