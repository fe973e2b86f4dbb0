//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

const notAuthorized = 0x87 // MQTT 5 PUBACK and SUBACK reason code

// aclRules are the claim rules of TestClaimACLs, as plugin_opt pairs.
var aclRules = []string{
	"username_replacement", "true", "username_replacement_template", "%%oidc-username%%",
	"acl_rule", "allow all users/%u/#",
	"acl_rule", "deny all users/%u/secret/#",
	"acl_rule", "allow all devices/%c/#",
	"acl_rule", "allow subscribe admin/# when urn:zitadel:iam:org:project:roles=admin",
	"acl_topics_claim", "topics",
	"acl_claim", "acl",
}

// connectAs connects an MQTT 5 client with a device's fresh token and fails the test unless accepted.
func connectAs(t *testing.T, b *broker, e *env, id, device, secret string) *client {
	t.Helper()
	c, rc := connect5(t, b.Port, id, "device", e.idp.Token(device, secret, ""))
	if rc != 0 {
		t.Fatalf("%s: CONNACK %#x", id, rc)
	}
	return c
}

func expectSubscribe(t *testing.T, c *client, filter string, allowed bool) {
	t.Helper()
	got := c.Subscribe(t, filter)
	if allowed && got >= 0x80 {
		t.Errorf("subscribe %s refused (%#x), want granted", filter, got)
	}
	if !allowed && got < 0x80 {
		t.Errorf("subscribe %s granted (QoS %d), want refused", filter, got)
	}
}

func expectPublish(t *testing.T, c *client, topic string, allowed bool) {
	t.Helper()
	got := c.PublishRC(t, topic, "x")
	if allowed && got >= 0x80 {
		t.Errorf("publish %s refused (%#x), want accepted", topic, got)
	}
	if !allowed && got != notAuthorized {
		t.Errorf("publish %s: PUBACK %#x, want %#x", topic, got, notAuthorized)
	}
}

// Topic rights from token claims: acl_rule templates, a topics list, EMQX's ACL claim in both forms.
// Nothing else grants anything (acl_no_match deny, the default). With disconnect_on_expiry false, a
// client whose token expired stays connected but loses every right.
func TestClaimACLs(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "", append(aclRules, "disconnect_on_expiry", "false")...)
	alice := connectAs(t, b, e, "alice-1", "alice", aliceSecret)
	carol := connectAs(t, b, e, "carol-1", "carol", "carol-secret")
	erin := connectAs(t, b, e, "erin-1", "erin", "erin-secret")

	t.Run("allowed publish delivered, denied publish not", func(t *testing.T) {
		expectSubscribe(t, alice, "users/alice/#", true)
		expectPublish(t, carol, "users/alice/inbox", false) // carol's %u is carol
		expectPublish(t, alice, "users/alice/inbox", true)
		alice.Expect(t, "users/alice/inbox x")
		alice.ExpectNothing(t)
	})
	t.Run("deny beats allow", func(t *testing.T) {
		expectPublish(t, alice, "users/alice/secret/key", false)
		expectSubscribe(t, alice, "users/alice/secret/#", false)
		alice.ExpectNothing(t)
		expectPublish(t, erin, "fleet/erin/locked", false) // EMQX rule list: deny before allow
		expectPublish(t, erin, "fleet/erin/open", true)
	})
	t.Run("wider wildcards refused", func(t *testing.T) {
		for _, f := range []string{"users/#", "users/+/inbox", "#", "+/alice/#", "$share/g/users/#"} {
			expectSubscribe(t, alice, f, false)
		}
		expectSubscribe(t, alice, "$share/g/users/alice/#", true)
	})
	t.Run("topics claim and EMQX acl object", func(t *testing.T) {
		expectSubscribe(t, carol, "fleet/carol/#", true)
		expectPublish(t, carol, "fleet/carol/t1", true)
		carol.Expect(t, "fleet/carol/t1 x")
		expectSubscribe(t, carol, "fleet/#", false)
		expectPublish(t, erin, "fleet/erin/open", true)
		carol.ExpectNothing(t)                           // the refused fleet/# subscription receives nothing
		expectPublish(t, carol, "cmd/dev9/reboot", true) // acl.pub
		expectSubscribe(t, carol, "cmd/carol/#", true)   // acl.sub
		expectSubscribe(t, carol, "cmd/#", false)
		expectPublish(t, carol, "cmd/carol/x", false) // sub only
	})
	t.Run("rule conditioned on a ZITADEL role", func(t *testing.T) {
		expectSubscribe(t, alice, "admin/#", true)
		expectSubscribe(t, carol, "admin/#", false)
	})
	t.Run("client id with a slash fills no rule", func(t *testing.T) {
		c := connectAs(t, b, e, "alice/x", "carol", "carol-secret")
		expectPublish(t, c, "devices/alice/x/cmd", false)
		expectPublish(t, c, "devices/alice/cmd", false)
		own := connectAs(t, b, e, "dev7", "carol", "carol-secret")
		expectPublish(t, own, "devices/dev7/cmd", true)
	})
	t.Run("Will of a client that vanishes is checked with its rights", func(t *testing.T) {
		expectSubscribe(t, carol, "fleet/carol/#", true)
		tok := e.idp.Token("carol", "carol-secret", "")
		connectWithWill(t, b, "carol-will", tok, "fleet/carol/status", "gone").Close() // no DISCONNECT
		carol.Expect(t, "fleet/carol/status gone")
		// A takeover sends the old connection's Will after the new one's CONNECT was authorized.
		old := connectWithWill(t, b, "carol-take", tok, "fleet/carol/status", "taken over")
		defer old.Close()
		connectAs(t, b, e, "carol-take", "carol", "carol-secret")
		carol.Expect(t, "fleet/carol/status taken over")
	})
	t.Run("no delivery once the token has expired", func(t *testing.T) {
		shorty := connectAs(t, b, e, "shorty-1", "shorty", "shorty-secret") // tokens live 2 s
		expectSubscribe(t, shorty, "short/#", true)
		expectPublish(t, carol, "short/1", true)
		shorty.Expect(t, "short/1 x")
		time.Sleep(2500 * time.Millisecond)
		expectPublish(t, carol, "short/2", true)
		shorty.ExpectNothing(t)
		if got := shorty.PublishRC(t, "short/3", "x"); got != notAuthorized {
			t.Errorf("publish after exp: PUBACK %#x", got)
		}
	})
	b.Alive()
}

