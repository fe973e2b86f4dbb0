package main

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct{ p, want int }{{50, 100}, {99, 198}, {100, 200}, {1, 2}} {
		if got := percentile(d, c.p); got != time.Duration(c.want) {
			t.Errorf("p%d of 1..200 = %d, want %d", c.p, got, c.want)
		}
	}
	if got := percentile(d[:1], 99); got != 1 {
		t.Errorf("p99 of one value = %d", got)
	}
}

func TestWakeNoteSubtractsPerToken(t *testing.T) {
	t0 := time.Now()
	written := map[string]time.Time{"a": t0, "b": t0.Add(time.Second)}
	answers := []answer{
		{password: "a", at: t0.Add(2 * time.Millisecond)},
		{password: "b", at: t0.Add(time.Second + 40*time.Millisecond)},
		{password: "unrecorded", at: t0.Add(time.Hour)},
	}
	got := wakeNote(answers, written)
	if !strings.Contains(got, "p50 2.0 ms") || !strings.Contains(got, "p99 40 ms") {
		t.Errorf("wakeNote = %q, want p50 2.0 ms and p99 40 ms", got)
	}
}

func TestRatiosPairRoundsAndSkipStarvedOnes(t *testing.T) {
	a := rowResult{rounds: []float64{100, 0, 90, 50}}
	b := rowResult{rounds: []float64{50, 10, 0, 100}}
	got := ratios(a, b)
	if len(got) != 2 || got[0] != 2 || got[1] != 0.5 {
		t.Errorf("ratios = %v, want [2 0.5]: rounds 2 and 3 had a row that delivered nothing", got)
	}
	if m := median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("median = %v, want 2.5", m)
	}
	// Rows that did not run the same rounds compare their rates.
	c := rowResult{rounds: []float64{30}}
	if got := ratios(c, b); len(got) != 1 || got[0] != 30/median(b.rounds) {
		t.Errorf("ratios of unpaired rows = %v", got)
	}
}

