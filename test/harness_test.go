//go:build e2e

// Package e2e runs the built plugin in a real Mosquitto against a real identity provider (test/idp,
// oidc-provider) with real MQTT clients. `make e2e` builds the .so and sets PLUGIN_SO and MOSQUITTO.
package e2e

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Secrets and tokens the tests check the broker log for.
const (
	brokerSecret = "broker-secret-9f8e7d"
	aliceSecret  = "alice-secret-1a2b3c"
	meterSecret  = "meter-secret-5e6f7a"
)

// deviceGrants are the grant types of a device client: the device authorization grant, then refresh.
var deviceGrants = []string{"urn:ietf:params:oauth:grant-type:device_code", "refresh_token"}

// clients is the test IdP's client list: the broker's introspection client, and devices whose tokens
// carry the claims the seed plugin's placeholders read.
var clients = map[string]any{
	"clients": []map[string]any{
		{"client_id": "broker", "client_secret": brokerSecret},
		{"client_id": "broker-post", "client_secret": brokerSecret, "token_endpoint_auth_method": "client_secret_post"},
		{"client_id": "alice", "client_secret": aliceSecret, "claims": map[string]any{
			"sub": "alice-sub", "username": "alice", "email": "alice@example.com",
			"urn:zitadel:iam:org:project:roles": map[string]any{"admin": map[string]string{"1": "org"}},
		}},
		{"client_id": "bob", "client_secret": "bob-secret", "claims": map[string]any{
			"sub": "bob-sub", "username": "bob", "email": "bob@example.com",
		}},
		{"client_id": "mallory", "client_secret": "mallory-secret", "claims": map[string]any{
			"sub": "mallory-sub", "username": "alice/evil", "email": "mallory@example.com",
		}},
		{"client_id": "shorty", "client_secret": "shorty-secret", "access_token_ttl": 2, "claims": map[string]any{
			"sub": "shorty-sub", "username": "shorty", "topics": []string{"short/#"},
		}},
		// Devices whose tokens carry topic rights: a topics list and an EMQX-style acl object (carol), and
		// an EMQX rule list with a deny (erin).
		{"client_id": "carol", "client_secret": "carol-secret", "claims": map[string]any{
			"sub": "carol-sub", "username": "carol", "topics": []string{"fleet/carol/#", "short/#"},
			"acl": map[string]any{"pub": []string{"cmd/+/reboot"}, "sub": []string{"cmd/carol/#"}},
		}},
		// Devices of the device-side command (device_test.go): a public device-grant client, one whose
		// refresh tokens live 3 s, and a confidential one; all with 5-second access tokens.
		{"client_id": "sensor", "token_endpoint_auth_method": "none", "grant_types": deviceGrants,
			"access_token_ttl": 5, "device_poll_interval": 1, "device_code_ttl": 30,
			"claims": map[string]any{"sub": "sensor-sub", "username": "sensor"}},
		{"client_id": "sensor-brief", "token_endpoint_auth_method": "none", "grant_types": deviceGrants,
			"access_token_ttl": 5, "device_poll_interval": 1, "refresh_token_ttl": 3,
			"claims": map[string]any{"sub": "sensor-sub", "username": "sensor"}},
		{"client_id": "meter", "client_secret": meterSecret, "access_token_ttl": 5,
			"claims": map[string]any{"sub": "meter-sub", "username": "meter"}},
		{"client_id": "erin", "client_secret": "erin-secret", "claims": map[string]any{
			"sub": "erin-sub", "username": "erin", "acl": []map[string]any{
				{"permission": "deny", "action": "publish", "topic": "fleet/erin/locked"},
				{"permission": "allow", "action": "all", "topic": "fleet/erin/#"},
			},
		}},
	},
}

// pki is a throwaway CA and a server certificate for 127.0.0.1 signed by it.
type pki struct {
	CAFile, CertFile, KeyFile string
	Pool                      *x509.CertPool
}

func newPKI(t *testing.T, dir, name string) pki {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	p := pki{
		CAFile:   filepath.Join(dir, name+"-ca.pem"),
		CertFile: filepath.Join(dir, name+"-cert.pem"),
		KeyFile:  filepath.Join(dir, name+"-key.pem"),
		Pool:     x509.NewCertPool(),
	}
	p.Pool.AddCert(ca)
	writePEM(t, p.CAFile, "CERTIFICATE", caDER)
	writePEM(t, p.CertFile, "CERTIFICATE", der)
	writePEM(t, p.KeyFile, "EC PRIVATE KEY", keyDER)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// idp is a running test/idp.
type idp struct {
	URL  string
	port int
	cmd  *exec.Cmd
	http *http.Client
	env  []string
	t    *testing.T
}

func (i *idp) IntrospectionURL() string { return i.URL + "/token/introspection" }

// startIdP starts test/idp over HTTPS with a certificate from p and waits for it to say it is ready.
func startIdP(t *testing.T, dir string, p pki) *idp {
	t.Helper()
	clientsFile := filepath.Join(dir, "clients.json")
	b, _ := json.Marshal(clients)
	if err := os.WriteFile(clientsFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	i := &idp{
		URL:  fmt.Sprintf("https://127.0.0.1:%d", port),
		port: port,
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool}}},
		env: append(os.Environ(), fmt.Sprintf("IDP_PORT=%d", port), "IDP_TLS_CERT="+p.CertFile,
			"IDP_TLS_KEY="+p.KeyFile, "IDP_CLIENTS="+clientsFile, "IDP_TEST_ROUTES=1"),
		t: t,
	}
	i.start()
	t.Cleanup(i.Stop)
	return i
}

