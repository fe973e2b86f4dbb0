package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/config"
)

// testCA is a throwaway CA and a certificate for 127.0.0.1 it signed.
type testCA struct {
	pem  []byte // the CA certificate
	leaf tls.Certificate
}

func newTestCA(t *testing.T, name string) testCA {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
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
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		leaf: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}
}

// reloadIdP is an https IdP with a certificate from one CA: introspection that takes the client
// secrets it is told to, and a JWT issuer's discovery and keys.
type reloadIdP struct {
	*jwtIssuer
	secrets atomic.Pointer[[]string] // the broker's secrets it takes
}

func (p *reloadIdP) accept(secrets ...string) { p.secrets.Store(&secrets) }

func newReloadIdP(t *testing.T, ca testCA, secrets ...string) *reloadIdP {
	t.Helper()
	p := &reloadIdP{jwtIssuer: newSigningIssuer(t)}
	p.accept(secrets...)
	p.srv = httptest.NewUnstartedServer(p.publish(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if _, s, _ := r.BasicAuth(); !slices.Contains(*p.secrets.Load(), s) {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"invalid_client"}`)
			return
		}
		fmt.Fprintf(w, `{"active":true,"sub":"alice","exp":%d}`, time.Now().Add(time.Hour).Unix())
	}))
	p.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.leaf}}
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	return p
}

// reloadFiles are an engine's client_secret_file and ca_file.
type reloadFiles struct{ secret, ca string }

func (f reloadFiles) write(t *testing.T, secret string, ca []byte) {
	t.Helper()
	for path, b := range map[string][]byte{f.secret: []byte(secret + "\n"), f.ca: ca} {
		os.RemoveAll(path)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// breakFile makes path unusable in one of the ways an operator can.
func breakFile(t *testing.T, path, how string) {
	t.Helper()
	os.RemoveAll(path)
	var err error
	switch how {
	case "missing":
	case "empty":
		err = os.WriteFile(path, nil, 0o600)
	case "unreadable": // a directory: a file without read permission would not stop root
		err = os.Mkdir(path, 0o700)
	case "no certificate":
		err = os.WriteFile(path, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Reload takes up a rotated secret and a new CA at the next request, and keeps what is in use when a
// file cannot be used, saying why without the secret. The IdP answers only the secret it holds, from
// a certificate only its CA vouches for, so each case has its negative control: the request before the
// reload.
func TestReload(t *testing.T) {
	const oldSecret, newSecret = "old-secret-4f1c", "new-secret-9a7e"
	caA, caB := newTestCA(t, "CA A"), newTestCA(t, "CA B")
	cases := []struct {
		name       string
		serverCA   testCA // signs the IdP's certificate
		idpSecret  string // the secret the IdP takes after the start
		change     func(t *testing.T, f reloadFiles)
		okBefore   bool   // a check between the change and the reload is allowed
		okAfter    bool   // a check after the reload is allowed
		info, warn string // in the reload's log lines
	}{
		{"rotated secret", caA, newSecret, func(t *testing.T, f reloadFiles) { f.write(t, newSecret, caA.pem) },
			false, true, "reload: client_secret_file re-read; ca_file re-read: 1 certificate", ""},
		{"new CA", caB, oldSecret, func(t *testing.T, f reloadFiles) { f.write(t, oldSecret, caB.pem) },
			false, true, "ca_file re-read: 1 certificate", ""},
		{"both CAs", caB, oldSecret, func(t *testing.T, f reloadFiles) { f.write(t, oldSecret, append(caA.pem, caB.pem...)) },
			false, true, "ca_file re-read: 2 certificates", ""},
		{"secret file missing", caA, oldSecret, func(t *testing.T, f reloadFiles) { breakFile(t, f.secret, "missing") },
			true, true, "ca_file re-read", "reload: plugin_opt_client_secret_file: open %s: no such file or directory; keeping the client secret in use"},
		{"secret file empty", caA, oldSecret, func(t *testing.T, f reloadFiles) { breakFile(t, f.secret, "empty") },
			true, true, "ca_file re-read", "plugin_opt_client_secret_file: %s is empty; keeping the client secret in use"},
		{"secret file unreadable", caA, oldSecret, func(t *testing.T, f reloadFiles) { breakFile(t, f.secret, "unreadable") },
			true, true, "ca_file re-read", "plugin_opt_client_secret_file: read %s: is a directory; keeping"},
		{"CA file missing", caA, oldSecret, func(t *testing.T, f reloadFiles) { breakFile(t, f.ca, "missing") },
			true, true, "client_secret_file re-read", "reload: plugin_opt_ca_file: open %s: no such file or directory; keeping the CAs in use"},
		{"CA file without a certificate", caA, oldSecret, func(t *testing.T, f reloadFiles) { breakFile(t, f.ca, "no certificate") },
			true, true, "client_secret_file re-read", "plugin_opt_ca_file: %s holds no PEM certificate; keeping the CAs in use"},
		{"new CA, broken file", caB, oldSecret, func(t *testing.T, f reloadFiles) { breakFile(t, f.ca, "empty") },
			false, false, "client_secret_file re-read", "plugin_opt_ca_file: %s holds no PEM certificate"},
	}
	for _, blocking := range []bool{false, true} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/blocking=%t", tc.name, blocking), func(t *testing.T) {
				dir := t.TempDir()
				f := reloadFiles{secret: filepath.Join(dir, "secret"), ca: filepath.Join(dir, "ca.pem")}
				f.write(t, oldSecret, caA.pem)
				idp := newReloadIdP(t, tc.serverCA, oldSecret)
				e, logs := reloadEngine(t, blocking, opt("introspection_endpoint", idp.srv.URL+"/introspect"),
					opt("client_id", "broker"), opt("client_secret_file", f.secret), opt("ca_file", f.ca))
				check := func(when string, want bool) {
					t.Helper()
					tok := fmt.Sprintf("tok-%s-%d", when, time.Now().UnixNano())
					if d := e.Authenticate(context.Background(), Request{ClientID: "c", Password: tok}); (d.Result == Allow) != want {
						t.Errorf("%s: %v, want allowed %t; log:\n%s", when, d.Result, want, strings.Join(logs.lines, "\n"))
					}
				}
				if bytes.Equal(tc.serverCA.pem, caA.pem) {
					check("at start-up", true) // the positive control: connects, and keeps the connection
				}
				idp.accept(tc.idpSecret)
				tc.change(t, f)
				check("before the reload", tc.okBefore)
				e.Reload()
				check("after the reload", tc.okAfter)
				if line, level, ok := logs.find(tc.info); !ok || !strings.HasPrefix(line, "reload: ") || level != LevelInfo {
					t.Errorf("line %q (level %v), want an info line holding %q", line, level, tc.info)
				}
				if tc.warn != "" {
					path := map[bool]string{true: f.secret, false: f.ca}[strings.Contains(tc.warn, "client_secret_file")]
					want := fmt.Sprintf(tc.warn, path)
					if _, level, ok := logs.find(want); !ok || level != LevelWarning {
						t.Errorf("no warning %q in:\n%s", want, strings.Join(logs.lines, "\n"))
					}
				}
				for _, s := range []string{oldSecret, newSecret, base64.StdEncoding.EncodeToString([]byte("broker:" + newSecret))} {
					if l, _, ok := logs.find(s); ok {
						t.Errorf("log line holds a secret: %q", l)
					}
				}
			})
		}
	}
}

// reloadEngine builds an engine as the plugin does, from options.
func reloadEngine(t *testing.T, blocking bool, opts ...config.Option) (*Engine, *logRecorder) {
	t.Helper()
	cfg, err := config.Parse(append(opts, opt("negative_cache_ttl", "0"), opt("circuit_breaker_failures", "0")))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logRecorder{}
	e, err := New(cfg, logs, blocking)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e, logs
}

// A reload fetches jwt_issuer's keys again at once, in the background, over the CAs it has just read:
// a JWT of an issuer whose certificate only the new CA vouches for is verified after it.
func TestReloadRefetchesKeys(t *testing.T) {
	caA, caB := newTestCA(t, "CA A"), newTestCA(t, "CA B")
	idp := newReloadIdP(t, caB)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, caA.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	e, logs := reloadEngine(t, false, opt("jwt_verification", "true"), opt("jwt_issuer", idp.srv.URL), opt("ca_file", ca))
	tok := idp.token(t, time.Now().Add(time.Hour), "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if d := e.Authenticate(ctx, Request{ClientID: "c", Password: tok}); d.Result == Allow {
		t.Fatal("allowed before the reload: the issuer's CA is not trusted yet")
	}
	if err := os.WriteFile(ca, caB.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	before := idp.fetches.Load()
	e.Reload()
	if _, _, ok := logs.find("reload: ca_file re-read: 1 certificate; JWKS refetch started"); !ok {
		t.Errorf("no reload line:\n%s", strings.Join(logs.lines, "\n"))
	}
	for deadline := time.Now().Add(5 * time.Second); idp.fetches.Load() == before; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no key fetch after the reload")
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, ok := e.FromMemory(Request{ClientID: "c", Password: tok}); ok {
			break // verified with the keys held, which only the refetch brought
		}
		if time.Now().After(deadline) {
			t.Fatal("the refetched keys are not held")
		}
	}
}

// With neither file nor JWT verification, a reload has nothing to do and says nothing.
func TestReloadWithNothingToDo(t *testing.T) {
	e, logs := reloadEngine(t, false, opt("introspection_endpoint", "https://idp.example/introspect"),
		opt("client_id", "broker"), opt("client_secret", "s"))
	e.Reload()
	if len(logs.lines) != 0 {
		t.Errorf("logged %q", logs.lines)
	}
}

// Reloads while checks run: each check uses one secret or the other, never a mix, and nothing races.
func TestReloadWhileChecksRun(t *testing.T) {
	ca := newTestCA(t, "CA")
	idp := newReloadIdP(t, ca, "first", "second")
	dir := t.TempDir()
	f := reloadFiles{secret: filepath.Join(dir, "secret"), ca: filepath.Join(dir, "ca.pem")}
	f.write(t, "first", ca.pem)
	e, _ := reloadEngine(t, false, opt("introspection_endpoint", idp.srv.URL+"/introspect"),
		opt("client_id", "broker"), opt("client_secret_file", f.secret), opt("ca_file", f.ca))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 20 {
				tok := fmt.Sprintf("tok-%d-%d", w, i)
				if d := e.Authenticate(context.Background(), Request{ClientID: "c", Password: tok}); d.Result != Allow {
					t.Errorf("%s: %v", tok, d.Result)
					return
				}
			}
		})
	}
	for i := range 20 {
		f.write(t, []string{"first", "second"}[i%2], ca.pem)
		e.Reload()
	}
	wg.Wait()
}
