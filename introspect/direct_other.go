//go:build !linux

package introspect

import "net/http"

// directTransport returns t itself: package blockinghttp exists for Linux only, and Mosquitto
// elsewhere is a development broker rather than a fleet's, so requests go through Go's transport,
// which gives the same answers at a higher cost per check (on the broker thread, with
// Config.BlockingIO). Refusing BlockingIO instead would refuse every Mosquitto 2.0 there, for no
// difference in what it decides.
func directTransport(t *http.Transport, _ bool) *http.Transport { return t }
