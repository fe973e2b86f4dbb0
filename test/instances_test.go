//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// Mosquitto 2.1 loads a plugin under a name (plugin_load NAME PATH, then its plugin_opt_* lines) and
// attaches it to listeners (plugin_use NAME). Two named instances of this plugin on two listeners, each
// accepting JWTs for its own audience only, are independent: a token for one listener's audience is
// refused on the other's.
func TestNamedInstances(t *testing.T) {
	e := newEnv(t)
	instance := func(name, audience string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "plugin_load %s %s\n", name, os.Getenv("PLUGIN_SO"))
		opts := append(introspectionOpts(e.idp, e.pki), "jwt_verification", "true", "jwt_issuer", e.idp.URL,
			"jwt_audience", audience)
		for i := 0; i+1 < len(opts); i += 2 {
			fmt.Fprintf(&b, "plugin_opt_%s %s\n", opts[i], opts[i+1])
		}
		return b.String()
	}
	conf := instance("rs", "urn:mqtt:rs256") + instance("es", "urn:mqtt:es256") +
		"listener LISTENER\nplugin_use rs\nlistener LISTENER\nplugin_use es\n"
	b, err := tryStartBroker(t, conf)
	if err != nil {
		if strings.Contains(b.Log(), "plugin_load") || strings.Contains(b.Log(), "Unknown configuration variable") {
			t.Skip("this broker has no named plugin instances (Mosquitto 2.1 has)")
		}
		t.Fatalf("%v\n%s", err, b.Log())
	}
	rs, es := e.idp.Token("alice", aliceSecret, "urn:mqtt:rs256"), e.idp.Token("alice", aliceSecret, "urn:mqtt:es256")
	cases := []struct {
		listener string
		port     int
		token    string
		want     byte
	}{
		{"rs", b.Ports[0], rs, 0},
		{"rs", b.Ports[0], es, 5},
		{"es", b.Ports[1], es, 0},
		{"es", b.Ports[1], rs, 5},
	}
	for i, c := range cases {
		if _, rc := connect3(t, c.port, fmt.Sprintf("named-%d", i), "alice", c.token); rc != c.want {
			t.Errorf("listener %s, token %d: CONNACK %#x, want %#x", c.listener, i, rc, c.want)
		}
	}
	if n := strings.Count(b.Log(), "oauth2: loaded"); n != 2 {
		t.Errorf("%d instances said they loaded, want 2:\n%s", n, b.Log())
	}
	b.Alive()
	b.AssertLogClean(rs, es)
}