func TestRoundOrderIsBalanced(t *testing.T) {
	const n = 4
	position := map[[2]int]int{} // {row, position} → rounds
	follows := map[[2]int]int{}  // {row, row run just before} → times, within rounds
	last := -1
	for r := range n {
		order := roundOrder(n, r)
		if order[0] == last {
			t.Errorf("round %d starts with row %d, which ended round %d", r, last, r-1)
		}
		for k, row := range order {
			position[[2]int{row, k}]++
			if k > 0 {
				follows[[2]int{row, order[k-1]}]++
			}
		}
		last = order[n-1]
	}
	for row := range n {
		for k := range n {
			if position[[2]int{row, k}] != 1 {
				t.Errorf("row %d ran %d times in position %d over %d rounds, want 1", row, position[[2]int{row, k}], k, n)
			}
		}
		for prev := range n {
			if want := 1 - b2i(prev == row); follows[[2]int{row, prev}] != want {
				t.Errorf("row %d ran right after row %d %d times, want %d", row, prev, follows[[2]int{row, prev}], want)
			}
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// The rows that divide by a row of a group keep the whole group, and a group's own rows keep it too.
func TestSelectRowsKeepsTheGroupADivisorIsIn(t *testing.T) {
	connects := rowSpec{name: "connects", interleave: &group{rows: against(rowNoPlugin,
		rowSpec{name: rowNoPlugin}, rowSpec{name: "password_file"}, rowSpec{name: "plugin, warm cache"})}}
	specs := func() []rowSpec {
		return slices.Concat([]rowSpec{connects},
			against(rowNoPlugin, rowSpec{name: "plugin, fresh JWT RS256, local check"}),
			against(rowNoPluginTLS, rowSpec{name: rowNoPluginTLS}, rowSpec{name: "plugin, warm cache, TLS"}))
	}
	for _, c := range []struct {
		only string
		want []string
	}{
		{"JWT", []string{"connects", "plugin, fresh JWT RS256, local check"}},
		{"password_file", []string{"connects"}},
		{"^connects$", []string{"connects"}},
		{"warm cache, TLS", []string{rowNoPluginTLS, "plugin, warm cache, TLS"}},
	} {
		var got []string
		for _, s := range selectRows(specs(), regexp.MustCompile(c.only)) {
			got = append(got, s.name)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("-only %q ran %q, want %q", c.only, got, c.want)
		}
	}
}

// A row's rounds add up: counts and CPU sum, unknown CPU stays unknown, every connect's latency is
// kept for the p99, and each round's rate is kept for the median.
func TestAddPoolsRounds(t *testing.T) {
	var r rowResult
	r.add(rowResult{unit: "conn/s", ops: 100, elapsed: 100 * time.Millisecond, cpuTicks: 2, idpRequests: -1,
		took: []time.Duration{1, 2}, detail: "first"})
	r.add(rowResult{unit: "conn/s", ops: 300, elapsed: 100 * time.Millisecond, cpuTicks: 3, idpRequests: -1,
		took: []time.Duration{3}, detail: "second"})
	if r.ops != 400 || r.cpuTicks != 5 || r.idpRequests != -1 || r.detail != "first" {
		t.Errorf("after two rounds: ops %d, CPU %d, IdP req %d, detail %q; want 400, 5, -1, first",
			r.ops, r.cpuTicks, r.idpRequests, r.detail)
	}
	if !slices.Equal(r.took, []time.Duration{1, 2, 3}) || r.rate() != 2000 {
		t.Errorf("took %v, rate %v; want [1 2 3] and the median of 1000 and 3000 conn/s", r.took, r.rate())
	}
	r.add(rowResult{ops: 1, elapsed: time.Second, cpuTicks: -1})
	if r.cpuTicks != -1 {
		t.Errorf("a round of unknown CPU left the row's CPU at %d, want -1 (unknown)", r.cpuTicks)
	}
}

// The p99 of a connect row comes from all its rounds' connects and leads the detail column.
func TestPrintTableLatencyLeadsDetail(t *testing.T) {
	var b strings.Builder
	printTable(&b, []rowResult{
		{name: "a", unit: "conn/s", ops: 1, elapsed: time.Second, took: []time.Duration{2 * time.Millisecond}, detail: "refused"},
		{name: "b", unit: "msg/s", ops: 1, elapsed: time.Second},
	})
	lines := strings.Split(b.String(), "\n")
	if !strings.HasSuffix(lines[2], "| connect p99 2.0 ms; refused |") || !strings.HasSuffix(lines[3], "|  |") {
		t.Errorf("table:\n%s\nwant row a's detail \"connect p99 2.0 ms; refused\" and row b's empty", b.String())
	}
}

// A row whose second ratio is to its own baseline gets only the spread of its per-round ratios.
func TestPrintTableSpreadOfRatioToBaseline(t *testing.T) {
	base := rowResult{name: "base", unit: "conn/s", rounds: []float64{10, 10, 10, 10}, ratioTo: "base"}
	row := rowResult{name: "row", unit: "conn/s", rounds: []float64{9, 8, 10, 11}, ratioTo: "base", vsToo: "base"}
	var b strings.Builder
	printTable(&b, []rowResult{base, row})
	if line := strings.Split(b.String(), "\n")[3]; !strings.Contains(line, "| 0.95x ") ||
		!strings.HasSuffix(line, "| middle half of rounds 0.90–1.00 |") {
		t.Errorf("row line %q: want ratio 0.95x and detail \"middle half of rounds 0.90–1.00\"", line)
	}
}

// The plugin's message rows keep their ratio to acl_file, with the spread in parentheses.
func TestPrintTableRatioToAclFile(t *testing.T) {
	base := rowResult{name: "base", unit: "msg/s", rounds: []float64{10, 10, 10, 10}}
	acl := rowResult{name: "acl", unit: "msg/s", rounds: []float64{5, 5, 5, 5}, ratioTo: "base"}
	row := rowResult{name: "row", unit: "msg/s", rounds: []float64{5, 4, 5, 6}, ratioTo: "base", vsToo: "acl"}
	var b strings.Builder
	printTable(&b, []rowResult{base, acl, row})
	if line := strings.Split(b.String(), "\n")[4]; !strings.HasSuffix(line, "| 1.00x of acl_file (middle half of rounds 1.00–1.00) |") {
		t.Errorf("row line %q: want detail \"1.00x of acl_file (middle half of rounds 1.00–1.00)\"", line)
	}
}
