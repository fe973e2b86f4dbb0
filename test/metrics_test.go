//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrapeMetrics fetches the plugin's Prometheus metrics.
func scrapeMetrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", resp.StatusCode, body)
	}
	return string(body)
}

// metricValue reads one series (name and labels, as exposed) from a scrape; -1 when it is absent.
func metricValue(scrape, series string) float64 {
	for _, line := range strings.Split(scrape, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// A broker with metrics_listen serves the plugin's counters to Prometheus, and publishes them under
// $SYS: a good and a bad CONNECT move them, and nothing a client sent shows in either.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	b := e.broker(t, "", "metrics_listen", addr, "sys_interval", "1")
	good := e.idp.Token("alice", aliceSecret, "")
	const goodID, badID, badUser, badToken = "metrics-good-7f3a", "metrics-bad-91c2", "metrics-user-5d0e", "not-a-token-4b8e1c"
	if _, rc := connect3(t, b.Port, goodID, "alice", good); rc != 0 {
		t.Fatalf("good CONNECT: %#x", rc)
	}
	if _, rc := connect3(t, b.Port, badID, badUser, badToken); rc != 5 {
		t.Fatalf("bad CONNECT: %#x, want 5", rc)
	}

	scrape := scrapeMetrics(t, addr)
	for _, c := range []struct {
		series string
		min    float64
	}{
		{`mosquitto_oauth2_decisions_total{reason="valid",result="allow"}`, 1},
		{`mosquitto_oauth2_decisions_total{reason="token_refused",result="deny"}`, 1},
		{`mosquitto_oauth2_verifications_total{source="introspection"}`, 2},
		{`mosquitto_oauth2_cache_misses_total`, 2},
		{`mosquitto_oauth2_idp_request_duration_seconds_count{outcome="ok",request="introspection"}`, 1},
		{`mosquitto_oauth2_idp_request_duration_seconds_count{outcome="token_refused",request="introspection"}`, 1},
		{`mosquitto_oauth2_sessions`, 1},
		{`mosquitto_oauth2_circuit_breaker_state{state="closed"}`, 1},
	} {
		if v := metricValue(scrape, c.series); v < c.min {
			t.Errorf("%s is %v, want at least %v", c.series, v, c.min)
		}
	}
	for _, s := range []string{good, badToken, goodID, badID, badUser, "alice"} {
		if strings.Contains(scrape, s) {
			t.Errorf("the scrape holds %q, which a client sent", s)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", scrape)
	}

	t.Run("$SYS", func(t *testing.T) {
		sub, rc := connect3(t, b.Port, "metrics-sys", "alice", good)
		if rc != 0 {
			t.Fatalf("subscriber: %#x", rc)
		}
		sub.Subscribe(t, "$SYS/broker/plugin/oauth2/#")
		sub.Subscribe(t, "$SYS/broker/uptime") // the broker's own, as a control
		want := map[string]bool{"$SYS/broker/uptime": false, "$SYS/broker/plugin/oauth2/decisions/allow/valid": false,
			"$SYS/broker/plugin/oauth2/decisions/deny/token_refused": false, "$SYS/broker/plugin/oauth2/sessions": false}
		deadline := time.After(5 * time.Second)
		for missing := len(want); missing > 0; {
			select {
			case m := <-sub.msgs:
				topic, payload, _ := strings.Cut(m, " ")
				for _, s := range []string{good, badToken, goodID, badID, badUser} {
					if strings.Contains(m, s) {
						t.Errorf("$SYS message %q holds what a client sent", m)
					}
				}
				if seen, ok := want[topic]; ok && !seen {
					if _, err := strconv.ParseFloat(strings.Fields(payload + " x")[0], 64); err != nil {
						t.Errorf("%s: payload %q is not a number", topic, payload)
					}
					want[topic] = true
					missing--
				}
			case <-deadline:
				t.Fatalf("topics received within 5 s: %v", want)
			}
		}
	})

	t.Run("bad value", func(t *testing.T) {
		for _, v := range []string{"9883", "localhost", "127.0.0.1:http"} {
			b, err := tryStartBroker(t, "listener LISTENER\n"+pluginBlock(append(introspectionOpts(e.idp, e.pki), "metrics_listen", v)...))
			if err == nil || !strings.Contains(b.Log(), "plugin_opt_metrics_listen") {
				t.Errorf("metrics_listen %q: started=%v, log:\n%s", v, err == nil, b.Log())
			}
		}
	})

	// Two instances (one per listener) have a registry each; a second one on a taken address stops the
	// broker.
	t.Run("instances", func(t *testing.T) {
		common := introspectionOpts(e.idp, e.pki)
		one, two := fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
		conf := func(a, b string) string {
			return "per_listener_settings true\n" +
				"listener LISTENER\n" + pluginBlock(append(common, "metrics_listen", a)...) +
				"listener LISTENER\n" + pluginBlock(append(common, "metrics_listen", b)...)
		}
		br := startBroker(t, conf(one, two))
		if _, rc := connect3(t, br.Ports[1], "second-listener", "alice", good); rc != 0 {
			t.Fatalf("CONNECT on the second listener: %#x", rc)
		}
		allowed := `mosquitto_oauth2_decisions_total{reason="valid",result="allow"}`
		if v1, v2 := metricValue(scrapeMetrics(t, one), allowed), metricValue(scrapeMetrics(t, two), allowed); v1 != -1 || v2 != 1 {
			t.Errorf("allowed: %v on the first instance, %v on the second; want none and 1", v1, v2)
		}
		br.Stop()

		br, err := tryStartBroker(t, conf(one, one))
		if err == nil || !strings.Contains(br.Log(), "plugin_opt_metrics_listen: "+one+" is taken") {
			t.Errorf("two instances on %s: started=%v, log:\n%s", one, err == nil, br.Log())
		}
	})
	b.AssertLogClean(good)
}
