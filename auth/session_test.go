package auth

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/acl"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/verified"
)

const deviceClaims = `{"active":true,"sub":"d1","username":"alice","tenant":"acme","topics":["fleet/acme/+/telemetry"],
	"acl":{"pub":["cmd/acme/#"]},"roles":["operator"]}`

func sessionFor(t *testing.T, e *Engine, req Request) *Session {
	t.Helper()
	d := e.Authenticate(context.Background(), req)
	if d.Result != Allow || d.Session == nil {
		t.Fatalf("CONNECT: %+v", d)
	}
	return d.Session
}

func TestAuthorize(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{res: verified.Token{Claims: []byte(deviceClaims), Expiry: clk.t.Add(time.Hour)}}
	e, _ := newTestEngine(t, idp, clk, opt("cache_ttl", "300"),
		opt("username_replacement", "true"), opt("username_replacement_template", "%%oidc-username%%"),
		opt("acl_rule", "allow all users/%u/#"),
		opt("acl_rule", "allow subscribe tenants/%%claim:tenant%%/#"),
		opt("acl_rule", "deny publish users/%u/locked"),
		opt("acl_rule", "allow publish ops/# when roles=operator"),
		opt("acl_rule", "allow publish admin/# when roles=admin"),
		opt("acl_topics_claim", "topics"), opt("acl_claim", "acl"))
	s := sessionFor(t, e, Request{ClientID: "dev-1", Username: "whatever", Password: token})
	cases := []struct {
		access acl.Access
		topic  string
		want   Result
	}{
		{acl.Write, "users/alice/x", Allow},      // %u is the username after replacement
		{acl.Write, "users/whatever/x", Deny},    // not the name the client sent
		{acl.Write, "users/alice/locked", Deny},  // deny beats allow
		{acl.Read, "tenants/acme/news", Allow},   // claim substitution
		{acl.Write, "tenants/acme/news", Deny},   // subscribe only
		{acl.Subscribe, "tenants/#", Deny},       // wider than granted
		{acl.Subscribe, "tenants/acme/#", Allow}, // exactly granted
		{acl.Write, "ops/restart", Allow},        // when roles=operator
		{acl.Write, "admin/x", Deny},             // when roles=admin does not hold
		{acl.Write, "fleet/acme/d1/telemetry", Allow},
		{acl.Write, "cmd/acme/reboot", Allow},
		{acl.Read, "cmd/acme/reboot", Deny}, // EMQX "pub" only
		{acl.Unsubscribe, "anything/#", Allow},
	}
	for _, c := range cases {
		if got := e.Authorize(s, c.access, c.topic, 0, false, clk.now()); got != c.want {
			t.Errorf("%v %s: %v, want %v", c.access, c.topic, got, c.want)
		}
	}
	if got := e.Authorize(nil, acl.Write, "users/alice/x", 0, false, clk.now()); got != Defer {
		t.Errorf("client the plugin did not admit: %v, want defer", got)
	}
	// A reconnect from the cache gets its own session, rendered for its own client id and name.
	if s2 := sessionFor(t, e, Request{ClientID: "dev-2", Password: token}); s2 == s {
		t.Error("two connections share one session")
	}
	if n := idp.calls.Load(); n != 1 {
		t.Errorf("%d IdP calls for two connects with one token", n)
	}
	// The token is good until its exp and not after, to the nanosecond of the check's time.
	exp := clk.now().Add(time.Hour)
	if got := e.Authorize(s, acl.Write, "users/alice/x", 0, false, exp.Add(-time.Nanosecond)); got != Allow {
		t.Errorf("a nanosecond before the token's exp: %v, want allow", got)
	}
	if got := e.Authorize(s, acl.Write, "users/alice/x", 0, false, exp); got != Deny {
		t.Errorf("at the token's exp: %v, want deny", got)
	}
	if got := s.Holds(exp.Add(-time.Nanosecond)); !got.Equal(exp) {
		t.Errorf("an answer a nanosecond before exp holds until %v, want exp %v", got, exp)
	}
	if got := e.Authorize(s, acl.Unsubscribe, "users/alice/x", 0, false, exp); got != Allow {
		t.Errorf("unsubscribe after exp: %v, want allow", got)
	}
}

// An answer holds until the token's exp when made before it, and for ever (zero) otherwise: from exp on
// every answer is Deny, and without a session or an exp time changes nothing.
func TestHolds(t *testing.T) {
	exp := time.Unix(2_000_000, 0)
	withExp, noExp := &Session{expiry: exp}, &Session{}
	for _, c := range []struct {
		name string
		s    *Session
		now  time.Time
		want time.Time
	}{
		{"before exp", withExp, exp.Add(-time.Hour), exp},
		{"a nanosecond before exp", withExp, exp.Add(-time.Nanosecond), exp},
		{"at exp", withExp, exp, time.Time{}},
		{"after exp", withExp, exp.Add(time.Hour), time.Time{}},
		{"no exp", noExp, exp, time.Time{}},
		{"no session", nil, exp, time.Time{}},
	} {
		if got := c.s.Holds(c.now); !got.Equal(c.want) {
			t.Errorf("%s: holds until %v, want %v", c.name, got, c.want)
		}
	}
}

