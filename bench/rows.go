package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Password-file user of the password_file row.
const (
	pwUser = "bench"
	pwPass = "bench-pass"
)

// env is what every row shares: flags, the temp dir, the fake IdP and the clock-tick rate.
type env struct {
	opts options
	tmp  string
	idp  *fakeIdP
	hz   int
	// baseline is the no-plugin row's rate, once measured: it sizes the pools of pre-signed JWTs.
	baseline float64
}

// rowSpec is one configuration: the broker config lines it adds, and the load it runs.
type rowSpec struct {
	name     string
	plugin   bool          // needs -plugin; the fake IdP's requests are counted
	asksIdP  bool          // the load itself asks the fake IdP (the ceiling rows): its requests are counted
	tls      bool          // the broker's listener speaks TLS only (see tlsFiles)
	idpDelay time.Duration // added to every IdP answer during the row
	conf     func() (string, error)
	// run runs the row's load on its broker for d (-duration, or a round of its group); the stall
	// rows run for as long as their exchange takes.
	run func(ctx context.Context, b *broker, d time.Duration) rowResult
	// interleave, when set, makes this spec a group: its rows run on brokers started together, in
	// rounds (see runRounds), and the spec itself has no row.
	interleave *group
	// ratioTo names the row the "vs no plugin" column divides by: the same broker without the plugin
	// (or without ACLs), run in the same minute. Empty: no ratio (the stall rows). vsToo names a row
	// whose ratio the detail column adds (acl_file, for the plugin's message rows), with the middle
	// half of the per-round ratios; when it is ratioTo, only that spread, to judge the ratio by.
	ratioTo, vsToo string
}

// rowResult is one line of the table. Ops is connects accepted (connect rows) or messages delivered
// (message and stall rows); the ratio and the CPU per op are derived from it.
type rowResult struct {
	name            string
	unit            string // "conn/s" or "msg/s"
	ops             int64
	refused, errors int64
	elapsed         time.Duration
	cpuTicks        int64 // -1 when unknown
	hz              int
	idpRequests     int64 // -1 when the row has no plugin and does not ask the IdP itself
	detail          string
	failed          string // the broker did not start or died: the numbers are not a measurement
	ratioTo, vsToo  string // from the rowSpec
	// rounds holds the rate of each round of an interleaved row; its rate is their median.
	rounds []float64
	// took holds, for a connect row, each answered connect's time from dial to CONNACK, over all its
	// rounds: the p99 in the detail column is theirs.
	took []time.Duration
}

// Names of the rows other rows divide by.
const (
	rowNoPlugin    = "no plugin"
	rowNoPluginTLS = rowNoPlugin + ", TLS" // as overTLS names it
)

