//go:build linux

package blockinghttp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"time"
)

// Transport is an http.RoundTripper that makes each request in the calling goroutine, on blocking
// sockets or, with GoPoller, through Go's network poller. It speaks HTTP/1.1 with keep-alive (HTTP/2
// brings nothing to one request at a time on a connection).
//
// It keeps net/http's promises: the request's context deadline, which it requires, bounds the whole
// exchange however the bytes arrive (see blockingSocket), a request is sent again whole, and a kept
// connection the server has closed is noticed before it costs a request (see get). On blocking
// sockets, cancelling the context before its deadline does not cut short an exchange under way: only
// the thread that waits could. Through the poller it does, as with net/http.
//
// Its fields mean what net/http.Transport's of the same name mean, so a caller can copy them from
// the Go transport it replaces. It is safe for concurrent use once in use; the fields must not change.
type Transport struct {
	// GoPoller makes connections through Go's network poller instead of blocking sockets: a goroutine
	// that waits is parked and its thread freed, as with net/http, for goroutines that may be parked
	// (the plugin's own, never the broker thread). The exchange still runs in the calling goroutine,
	// without net/http's read and write goroutines per connection and the hand-offs to them.
	GoPoller bool
	// TLSClientConfig configures https requests; nil is tls.Config's defaults.
	TLSClientConfig *tls.Config
	// MaxResponseHeaderBytes bounds the headers of one answer, interim answers included; 0 is
	// net/http's default of 10 MiB.
	MaxResponseHeaderBytes int64
	// MaxIdleConnsPerHost bounds the kept connections (all to one host, in practice); 0 is net/http's
	// default of 2.
	MaxIdleConnsPerHost int
	// IdleConnTimeout drops a kept connection unused this long; 0 keeps it as long as the server does.
	IdleConnTimeout time.Duration

	mu   sync.Mutex
	idle []*conn
	// closeIdle: CloseIdleConnections was called and no request has come since, so a connection that
	// falls idle is closed rather than kept (as net/http does): a transport a caller has replaced
	// keeps none of the connections its last requests still held.
	closeIdle bool
}

// socket is a connected TCP socket, blocking or polled.
type socket interface {
	net.Conn
	// open says whether an idle connection can carry a request: the server has neither closed it
	// nor sent anything unasked (an HTTP 408, a TLS alert), which a request sent now would be
	// answered with.
	open() bool
}

// conn is one connection and the HTTP state kept over it.
type conn struct {
	sock socket
	// idleSince is when the connection was last put back for reuse.
	idleSince time.Time
	// rw is what HTTP goes through: the socket itself, or the TLS connection over it; br buffers
	// reads from rw for the life of the connection.
	rw  io.ReadWriter
	lim io.LimitedReader // over rw: bounds the headers of one answer
	br  *bufio.Reader    // over lim
	bw  *bufio.Writer    // over rw: each request leaves it empty
	// uncancel, through the poller, ends the watch on the request's context (see watch).
	uncancel func() bool
}

// Close closes the socket. It skips TLS's close_notify: the server learns of the close from TCP.
func (c *conn) Close() error {
	c.release()
	return c.sock.Close()
}

// watch makes the context's end cut short the exchange under way, through the poller: the socket's
// deadline is moved to the past, which wakes the parked goroutine.
func (c *conn) watch(ctx context.Context) {
	if _, ok := c.sock.(polledSocket); ok && ctx.Done() != nil {
		c.uncancel = context.AfterFunc(ctx, func() { c.sock.SetDeadline(time.Unix(1, 0)) })
	}
}

// release ends the watch and says whether the connection is still usable: the context did not end
// while it was watched.
func (c *conn) release() bool {
	if c.uncancel == nil {
		return true
	}
	ok := c.uncancel()
	c.uncancel = nil
	return ok
}

// RoundTrip sends req and returns the answer with its headers read; the body is read from the
// connection as the caller reads it, within the same deadline.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	deadline, ok := req.Context().Deadline()
	if !ok {
		return nil, errors.New("blockinghttp: the request's context has no deadline")
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return nil, fmt.Errorf("blockinghttp: unsupported scheme %q", req.URL.Scheme)
	}
	for attempt := 0; ; attempt++ {
		conn, reused, err := t.get(req, deadline)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(conn, req, deadline)
		if err == nil {
			return resp, nil
		}
		cut := !conn.release()
		conn.Close()
		if cut { // through the poller, the context ended: say so, as net/http does
			return nil, req.Context().Err()
		}
		// The server may close a kept connection while the request is on its way, after get looked:
		// the request then meets a reset or an end of stream before any answer. Like net/http for a
		// request it may replay, try once more on a new connection, with the whole request again.
		if !reused || attempt > 0 || conn.lim.N != t.maxHeaderBytes() || time.Now().After(deadline) {
			return nil, err
		}
		again := rewind(req)
		if again == nil {
			return nil, err
		}
		req = again
	}
}

func (t *Transport) maxHeaderBytes() int64 {
	if t.MaxResponseHeaderBytes > 0 {
		return t.MaxResponseHeaderBytes
	}
	return 10 << 20
}