func (i *idp) start() {
	i.t.Helper()
	// One retry: once in many runs node did not report ready within 30 s on this shared machine.
	for attempt := 1; ; attempt++ {
		err := i.tryStart()
		if err == nil {
			return
		}
		if attempt == 2 {
			i.t.Fatal(err)
		}
		i.t.Logf("retrying test/idp start: %v", err)
	}
}

func (i *idp) tryStart() error {
	i.cmd = exec.Command("node", "server.js")
	i.cmd.Dir = "idp"
	i.cmd.Env = i.env
	stderr := &lockedBuffer{}
	i.cmd.Stderr = stderr
	out, err := i.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := i.cmd.Start(); err != nil {
		return err
	}
	ready := make(chan bool, 2)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if strings.HasPrefix(s.Text(), "IDP READY") {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if ok {
			return nil
		}
		i.Stop()
		return fmt.Errorf("test/idp exited before it was ready (run `make deps`?):\n%s", stderr)
	case <-time.After(30 * time.Second):
		i.Stop()
		return fmt.Errorf("test/idp not ready after 30s:\n%s", stderr)
	}
}

// lockedBuffer collects a child's stderr for failure messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Stop stops the IdP; Start brings it back (with none of the old opaque tokens: its store is memory).
func (i *idp) Stop() {
	if i.cmd == nil || i.cmd.Process == nil {
		return
	}
	done := make(chan struct{})
	go func() { i.cmd.Wait(); close(done) }()
	stopProcess(i.cmd.Process, syscall.SIGTERM, done)
	i.cmd = nil
}

// Token gets an access token for a device client with the client_credentials grant. An empty
// resource gives an opaque token.
func (i *idp) Token(clientID, secret, resource string) string {
	i.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if resource != "" {
		form.Set("resource", resource)
	}
	req, _ := http.NewRequest("POST", i.URL+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	var body struct {
		AccessToken string `json:"access_token"`
	}
	i.do(req, &body)
	if body.AccessToken == "" {
		i.t.Fatalf("no access token for %s", clientID)
	}
	return body.AccessToken
}

// Revoke revokes a token (RFC 7009) as the broker's client.
func (i *idp) Revoke(token string) {
	i.t.Helper()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, _ := http.NewRequest("POST", i.URL+"/token/revocation", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("broker", brokerSecret)
	i.do(req, nil)
}

func (i *idp) do(req *http.Request, into any) {
	i.t.Helper()
	// test/idp closes idle connections after 5 s, and net/http resends a POST that met a closed kept
	// connection only when told it may: the tests pause longer than that on purpose.
	req.Header["Idempotency-Key"] = nil
	resp, err := i.http.Do(req)
	if err != nil {
		i.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		i.t.Fatalf("%s: status %d: %s", req.URL.Path, resp.StatusCode, b)
	}
	if into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			i.t.Fatal(err)
		}
	}
}

var listenerHost = regexp.MustCompile(`^@(127\.[0-9.]+)`)

// broker is a running Mosquitto with the plugin loaded.
type broker struct {
	Port    int
	Ports   []int // every listener, in config order
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	t       *testing.T
}

// pluginBlock is the plugin line and its options, ready to paste into mosquitto.conf.
func pluginBlock(opts ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "plugin %s\n", os.Getenv("PLUGIN_SO"))
	for i := 0; i+1 < len(opts); i += 2 {
		fmt.Fprintf(&b, "plugin_opt_%s %s\n", opts[i], opts[i+1])
	}
	return b.String()
}

// introspectionOpts are the options every test broker needs to reach the IdP.
func introspectionOpts(i *idp, p pki) []string {
	return []string{
		"introspection_endpoint", i.IntrospectionURL(),
		"client_id", "broker",
		"client_secret", brokerSecret,
		"ca_file", p.CAFile,
	}
}

// startBroker writes conf (with LISTENER placeholders replaced by free ports) and starts Mosquitto.
// Each "listener LISTENER" line gets its own port on 127.0.0.1, and "listener LISTENER@127.0.0.2" on
// that loopback address.
// running is the line Mosquitto logs once its listeners are open.
var running = regexp.MustCompile(`(?m): mosquitto version \S+ running$`)