// rows lists the table's rows in order; the first is the baseline the ratios divide by.
func (e *env) rows() []rowSpec {
	fresh := freshTokens()
	warm := randomToken("warm-")
	anonymous := constConf("allow_anonymous true\n")
	noPlugin := rowSpec{name: rowNoPlugin, conf: anonymous, run: e.connectRow(fixedCredentials("", ""), false)}
	passwordFile := rowSpec{name: "password_file", conf: e.passwordFileConf,
		run: e.connectRow(fixedCredentials(pwUser, pwPass), false)}
	warmCache := rowSpec{name: "plugin, warm cache", plugin: true, conf: e.cachedConf,
		run: e.connectRow(fixedCredentials("bench", warm), false)}
	fresh0 := rowSpec{name: "plugin, fresh opaque token, IdP 0 ms", plugin: true, conf: e.pluginConf,
		run: e.connectRow(fresh, true)}
	noise := noPlugin
	noise.name = rowNoPlugin + " again (noise check)"
	// The target and the noise it is read against: their spreads go in the detail column.
	grouped := against(rowNoPlugin, noPlugin, passwordFile, warmCache, noise)
	grouped[2].vsToo, grouped[3].vsToo = rowNoPlugin, rowNoPlugin
	return slices.Concat(
		// The plain connect rows that compare costs a few percent apart take turns in rounds; the
		// rows that differ by far more than the machine's drift run one after the other.
		[]rowSpec{e.connectGroup("connects", grouped...)},
		against(rowNoPlugin,
			rowSpec{name: "ceiling: no plugin, client asks the IdP first, 0 ms", asksIdP: true, conf: anonymous, run: e.ceilingRow()},
			fresh0,
			rowSpec{name: "ceiling: no plugin, client asks the IdP first, 5 ms", asksIdP: true, idpDelay: 5 * time.Millisecond,
				conf: anonymous, run: e.ceilingRow()},
			rowSpec{name: "plugin, fresh opaque token, IdP 5 ms", plugin: true, idpDelay: 5 * time.Millisecond,
				conf: e.pluginConf, run: e.connectRow(fresh, true)},
			rowSpec{name: "plugin, fresh JWT RS256, local check", plugin: true, conf: e.jwtConf, run: e.jwtRow("RS256")},
			rowSpec{name: "plugin, fresh JWT ES256, local check", plugin: true, conf: e.jwtConf, run: e.jwtRow("ES256")},
			// What serving metrics costs a connect: the two plugin rows above, with metrics_listen on.
			withMetrics(warmCache), withMetrics(fresh0)),
		// The same connects through a TLS-only listener. The handshake costs the broker more than
		// anything else in a connect, so these divide by the TLS row without the plugin.
		against(rowNoPluginTLS, overTLS(noPlugin, passwordFile, warmCache, fresh0)...),
		[]rowSpec{
			e.messageRows(0, 1, anonymous),
			e.messageRows(0, 10, anonymous),
			e.messageRows(1, 1, anonymous),
			// The same message exchange and extra connect without the plugin: what "no stall" looks
			// like on this machine, for the two rows below to be read against.
			{name: "stall baseline: no plugin", conf: anonymous, run: e.stallRow(warm, randomToken(slowPrefix), false)},
			{name: "stall: slow IdP (2 s) for a new token", plugin: true, conf: e.pluginConf,
				run: e.stallRow(warm, randomToken(slowPrefix), false)},
			{name: "stall: same token, seen once before", plugin: true, conf: e.cachedConf,
				run: e.stallRow(warm, randomToken(slowLaterPrefix), true)},
		})
}

// withMetrics returns spec with the plugin's Prometheus endpoint on, named with a ", metrics_listen"
// suffix. Nothing scrapes it during the row: counting is the cost, and it is the same with or without
// a scraper.
func withMetrics(spec rowSpec) rowSpec {
	conf := spec.conf
	spec.name += ", metrics_listen"
	spec.conf = func() (string, error) {
		c, err := conf()
		if err != nil {
			return "", err
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := l.Addr().String()
		l.Close()
		return c + "plugin_opt_metrics_listen " + addr + "\n", nil
	}
	return spec
}

// against makes base the row that every one of specs divides its rate by.
func against(base string, specs ...rowSpec) []rowSpec {
	for i := range specs {
		specs[i].ratioTo = base
	}
	return specs
}

// overTLS returns the same rows on a TLS-only listener, named with a ", TLS" suffix.
func overTLS(specs ...rowSpec) []rowSpec {
	out := make([]rowSpec, len(specs))
	for i, s := range specs {
		s.name += ", TLS"
		s.tls = true
		out[i] = s
	}
	return out
}

func constConf(s string) func() (string, error) {
	return func() (string, error) { return s, nil }
}

// pluginConf is the config of every plugin row. It passes only options config/config.go knows today:
// an unknown option stops the broker. timeout 5 lets the stall rows' 2 s answer through.
func (e *env) pluginConf() (string, error) {
	return fmt.Sprintf("allow_anonymous false\nplugin %s\n"+
		"plugin_opt_introspection_endpoint %s\nplugin_opt_client_id %s\n"+
		"plugin_opt_client_secret %s\nplugin_opt_timeout 5\n",
		e.opts.plugin, e.idp.URL, idpClientID, idpClientSecret), nil
}

// cachedConf turns on the cache of verified tokens (off by default), for the rows about reuse.
func (e *env) cachedConf() (string, error) {
	conf, err := e.pluginConf()
	return conf + "plugin_opt_cache_ttl 300\n", err
}

// jwtConf adds local JWT verification, with discovery, to pluginConf. Opaque tokens would still go to
// introspection; the JWT rows send none, so their IdP req column counts discovery and key set fetches
// during the load (normally none: the plugin fetches the keys at start-up).
func (e *env) jwtConf() (string, error) {
	conf, err := e.pluginConf()
	return conf + "plugin_opt_jwt_verification true\nplugin_opt_jwt_issuer " + e.idp.JWT.issuer + "\n", err
}

// jwtRow signs a distinct token per expected connect before the load starts (enough for 0.9 of the
// no-plugin row's rate), then runs the connect load with them. A row that uses them all ends early and
// says so, rather than sending a token twice (the second would be a cache hit).
func (e *env) jwtRow(alg string) func(context.Context, *broker, time.Duration) rowResult {
	return func(ctx context.Context, b *broker, d time.Duration) rowResult {
		n := int(0.9*e.baseline*d.Seconds()) + 1000
		fmt.Fprintf(os.Stderr, "  signing %d %s tokens first\n", n, alg)
		tokens, err := e.idp.JWT.presign(alg, n)
		if err != nil {
			return rowResult{unit: "conn/s", errors: 1, detail: "signing tokens: " + err.Error()}
		}
		return e.connectRow(tokenPool(tokens), false)(ctx, b, d)
	}
}

// aclFileConf is Mosquitto's own acl_file for the message rows: the device writes under its name, the
// dashboards read the tenant's tree. Clients give a username and no password (allow_anonymous true).
func (e *env) aclFileConf() (string, error) {
	path := filepath.Join(e.tmp, "acl")
	acl := "pattern write tenants/" + msgTenant + "/%u/#\npattern read tenants/" + msgTenant + "/#\n"
	if err := os.WriteFile(path, []byte(acl), 0o600); err != nil {
		return "", fmt.Errorf("write acl_file: %w", err)
	}
	return "allow_anonymous true\nacl_file " + path + "\n", nil
}

// aclPluginConf is the same policy as aclFileConf in the plugin's claim rules, the tenant and the
// username coming from the token (the fake IdP's answers carry "tenant": "acme" and "username":
// "dev-1"; %u needs a username from the token).
func (e *env) aclPluginConf() (string, error) {
	conf, err := e.pluginConf()
	return conf + "plugin_opt_username_replacement true\nplugin_opt_username_replacement_template %%oidc-username%%\n" +
		"plugin_opt_acl_rule allow publish tenants/%%claim:tenant%%/%u/#\n" +
		"plugin_opt_acl_rule allow subscribe tenants/%%claim:tenant%%/#\n", err
}

// passwordFileConf hashes the row's single user with mosquitto_passwd -b, as an operator would.
func (e *env) passwordFileConf() (string, error) {
	path := filepath.Join(e.tmp, "passwd")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		return "", fmt.Errorf("create password file: %w", err)
	}
	out, err := exec.Command(e.opts.passwd, "-b", path, pwUser, pwPass).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s -b: %w: %s", e.opts.passwd, err, strings.TrimSpace(string(out)))
	}
	return "allow_anonymous false\npassword_file " + path + "\n", nil
}

