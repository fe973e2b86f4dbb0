//go:build linux

package blockinghttp

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"time"
)

// Transport is an http.RoundTripper that makes each request on a blocking socket in the calling
// goroutine. It speaks HTTP/1.1 with keep-alive (HTTP/2 brings nothing to one request at a time).
//
// It keeps net/http's promises: the request's context deadline, which it requires, bounds the whole
// exchange however the bytes arrive (see conn), a request is sent again whole, and a kept connection
// the server has closed is noticed before it costs a request (see get). Cancelling the context before
// its deadline does not cut short an exchange under way: only the thread that waits could.
//
// Its fields mean what net/http.Transport's of the same name mean, so a caller can copy them from
// the Go transport it replaces. It is safe for concurrent use once in use; the fields must not change.
type Transport struct {
	// TLSClientConfig configures https requests; nil is tls.Config's defaults.
	TLSClientConfig *tls.Config
	// MaxResponseHeaderBytes bounds the headers of one answer, interim answers included; 0 is
	// net/http's default of 10 MiB.
	MaxResponseHeaderBytes int64
	// IdleConnTimeout drops a kept connection unused this long; 0 keeps it as long as the server does.
	IdleConnTimeout time.Duration

	mu   sync.Mutex
	idle []*conn
	// closeIdle: CloseIdleConnections was called and no request has come since, so a connection that
	// falls idle is closed rather than kept (as net/http does): a transport a caller has replaced
	// keeps none of the connections its last requests still held.
	closeIdle bool
}

// maxIdle bounds kept connections: one broker thread uses one at a time.
const maxIdle = 4

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
		conn.Close()
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
	conn.deadline = deadline
	// The headers of one answer, interim ones included, may not exceed MaxResponseHeaderBytes, as with
	// net/http. Set before writing: RoundTrip reads an untouched limit as "no byte of an answer came".
	conn.lim.N = t.maxHeaderBytes()
	w := bufio.NewWriter(conn.rw)
	if err := req.Write(w); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
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
		if (t.IdleConnTimeout <= 0 || time.Since(c.idleSince) < t.IdleConnTimeout) && c.open() {
			return c, true, nil
		}
		c.Close()
	}
	https := req.URL.Scheme == "https"
	port := req.URL.Port()
	if port == "" {
		port = map[bool]string{true: "443", false: "80"}[https]
	}
	c, err := dial(req.Context(), req.URL.Hostname(), port, deadline)
	if err != nil {
		return nil, false, err
	}
	if https {
		cfg := t.TLSClientConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = req.URL.Hostname()
		}
		tc := tls.Client(c, cfg)
		// Not HandshakeContext: on cancellation it closes the socket from another goroutine while this
		// one may still read or write it (a file descriptor number the process may have reused by
		// then). The connection's deadline bounds the handshake instead.
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, false, fmt.Errorf("blockinghttp: TLS handshake: %w", err)
		}
		c.rw = tc
	}
	c.lim.R = c.rw
	c.br = bufio.NewReader(&c.lim)
	return c, false, nil
}

func (t *Transport) put(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closeIdle || len(t.idle) >= maxIdle || c.br.Buffered() > 0 {
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
