package jwt

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/logtext"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/wellknown"
)

// Limits of the key set. Unknown kids are what a forger controls, so they may cost at most one fetch per
// minRefetch however many arrive; the periodic refresh drops keys the issuer has withdrawn.
// maxQuotedError bounds what a key fetch error quotes of net/http's text, which may echo what the
// identity provider sent.
const maxQuotedError = 128

const (
	minRefetch    = 5 * time.Second
	refreshEvery  = 15 * time.Minute
	maxRetryWait  = time.Minute
	maxDocument   = 1 << 20 // discovery documents and key sets are a few KiB
	maxKeysPerSet = 100
	maxKeysURL    = 512 // a discovered jwks_uri: it is logged
)

// errRateLimited is why an unknown kid did not cause a fetch: one ran less than minRefetch ago.
var errRateLimited = fmt.Errorf("key set fetched less than %v ago", minRefetch)

// keySet holds the issuer's public signing keys and fetches them again when asked, at most once per
// minRefetch. Readers never wait for a fetch unless they ask to: the keys are an immutable slice behind
// an atomic pointer, replaced whole by a successful fetch and kept as they are by a failed one.
//
// go-oidc's RemoteKeySet does most of this, but it refetches for every unknown kid (a flood of forged
// kids becomes a flood of fetches), has no fetch deadline of its own and cannot be primed at start-up,
// so this is the same idea with those three added, on the same JOSE library.
type keySet struct {
	issuer  string
	jwksURL string // from the configuration, or found by discovery; guarded by mu when discovered
	algs    []string
	timeout time.Duration
	now     func() time.Time
	log     func(warning bool, msg string)
	fetched func(took time.Duration, err error) // nil: nobody asked

	client atomic.Pointer[http.Client] // replaced whole when the TLS settings change

	keys    atomic.Pointer[[]jose.JSONWebKey]
	fetches atomic.Int64 // attempts, for tests and the fetch log line

	mu        sync.Mutex
	inflight  chan struct{} // closed when the running fetch ends; nil when none runs
	lastStart time.Time     // start of the last attempt, successful or not
	lastErr   error
}

// newClient builds the HTTP client for fetches over tlsConfig.
func (s *keySet) newClient(tlsConfig *tls.Config) *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	return &http.Client{Transport: transport, Timeout: s.timeout, CheckRedirect: noDowngrade}
}

// current returns the keys held now (possibly none).
func (s *keySet) current() []jose.JSONWebKey {
	if p := s.keys.Load(); p != nil {
		return *p
	}
	return nil
}

// candidates returns the held keys that may have signed a token with this kid and alg: the one with the
// same kid or, for a token without kid, every key; a key that names its own alg must name this one.
func (s *keySet) candidates(kid, alg string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range s.current() {
		if (kid == "" || k.KeyID == kid) && (k.Algorithm == "" || k.Algorithm == alg) {
			out = append(out, k)
		}
	}
	return out
}

// refresh makes sure a fetch has run since the caller found a key missing: it joins a running fetch,
// starts one if the last began at least minRefetch ago (or force is set), and otherwise answers
// errRateLimited at once. The fetch itself runs in its own goroutine with its own deadline, so a caller
// that gives up (ctx) does not cancel it for the others.
func (s *keySet) refresh(ctx context.Context, force bool) error {
	ch, err := s.start(force)
	if err != nil {
		return err
	}
	select {
	case <-ch:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.lastErr
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for the key fetch: %v", ErrKeysUnavailable, ctx.Err())
	}
}

// start starts a fetch unless one runs (it returns that one's channel) or the last began less than
// minRefetch ago and force is not set (errRateLimited).
func (s *keySet) start(force bool) (chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight != nil {
		return s.inflight, nil
	}
	if !force && !s.lastStart.IsZero() && s.now().Sub(s.lastStart) < minRefetch {
		return nil, errRateLimited
	}
	ch := make(chan struct{})
	s.inflight, s.lastStart = ch, s.now()
	go s.fetch(ch)
	return ch, nil
}

// fetch runs one discovery (when needed) and key set download, stores the keys on success, logs the
// outcome, and releases everyone waiting on ch. A panic (a key set crafted against the JOSE library,
// say) fails the fetch instead of ending the broker.
func (s *keySet) fetch(ch chan struct{}) {
	n := s.fetches.Add(1)
	start := time.Now()
	var keys []jose.JSONWebKey
	var src string
	err := errors.New("jwt: key fetch did not finish")
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: internal error reading the key set", ErrKeysUnavailable)
		}
		if s.fetched != nil {
			s.fetched(time.Since(start), err)
		}
		s.finish(ch, n, keys, src, err)
	}()
	keys, src, err = s.download()
}

// finish stores and logs the outcome of fetch n.
func (s *keySet) finish(ch chan struct{}, n int64, keys []jose.JSONWebKey, src string, err error) {
	before := s.current()
	if err == nil {
		s.keys.Store(&keys)
	}
	s.mu.Lock()
	s.lastErr = err
	s.inflight = nil
	s.mu.Unlock()
	close(ch)
	switch {
	case err != nil:
		s.log(true, fmt.Sprintf("%v (fetch %d; keeping the %d keys already held)", err, n, len(before)))
	case !sameKids(before, keys):
		s.log(false, fmt.Sprintf("jwt: %d signing keys from %s: kid %s", len(keys), src, kidList(keys)))
	}
}