func startBroker(t *testing.T, conf string) *broker {
	t.Helper()
	b, err := tryStartBroker(t, conf)
	if err != nil {
		t.Fatalf("%v\n%s", err, b.Log())
	}
	return b
}

// tryStartBroker starts Mosquitto with conf, a second time on other ports when it could not open its
// listeners: freePort's port may be taken by another process before the broker binds it.
func tryStartBroker(t *testing.T, conf string) (*broker, error) {
	t.Helper()
	b, err := startOnce(t, conf)
	if err != nil && strings.Contains(b.Log(), "Unable to start any listening sockets") {
		t.Logf("retrying the broker on other ports: %v\n%s", err, b.Log())
		b, err = startOnce(t, conf)
	}
	return b, err
}

func startOnce(t *testing.T, conf string) (*broker, error) {
	t.Helper()
	mosquitto := os.Getenv("MOSQUITTO")
	if mosquitto == "" || os.Getenv("PLUGIN_SO") == "" {
		t.Fatal("MOSQUITTO and PLUGIN_SO must be set: run `make e2e`")
	}
	dir := t.TempDir()
	b := &broker{logPath: filepath.Join(dir, "mosquitto.log"), exited: make(chan struct{}), t: t}
	host := "127.0.0.1"
	for {
		at := strings.Index(conf, "LISTENER")
		if at < 0 {
			break
		}
		end := at + len("LISTENER")
		host = "127.0.0.1"
		if m := listenerHost.FindStringSubmatch(conf[end:]); m != nil {
			host = m[1]
			end += len(m[0])
		}
		port := freePort(t)
		b.Ports = append(b.Ports, port)
		conf = conf[:at] + fmt.Sprintf("%d %s", port, host) + conf[end:]
	}
	b.Port = b.Ports[0]
	// user root: the broker would otherwise drop to the mosquitto user, which cannot read the test's
	// temporary files.
	conf = "user root\nlog_dest stderr\nlog_type all\n" + conf
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(b.logPath)
	if err != nil {
		t.Fatal(err)
	}
	b.cmd = exec.Command(mosquitto, "-c", confPath)
	b.cmd.Stdout, b.cmd.Stderr = logFile, logFile
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.cmd.Wait(); logFile.Close(); close(b.exited) }()
	t.Cleanup(b.Stop)
	// Ready once it says it runs (after opening every listener) and its last port answers: a port that
	// answers alone may be another process's.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-b.exited:
			return b, fmt.Errorf("mosquitto exited during start-up")
		default:
		}
		if running.MatchString(b.Log()) {
			if c, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(b.Ports[len(b.Ports)-1]))); err == nil {
				c.Close()
				return b, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return b, fmt.Errorf("mosquitto not listening after 10s")
}

// Stop stops the broker and fails the test if it died on its own before.
func (b *broker) Stop() { stopProcess(b.cmd.Process, syscall.SIGTERM, b.exited) }

// stopProcess sends p sig, then SIGKILL if it has not exited 5 s later; exited closes when it has.
func stopProcess(p *os.Process, sig os.Signal, exited <-chan struct{}) {
	select {
	case <-exited:
		return
	default:
	}
	p.Signal(sig)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		p.Kill()
		<-exited
	}
}

// Alive fails the test if the broker process has gone.
func (b *broker) Alive() {
	b.t.Helper()
	select {
	case <-b.exited:
		b.t.Fatalf("the broker died:\n%s", b.Log())
	default:
	}
}

func (b *broker) Log() string {
	out, _ := os.ReadFile(b.logPath)
	return string(out)
}

// AssertLogClean fails if any secret appears in the broker log.
func (b *broker) AssertLogClean(secrets ...string) {
	b.t.Helper()
	log := b.Log()
	for _, s := range append(secrets, brokerSecret, aliceSecret) {
		if s != "" && strings.Contains(log, s) {
			b.t.Errorf("broker log contains a secret or token (%d bytes)", len(s))
		}
	}
}

// Delayed says whether the plugin runs checks that need the IdP off the broker thread (Mosquitto 2.1's
// delayed basic auth, without a defer policy), as its start-up line says. Otherwise the broker waits for
// them.
func (b *broker) Delayed() bool {
	return strings.Contains(b.Log(), "delayed checks on cache misses")
}

// WaitLog waits until the broker log contains substr.
func (b *broker) WaitLog(substr string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if strings.Contains(b.Log(), substr) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// passwordFile writes a Mosquitto password file, hashed by mosquitto_passwd.
func passwordFile(t *testing.T, dir string, userPass ...string) string {
	t.Helper()
	path := writeFile(t, dir, "passwd", "")
	for i := 0; i+1 < len(userPass); i += 2 {
		cmd := exec.Command("mosquitto_passwd", "-b", path, userPass[i], userPass[i+1])
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
	}
	return path
}
