package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"
)

// Some comparisons are of rates a few percent apart (the plugin's claim rules against acl_file, the
// plugin's warm-cache connect against no authentication), on a machine whose speed drifts by more
// than that from one second to the next (the load generator and other work share its cores). So the
// rows of such a comparison do not run one after the other: their brokers are started together and
// the rows take turns, a short round each, many rounds over, and each row's rate is the median of its
// rounds. A ratio between two such rows is the median of their per-round ratios, each taken between
// rounds run moments apart. One row runs the baseline's configuration a second time on a broker of its
// own: its ratio to the first is what noise alone makes of two identical configurations.

// group is the rows of one comparison: their brokers run together and take turns (see runRounds).
type group struct {
	rows   []rowSpec
	rounds int           // rounds of each row
	round  time.Duration // how long each row runs per round
	// open readies a row's freshly started broker for a block of rounds, before anything is timed,
	// and returns what runs the row's rounds on it.
	open func(ctx context.Context, spec rowSpec, b *broker) (session, error)
}

// session runs one row's rounds on one broker, for one block of rounds.
type session struct {
	// round runs the row's load for d; measure adds the broker's CPU and the IdP's requests. An
	// error leaves the row's clients in no state for another round, and the row stops.
	round func(d time.Duration) (rowResult, error)
	close func() // nil when the rounds leave nothing open
}

// messageRows is the group of message rows for one QoS and fan-out: no ACL (what the others divide
// by), acl_file, the plugin's claim rules, and acl_file again. Each row's publisher and subscribers
// connect once per block of rounds (with the plugin, every client sends the same token, introspected
// once per client while connecting: the rounds measure ACL checks, not authentication).
func (e *env) messageRows(qos byte, fanout int, anonymous func() (string, error)) rowSpec {
	name := fmt.Sprintf("messages QoS %d 1→%d", qos, fanout)
	base, aclFile := name+": no ACL", name+": acl_file %u pattern"
	row := func(name string, plugin bool, conf func() (string, error), vsToo string) rowSpec {
		return rowSpec{name: name, plugin: plugin, conf: conf, ratioTo: base, vsToo: vsToo}
	}
	open := func(_ context.Context, spec rowSpec, b *broker) (session, error) {
		token := ""
		if spec.plugin {
			token = randomToken("acl-")
		}
		users := func(role string, k int) (string, string) {
			if role == "pub" {
				return msgPubUser, token
			}
			return fmt.Sprintf("dashboard-%d", k), token
		}
		s, err := openMessages(b.endpoint, qos, fanout, users)
		if err != nil {
			return session{}, err
		}
		return session{close: s.close, round: func(d time.Duration) (rowResult, error) {
			m := s.round(d)
			return rowResult{unit: "msg/s", ops: m.Delivered, elapsed: m.Elapsed}, m.Err
		}}, nil
	}
	return rowSpec{name: name, interleave: &group{rounds: e.opts.msgRounds, round: e.opts.msgRound, open: open,
		rows: []rowSpec{
			row(base, false, anonymous, ""),
			row(aclFile, false, e.aclFileConf, ""),
			row(name+": plugin claim rules", true, e.aclPluginConf, aclFile),
			row(name+": acl_file again (noise check)", false, e.aclFileConf, aclFile),
		}}}
}

// connectWarmUp is how long each connect row of a group runs, untimed, on each new broker before its
// first round: the warm-cache row's first connect is the cache's one introspection, and the first
// connects to a new broker pay for its first allocations, neither of which the rounds are about.
const connectWarmUp = 20 * time.Millisecond

// connectGroup makes connect rows (specs, each with a run) a group that takes turns in rounds of
// -connect-round. The rounds of a row share nothing but its broker: each runs the row's connect load
// afresh, and a connect that fails is counted in its round, not a reason to stop.
func (e *env) connectGroup(name string, specs ...rowSpec) rowSpec {
	open := func(ctx context.Context, spec rowSpec, b *broker) (session, error) {
		spec.run(ctx, b, connectWarmUp) // untimed, and its counts are not the rounds'
		return session{round: func(d time.Duration) (rowResult, error) {
			return spec.run(ctx, b, d), nil
		}}, nil
	}
	return rowSpec{name: name, interleave: &group{rows: specs, rounds: e.opts.connectRounds,
		round: e.opts.connectRound, open: open}}
}