// rewind returns req with a fresh copy of its body, which the failed attempt consumed, or nil when the
// body cannot be had again.
func rewind(req *http.Request) *http.Request {
	if req.Body == nil || req.Body == http.NoBody {
		return req
	}
	if req.GetBody == nil {
		return nil
	}
	body, err := req.GetBody()
	if err != nil {
		return nil
	}
	again := req.Clone(req.Context())
	again.Body = body
	return again
}

func (t *Transport) exchange(conn *conn, req *http.Request, deadline time.Time) (*http.Response, error) {
	if err := conn.sock.SetDeadline(deadline); err != nil {
		return nil, err
	}
	conn.watch(req.Context())
	// The headers of one answer, interim ones included, may not exceed MaxResponseHeaderBytes, as with
	// net/http. Set before writing: RoundTrip reads an untouched limit as "no byte of an answer came".
	conn.lim.N = t.maxHeaderBytes()
	if err := req.Write(conn.bw); err != nil {
		return nil, err
	}
	if err := conn.bw.Flush(); err != nil {
		return nil, err
	}
	for {
		resp, err := http.ReadResponse(conn.br, req)
		if err != nil && !time.Now().Before(deadline) {
			// A read the deadline cuts in the middle of a line hands ReadResponse the part of the line
			// without the error (bufio.Reader.ReadLine returns one or the other), and it reports a
			// malformed answer: past the deadline, the deadline is the cause.
			return nil, timeoutError{"read"}
		}
		if err != nil {
			return nil, err
		}
		// Interim answers (100 Continue, 103 Early Hints) come before the real one; net/http skips
		// them, and so does this. 101 ends the exchange, as there.
		if resp.StatusCode < 100 || resp.StatusCode > 199 || resp.StatusCode == http.StatusSwitchingProtocols {
			// The body is the caller's to bound, as with net/http.
			conn.lim.N = math.MaxInt64
			resp.Body = &keepBody{ReadCloser: resp.Body, t: t, conn: conn, keep: !resp.Close}
			return resp, nil
		}
	}
}

// get returns a kept connection or dials a new one before the deadline. A kept connection is used only
// if it has been idle less than IdleConnTimeout and the server has not closed it meanwhile: servers
// close idle connections after a few seconds (Node's default is 5 s), and a request sent into a closed
// connection costs a failed write or read and a retry.
func (t *Transport) get(req *http.Request, deadline time.Time) (*conn, bool, error) {
	for {
		t.mu.Lock()
		t.closeIdle = false
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			break
		}
		c := t.idle[n-1]
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		if (t.IdleConnTimeout <= 0 || time.Since(c.idleSince) < t.IdleConnTimeout) && c.sock.open() {
			return c, true, nil
		}
		c.Close()
	}
	https := req.URL.Scheme == "https"
	port := req.URL.Port()
	if port == "" {
		port = map[bool]string{true: "443", false: "80"}[https]
	}
	sock, err := t.dial(req.Context(), req.URL.Hostname(), port, deadline)
	if err != nil {
		return nil, false, err
	}
	c := &conn{sock: sock, rw: sock}
	if https {
		cfg := t.TLSClientConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = req.URL.Hostname()
		}
		tc := tls.Client(sock, cfg)
		// Not HandshakeContext: on cancellation it closes the socket from another goroutine while this
		// one may still read or write it (a file descriptor number the process may have reused by
		// then). The connection's deadline bounds the handshake instead.
		if err := tc.Handshake(); err != nil {
			sock.Close()
			return nil, false, fmt.Errorf("blockinghttp: TLS handshake: %w", err)
		}
		c.rw = tc
	}
	c.lim.R = c.rw
	c.br = bufio.NewReader(&c.lim)
	c.bw = bufio.NewWriter(c.rw)
	return c, false, nil
}

func (t *Transport) dial(ctx context.Context, host, port string, deadline time.Time) (socket, error) {
	if t.GoPoller {
		return dialPolled(ctx, host, port, deadline)
	}
	return dialBlocking(ctx, host, port, deadline)
}

func (t *Transport) maxIdle() int {
	if t.MaxIdleConnsPerHost > 0 {
		return t.MaxIdleConnsPerHost
	}
	return http.DefaultMaxIdleConnsPerHost
}

func (t *Transport) put(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !c.release() || t.closeIdle || len(t.idle) >= t.maxIdle() || c.br.Buffered() > 0 {
		c.Close()
		return
	}
	c.idleSince = time.Now()
	t.idle = append(t.idle, c)
}

// CloseIdleConnections closes the kept connections, and those of requests under way as they end,
// until the next request.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closeIdle = true
	for _, c := range t.idle {
		c.Close()
	}
	t.idle = nil
}

// keepBody returns its connection for reuse once the body has been read to its end.
type keepBody struct {
	io.ReadCloser
	t    *Transport
	conn *conn
	keep bool
	eof  bool
	done bool
}

func (b *keepBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *keepBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	err := b.ReadCloser.Close()
	if b.keep && b.eof && err == nil {
		b.t.put(b.conn)
	} else {
		b.conn.Close()
	}
	return err
}
