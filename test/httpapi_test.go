//go:build e2e

package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Mosquitto 2.1's HTTP API authenticates each request through the plugins, with the request's basic-auth
// credentials, on libmicrohttpd's own thread; then it checks read access to the URL path as a topic.
// The plugin answers at once on that thread: a valid token as the password opens the API, an invalid one
// does not, and the MQTT clients on the broker thread never notice.
func TestHTTPAPI(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed: run `make deps`")
	}
	e := newEnv(t)
	alice := e.idp.Token("alice", aliceSecret, "")
	bob := e.idp.Token("bob", "bob-secret", "")
	cases := []struct {
		name  string
		opts  []string
		codes map[string]int // password -> HTTP status
	}{
		{"authentication only", nil, map[string]int{alice: 200, bob: 200, "not-a-token": 401, "": 401}},
		// With claim rules the API is a topic tree like any other: only alice's token may read it.
		{"claim rules", []string{"acl_rule", "allow subscribe /api/# when username=alice"},
			map[string]int{alice: 200, bob: 401, "not-a-token": 401}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf := "listener LISTENER\nlistener LISTENER\nprotocol http_api\n" +
				pluginBlock(append(introspectionOpts(e.idp, e.pki), c.opts...)...)
			b := startBrokerOrSkip(t, conf)
			api := fmt.Sprintf("http://127.0.0.1:%d/api/v1/version", b.Ports[1])
			for pass, want := range c.codes {
				args := []string{"-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", api}
				if pass != "" {
					args = append(args, "-u", "alice:"+pass)
				}
				start := time.Now()
				out, err := exec.Command("curl", args...).Output()
				if err != nil {
					t.Fatalf("curl: %v", err)
				}
				if got := strings.TrimSpace(string(out)); got != fmt.Sprint(want) {
					t.Errorf("password of %d bytes: HTTP %s after %v, want %d\n%s", len(pass), got, time.Since(start), want, b.Log())
				}
			}
			// The positive control on the broker thread: an MQTT client with a token still connects.
			if _, rc := connect3(t, b.Port, "mqtt-control", "alice", alice); rc != 0 {
				t.Errorf("MQTT client: CONNACK %#x, want 0", rc)
			}
			b.Alive()
			b.AssertLogClean(alice, bob)
		})
	}
}
