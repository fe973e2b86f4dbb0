// Package blockinghttp is an HTTP/1.1 client transport on blocking sockets, for a caller that runs on a
// thread which must not be parked: Mosquitto's broker thread, when the plugin checks a token on it.
//
// net/http parks the calling goroutine while it waits for the network, and a goroutine called from C
// is locked to the C thread, so every wait stops the broker thread, hands its P away and later wakes
// it again, on top of the hand-offs to the transport's read and write goroutines. Measured on 2.0.11
// that was most of the plugin's cost per cold check. Transport uses blocking sockets instead: the
// broker thread itself writes the request and sleeps in read(2) until the answer arrives, one system
// call each way.
//
// The sockets are driven with Linux system calls and socket options (SO_RCVTIMEO and SO_SNDTIMEO as
// per-call deadlines, MSG_PEEK|MSG_DONTWAIT probes), so the package holds no code on other systems;
// callers there use net/http, which gives the same answers (this package's tests hold the two to it)
// at a higher cost per request.
package blockinghttp
