// Package wellknown says where an authorization server publishes its metadata, for the plugin's JWT
// key discovery and the device-side command's endpoint discovery alike.
package wellknown

import (
	"net/url"
	"strings"
)

// URLs lists where an issuer's metadata may be, in the order to try them: OpenID Connect Discovery 1.0
// §4 appends the well-known path to the issuer; RFC 8414 §3.1 inserts it between host and path. A
// trailing slash of the issuer counts for neither.
func URLs(issuer string) []string {
	base := strings.TrimSuffix(issuer, "/")
	out := []string{base + "/.well-known/openid-configuration"}
	if u, err := url.Parse(base); err == nil {
		path := u.Path
		u.Path = "/.well-known/oauth-authorization-server" + path
		u.RawPath = ""
		out = append(out, u.String())
	}
	return out
}
