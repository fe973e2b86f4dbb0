//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// env is the IdP and PKI shared by the tests that do not stop the IdP.
type env struct {
	dir string
	pki pki
	idp *idp
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	p := newPKI(t, dir, "idp")
	return &env{dir: dir, pki: p, idp: startIdP(t, dir, p)}
}

// broker starts a broker with one listener and the plugin configured for this env's IdP plus opts.
func (e *env) broker(t *testing.T, extraConf string, opts ...string) *broker {
	t.Helper()
	return startBroker(t, "listener LISTENER\n"+extraConf+pluginBlock(append(introspectionOpts(e.idp, e.pki), opts...)...))
}

func TestExports(t *testing.T) {
	out, err := exec.Command("nm", "-D", "--defined-only", os.Getenv("PLUGIN_SO")).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, sym := range []string{"mosquitto_plugin_version", "mosquitto_plugin_init", "mosquitto_plugin_cleanup"} {
		if !strings.Contains(string(out), " T "+sym+"\n") {
			t.Errorf("%s is not exported", sym)
		}
	}
}

// A bad option must stop the broker with a message naming it: a typo must never weaken security.
func TestBadOptionStopsBroker(t *testing.T) {
	base := []string{"introspection_endpoint", "https://127.0.0.1:1/introspect", "client_id", "broker", "client_secret", "x"}
	tests := []struct {
		name string
		opts []string
		key  string
	}{
		{"unknown", []string{"tls_verify", "false"}, "tls_verify"},
		{"bad bool", []string{"tls_verification", "maybe"}, "tls_verification"},
		{"bad timeout", []string{"timeout", "soon"}, "timeout"},
		{"bad placeholder", []string{"username_replacement", "true", "username_replacement_template", "%%oidc-user%%"}, "username_replacement_template"},
		{"missing ca file", []string{"ca_file", "/nonexistent/ca.pem"}, "ca_file"},
		{"%u not from the token", []string{"acl_rule", "allow all users/%u/#"}, "acl_rule"},
		{"bad acl rule", []string{"acl_rule", "allow all a/#/b"}, "acl_rule"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tryStartBroker(t, "listener LISTENER\n"+pluginBlock(append(base, tt.opts...)...))
			if err == nil {
				t.Fatalf("the broker started:\n%s", b.Log())
			}
			if !strings.Contains(b.Log(), "plugin_opt_"+tt.key) {
				t.Errorf("the log does not name plugin_opt_%s:\n%s", tt.key, b.Log())
			}
		})
	}
	t.Run("missing required", func(t *testing.T) {
		b, err := tryStartBroker(t, "listener LISTENER\n"+pluginBlock(base[:4]...))
		if err == nil || !strings.Contains(b.Log(), "plugin_opt_client_secret") {
			t.Errorf("started=%v, log:\n%s", err == nil, b.Log())
		}
	})
}

// A plain-http endpoint to another host starts the broker with a warning that names it, and the
// start-up line shows no TLS settings where none apply.
func TestPlainHTTPEndpointWarns(t *testing.T) {
	b := startBroker(t, "listener LISTENER\n"+pluginBlock("introspection_endpoint", "http://idp.invalid:4445/admin/oauth2/introspect",
		"client_id", "broker", "client_secret", brokerSecret))
	if !b.WaitLog("introspection_endpoint http://idp.invalid:4445/admin/oauth2/introspect is plain http to a host other than loopback", 5*time.Second) {
		t.Errorf("no warning:\n%s", b.Log())
	}
	for _, line := range strings.Split(b.Log(), "\n") {
		if strings.Contains(line, "loaded, ") && strings.Contains(line, "tls_verification") {
			t.Errorf("the start-up line shows TLS settings for a plain-http endpoint: %s", line)
		}
	}
	b.Alive()
	b.AssertLogClean()
}

func TestTokens(t *testing.T) {
	e := newEnv(t)
	pw := passwordFile(t, e.dir, "bob", "bobpw")
	b := e.broker(t, "password_file "+pw+"\n")
	valid := e.idp.Token("alice", aliceSecret, "")
	revoked := e.idp.Token("alice", aliceSecret, "")
	e.idp.Revoke(revoked)
	expiring := e.idp.Token("shorty", "shorty-secret", "")
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			cases := []struct {
				name, user, pass string
				want             byte
			}{
				{"valid", "alice", valid, 0},
				{"valid without username", "", valid, 0},
				{"garbage", "alice", "not-a-token", p.refused},
				{"revoked", "alice", revoked, p.refused},
				{"empty password", "alice", "", p.refused},
				{"65535-byte password", "alice", strings.Repeat("A", 65535), p.refused},
				// The plugin answers first; a password_file user's password is not a token, so the
				// default token_verification_error deny refuses it.
				{"password_file user", "bob", "bobpw", p.refused},
			}
			for _, c := range cases {
				if c.user == "" && c.pass != "" && p.name == "mqtt311" {
					continue // a password without a username is a protocol error in 3.1.1
				}
				if _, got := p.connect(t, b.Port, "dev-"+p.name, c.user, c.pass); got != c.want {
					t.Errorf("%s: CONNACK %#x, want %#x", c.name, got, c.want)
				}
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		for _, p := range protocols {
			if _, got := p.connect(t, b.Port, "shorty", "", ""); got != p.refused {
				t.Errorf("%s no password: CONNACK %#x", p.name, got)
			}
		}
		time.Sleep(3 * time.Second) // shorty's tokens live 2 s
		for _, p := range protocols {
			if _, got := p.connect(t, b.Port, "shorty", "shorty", expiring); got != p.refused {
				t.Errorf("%s: expired token got CONNACK %#x", p.name, got)
			}
		}
	})
	b.Alive()
	b.AssertLogClean(valid, revoked, expiring, "bobpw")
	if !strings.Contains(b.Log(), "oauth2: loaded") {
		t.Error("no start-up summary in the log")
	}
}

