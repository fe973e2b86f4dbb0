package acl

import "testing"

// benchOptions and benchClaims are a realistic session: five rules, one of
// them conditional, and ten topic filters in a claim.
var benchOptions = Options{
	TopicsClaim: "mqtt_topics",
	Rules: []string{
		"allow all tenants/%u/#",
		"deny all tenants/%u/secret/#",
		"allow publish devices/%c/telemetry/+/+",
		"allow subscribe devices/%c/cmd/#",
		"allow subscribe broadcast/# when realm_access.roles=mqtt",
	},
}

const benchClaims = `{
	"sub": "248289761001", "username": "alice", "email": "alice@example.com",
	"realm_access": {"roles": ["mqtt", "offline_access"]},
	"mqtt_topics": [
		"site/s0/+/temp/#", "site/s1/+/temp/#", "site/s2/+/temp/#", "site/s3/+/temp/#",
		"site/s4/+/temp/#", "site/s5/+/temp/#", "site/s6/+/temp/#", "site/s7/+/temp/#",
		"site/s8/+/temp/#", "site/s9/+/humidity/+"
	]
}`

// benchRequests are five-level topics that match late in the grants, or not
// at all, so that every grant is scanned.
var benchRequests = []struct {
	name string
	req
}{
	{"write", req{access: Write, topic: "devices/dev-42/telemetry/cpu/load", qos: 1, want: Allow}},
	{"write-nomatch", req{access: Write, topic: "devices/dev-43/telemetry/cpu/load", qos: 1, want: NoMatch}},
	{"read", req{access: Read, topic: "site/s9/room1/humidity/now", qos: 1, want: Allow}},
	{"read-deny", req{access: Read, topic: "tenants/alice/secret/a/b", want: Deny}},
	{"read-nomatch", req{access: Read, topic: "site/s9/room1/pressure/now", want: NoMatch}},
	{"subscribe", req{access: Subscribe, topic: "$share/g/site/s9/+/humidity/+", want: Allow}},
}

func benchGrants(tb testing.TB) *Grants {
	tb.Helper()
	p, err := NewPolicy(benchOptions)
	if err != nil {
		tb.Fatal(err)
	}
	g, err := p.Compile([]byte(benchClaims), "alice", "dev-42")
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// TestCheckDoesNotAllocate holds Check to its promise in every test run, not
// only when someone runs the benchmarks.
func TestCheckDoesNotAllocate(t *testing.T) {
	g := benchGrants(t)
	for _, r := range benchRequests {
		if got := g.Check(r.access, r.topic, r.qos, r.retain); got != r.want {
			t.Errorf("%s: Check = %v, want %v", r.name, got, r.want)
		}
		if n := testing.AllocsPerRun(100, func() { g.Check(r.access, r.topic, r.qos, r.retain) }); n != 0 {
			t.Errorf("%s: Check allocates %v times", r.name, n)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	g := benchGrants(b)
	for _, r := range benchRequests {
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				g.Check(r.access, r.topic, r.qos, r.retain)
			}
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	p, err := NewPolicy(benchOptions)
	if err != nil {
		b.Fatal(err)
	}
	claims := []byte(benchClaims)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Compile(claims, "alice", "dev-42"); err != nil {
			b.Fatal(err)
		}
	}
}