// connectRow returns a row body that runs the connect load with creds. With wake, every connect's
// token goes to the IdP, and the detail column adds how long each CONNACK came after the IdP had
// written its answer: on 2.1 that answer is taken up by the broker thread only when its event loop
// wakes.
func (e *env) connectRow(creds credentials, wake bool) func(context.Context, *broker, time.Duration) rowResult {
	return func(ctx context.Context, b *broker, d time.Duration) rowResult {
		if wake {
			e.idp.Record()
		}
		c := connectLoad(ctx, b.endpoint, e.opts.workers, d, creds)
		r := rowResult{unit: "conn/s", ops: c.OK, refused: c.Refused, errors: c.Errors,
			elapsed: c.Elapsed, took: make([]time.Duration, len(c.Answers))}
		for i, a := range c.Answers {
			r.took[i] = a.took
		}
		var notes []string
		if wake {
			notes = append(notes, wakeNote(c.Answers, e.idp.Answered()))
		}
		if c.Refused > 0 {
			notes = append(notes, fmt.Sprintf("refused with CONNACK code %d", c.RefusedCode))
		}
		if c.Exhausted {
			notes = append(notes, fmt.Sprintf("ended after %.1fs: every pre-signed token used", c.Elapsed.Seconds()))
		}
		if c.FirstErr != nil {
			notes = append(notes, "first error: "+c.FirstErr.Error())
		}
		r.detail = strings.Join(notes, "; ")
		return r
	}
}

// latencyNote gives the 99th percentile of took, the times from dial to CONNACK of the answered
// connects.
func latencyNote(took []time.Duration) string {
	if len(took) == 0 {
		return ""
	}
	return "connect p99 " + ms(percentile(slices.Sorted(slices.Values(took)), 99))
}

