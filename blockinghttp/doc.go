// Package blockinghttp is an HTTP/1.1 client transport that makes each exchange in the calling
// goroutine, without the read and write goroutines net/http keeps per connection.
//
// Its first use is a caller that runs on a thread which must not be parked: Mosquitto's broker
// thread, when the plugin checks a token on it. net/http parks the calling goroutine while it waits
// for the network, and a goroutine called from C is locked to the C thread, so every wait stops the
// broker thread, hands its P away and later wakes it again, on top of the hand-offs to the
// transport's read and write goroutines. Measured on 2.0.11 that was most of the plugin's cost per
// cold check. Transport uses blocking sockets there: the broker thread itself writes the request and
// sleeps in read(2) until the answer arrives, one system call each way.
//
// With Transport.GoPoller the same exchange goes through Go's network poller instead, for the
// plugin's own goroutines (Mosquitto 2.1's delayed checks): they may be parked, and what they save
// is the two hand-offs per request (about 10 µs of broker CPU per check, measured by the bench's
// fresh-token rows on 2.1.2).
//
// The blocking sockets are driven with Linux system calls and socket options (SO_RCVTIMEO and
// SO_SNDTIMEO as per-call deadlines, MSG_PEEK|MSG_DONTWAIT probes), so the package holds no code on
// other systems; callers there use net/http, which gives the same answers (this package's tests hold
// the transports to it) at a higher cost per request.
package blockinghttp
