//go:build linux

package introspect

import (
	"net/http"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/blockinghttp"
)

// directTransport returns the transport that makes each request in the calling goroutine, on
// blocking sockets or through Go's poller (see Config.BlockingIO), with the TLS settings and limits of
// the Go transport it stands in for.
func directTransport(t *http.Transport, blocking bool) *blockinghttp.Transport {
	return &blockinghttp.Transport{
		GoPoller:               !blocking,
		TLSClientConfig:        t.TLSClientConfig,
		MaxResponseHeaderBytes: t.MaxResponseHeaderBytes,
		MaxIdleConnsPerHost:    t.MaxIdleConnsPerHost,
		IdleConnTimeout:        t.IdleConnTimeout,
	}
}
