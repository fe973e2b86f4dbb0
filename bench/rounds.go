package main

import (
	"context"
	"fmt"
	"os"
	"slices"
)

// The message rows compare rates a few percent apart, on a machine whose speed drifts by more than
// that from one second to the next (the load generator and other work share its cores). So the rows of
// one comparison do not run one after the other: their brokers are started together and the rows take
// turns, a short round each, many rounds over, and each row's rate is the median of its rounds. A
// ratio between two such rows is the median of their per-round ratios, each taken between rounds run
// moments apart. One row runs acl_file a second time on a broker of its own: its ratio to the first
// is what noise alone makes of two identical configurations.

// messageGroup is the rows of one comparison: their brokers run together and take turns.
type messageGroup struct {
	qos    byte
	fanout int
	rows   []rowSpec
}

// messageRows is the group of message rows for one QoS and fan-out: no ACL (what the others divide
// by), acl_file, the plugin's claim rules, and acl_file again.
func (e *env) messageRows(qos byte, fanout int, anonymous func() (string, error)) rowSpec {
	group := fmt.Sprintf("messages QoS %d 1→%d", qos, fanout)
	base, aclFile := group+": no ACL", group+": acl_file %u pattern"
	row := func(name string, plugin bool, conf func() (string, error), vsToo string) rowSpec {
		return rowSpec{name: name, plugin: plugin, conf: conf, ratioTo: base, vsToo: vsToo}
	}
	return rowSpec{name: group, interleave: &messageGroup{qos: qos, fanout: fanout, rows: []rowSpec{
		row(base, false, anonymous, ""),
		row(aclFile, false, e.aclFileConf, ""),
		row(group+": plugin claim rules", true, e.aclPluginConf, aclFile),
		row(group+": acl_file again (noise check)", false, e.aclFileConf, aclFile),
	}}}
}

// runRounds runs -msg-rounds rounds of a group, each running every row for -msg-round, in the orders
// of roundOrder, in blocks of as many rounds as the group has rows. Each block starts the rows'
// brokers afresh and connects a publisher and its subscribers to each (with the plugin, every client
// sends the same token, introspected once per client while connecting: the rounds measure ACL checks,
// not authentication). Fresh brokers per block, because one broker can run a steady 10 to 20% faster
// than another with the same config for the whole of its life (two acl_file brokers of the 1→10 group
// did, on 2.0.11): the median over rounds then spans a dozen brokers per row, not one.
func (e *env) runRounds(ctx context.Context, g *messageGroup) []rowResult {
	n := len(g.rows)
	results := make([]rowResult, n)
	for first := 0; first < e.opts.msgRounds && ctx.Err() == nil; first += n {
		brokers, sessions := e.openBlock(g, results, first == 0)
		for round := first; round < min(first+n, e.opts.msgRounds) && ctx.Err() == nil; round++ {
			fmt.Fprintf(os.Stderr, "  round %d of %d\n", round+1, e.opts.msgRounds)
			for _, i := range roundOrder(n, round) {
				if sessions[i] == nil || results[i].failed != "" || results[i].errors > 0 {
					continue // a round that failed leaves the row's clients in no state to go on
				}
				results[i].add(e.measure(g.rows[i], brokers[i], func() rowResult {
					m := sessions[i].round(e.opts.msgRound)
					r := rowResult{unit: "msg/s", ops: m.Delivered, elapsed: m.Elapsed}
					if m.Err != nil {
						r.errors, r.detail = 1, "error: "+m.Err.Error()
					}
					return r
				}))
			}
		}
		for i, b := range brokers {
			if sessions[i] != nil {
				sessions[i].close()
			}
			if b != nil {
				stopRow(b, &results[i])
			}
		}
	}
	return results
}

// openBlock starts a broker for each row of the group that has not failed, and connects its clients.
// The first block also sets up results, which later blocks add to.
func (e *env) openBlock(g *messageGroup, results []rowResult, first bool) ([]*broker, []*messageSession) {
	brokers, sessions := make([]*broker, len(g.rows)), make([]*messageSession, len(g.rows))
	for i, spec := range g.rows {
		if !first && (results[i].failed != "" || results[i].errors > 0) {
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
			results[i].failed = res.failed
			continue
		}
		brokers[i] = b
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
		var err error
		if sessions[i], err = openMessages(b.endpoint, g.qos, g.fanout, users); err != nil {
			results[i].errors, results[i].failed = 1, "clients did not connect: "+err.Error()
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
