package metrics

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/auth"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/sessions"
)

var at = time.Unix(1_800_000_000, 0)

// busy is a snapshot where every metric has something to show.
func busy() Snapshot {
	idp := auth.IdPRequests{Request: auth.RequestIntrospection, Outcome: auth.OutcomeIdPUnavailable, Sum: 5250 * time.Millisecond}
	for i, bound := range auth.IdPBuckets {
		if bound > 5*time.Second {
			idp.Counts[i] = 1 // one request that took 5.25 s
		}
	}
	idp.Counts[len(idp.Counts)-1] = 1
	return Snapshot{At: at,
		Engine: auth.Stats{
			Decisions: []auth.DecisionCount{{Result: auth.Allow, Reason: auth.ReasonValid, N: 7},
				{Result: auth.Defer, Reason: auth.ReasonBreakerOpen, N: 2}},
			CacheHits: 5, CacheMisses: 3, CacheEntries: 4, JWTVerdicts: 1, IntrospectionVerdicts: 2,
			IdP:        []auth.IdPRequests{idp},
			HasBreaker: true, Breaker: auth.BreakerOpen, BreakerTransitions: [3]uint64{0, 1, 0},
			KeysFetched: at.Add(-90 * time.Second), DelayedQueued: 6,
		},
		Sessions: sessions.Stats{Sessions: 9, Expired: 1, Revoked: 2, Reauthenticated: 3},
	}
}

// The table maps a snapshot to Prometheus series and $SYS topics alike.
func TestMapping(t *testing.T) {
	for _, tc := range []struct {
		name string
		snap Snapshot
		prom []string // series as "name{labels} value", in the registry's order
		sys  []string // "topic payload" under the prefix, in publication order
	}{
		{"nothing happened yet, without introspection or JWTs", Snapshot{At: at},
			[]string{
				"cache_entries 0",
				"cache_misses_total 0",
				"delayed_checks_queued 0",
				`lease_events_total{kind="expired"} 0`,
				`lease_events_total{kind="reauthenticated"} 0`,
				`lease_events_total{kind="revoked"} 0`,
				"sessions 0",
				`verifications_total{source="cache"} 0`,
				`verifications_total{source="introspection"} 0`,
				`verifications_total{source="jwt"} 0`,
			},
			[]string{
				"verifications/cache 0", "verifications/jwt 0", "verifications/introspection 0",
				"cache/misses 0", "cache/entries 0", "sessions 0",
				"lease_events/expired 0", "lease_events/revoked 0", "lease_events/reauthenticated 0",
				"delayed_checks/queued 0",
			}},
		{"busy", busy(),
			[]string{
				"cache_entries 4",
				"cache_misses_total 3",
				`circuit_breaker_state{state="closed"} 0`,
				`circuit_breaker_state{state="half_open"} 0`,
				`circuit_breaker_state{state="open"} 1`,
				`circuit_breaker_transitions_total{to="closed"} 0`,
				`circuit_breaker_transitions_total{to="half_open"} 0`,
				`circuit_breaker_transitions_total{to="open"} 1`,
				`decisions_total{reason="breaker_open",result="defer"} 2`,
				`decisions_total{reason="valid",result="allow"} 7`,
				"delayed_checks_queued 6",
				`idp_request_duration_seconds{outcome="idp_unavailable",request="introspection"} count 1 sum 5.25 le5=0 le10=1`,
				"jwks_age_seconds 90",
				`lease_events_total{kind="expired"} 1`,
				`lease_events_total{kind="reauthenticated"} 3`,
				`lease_events_total{kind="revoked"} 2`,
				"sessions 9",
				`verifications_total{source="cache"} 5`,
				`verifications_total{source="introspection"} 2`,
				`verifications_total{source="jwt"} 1`,
			},
			[]string{
				"decisions/allow/valid 7", "decisions/defer/breaker_open 2",
				"verifications/cache 5", "verifications/jwt 1", "verifications/introspection 2",
				"cache/misses 3", "cache/entries 4",
				"idp/introspection/idp_unavailable/requests 1", "idp/introspection/idp_unavailable/seconds 5.250",
				"circuit_breaker/state open",
				"circuit_breaker/transitions/closed 0", "circuit_breaker/transitions/open 1", "circuit_breaker/transitions/half_open 0",
				"jwks/age 90", "sessions 9",
				"lease_events/expired 1", "lease_events/revoked 2", "lease_events/reauthenticated 3",
				"delayed_checks/queued 6",
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := scrape(t, tc.snap); !slices.Equal(got, tc.prom) {
				t.Errorf("Prometheus:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.prom, "\n"))
			}
			var got []string
			for _, v := range sys(samples(tc.snap)) {
				got = append(got, v.topic+" "+v.payload)
			}
			if !slices.Equal(got, tc.sys) {
				t.Errorf("$SYS:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.sys, "\n"))
			}
		})
	}
}

// scrape gathers snap through a registry, as a scrape does, and renders each series on one line.
func scrape(t *testing.T, snap Snapshot) []string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector{func() Snapshot { return snap }})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range families {
		name, ok := strings.CutPrefix(f.GetName(), namePrefix)
		if !ok {
			t.Errorf("%s does not start with %s", f.GetName(), namePrefix)
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			series := name
			if len(labels) > 0 {
				series += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				series += fmt.Sprintf(" %g", m.Counter.GetValue())
			case m.Gauge != nil:
				series += fmt.Sprintf(" %g", m.Gauge.GetValue())
			case m.Histogram != nil:
				h := m.Histogram
				series += fmt.Sprintf(" count %d sum %g", h.GetSampleCount(), h.GetSampleSum())
				for _, b := range h.GetBucket() {
					if b := b.GetUpperBound(); b != 5 && b != 10 {
						continue
					}
					series += fmt.Sprintf(" le%g=%d", b.GetUpperBound(), b.GetCumulativeCount())
				}
			}
			out = append(out, series)
		}
	}
	return out
}