// With acl_no_match defer, what no claim rule covers is decided by acl_file.
func TestACLNoMatchDefersToACLFile(t *testing.T) {
	e := newEnv(t)
	aclFile := writeFile(t, e.dir, "acl", "pattern readwrite public/%u/#\n")
	b := e.broker(t, "acl_file "+aclFile+"\n", append(aclRules, "acl_no_match", "defer")...)
	alice := connectAs(t, b, e, "alice-1", "alice", aliceSecret)
	carol := connectAs(t, b, e, "carol-1", "carol", "carol-secret")
	expectSubscribe(t, alice, "public/alice/#", true)
	expectPublish(t, alice, "public/alice/news", true) // acl_file, with the username from the token
	alice.Expect(t, "public/alice/news x")
	expectPublish(t, carol, "public/alice/news", false) // acl_file's %u is carol
	expectPublish(t, carol, "users/carol/x", true)      // the plugin still answers what it covers
	expectPublish(t, carol, "users/carol/secret/x", false)
	alice.ExpectNothing(t)
	b.Alive()
}

// connectWithWill connects a raw MQTT 3.1.1 client with a QoS 0 Will and returns its connection once
// accepted.
func connectWithWill(t *testing.T, b *broker, id, token, topic, msg string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", b.Port))
	if err != nil {
		t.Fatal(err)
	}
	conn.Write(connectPacket(id, token, topic, msg))
	connack := make([]byte, 4)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conn, connack); err != nil || connack[3] != 0 {
		t.Fatalf("%s: CONNACK %x, %v", id, connack, err)
	}
	return conn
}

// The case of the plugin API reference, §8: with username validation, %u is the name the client sent
// once the token vouched for it. A token whose username claim is "alice/evil" must not become the name
// "alice/evil", which "users/%u/#" would turn into a way into alice's tree: it is refused at CONNECT.
func TestACLNameCannotCrossTenants(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "", "acl_rule", "allow all users/%u/#",
		"username_validation", "true", "username_validation_template", "%%oidc-username%%", "username_validation_error", "deny")
	tok := e.idp.Token("mallory", "mallory-secret", "") // its username claim is alice/evil
	for _, p := range protocols {
		if _, rc := p.connect(t, b.Port, "mallory-"+p.name, "alice/evil", tok); rc != p.refused {
			t.Errorf("%s: CONNACK %#x, want %#x", p.name, rc, p.refused)
		}
	}
	if !strings.Contains(b.Log(), "rendered username refused") {
		t.Errorf("the refusal does not say why:\n%s", b.Log())
	}
	ok, rc := connect5(t, b.Port, "alice-ok", "alice", e.idp.Token("alice", aliceSecret, ""))
	if rc != 0 {
		t.Fatalf("CONNACK %#x", rc)
	}
	expectSubscribe(t, ok, "users/alice/#", true)
	b.Alive()
}
