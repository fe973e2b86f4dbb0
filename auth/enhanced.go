package auth

import (
	"errors"
	"slices"
	"strings"
)

// oauthBearer is RFC 7628's SASL mechanism name; its Authentication Data frames the token.
const oauthBearer = "OAUTHBEARER"

// ExtendedAuthToken returns the access token an MQTT 5 CONNECT or AUTH carries as Authentication Data
// under method. known is false for a method the operator did not enable (enhanced_auth_method): the
// broker then answers "bad authentication method". For OAUTHBEARER the data is RFC 7628's client
// response; for any other enabled method (Azure Event Grid's OAUTH2-JWT and CUSTOM-JWT, say) it is the
// token itself.
func (e *Engine) ExtendedAuthToken(method string, data []byte) (token string, known bool, err error) {
	if !slices.Contains(e.cfg.EnhancedAuthMethods, method) {
		return "", false, nil
	}
	if method == oauthBearer {
		token, err = bearerToken(data)
		return token, true, err
	}
	return string(data), true, nil
}

// errBearerFraming refuses OAUTHBEARER data that is not RFC 7628 §3.1's client response.
var errBearerFraming = errors.New("OAUTHBEARER data is not an RFC 7628 client response")

// bearerToken reads the token from an RFC 7628 §3.1 client response:
//
//	gs2-header %x01 *(key "=" value %x01) %x01     e.g. "n,a=dev@example.com,\x01auth=Bearer TOKEN\x01\x01"
//
// Channel binding is not supported ("p=" is refused). The auth value's scheme is case-insensitive.
func bearerToken(data []byte) (string, error) {
	s := string(data)
	gs2, pairs, ok := strings.Cut(s, "\x01")
	if !ok || !(strings.HasPrefix(gs2, "n,") || strings.HasPrefix(gs2, "y,")) || !strings.HasSuffix(gs2, ",") ||
		strings.Count(gs2, ",") != 2 {
		return "", errBearerFraming
	}
	// pairs is "k=v\x01" repeated, then the closing "\x01".
	pairs, ok = strings.CutSuffix(pairs, "\x01")
	if !ok || (pairs != "" && !strings.HasSuffix(pairs, "\x01")) {
		return "", errBearerFraming
	}
	token := ""
	for _, kv := range strings.Split(strings.TrimSuffix(pairs, "\x01"), "\x01") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return "", errBearerFraming
		}
		if k != "auth" {
			continue
		}
		scheme, tok, ok := strings.Cut(v, " ")
		if token != "" || !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return "", errBearerFraming
		}
		token = tok
	}
	if token == "" {
		return "", errBearerFraming
	}
	return token, nil
}