// The four configurations in the C plugin's README, with password_file users behind the defer cases
// and acl_file %u patterns after replacement.
func TestSeedUseCases(t *testing.T) {
	e := newEnv(t)
	alice := e.idp.Token("alice", aliceSecret, "")
	mallory := e.idp.Token("mallory", "mallory-secret", "")
	pw := passwordFile(t, e.dir, "bob", "bobpw")
	acl := writeFile(t, e.dir, "acl", "user bob\ntopic write #\n\npattern read users/%u/#\npattern read groups/%u/#\n")

	t.Run("validate username, defer others to password_file", func(t *testing.T) {
		b := e.broker(t, "password_file "+pw+"\n",
			"username_validation", "true", "username_validation_template", "oauth2-token", "username_validation_error", "defer")
		for _, p := range protocols {
			if _, rc := p.connect(t, b.Port, "c1", "oauth2-token", alice); rc != 0 {
				t.Errorf("%s token user: %#x", p.name, rc)
			}
			if _, rc := p.connect(t, b.Port, "c2", "oauth2-token", "garbage"); rc != p.refused {
				t.Errorf("%s bad token: %#x", p.name, rc)
			}
			if _, rc := p.connect(t, b.Port, "c3", "bob", "bobpw"); rc != 0 {
				t.Errorf("%s password_file user: %#x", p.name, rc)
			}
			if _, rc := p.connect(t, b.Port, "c4", "bob", "wrong"); rc != p.refused {
				t.Errorf("%s password_file user, wrong password: %#x", p.name, rc)
			}
		}
		b.AssertLogClean(alice, "bobpw")
	})

	t.Run("username must be user-<username claim>", func(t *testing.T) {
		b := e.broker(t, "",
			"username_validation", "true", "username_validation_template", "user-%%oidc-username%%", "username_validation_error", "deny")
		for _, p := range protocols {
			if _, rc := p.connect(t, b.Port, "c1", "user-alice", alice); rc != 0 {
				t.Errorf("%s user-alice: %#x", p.name, rc)
			}
			if _, rc := p.connect(t, b.Port, "c2", "user-bob", alice); rc != p.refused {
				t.Errorf("%s user-bob with alice's token: %#x", p.name, rc)
			}
		}
	})

	t.Run("validate, then rename to the email claim for acl_file", func(t *testing.T) {
		b := e.broker(t, "password_file "+pw+"\nacl_file "+acl+"\n",
			"username_validation", "true", "username_validation_template", "oauth2-token", "username_validation_error", "defer",
			"username_replacement", "true", "username_replacement_template", "%%oidc-email%%", "username_replacement_error", "deny")
		// acl_file's pattern uses the replaced name: alice reads users/alice@example.com/..., not
		// users/oauth2-token/...
		readsOnlyRenamedTree(t, b, "oauth2-token", alice, "users", "oauth2-token", "alice@example.com")
		b.AssertLogClean(alice, "bobpw")
	})

	t.Run("rename to group-<first ZITADEL role>", func(t *testing.T) {
		// token_verification_error defer lets bob, a password_file user, in to publish.
		b := e.broker(t, "password_file "+pw+"\nacl_file "+acl+"\n",
			"username_replacement", "true", "username_replacement_template", "group-%%zitadel-role%%",
			"username_replacement_error", "deny", "token_verification_error", "defer")
		readsOnlyRenamedTree(t, b, "whatever", alice, "groups", "whatever", "group-admin")
		b.AssertLogClean(alice, "bobpw")
	})

	t.Run("a rendered name with a slash is refused", func(t *testing.T) {
		b := e.broker(t, "acl_file "+acl+"\n",
			"username_replacement", "true", "username_replacement_template", "%%oidc-username%%")
		for _, p := range protocols {
			if _, rc := p.connect(t, b.Port, "m-"+p.name, "mallory", mallory); rc != p.refused {
				t.Errorf("%s: username alice/evil accepted: %#x", p.name, rc)
			}
			if _, rc := p.connect(t, b.Port, "a-"+p.name, "x", alice); rc != 0 {
				t.Errorf("%s alice: %#x", p.name, rc)
			}
		}
		b.AssertLogClean(alice, mallory)
	})
}

// readsOnlyRenamedTree connects a token client under username (which the plugin renames to renamed)
// and the password_file user bob, who publishes to tree/asGiven/x and tree/renamed/x: acl_file's
// "pattern read tree/%u/#" must deliver only the second.
func readsOnlyRenamedTree(t *testing.T, b *broker, username, token, tree, asGiven, renamed string) {
	t.Helper()
	for _, p := range protocols {
		sub, rc := p.connect(t, b.Port, "alice-"+p.name, username, token)
		if rc != 0 {
			t.Fatalf("%s: %#x", p.name, rc)
		}
		pub, rc := p.connect(t, b.Port, "bob-"+p.name, "bob", "bobpw")
		if rc != 0 {
			t.Fatalf("%s bob: %#x", p.name, rc)
		}
		sub.Subscribe(t, tree+"/#")
		pub.Publish(t, tree+"/"+asGiven+"/x", "no")
		pub.Publish(t, tree+"/"+renamed+"/x", "yes")
		sub.Expect(t, tree+"/"+renamed+"/x yes")
		sub.ExpectNothing(t)
	}
}