func TestAuthorizeNoMatch(t *testing.T) {
	for _, tc := range []struct {
		policy string
		want   Result
	}{{"deny", Deny}, {"defer", Defer}} {
		clk := &testClock{t: time.Unix(1_000_000, 0)}
		idp := &scriptedIdP{res: verified.Token{Claims: []byte(deviceClaims)}}
		e, _ := newTestEngine(t, idp, clk, opt("acl_rule", "allow all users/%u/#"), opt("acl_no_match", tc.policy),
			opt("username_validation", "true"), opt("username_validation_template", "%%oidc-username%%"))
		s := sessionFor(t, e, Request{ClientID: "c", Username: "alice", Password: token})
		if got := e.Authorize(s, acl.Write, "elsewhere", 0, false, clk.now()); got != tc.want {
			t.Errorf("acl_no_match %s: %v", tc.policy, got)
		}
		if got := e.Authorize(s, acl.Write, "users/alice/1", 0, false, clk.now()); got != Allow {
			t.Errorf("acl_no_match %s, matching rule: %v", tc.policy, got)
		}
	}
}

// A name that would cross into another tenant's tree never becomes the client's name, even when the token
// vouches for it: the client is refused as for any other validation failure (defer by default, so
// password_file may still know it). A client id that would cross fills no rule.
func TestAuthorizeCrossTenantNames(t *testing.T) {
	for _, tc := range []struct {
		username string
		want     Result
	}{{"alice/evil", Defer}, {"+", Defer}, {"$SYS", Defer}, {"a\nb", Defer}, {"alice", Allow}} {
		clk := &testClock{t: time.Unix(1_000_000, 0)}
		claims := fmt.Sprintf(`{"active":true,"username":%q}`, tc.username)
		idp := &scriptedIdP{res: verified.Token{Claims: []byte(claims)}}
		e, _ := newTestEngine(t, idp, clk, opt("acl_rule", "allow all tenants/%u/#"), opt("acl_rule", "allow all devices/%c/#"),
			opt("username_validation", "true"), opt("username_validation_template", "%%oidc-username%%"))
		d := e.Authenticate(context.Background(), Request{ClientID: "bob/../alice", Username: tc.username, Password: token})
		if d.Result != tc.want {
			t.Errorf("username claim %q: %v, want %v", tc.username, d.Result, tc.want)
			continue
		}
		if d.Result != Allow {
			continue
		}
		for _, topic := range []string{"devices/bob/../alice/x", "devices/alice/x", "tenants/bob/x"} {
			if got := e.Authorize(d.Session, acl.Write, topic, 0, false, clk.now()); got != Deny {
				t.Errorf("%s: %v, want deny", topic, got)
			}
		}
		if got := e.Authorize(d.Session, acl.Write, "tenants/alice/x", 0, false, clk.now()); got != Allow {
			t.Errorf("control: tenants/alice/x: %v, want allow", got)
		}
	}
}

// Without a username bound to the token, ${username} in an ACL claim fills nothing: the client chose it.
func TestUnboundUsernameFillsNoClaimPlaceholder(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{res: verified.Token{Claims: []byte(`{"active":true,"acl":{"all":["users/${username}/#"]}}`)}}
	e, _ := newTestEngine(t, idp, clk, opt("acl_claim", "acl"))
	s := sessionFor(t, e, Request{ClientID: "c", Username: "bob", Password: token})
	if got := e.Authorize(s, acl.Write, "users/bob/x", 0, false, clk.now()); got != Deny {
		t.Errorf("client-chosen username filled ${username}: %v", got)
	}
}

func TestMalformedACLClaimRefusesConnect(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{res: verified.Token{Claims: []byte(`{"active":true,"acl":{"pub":"not-a-list","foo":1}}`)}}
	e, log := newTestEngine(t, idp, clk, opt("acl_claim", "acl"))
	d := e.Authenticate(context.Background(), Request{ClientID: "c", Password: token})
	if d.Result != Deny || d.Session != nil {
		t.Fatalf("malformed acl claim: %+v", d)
	}
	if len(log.lines) == 0 {
		t.Error("the refusal is not logged")
	}
}

func TestNoSessionWithoutACLOptions(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{res: verified.Token{Claims: []byte(deviceClaims)}}
	e, _ := newTestEngine(t, idp, clk)
	if d := e.Authenticate(context.Background(), Request{ClientID: "c", Password: token}); d.Result != Allow || d.Session != nil || e.AuthorizesTopics() {
		t.Fatalf("%+v, authorizes topics %v", d, e.AuthorizesTopics())
	}
}

func BenchmarkAuthorize(b *testing.B) {
	clk := &testClock{t: time.Now()}
	idp := &scriptedIdP{res: verified.Token{Claims: []byte(deviceClaims), Expiry: clk.t.Add(time.Hour)}}
	e, _ := newTestEngine(b, idp, clk, opt("acl_rule", "allow all users/%u/#"), opt("acl_rule", "deny publish users/%u/locked"),
		opt("acl_topics_claim", "topics"), opt("acl_claim", "acl"),
		opt("username_validation", "true"), opt("username_validation_template", "%%oidc-username%%"))
	d := e.Authenticate(context.Background(), Request{ClientID: "c", Username: "alice", Password: token})
	b.ReportAllocs()
	for b.Loop() {
		if e.Authorize(d.Session, acl.Write, "users/alice/sensors/temp/1", 0, false, clk.now()) != Allow {
			b.Fatal("denied")
		}
	}
}
