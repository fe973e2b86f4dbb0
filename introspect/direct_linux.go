//go:build linux

package introspect

import (
	"net/http"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/blockinghttp"
)

// blockingTransport returns the transport for Config.BlockingIO, with the TLS settings and limits of
// the Go transport it stands in for.
func blockingTransport(t *http.Transport) http.RoundTripper {
	return &blockinghttp.Transport{
		TLSClientConfig:        t.TLSClientConfig,
		MaxResponseHeaderBytes: t.MaxResponseHeaderBytes,
		IdleConnTimeout:        t.IdleConnTimeout,
	}
}
