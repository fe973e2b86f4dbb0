package grant

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDiscover(t *testing.T) {
	doc := func(issuer string) string {
		return `{"issuer":"` + issuer + `","token_endpoint":"{URL}/token","device_authorization_endpoint":"{URL}/device"}`
	}
	cases := []struct {
		name string
		// docs maps a path to the document served there, {URL} standing for the server's URL; other
		// paths are 404, and the document "503" is an answer 503.
		docs    map[string]string
		path    string // the issuer's path
		slash   bool   // ask for the issuer with a trailing slash
		want    bool   // endpoints found
		noDev   bool   // ... without a device endpoint
		wantErr string
		trans   bool
	}{
		{name: "openid-configuration", docs: map[string]string{"/.well-known/openid-configuration": doc("{URL}")}, want: true},
		{name: "trailing slash asked", slash: true, docs: map[string]string{"/.well-known/openid-configuration": doc("{URL}")}, want: true},
		{name: "trailing slash in document", docs: map[string]string{"/.well-known/openid-configuration": doc("{URL}/")}, want: true},
		{name: "issuer with a path", path: "/realms/dev", docs: map[string]string{"/realms/dev/.well-known/openid-configuration": doc("{URL}/realms/dev")}, want: true},
		{name: "RFC 8414 fallback", docs: map[string]string{"/.well-known/oauth-authorization-server": doc("{URL}")}, want: true},
		{name: "RFC 8414 fallback with a path", path: "/tenant", docs: map[string]string{"/.well-known/oauth-authorization-server/tenant": doc("{URL}/tenant")}, want: true},
		{name: "no device endpoint", docs: map[string]string{"/.well-known/openid-configuration": `{"issuer":"{URL}","token_endpoint":"{URL}/token"}`}, want: true, noDev: true},
		{name: "issuer mismatch", docs: map[string]string{"/.well-known/openid-configuration": doc("https://evil.example")}, wantErr: "names another issuer"},
		{name: "neither document", docs: map[string]string{}, wantErr: "answered HTTP 404"},
		{name: "server error", docs: map[string]string{"/.well-known/openid-configuration": "503"}, wantErr: "answered HTTP 503", trans: true},
		{name: "garbage JSON", docs: map[string]string{"/.well-known/openid-configuration": "<html>"}, wantErr: "not JSON metadata"},
		{name: "no token endpoint", docs: map[string]string{"/.well-known/openid-configuration": `{"issuer":"{URL}"}`}, wantErr: "no token_endpoint"},
		{name: "token endpoint not a URL", docs: map[string]string{"/.well-known/openid-configuration": `{"issuer":"{URL}","token_endpoint":"/token"}`}, wantErr: "not an http(s) URL"},
		{name: "device endpoint not http", docs: map[string]string{"/.well-known/openid-configuration": `{"issuer":"{URL}","token_endpoint":"{URL}/t","device_authorization_endpoint":"file:///x"}`}, wantErr: "not an http(s) URL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var srv *httptest.Server
			srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				d, ok := tc.docs[r.URL.Path]
				if !ok {
					http.NotFound(w, r)
					return
				}
				if d == "503" {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.Write([]byte(strings.ReplaceAll(d, "{URL}", srv.URL)))
			}))
			defer srv.Close()
			issuer := srv.URL + tc.path
			if tc.slash {
				issuer += "/"
			}
			ep, err := Discover(context.Background(), srv.Client(), issuer)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if IsTransient(err) != tc.trans {
					t.Errorf("IsTransient = %v, want %v", !tc.trans, tc.trans)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := Endpoints{Issuer: issuer, TokenURL: srv.URL + "/token", DeviceAuthURL: srv.URL + "/device"}
			if tc.noDev {
				want.DeviceAuthURL = ""
			}
			if ep != want {
				t.Errorf("got %+v, want %+v", ep, want)
			}
		})
	}
}

func TestDiscoverUnreachable(t *testing.T) {
	u := closedURL(t)
	_, err := Discover(context.Background(), nil, u)
	var ue *UnreachableError
	if !errors.As(err, &ue) || !IsTransient(err) {
		t.Fatalf("err = %v, want a transient UnreachableError", err)
	}
	if want := "cannot reach the identity provider at " + u + "/.well-known/openid-configuration: "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %q, want it to start %q", err, want)
	}
}

func TestDiscoverBadIssuer(t *testing.T) {
	for _, issuer := range []string{"", "idp.example", "ftp://idp.example", "https://"} {
		if _, err := Discover(context.Background(), nil, issuer); err == nil || !strings.Contains(err.Error(), "not an http(s) URL") {
			t.Errorf("Discover(%q) err = %v", issuer, err)
		}
	}
}
