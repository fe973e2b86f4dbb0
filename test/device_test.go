//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// The device side: build/mqtt-oauth2 against test/idp and the real broker. Each run gets its own
// home, so its token cache and config are its own.

var (
	commandOnce sync.Once
	commandBin  string
	commandErr  error
)

// commandPath is MQTT_OAUTH2 (set by make), else the command built once for this test run.
func commandPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MQTT_OAUTH2"); p != "" {
		return p
	}
	commandOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mqtt-oauth2-e2e")
		if err != nil {
			commandErr = err
			return
		}
		commandBin = filepath.Join(dir, "mqtt-oauth2")
		out, err := exec.Command("go", "build", "-o", commandBin, "../cmd/mqtt-oauth2").CombinedOutput()
		if err != nil {
			commandErr = fmt.Errorf("building mqtt-oauth2: %v\n%s", err, out)
		}
	})
	if commandErr != nil {
		t.Fatal(commandErr)
	}
	return commandBin
}

// run is one mqtt-oauth2 process.
type run struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	done   chan struct{}
	code   int
}

// command starts mqtt-oauth2 SUBCOMMAND with this env's issuer and CA, in home.
func (e *env) command(t *testing.T, home, sub string, args ...string) *run {
	t.Helper()
	full := append([]string{sub, "--issuer", e.idp.URL, "--ca-file", e.pki.CAFile}, args...)
	r := &run{cmd: exec.Command(commandPath(t), full...), stdout: &lockedBuffer{}, stderr: &lockedBuffer{},
		done: make(chan struct{})}
	r.cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CACHE_HOME="+filepath.Join(home, "cache"),
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"))
	r.cmd.Stdout, r.cmd.Stderr = r.stdout, r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := r.cmd.Wait()
		r.code = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			r.code = ee.ExitCode()
		}
		close(r.done)
	}()
	t.Cleanup(func() { r.stop() })
	return r
}

// wait returns the exit code, failing the test if the command runs longer than within.
func (r *run) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(within):
		r.stop()
		t.Fatalf("mqtt-oauth2 still running after %s; stderr:\n%s", within, r.stderr)
		return -1
	}
}

// stop ends the command as Ctrl-C would.
func (r *run) stop() { stopProcess(r.cmd.Process, syscall.SIGINT, r.done) }

