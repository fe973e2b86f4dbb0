package wellknown

import (
	"slices"
	"testing"
)

func TestURLs(t *testing.T) {
	for _, tc := range []struct {
		issuer string
		want   []string
	}{
		{"https://idp.example/realms/iot/", []string{
			"https://idp.example/realms/iot/.well-known/openid-configuration",
			"https://idp.example/.well-known/oauth-authorization-server/realms/iot",
		}},
		{"https://idp.example", []string{
			"https://idp.example/.well-known/openid-configuration",
			"https://idp.example/.well-known/oauth-authorization-server",
		}},
		{"https://idp.example/", []string{
			"https://idp.example/.well-known/openid-configuration",
			"https://idp.example/.well-known/oauth-authorization-server",
		}},
	} {
		if got := URLs(tc.issuer); !slices.Equal(got, tc.want) {
			t.Errorf("URLs(%q) = %q, want %q", tc.issuer, got, tc.want)
		}
	}
}