// run primes the key set at start-up and keeps it fresh until ctx ends: it retries a failed first fetch
// with growing waits (start-up never waits for it) and then refetches every refreshEvery.
func (s *keySet) run(ctx context.Context) {
	wait := time.Second
	for {
		err := s.refresh(ctx, true)
		next := refreshEvery
		if err != nil && len(s.current()) == 0 {
			next, wait = wait, min(2*wait, maxRetryWait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}

// download returns the key set and where it came from.
func (s *keySet) download() ([]jose.JSONWebKey, string, error) {
	src, err := s.keysURL()
	if err != nil {
		return nil, "", err
	}
	body, err := s.get(src)
	if err != nil {
		return nil, src, fmt.Errorf("%w: %v", ErrKeysUnavailable, err)
	}
	keys, err := parseKeySet(body, s.algs)
	if err != nil {
		return nil, src, fmt.Errorf("%w: %s: %v", ErrKeysUnavailable, src, err)
	}
	return keys, src, nil
}

// keysURL returns jwks_endpoint, or the jwks_uri of the issuer's discovery document, which it looks up
// once: OpenID Connect discovery first, then RFC 8414 authorization server metadata.
func (s *keySet) keysURL() (string, error) {
	s.mu.Lock()
	u := s.jwksURL
	s.mu.Unlock()
	if u != "" {
		return u, nil
	}
	var errs []string
	for _, doc := range wellknown.URLs(s.issuer) {
		u, err := s.discover(doc)
		if err == nil {
			s.mu.Lock()
			s.jwksURL = u
			s.mu.Unlock()
			return u, nil
		}
		errs = append(errs, err.Error())
	}
	return "", fmt.Errorf("%w: discovery failed: %s", ErrKeysUnavailable, strings.Join(errs, "; "))
}

// discover reads one metadata document. Its issuer must be the configured one exactly (OIDC Discovery
// §4.3, RFC 8414 §3.3): otherwise whoever serves the document could name keys for another issuer.
func (s *keySet) discover(doc string) (string, error) {
	body, err := s.get(doc)
	if err != nil {
		return "", err
	}
	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &meta); err != nil {
		return "", fmt.Errorf("%s: not a JSON metadata document", doc)
	}
	if meta.Issuer != s.issuer {
		return "", fmt.Errorf("%s: issuer %s is not jwt_issuer %q", doc, logtext.Quote(meta.Issuer), s.issuer)
	}
	// The URL is logged and named in errors: printable ASCII (which QuoteToASCII leaves as it is) of a
	// bounded length.
	u, err := url.Parse(meta.JWKSURI)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		len(meta.JWKSURI) > maxKeysURL || strconv.QuoteToASCII(meta.JWKSURI) != `"`+meta.JWKSURI+`"` {
		return "", fmt.Errorf("%s: jwks_uri %s is not an http(s) URL of at most %d printable ASCII bytes",
			doc, logtext.Quote(meta.JWKSURI), maxKeysURL)
	}
	if u.Scheme == "http" && strings.HasPrefix(s.issuer, "https://") {
		return "", fmt.Errorf("%s: jwks_uri %s is plain http for an https issuer", doc, logtext.Quote(meta.JWKSURI))
	}
	return meta.JWKSURI, nil
}

// get fetches one document within the client's timeout and size limit.
func (s *keySet) get(u string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: not a URL", u)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Load().Do(req)
	if err != nil {
		// The *url.Error wrapper names u again; what it wraps may quote what the server sent (a
		// malformed status line), at any length.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s: %s", u, logtext.QuoteN(err.Error(), maxQuotedError))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s: reading the answer: %s", u, logtext.QuoteN(err.Error(), maxQuotedError))
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	case len(body) > maxDocument:
		return nil, fmt.Errorf("%s: answer larger than %d bytes", u, maxDocument)
	}
	return body, nil
}

// parseKeySet reads an RFC 7517 key set and keeps the public signature keys this verifier can use. Keys
// it cannot use (encryption keys, unknown key types or curves, algorithms outside the allow-list) are
// skipped rather than failing the set, as RFC 7517 §5 asks: an issuer may publish keys for other
// clients. A set with no usable key is an error, so the keys already held stay in use.
func parseKeySet(body []byte, algs []string) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, errors.New("not a JSON key set")
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if json.Unmarshal(raw, &k) != nil || !k.Valid() || (k.Use != "" && k.Use != "sig") ||
			(k.Algorithm != "" && !slices.Contains(algs, k.Algorithm)) {
			continue
		}
		if !k.IsPublic() {
			// A published private key is the issuer's mistake; only its public half is of use here.
			k = k.Public()
		}
		keys = append(keys, k)
		if len(keys) == maxKeysPerSet {
			break
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no usable signing key")
	}
	return keys, nil
}

func sameKids(a, b []jose.JSONWebKey) bool {
	return slices.EqualFunc(a, b, func(x, y jose.JSONWebKey) bool { return x.KeyID == y.KeyID })
}

func kidList(keys []jose.JSONWebKey) string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = logtext.Quote(k.KeyID)
	}
	return strings.Join(ids, ", ")
}
