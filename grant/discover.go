package grant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/wellknown"
)

// Endpoints of an authorization server.
type Endpoints struct {
	Issuer        string
	TokenURL      string
	DeviceAuthURL string // empty when the server offers no device authorization grant
}

// maxDocument bounds a discovery document: real ones are a few kB, and a server that streams more is
// not one to wait for.
const maxDocument = 1 << 20

// Discover reads the issuer's OpenID Connect discovery document and, when that is not found (404),
// its RFC 8414 authorization server metadata. It refuses a document whose "issuer" is not the issuer
// asked for (a trailing slash aside): OpenID Connect Discovery §4.3 and RFC 8414 §3.3 require the
// check, so that one server cannot hand out another's endpoints. hc nil means http.DefaultClient.
func Discover(ctx context.Context, hc *http.Client, issuer string) (Endpoints, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	iss, err := url.Parse(issuer)
	if err != nil || (iss.Scheme != "https" && iss.Scheme != "http") || iss.Host == "" {
		return Endpoints{}, fmt.Errorf("the issuer %q is not an http(s) URL", issuer)
	}
	trimmed := strings.TrimSuffix(issuer, "/")
	var doc metadata
	for _, u := range wellknown.URLs(issuer) {
		doc, err = fetchMetadata(ctx, hc, u)
		var pe *ProviderError
		if !errors.As(err, &pe) || pe.StatusCode != http.StatusNotFound {
			break
		}
	}
	if err != nil {
		return Endpoints{}, err
	}
	if strings.TrimSuffix(doc.Issuer, "/") != trimmed {
		return Endpoints{}, fmt.Errorf("the discovery document of %s names another issuer, %q", trimmed, doc.Issuer)
	}
	if err := checkEndpoint("token_endpoint", doc.TokenEndpoint, true); err != nil {
		return Endpoints{}, err
	}
	if err := checkEndpoint("device_authorization_endpoint", doc.DeviceAuthorizationEndpoint, false); err != nil {
		return Endpoints{}, err
	}
	return Endpoints{Issuer: issuer, TokenURL: doc.TokenEndpoint, DeviceAuthURL: doc.DeviceAuthorizationEndpoint}, nil
}

// metadata is what Discover reads of a discovery document.
type metadata struct {
	Issuer                      string `json:"issuer"`
	TokenEndpoint               string `json:"token_endpoint"`
	DeviceAuthorizationEndpoint string `json:"device_authorization_endpoint"`
}

func fetchMetadata(ctx context.Context, hc *http.Client, u string) (metadata, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return metadata{}, fmt.Errorf("discovery request for %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return metadata{}, classify(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return metadata{}, &ProviderError{URL: endpoint(req.URL), StatusCode: resp.StatusCode}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return metadata{}, classify(ctx, &url.Error{Op: "Get", URL: u, Err: err})
	}
	if len(body) > maxDocument {
		return metadata{}, fmt.Errorf("the discovery document at %s is larger than %d bytes", u, maxDocument)
	}
	var doc metadata
	if err := json.Unmarshal(body, &doc); err != nil {
		return metadata{}, fmt.Errorf("the discovery document at %s is not JSON metadata: %w", u, err)
	}
	return doc, nil
}

// checkEndpoint refuses an endpoint that is not an absolute http(s) URL, so that a broken document
// fails here, naming the member, rather than later as an unreachable "URL".
func checkEndpoint(name, v string, required bool) error {
	if v == "" {
		if required {
			return fmt.Errorf("the discovery document has no %s", name)
		}
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("the discovery document's %s %q is not an http(s) URL", name, v)
	}
	return nil
}
