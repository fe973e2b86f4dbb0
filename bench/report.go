package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// tableHeader names the columns. Ratios and CPU per operation come first after the rate because they
// survive a busy shared machine far better than the absolute rate does.
var tableHeader = []string{"row", "rate", "vs no plugin", "broker CPU/op", "ok", "refused", "errors", "IdP req", "detail"}

// printTable writes the results as an aligned markdown table. Each row's ratio divides by the row its
// ratioTo names, from the same run.
func printTable(w io.Writer, results []rowResult) {
	measured := make(map[string]rowResult, len(results))
	for _, r := range results {
		if r.failed == "" && r.rate() > 0 {
			measured[r.name] = r
		}
	}
	cells := [][]string{tableHeader}
	for _, r := range results {
		r.detail = strings.TrimPrefix(strings.TrimSuffix(latencyNote(r.took)+"; "+r.detail, "; "), "; ")
		ratio := "-"
		if base, ok := measured[r.ratioTo]; ok && r.failed == "" {
			ratio = fmt.Sprintf("%.2fx", median(ratios(r, base)))
		}
		if vs, ok := measured[r.vsToo]; ok && r.failed == "" {
			rs := ratios(r, vs)
			note, spread := "", "%s"
			if r.vsToo != r.ratioTo { // else the ratio column has it
				note, spread = fmt.Sprintf("%.2fx of acl_file", median(rs)), " (%s)"
			}
			if len(rs) >= 4 {
				slices.Sort(rs)
				note += fmt.Sprintf(spread, fmt.Sprintf("middle half of rounds %.2f–%.2f", rs[len(rs)/4], rs[len(rs)-1-len(rs)/4]))
			}
			r.detail = strings.TrimPrefix(r.detail+"; "+note, "; ")
		}
		cells = append(cells, r.cells(ratio))
	}
	writeAligned(w, cells)
}

// percentile returns the nearest-rank p-th percentile of sorted (not empty): the ceil(p/100 n)-th
// smallest value.
func percentile(sorted []time.Duration, p int) time.Duration {
	return sorted[(len(sorted)*p+99)/100-1]
}

// rate is operations per second of wall time; for an interleaved row, the median of its rounds'.
func (r rowResult) rate() float64 {
	if len(r.rounds) > 0 {
		return median(r.rounds)
	}
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ops) / r.elapsed.Seconds()
}

// cpuPerOp is the broker's CPU time per operation in microseconds, or "-" when unknown.
func (r rowResult) cpuPerOp() string {
	if r.cpuTicks < 0 || r.ops == 0 || r.hz <= 0 {
		return "-"
	}
	us := float64(r.cpuTicks) / float64(r.hz) * 1e6 / float64(r.ops)
	return fmt.Sprintf("%.1f µs", us)
}

// cells formats one row, with ratio already formatted.
func (r rowResult) cells(ratio string) []string {
	switch {
	case r.failed != "" && r.elapsed == 0: // never ran
		return []string{r.name, "-", "-", "-", "-", "-", "-", "-", r.failed}
	case r.failed != "": // ran, but on a broker that died: counts only, no rates
		detail := strings.TrimSuffix(r.failed+"; "+r.detail, "; ")
		return []string{r.name, "-", "-", "-", fmt.Sprint(r.ops), fmt.Sprint(r.refused), fmt.Sprint(r.errors), "-", detail}
	}
	idp := "-"
	if r.idpRequests >= 0 {
		idp = fmt.Sprint(r.idpRequests)
	}
	return []string{
		r.name,
		fmt.Sprintf("%.0f %s", r.rate(), r.unit),
		ratio,
		r.cpuPerOp(),
		fmt.Sprint(r.ops),
		fmt.Sprint(r.refused),
		fmt.Sprint(r.errors),
		idp,
		r.detail,
	}
}

// writeAligned pads every column to its widest cell (counting runes, for the µ) and puts a markdown
// separator under the header.
func writeAligned(w io.Writer, cells [][]string) {
	widths := make([]int, len(tableHeader))
	for _, row := range cells {
		for i, c := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for n, row := range cells {
		writeLine(w, row, widths)
		if n == 0 {
			sep := make([]string, len(widths))
			for i, wd := range widths {
				sep[i] = strings.Repeat("-", wd)
			}
			writeLine(w, sep, widths)
		}
	}
}

func writeLine(w io.Writer, row []string, widths []int) {
	var b strings.Builder
	b.WriteString("|")
	for i, c := range row {
		pad := 0
		if i < len(row)-1 { // the free-text detail column is left ragged
			pad = widths[i] - utf8.RuneCountInString(c)
		}
		fmt.Fprintf(&b, " %s%s |", c, strings.Repeat(" ", pad))
	}
	fmt.Fprintln(w, b.String())
}