// runRounds runs g.rounds rounds of a group, each running every row for g.round, in the orders of
// roundOrder, in blocks of as many rounds as the group has rows. Each block starts the rows' brokers
// afresh and opens a session on each. Fresh brokers per block, because one broker can run a steady 10
// to 20% faster than another with the same config for the whole of its life (two acl_file brokers of
// the message group 1→10 did, on 2.0.11): the median over rounds then spans a dozen brokers per row,
// not one.
func (e *env) runRounds(ctx context.Context, g *group) []rowResult {
	n := len(g.rows)
	results := make([]rowResult, n)
	stopped := make([]bool, n) // the row failed, or a round left its clients in no state to go on
	for first := 0; first < g.rounds && ctx.Err() == nil; first += n {
		brokers, sessions := e.openBlock(ctx, g, results, stopped, first == 0)
		for round := first; round < min(first+n, g.rounds) && ctx.Err() == nil; round++ {
			fmt.Fprintf(os.Stderr, "  round %d of %d\n", round+1, g.rounds)
			for _, i := range roundOrder(n, round) {
				if stopped[i] {
					continue
				}
				var err error
				results[i].add(e.measure(g.rows[i], brokers[i], func() rowResult {
					var r rowResult
					if r, err = sessions[i].round(g.round); err != nil {
						r.errors, r.detail = r.errors+1, "error: "+err.Error()
					}
					return r
				}))
				stopped[i] = err != nil || results[i].failed != ""
			}
		}
		for i, b := range brokers {
			if sessions[i].close != nil {
				sessions[i].close()
			}
			if b != nil {
				stopRow(b, &results[i])
			}
		}
	}
	return results
}

// openBlock starts a broker for each row of the group that has not stopped, and opens its session.
// The first block also sets up results, which later blocks add to.
func (e *env) openBlock(ctx context.Context, g *group, results []rowResult, stopped []bool, first bool) ([]*broker, []session) {
	brokers, sessions := make([]*broker, len(g.rows)), make([]session, len(g.rows))
	for i, spec := range g.rows {
		if stopped[i] {
			continue
		}
		b, res := e.startRow(spec)
		if first {
			results[i] = res
			results[i].cpuTicks = 0
			if spec.plugin {
				results[i].idpRequests = 0
			}
		}
		if b == nil {
			results[i].failed, stopped[i] = res.failed, true
			continue
		}
		brokers[i] = b
		var err error
		if sessions[i], err = g.open(ctx, spec, b); err != nil {
			results[i].errors, results[i].failed = 1, "clients did not connect: "+err.Error()
			stopped[i] = true
		}
	}
	return brokers, sessions
}

// roundOrder is the order in which round r runs n rows: the rows of a Williams square, 0 1 n-1 2 n-2
// ... shifted by r. Over n rounds every row runs once in every position and, for an even n, right
// after every other row exactly once; no row ever runs twice in a row, across rounds either. A row
// that does (the last of one round and the first of the next, as in A B C D, D C B A) presumably finds
// its broker still in the CPU caches: in that order the noise check, always such a row, came out above
// acl_file, never such a row, in 14 of 21 runs, by 1.7% on average.
func roundOrder(n, r int) []int {
	order := make([]int, n)
	for k := range n {
		v := (k + 1) / 2 // 0 1 1 2 2 ...: k odd counts up from 1
		if k > 0 && k%2 == 0 {
			v = n - k/2 // k even counts down from n-1
		}
		order[k] = (v + r) % n
	}
	return order
}

// add counts one round of an interleaved row into its result.
func (r *rowResult) add(round rowResult) {
	r.unit = round.unit
	r.ops += round.ops
	r.refused += round.refused
	r.errors += round.errors
	r.elapsed += round.elapsed
	r.cpuTicks = addKnown(r.cpuTicks, round.cpuTicks)
	r.idpRequests = addKnown(r.idpRequests, round.idpRequests)
	r.rounds = append(r.rounds, round.rate())
	r.took = append(r.took, round.took...)
	if r.detail == "" {
		r.detail = round.detail
	}
	if r.failed == "" {
		r.failed = round.failed
	}
}

// addKnown adds two counts of which -1 means unknown.
func addKnown(a, b int64) int64 {
	if a < 0 || b < 0 {
		return -1
	}
	return a + b
}

// median returns the median of v (not empty), the mean of the middle two for an even count.
func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratios returns r's rate divided by base's (whose rate is not 0): per round when both ran the same
// rounds, else one ratio of their rates. A round in which either row delivered nothing (the machine
// gave it no CPU at all) has no ratio; when every round is such, the ratio of the rates stands.
func ratios(r, base rowResult) []float64 {
	var out []float64
	if len(r.rounds) == len(base.rounds) {
		for i := range r.rounds {
			if r.rounds[i] > 0 && base.rounds[i] > 0 {
				out = append(out, r.rounds[i]/base.rounds[i])
			}
		}
	}
	if len(out) == 0 {
		return []float64{r.rate() / base.rate()}
	}
	return out
}