// $SYS gets every value at the first publication, then only what changed, once per interval.
func TestSysTreePublishesChanges(t *testing.T) {
	tree := NewSysTree(10 * time.Second)
	defer tree.Close()
	snap := busy()
	var got []string
	publish := func(topic, payload string) { got = append(got, topic+" "+payload) }
	read := func() Snapshot { return snap }

	tree.Publish(at, read, publish)
	if len(got) != len(sys(samples(snap))) || !strings.HasPrefix(got[0], SysBase+"/decisions/allow/valid ") {
		t.Fatalf("first publication: %q", got)
	}
	got = nil
	snap.Sessions.Sessions = 10
	snap.Engine.Breaker = auth.BreakerHalfOpen
	tree.Publish(at.Add(9*time.Second), read, publish)
	if len(got) != 0 {
		t.Errorf("published before the interval: %q", got)
	}
	tree.Publish(at.Add(10*time.Second), read, publish)
	want := []string{SysBase + "/circuit_breaker/state half_open", SysBase + "/sessions 10"}
	if !slices.Equal(got, want) {
		t.Errorf("second publication %q, want %q", got, want)
	}
}

// Instances in one broker publish under prefixes of their own, numbered in the order they start; a
// prefix given back is taken again.
func TestSysPrefixes(t *testing.T) {
	first, second := NewSysTree(time.Second), NewSysTree(time.Second)
	defer second.Close()
	if first.Prefix() != SysBase || second.Prefix() != SysBase+"/2" {
		t.Errorf("prefixes %q and %q", first.Prefix(), second.Prefix())
	}
	first.Close()
	third := NewSysTree(time.Second)
	defer third.Close()
	if third.Prefix() != SysBase {
		t.Errorf("after the first closed: %q", third.Prefix())
	}
}

// Each instance serves its own registry at /metrics, and a second instance cannot take the address of
// the first.
func TestServe(t *testing.T) {
	addr := freeAddress(t)
	one, err := Serve(addr, busy)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if _, err := Serve(addr, busy); err == nil || !strings.Contains(err.Error(), addr+" is taken") {
		t.Errorf("a second instance on %s: %v", addr, err)
	}
	other := freeAddress(t)
	two, err := Serve(other, func() Snapshot { return Snapshot{At: at} })
	if err != nil {
		t.Fatal(err)
	}
	defer two.Close()

	for _, tc := range []struct {
		addr, method, path string
		status             int
		has, hasNot        string
	}{
		{addr, "GET", "/metrics", 200, `mosquitto_oauth2_sessions 9`, "go_goroutines"},
		{other, "GET", "/metrics", 200, `mosquitto_oauth2_sessions 0`, "circuit_breaker"},
		{addr, "POST", "/metrics", 405, "", ""},
		{addr, "GET", "/", 404, "", ""},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+tc.addr+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.has) ||
			(tc.hasNot != "" && strings.Contains(string(body), tc.hasNot)) {
			t.Errorf("%s %s on %s: %d\n%s", tc.method, tc.path, tc.addr, resp.StatusCode, body)
		}
	}
}

func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// The Grafana dashboard only queries metrics this package serves.
func TestDashboardQueriesServedMetrics(t *testing.T) {
	b, err := os.ReadFile("../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, m := range all {
		served[namePrefix+m.name] = true
		if m.kind == histogram {
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				served[namePrefix+m.name+suffix] = true
			}
		}
	}
	name := regexp.MustCompile(namePrefix + `[a-z_]+`)
	queried := 0
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			for _, n := range name.FindAllString(target.Expr, -1) {
				queried++
				if !served[n] {
					t.Errorf("panel %q queries %s, which is not served", p.Title, n)
				}
			}
		}
	}
	if queried == 0 {
		t.Error("the dashboard queries no metric")
	}
}