// wakeNote gives the median and 99th percentile of the time from the IdP's answer for a token being
// written to the CONNACK of the connect that sent it being read.
func wakeNote(answers []answer, written map[string]time.Time) string {
	var wake []time.Duration
	for _, a := range answers {
		if t, ok := written[a.password]; ok {
			wake = append(wake, a.at.Sub(t))
		}
	}
	if len(wake) == 0 {
		return "no IdP answer matched a CONNACK"
	}
	slices.Sort(wake)
	return fmt.Sprintf("IdP answer→CONNACK p50 %s, p99 %s", ms(percentile(wake, 50)), ms(percentile(wake, 99)))
}

// stallRow returns a row body that runs one stall window.
func (e *env) stallRow(warm, slowToken string, precache bool) func(context.Context, *broker, time.Duration) rowResult {
	return func(_ context.Context, b *broker, _ time.Duration) rowResult {
		s, err := stallTest(b.endpoint, warm, slowToken, precache)
		r := rowResult{unit: "msg/s", ops: int64(s.Received), elapsed: s.Elapsed}
		if err != nil {
			r.errors = 1
			r.detail = "error: " + err.Error()
			return r
		}
		r.detail = fmt.Sprintf("latency worst %s, p99 %s, %d/%d msgs late >%s; slow client CONNACK after %s",
			ms(s.Worst), ms(s.P99), s.Late, s.Received, ms(lateThreshold), ms(s.SlowWait))
		if lost := s.Sent - s.Received; lost != 0 {
			r.detail += fmt.Sprintf("; %d of %d msgs not delivered", lost, s.Sent)
		}
		if s.SlowErr != nil {
			r.refused = 1
			r.detail += "; slow client: " + s.SlowErr.Error()
		}
		return r
	}
}

// ms prints a duration in milliseconds, with the decimals that matter at its size.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 1 && v > -1:
		return fmt.Sprintf("%.2f ms", v)
	case v < 10 && v > -10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// runRow starts a fresh broker for the row, measures the broker's CPU and the IdP's requests around the
// load, and stops the broker. A broker that fails to start or dies is reported in the row, and the
// remaining rows still run.
func (e *env) runRow(ctx context.Context, spec rowSpec) rowResult {
	b, res := e.startRow(spec)
	if b == nil {
		return res
	}
	res = e.measure(spec, b, func() rowResult { return spec.run(ctx, b, e.opts.duration) })
	stopRow(b, &res)
	return res
}

// startRow starts the row's broker. A row that cannot run comes back with failed set and no broker.
func (e *env) startRow(spec rowSpec) (*broker, rowResult) {
	res := rowResult{name: spec.name, cpuTicks: -1, idpRequests: -1, hz: e.hz, ratioTo: spec.ratioTo, vsToo: spec.vsToo}
	if spec.plugin && e.opts.plugin == "" {
		res.failed = "skipped: no -plugin given"
		return nil, res
	}
	conf, err := spec.conf()
	if err != nil {
		res.failed = "skipped: " + err.Error()
		return nil, res
	}
	b, err := startBroker(e.opts.mosquitto, e.tmp, "row", conf, spec.tls)
	if err != nil {
		res.failed = "BROKER DID NOT START: " + err.Error()
		return nil, res
	}
	return b, res
}

// measure runs load once on the row's broker b, with the broker's CPU time and the IdP's requests
// around it.
func (e *env) measure(spec rowSpec, b *broker, load func() rowResult) rowResult {
	e.idp.SetDelay(spec.idpDelay)
	defer e.idp.SetDelay(0)
	cpu0, cpuErr := b.CPUTicks()
	req0 := e.idp.Requests()
	r := load()
	cpu1, cpuErr1 := b.CPUTicks()
	r.name, r.hz, r.cpuTicks, r.idpRequests = spec.name, e.hz, -1, -1
	r.ratioTo, r.vsToo = spec.ratioTo, spec.vsToo
	if cpuErr == nil && cpuErr1 == nil {
		r.cpuTicks = int64(cpu1 - cpu0)
	}
	if spec.plugin || spec.asksIdP {
		r.idpRequests = e.idp.Requests() - req0
	}
	if died := b.Died(); died != nil {
		r.failed = strings.TrimSpace("BROKER DIED during the row: " + died.Error() + " " + b.logTail())
	}
	return r
}

// stopRow stops the row's broker; one that would not stop fails the row, unless it had failed already.
func stopRow(b *broker, r *rowResult) {
	if err := b.Stop(); err != nil && r.failed == "" {
		r.failed = "broker stop: " + err.Error()
	}
}
