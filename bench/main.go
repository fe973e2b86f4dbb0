// Command bench measures what mosquitto-oauth2 costs a Mosquitto broker: connect throughput and broker
// CPU per connect against a no-plugin and a password_file broker started in the same run, and how long
// the broker's other clients stall while the plugin waits for a slow identity provider.
//
// Run it with `make bench`, or:
//
//	go run ./bench -mosquitto /usr/sbin/mosquitto -plugin $PWD/build/mosquitto-oauth2.so -duration 2s
//
// Every broker, client and the fake IdP bind to 127.0.0.1 only. See bench/README.md for what each row
// means.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	mosquitto, passwd, plugin, label string
	duration                         time.Duration
	workers                          int
	msgRound                         time.Duration // one round of a message row
	msgRounds                        int
	connectRound                     time.Duration // one round of an interleaved connect row
	connectRounds                    int
	only                             *regexp.Regexp // nil: every row
}

func parseFlags() (options, error) {
	var o options
	flag.StringVar(&o.mosquitto, "mosquitto", defaultMosquitto(), "path of the mosquitto binary")
	flag.StringVar(&o.passwd, "mosquitto-passwd", "", "path of mosquitto_passwd (default: next to -mosquitto, else $PATH)")
	flag.StringVar(&o.plugin, "plugin", "", "absolute path of build/mosquitto-oauth2.so (plugin rows are skipped without it)")
	flag.StringVar(&o.label, "label", "", "free text naming the broker build, printed in the header")
	flag.StringVar(&o.label, "broker-label", "", "same as -label")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "how long each connect row that does not take turns runs")
	flag.IntVar(&o.workers, "workers", 64, "concurrent connecting clients per connect row")
	flag.DurationVar(&o.msgRound, "msg-round", 100*time.Millisecond, "how long each message row runs per round")
	flag.IntVar(&o.msgRounds, "msg-rounds", 48, "rounds of each message row; its rate is their median (a multiple of 4 keeps the order balanced)")
	flag.DurationVar(&o.connectRound, "connect-round", 100*time.Millisecond, "how long each interleaved connect row runs per round")
	flag.IntVar(&o.connectRounds, "connect-rounds", 48, "rounds of each interleaved connect row; its rate is their median (a multiple of 4 keeps the order balanced)")
	only := flag.String("only", "", "run only the rows whose name matches this regexp (and the rows they divide by)")
	flag.Parse()
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return o, fmt.Errorf("-only: %w", err)
		}
		o.only = re
	}
	switch {
	case o.duration <= 0 || o.duration > 10*time.Minute:
		return o, fmt.Errorf("-duration %v: want more than 0 and at most 10m", o.duration)
	case o.workers < 1 || o.workers > 1024:
		return o, fmt.Errorf("-workers %d: want 1 to 1024", o.workers)
	case o.msgRound <= 0 || o.msgRound > time.Minute:
		return o, fmt.Errorf("-msg-round %v: want more than 0 and at most 1m", o.msgRound)
	case o.msgRounds < 1 || o.msgRounds > 1000:
		return o, fmt.Errorf("-msg-rounds %d: want 1 to 1000", o.msgRounds)
	case o.connectRound <= 0 || o.connectRound > time.Minute:
		return o, fmt.Errorf("-connect-round %v: want more than 0 and at most 1m", o.connectRound)
	case o.connectRounds < 1 || o.connectRounds > 1000:
		return o, fmt.Errorf("-connect-rounds %d: want 1 to 1000", o.connectRounds)
	case o.plugin != "" && !filepath.IsAbs(o.plugin):
		return o, fmt.Errorf("-plugin %s: must be absolute (the broker runs in a temp dir)", o.plugin)
	}
	if o.plugin != "" {
		if _, err := os.Stat(o.plugin); err != nil {
			return o, fmt.Errorf("-plugin: %w (run `make build` first)", err)
		}
	}
	if o.passwd == "" {
		o.passwd = defaultPasswd(o.mosquitto)
	}
	return o, nil
}

// defaultMosquitto prefers the mosquitto on $PATH and falls back to Debian's location, which is not on
// a non-root user's $PATH.
func defaultMosquitto() string {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	return "/usr/sbin/mosquitto"
}

