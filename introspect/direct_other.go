//go:build !linux

package introspect

import "net/http"

// blockingTransport returns t itself: package blockinghttp exists for Linux only, and Mosquitto
// elsewhere is a development broker rather than a fleet's, so Config.BlockingIO falls back to Go's
// transport, which gives the same answers at a higher cost per check on the broker thread. Refusing
// the option instead would refuse every Mosquitto 2.0 there, for no difference in what it decides.
func blockingTransport(t *http.Transport) http.RoundTripper { return t }