// waitStderr waits until stderr matches re and returns the match.
func (r *run) waitStderr(t *testing.T, re *regexp.Regexp, within time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(r.stderr.String()); m != nil {
			return m
		}
		select {
		case <-r.done:
			if m := re.FindStringSubmatch(r.stderr.String()); m != nil {
				return m
			}
			t.Fatalf("mqtt-oauth2 exited %d before stderr matched %s:\n%s", r.code, re, r.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("stderr did not match %s within %s:\n%s", re, within, r.stderr)
	return nil
}

var userCode = regexp.MustCompile(`enter code ([A-Z]{4}-[A-Z]{4})`)

// decide approves or denies a pending device sign-in through test/idp's test route.
func (e *env) decide(t *testing.T, verdict, code string) {
	t.Helper()
	resp, err := e.idp.http.PostForm(e.idp.URL+"/test/device/"+verdict, url.Values{"user_code": {code}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: HTTP %d", verdict, code, resp.StatusCode)
	}
}

// secretFile writes a client secret to a 0600 file.
func secretFile(t *testing.T, dir, secret string) string {
	t.Helper()
	p := filepath.Join(dir, "secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The client credentials grant: the printed token opens the broker, a second run reuses the cached
// token (cache file 0600), and a wrong secret gets one clear line, exit 1, and no secret printed.
func TestCommandClientCredentials(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "")
	home := t.TempDir()
	secret := secretFile(t, home, aliceSecret)

	r := e.command(t, home, "token", "--client-id", "alice", "--client-secret-file", secret)
	if code := r.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("token: exit %d:\n%s", code, r.stderr)
	}
	tok := strings.TrimSpace(r.stdout.String())
	if _, rc := connect5(t, b.Port, "cc", "alice", tok); rc != 0 {
		t.Fatalf("the printed token: CONNACK %#x", rc)
	}
	again := e.command(t, home, "token", "--client-id", "alice", "--client-secret-file", secret)
	if code := again.wait(t, 20*time.Second); code != 0 || strings.TrimSpace(again.stdout.String()) != tok {
		t.Errorf("second run: exit %d, same token %v", code, strings.TrimSpace(again.stdout.String()) == tok)
	}
	cache := filepath.Join(home, "cache", "mqtt-oauth2", "tokens.json")
	if st, err := os.Stat(cache); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("token cache %s: %v, mode %v", cache, err, st)
	}

	wrong := e.command(t, home, "token", "--client-id", "alice", "--client-secret", "not-"+aliceSecret, "--no-cache")
	if code := wrong.wait(t, 20*time.Second); code != 1 {
		t.Errorf("wrong secret: exit %d, want 1", code)
	}
	msg := wrong.stderr.String()
	if !strings.Contains(msg, "invalid_client") || strings.Count(strings.TrimSpace(msg), "\n") != 0 ||
		strings.Contains(msg, aliceSecret) || wrong.stdout.String() != "" {
		t.Errorf("wrong secret: stdout %q, stderr %q: want one line naming invalid_client, no secret", wrong.stdout, msg)
	}
	b.AssertLogClean(tok, aliceSecret)
}

// The device authorization grant: the command shows the code and a QR code, the test route approves
// it, and the token opens the broker; the next run refreshes without asking; a denied sign-in and a
// refresh token that expired each get their answer.
func TestCommandDeviceFlow(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "")
	home := t.TempDir()
	args := []string{"--client-id", "sensor", "--scope", "openid offline_access"}

	r := e.command(t, home, "token", args...)
	code := r.waitStderr(t, userCode, 20*time.Second)[1]
	prompt := r.stderr.String()
	if !strings.Contains(prompt, e.idp.URL+"/device") || !strings.ContainsAny(prompt, "█▀▄") {
		t.Errorf("the prompt lacks the verification URI or a QR code:\n%s", prompt)
	}
	e.decide(t, "approve", code)
	if c := r.wait(t, 20*time.Second); c != 0 {
		t.Fatalf("token: exit %d:\n%s", c, r.stderr)
	}
	tok := strings.TrimSpace(r.stdout.String())
	if _, rc := connect5(t, b.Port, "device", "sensor", tok); rc != 0 {
		t.Fatalf("the device-flow token: CONNACK %#x", rc)
	}

	// 5-second tokens are stale at once for the 10 s reuse margin: the next run must refresh.
	refreshed := e.command(t, home, "token", args...)
	if c := refreshed.wait(t, 20*time.Second); c != 0 || userCode.MatchString(refreshed.stderr.String()) {
		t.Fatalf("second run: exit %d, stderr:\n%s", c, refreshed.stderr)
	}
	tok2 := strings.TrimSpace(refreshed.stdout.String())
	if tok2 == tok {
		t.Error("the second run printed the first token, not a refreshed one")
	}
	if _, rc := connect5(t, b.Port, "device2", "sensor", tok2); rc != 0 {
		t.Fatalf("the refreshed token: CONNACK %#x", rc)
	}

	t.Run("denied", func(t *testing.T) {
		r := e.command(t, t.TempDir(), "token", args...)
		e.decide(t, "deny", r.waitStderr(t, userCode, 20*time.Second)[1])
		if c := r.wait(t, 20*time.Second); c != 1 || !strings.Contains(r.stderr.String(), "the sign-in was denied") {
			t.Errorf("exit %d, stderr:\n%s", c, r.stderr)
		}
		if r.stdout.String() != "" {
			t.Errorf("stdout %q", r.stdout)
		}
	})

	t.Run("expired refresh token", func(t *testing.T) {
		home := t.TempDir()
		brief := []string{"--client-id", "sensor-brief", "--scope", "openid offline_access"}
		r := e.command(t, home, "token", brief...)
		e.decide(t, "approve", r.waitStderr(t, userCode, 20*time.Second)[1])
		if c := r.wait(t, 20*time.Second); c != 0 {
			t.Fatalf("exit %d:\n%s", c, r.stderr)
		}
		time.Sleep(4 * time.Second) // the refresh token lives 3 s
		// sub runs unattended once it has a token: a refused refresh token is one clear line.
		sub := e.command(t, home, "sub", append(brief, "--broker", fmt.Sprintf("mqtt://127.0.0.1:%d", b.Port),
			"--username", "sensor", "--margin", "1s", "-t", "x")...)
		// It signs in again, as token would, since it has no session yet. Renewing 1 s before the
		// 5-second token's end, it finds the refresh token of that sign-in 4 s old: refused.
		e.decide(t, "approve", sub.waitStderr(t, userCode, 20*time.Second)[1])
		sub.waitStderr(t, regexp.MustCompile(`refresh token was refused`), 30*time.Second)
		if c := sub.wait(t, 10*time.Second); c != 1 {
			t.Errorf("sub: exit %d, want 1:\n%s", c, sub.stderr)
		}
	})
}

// sessionArgs are the options of a sub for client meter (5-second tokens) on broker b.
func sessionArgs(b *broker, home string, extra ...string) []string {
	return append([]string{"--client-id", "meter", "--client-secret-file", filepath.Join(home, "secret"),
		"--broker", fmt.Sprintf("mqtt://127.0.0.1:%d", b.Port), "--username", "meter", "--margin", "2s",
		"-d", "-q", "1", "-t", "meter/#"}, extra...)
}

var renewed = regexp.MustCompile(`token renewed: (re-authenticated in-session|reconnected) ([0-9.]+[µm]?s) after it was due`)

// sessionThroughRenewals runs a sub while a publisher sends numbered QoS 1 messages, until the sub
// has renewed its token renewals times, and checks every message arrived. It returns how each
// renewal went and how long after it was due it completed.
func sessionThroughRenewals(t *testing.T, e *env, b *broker, renewals int, extra ...string) ([]string, []time.Duration) {
	t.Helper()
	home := t.TempDir()
	secretFile(t, home, meterSecret)
	sub := e.command(t, home, "sub", sessionArgs(b, home, extra...)...)
	sub.waitStderr(t, regexp.MustCompile("connected to"), 20*time.Second)

	pub, rc := connect5(t, b.Port, "meter-pub", "", e.idp.Token("alice", aliceSecret, ""))
	if rc != 0 {
		t.Fatalf("publisher: CONNACK %#x", rc)
	}
	// The sub subscribes right after its CONNACK: wait until a message gets through.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(sub.stdout.String(), "ready") {
		if time.Now().After(deadline) {
			t.Fatalf("the sub never received a message; stderr:\n%s", sub.stderr)
		}
		publishQoS1(t, pub, "meter/ready", "ready")
		time.Sleep(100 * time.Millisecond)
	}
	sent := 0
	deadline = time.Now().Add(time.Duration(renewals)*4*time.Second + 20*time.Second)
	for len(renewed.FindAllString(sub.stderr.String(), -1)) < renewals {
		if time.Now().After(deadline) {
			t.Fatalf("%d renewals in time; stderr:\n%s", len(renewed.FindAllString(sub.stderr.String(), -1)), sub.stderr)
		}
		sent++
		publishQoS1(t, pub, "meter/seq", strconv.Itoa(sent))
		time.Sleep(20 * time.Millisecond)
	}
	// Every number must come, in order, once the sub has caught up.
	want := make([]string, sent)
	for i := range want {
		want[i] = strconv.Itoa(i + 1)
	}
	deadline = time.Now().Add(10 * time.Second)
	var got []string
	for {
		got = slices.DeleteFunc(strings.Fields(sub.stdout.String()), func(s string) bool { return s == "ready" })
		if len(got) >= sent || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	got = slices.Compact(got) // QoS 1 may deliver twice across a reconnection; it must not lose any
	if !slices.Equal(got, want) {
		t.Errorf("the sub received %d distinct messages of %d sent (lost %d); stderr:\n%s", len(got), sent, sent-len(got), sub.stderr)
	}
	var hows []string
	var lags []time.Duration
	for _, m := range renewed.FindAllStringSubmatch(sub.stderr.String(), -1) {
		d, err := time.ParseDuration(m[2])
		if err != nil {
			t.Fatal(err)
		}
		hows, lags = append(hows, m[1]), append(lags, d)
	}
	slices.Sort(lags)
	t.Logf("%d renewals, %d QoS 1 messages, 0 lost; completed after due: p50 %s, max %s",
		len(lags), sent, lags[len(lags)/2], lags[len(lags)-1])
	if strings.Contains(b.Log(), "token expired") {
		t.Errorf("the broker ended a lease the command should have renewed:\n%s", b.Log())
	}
	sub.stop()
	return hows, lags
}

// publishQoS1 publishes and waits for the PUBACK, from any goroutine's point of view a plain call.
func publishQoS1(t *testing.T, c *client, topic, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.v5.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// renewalsWanted is how many renewals a session test waits for: 3 unless MQTT_OAUTH2_RENEWALS says
// (the closing figures take 50).
func renewalsWanted() int {
	if n, err := strconv.Atoi(os.Getenv("MQTT_OAUTH2_RENEWALS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// An MQTT 5 session outlives three 5-second tokens by re-authenticating in-session: no reconnection,
// no QoS 1 message lost, and the broker never ends the lease.
func TestCommandSessionReauthenticates(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "", "enhanced_auth_method", "OAUTH2-JWT")
	hows, _ := sessionThroughRenewals(t, e, b, renewalsWanted())
	for _, h := range hows {
		if h != "re-authenticated in-session" {
			t.Errorf("renewals: %q, want every one in-session", hows)
			break
		}
	}
	if n := strings.Count(b.Log(), "re-authenticated (exp"); n < len(hows) {
		t.Errorf("the broker logged %d re-authentications, the command %d", n, len(hows))
	}
}

// MQTT 3.1.1 has no re-authentication, and a broker without the method refuses it at CONNECT: either
// way the command says so once and renews by reconnecting, losing no QoS 1 message.
func TestCommandSessionReconnects(t *testing.T) {
	for _, tc := range []struct {
		name, method string
		extra        []string
		say          string
	}{
		{"MQTT 3.1.1", "OAUTH2-JWT", []string{"--mqtt-version", "3.1.1"}, "MQTT 3.1.1 has no re-authentication"},
		{"broker without the method", "", nil, "the broker does not take authentication method OAUTH2-JWT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			var opts []string
			if tc.method != "" {
				opts = []string{"enhanced_auth_method", tc.method}
			}
			b := e.broker(t, "", opts...)
			hows, _ := sessionThroughRenewals(t, e, b, 3, tc.extra...)
			if !slices.Equal(slices.Compact(hows), []string{"reconnected"}) {
				t.Errorf("renewals: %q, want every one by reconnecting", hows)
			}
		})
	}
}

// Bad input: a wrong secret ends sub with one line and exit 1 (never retried for ever); an IdP that
// is down is one line and exit 1 for token, and a bounded retry for sub, which connects once the IdP
// is back.
func TestCommandFailures(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "")
	home := t.TempDir()
	secretFile(t, home, "wrong-"+meterSecret)
	wrong := e.command(t, home, "sub", sessionArgs(b, home)...)
	if c := wrong.wait(t, 20*time.Second); c != 1 || !strings.Contains(wrong.stderr.String(), "invalid_client") ||
		strings.Contains(wrong.stderr.String(), meterSecret) {
		t.Errorf("sub with a wrong secret: exit %d, stderr:\n%s", c, wrong.stderr)
	}

	e.idp.Stop()
	down := e.command(t, home, "token", "--client-id", "meter", "--client-secret", meterSecret, "--no-cache")
	if c := down.wait(t, 40*time.Second); c != 1 || !strings.Contains(down.stderr.String(), "cannot reach the identity provider at "+e.idp.URL) {
		t.Errorf("token with the IdP down: exit %d, stderr:\n%s", c, down.stderr)
	}
	secretFile(t, home, meterSecret)
	sub := e.command(t, home, "sub", sessionArgs(b, home)...)
	sub.waitStderr(t, regexp.MustCompile("cannot reach the identity provider.*retrying"), 20*time.Second)
	time.Sleep(3 * time.Second) // retries at 1 and 2 s: still one line
	if n := strings.Count(sub.stderr.String(), "cannot reach"); n != 1 {
		t.Errorf("%d lines about the IdP being down, want 1:\n%s", n, sub.stderr)
	}
	e.idp.start()
	sub.waitStderr(t, regexp.MustCompile("connected to"), 40*time.Second)
}