// defaultPasswd looks for mosquitto_passwd beside the broker first (a self-built broker's tools belong
// to it), then on $PATH (Debian puts it in /usr/bin while the broker is in /usr/sbin).
func defaultPasswd(mosquitto string) string {
	beside := filepath.Join(filepath.Dir(mosquitto), "mosquitto_passwd")
	if _, err := os.Stat(beside); err == nil {
		return beside
	}
	if p, err := exec.LookPath("mosquitto_passwd"); err == nil {
		return p
	}
	return "mosquitto_passwd"
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	start := time.Now()
	o, err := parseFlags()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	tmp, err := os.MkdirTemp("", "mosquitto-oauth2-bench-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	idp, err := startIdP()
	if err != nil {
		return err
	}
	defer idp.Close()

	env := &env{opts: o, tmp: tmp, idp: idp, hz: clockTicksPerSecond()}
	printHeader(o, env.hz)
	var results []rowResult
	for _, r := range selectRows(env.rows(), o.only) {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(os.Stderr, "running: %s\n", r.name)
		if r.interleave != nil {
			results = append(results, env.runRounds(ctx, r.interleave)...)
		} else {
			results = append(results, env.runRow(ctx, r))
		}
		// The no-plugin row's rate sizes the JWT rows' pools of pre-signed tokens.
		if i := slices.IndexFunc(results, func(res rowResult) bool { return res.name == rowNoPlugin }); i >= 0 && results[i].failed == "" {
			env.baseline = results[i].rate()
		}
	}
	printTable(os.Stdout, results)
	fmt.Printf("\ntotal run time %.1fs, load %s at the end\n", time.Since(start).Seconds(), loadAverage())
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return failures(results)
}

// selectRows keeps the rows whose name only matches, and the rows their ratios divide by. A group of
// interleaved rows is kept whole when its name or one of its rows' is kept.
func selectRows(specs []rowSpec, only *regexp.Regexp) []rowSpec {
	if only == nil {
		return specs
	}
	keep := map[string]bool{}
	for _, s := range specs {
		if only.MatchString(s.name) {
			keep[s.name], keep[s.ratioTo], keep[s.vsToo] = true, true, true
		}
		if s.interleave != nil {
			for _, m := range s.interleave.rows {
				if only.MatchString(m.name) {
					keep[s.name], keep[m.ratioTo], keep[m.vsToo] = true, true, true
				}
			}
		}
	}
	kept := func(s rowSpec) bool {
		return keep[s.name] || s.interleave != nil &&
			slices.ContainsFunc(s.interleave.rows, func(m rowSpec) bool { return keep[m.name] })
	}
	return slices.DeleteFunc(specs, func(s rowSpec) bool { return !kept(s) })
}

// failures makes the exit status non-zero when a broker did not start or died, so `make bench` cannot
// pass with a table of dashes.
func failures(results []rowResult) error {
	n := 0
	for _, r := range results {
		if r.failed != "" && !strings.HasPrefix(r.failed, "skipped") {
			n++
		}
	}
	if n > 0 {
		return fmt.Errorf("%d of %d rows failed (see the table)", n, len(results))
	}
	return nil
}

// printHeader prints the line that makes a pasted table self-describing.
func printHeader(o options, hz int) {
	label := o.label
	if label == "" {
		label = "-"
	}
	fmt.Printf("%s | label: %s | connect rows: %d rounds of %v, others %v, %d workers | message rows: %d rounds of %v | GOMAXPROCS %d | load %s | %s\n",
		brokerVersion(o.mosquitto), label, o.connectRounds, o.connectRound, o.duration, o.workers, o.msgRounds, o.msgRound,
		runtime.GOMAXPROCS(0), loadAverage(), time.Now().Format(time.RFC3339))
	fmt.Printf("broker %s, plugin %s, CPU from /proc/PID/stat at %d ticks/s\n\n", o.mosquitto, o.plugin, hz)
}

// loadAverage is the machine's 1-minute load average from /proc/loadavg: how much else wanted the
// CPUs (this run's own load generator and broker count too), for whoever reads the table to judge.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	avg, _, _ := strings.Cut(string(data), " ")
	return avg
}

// randomToken returns prefix followed by 16 random hex bytes, so tokens never repeat across rows.
func randomToken(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
