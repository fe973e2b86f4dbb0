package introspect

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
	"os"
	"sync"
	"syscall"
	"time"
)

// blockingTransport is the http.RoundTripper for checks that run on Mosquitto 2.0's broker thread.
//
// net/http parks the calling goroutine while it waits for the network, and a goroutine called from C
// is locked to the C thread, so every wait stops the broker thread, hands its P away and later wakes
// it again, on top of the hand-offs to the transport's read and write goroutines. Measured on 2.0.11
// that was most of the plugin's cost per cold check. This transport uses blocking sockets instead: the
// broker thread itself writes the request and sleeps in read(2) until the answer arrives, one system
// call each way. It speaks HTTP/1.1 with keep-alive (HTTP/2 brings nothing to one request at a time).
//
// It must keep net/http's promises too: the request's deadline bounds the whole exchange however the
// bytes arrive (see blockingConn), a request is sent again whole, and a kept connection the server has
// closed is noticed before it costs a check (see get).
type blockingTransport struct {
	tlsConfig *tls.Config // nil for http endpoints

	mu   sync.Mutex
	idle []*blockingConn
}

// maxIdleBlocking bounds kept connections: one broker thread uses one at a time.
const maxIdleBlocking = 4

func (t *blockingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	deadline, ok := req.Context().Deadline()
	if !ok {
		return nil, errors.New("introspect: blocking transport needs a deadline")
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
		if !reused || attempt > 0 || conn.lim.N != maxResponseHeaderBytes || time.Now().After(deadline) {
			return nil, err
		}
		again := rewind(req)
		if again == nil {
			return nil, err
		}
		req = again
	}
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

func (t *blockingTransport) exchange(conn *blockingConn, req *http.Request, deadline time.Time) (*http.Response, error) {
	conn.deadline = deadline
	// The headers of one answer, interim ones included, may not exceed maxResponseHeaderBytes, as with
	// net/http's MaxResponseHeaderBytes. Set before writing: RoundTrip reads an untouched limit as "no
	// byte of an answer came".
	conn.lim.N = maxResponseHeaderBytes
	w := bufio.NewWriter(conn.rw)
	if err := req.Write(w); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	for {
		resp, err := http.ReadResponse(conn.br, req)
		if err != nil {
			return nil, err
		}
		// Interim answers (100 Continue, 103 Early Hints) come before the real one; net/http skips
		// them, and so does this. 101 ends the exchange, as there.
		if resp.StatusCode < 100 || resp.StatusCode > 199 || resp.StatusCode == http.StatusSwitchingProtocols {
			// The body is the caller's to bound (Introspect reads at most MaxBodyBytes+1 and drains at
			// most drainLimit), as with net/http.
			conn.lim.N = math.MaxInt64
			resp.Body = &keepBody{ReadCloser: resp.Body, t: t, conn: conn, keep: !resp.Close}
			return resp, nil
		}
	}
}

// get returns a kept connection or dials a new one before the deadline. A kept connection is used only
// if it has been idle less than idleConnTimeout (as net/http's transport) and the server has not closed
// it meanwhile: IdPs close idle connections after a few seconds (Node's default is 5 s), and a request
// sent into a closed connection costs a failed write or read and a retry.
func (t *blockingTransport) get(req *http.Request, deadline time.Time) (*blockingConn, bool, error) {
	for {
		t.mu.Lock()
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			break
		}
		c := t.idle[n-1]
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		if time.Since(c.idleSince) < idleConnTimeout && c.open() {
			return c, true, nil
		}
		c.Close()
	}
	port := req.URL.Port()
	if port == "" {
		port = map[bool]string{true: "443", false: "80"}[t.tlsConfig != nil]
	}
	c, err := dialBlocking(req.Context(), req.URL.Hostname(), port, deadline)
	if err != nil {
		return nil, false, err
	}
	if t.tlsConfig != nil {
		cfg := t.tlsConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = req.URL.Hostname()
		}
		tc := tls.Client(c, cfg)
		// Not HandshakeContext: on cancellation it closes the socket from another goroutine while this
		// one may still read or write it (a file descriptor number the process may have reused by
		// then). The connection's deadline bounds the handshake instead.
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, false, err
		}
		c.rw = tc
	}
	c.lim.R = c.rw
	c.br = bufio.NewReader(&c.lim)
	return c, false, nil
}

func (t *blockingTransport) put(c *blockingConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.idle) >= maxIdleBlocking || c.br.Buffered() > 0 {
		c.Close()
		return
	}
	c.idleSince = time.Now()
	t.idle = append(t.idle, c)
}

// CloseIdleConnections closes the kept connections.
func (t *blockingTransport) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.idle {
		c.Close()
	}
	t.idle = nil
}

// keepBody returns its connection for reuse once the body has been read to its end.
type keepBody struct {
	io.ReadCloser
	t    *blockingTransport
	conn *blockingConn
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

// blockingConn is a TCP connection on a blocking socket. It implements net.Conn so that crypto/tls can
// run over it.
//
// Its deadline is absolute and bounds everything done on it, however the peer spreads its bytes: before
// each read(2), write(2) or connect(2) the time left is set as the socket's SO_RCVTIMEO or SO_SNDTIMEO,
// so an IdP that sends one byte at a time is cut off at the deadline, not after one timeout per byte.
// That is one setsockopt(2) per such call (well under a microsecond; a check makes two or three).
type blockingConn struct {
	fd       int
	local    net.Addr
	remote   net.Addr
	once     sync.Once
	deadline time.Time // zero: no deadline
	// idleSince is when the connection was last put back for reuse.
	idleSince time.Time
	// rw is what HTTP goes through: the socket itself, or the TLS connection over it; br buffers
	// reads from rw for the life of the connection.
	rw  io.ReadWriteCloser
	lim io.LimitedReader // over rw: bounds the headers of one answer
	br  *bufio.Reader    // over lim
}

// dialBlocking resolves host and connects before the deadline.
func dialBlocking(ctx context.Context, host, port string, deadline time.Time) (*blockingConn, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for _, ip := range ips {
		c, err := connectBlocking(ip.IP, port, deadline)
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func connectBlocking(ip net.IP, port string, deadline time.Time) (*blockingConn, error) {
	p, err := net.LookupPort("tcp", port)
	if err != nil {
		return nil, err
	}
	var sa syscall.Sockaddr
	family := syscall.AF_INET
	if ip4 := ip.To4(); ip4 != nil {
		a := &syscall.SockaddrInet4{Port: p}
		copy(a.Addr[:], ip4)
		sa = a
	} else {
		family = syscall.AF_INET6
		a := &syscall.SockaddrInet6{Port: p}
		copy(a.Addr[:], ip.To16())
		sa = a
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	c := &blockingConn{fd: fd, remote: &net.TCPAddr{IP: ip, Port: p}, deadline: deadline}
	c.rw = c
	if err := c.arm(syscall.SO_SNDTIMEO, "connect"); err != nil {
		c.Close()
		return nil, err
	}
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	for {
		err = syscall.Connect(fd, sa) // SO_SNDTIMEO bounds connect(2) on Linux
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		c.Close()
		if err == syscall.EINPROGRESS || err == syscall.EAGAIN {
			return nil, timeoutError{"connect"}
		}
		return nil, os.NewSyscallError("connect", err)
	}
	if la, err := syscall.Getsockname(fd); err == nil {
		switch a := la.(type) {
		case *syscall.SockaddrInet4:
			c.local = &net.TCPAddr{IP: a.Addr[:], Port: a.Port}
		case *syscall.SockaddrInet6:
			c.local = &net.TCPAddr{IP: a.Addr[:], Port: a.Port}
		}
	}
	return c, nil
}

// timeoutError is what a read, write or connect past the deadline returns; it is a net.Error so
// callers recognise the timeout.
type timeoutError struct{ op string }

func (e timeoutError) Error() string   { return "introspect: " + e.op + " timed out" }
func (e timeoutError) Timeout() bool   { return true }
func (e timeoutError) Temporary() bool { return true }

// Read and Write are the raw socket; c.rw is what the transport uses (TLS or not).
func (c *blockingConn) Read(p []byte) (int, error) {
	for {
		if err := c.arm(syscall.SO_RCVTIMEO, "read"); err != nil {
			return 0, err
		}
		n, err := syscall.Read(c.fd, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN && time.Now().Before(c.deadline):
			continue // the kernel counts in clock ticks and may wake a little early
		case err == syscall.EAGAIN:
			return 0, timeoutError{"read"}
		case err != nil:
			return 0, os.NewSyscallError("read", err)
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (c *blockingConn) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		if err := c.arm(syscall.SO_SNDTIMEO, "write"); err != nil {
			return written, err
		}
		n, err := syscall.Write(c.fd, p[written:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN && time.Now().Before(c.deadline):
			continue
		case err == syscall.EAGAIN:
			return written, timeoutError{"write"}
		case err != nil:
			return written, os.NewSyscallError("write", err)
		}
		written += n
	}
	return written, nil
}

// open says whether an idle connection can carry a request: the server has neither closed it nor sent
// anything unasked (an HTTP 408, a TLS alert), which a request sent now would be answered with. One
// non-blocking recv(2) that peeks, so nothing is consumed.
func (c *blockingConn) open() bool {
	var b [1]byte
	for {
		_, _, err := syscall.Recvfrom(c.fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == syscall.EINTR {
			continue
		}
		// EAGAIN: nothing to read and no end of stream. Otherwise the server has ended the stream
		// (0 bytes), sent bytes nobody asked for, or reset the connection.
		return err == syscall.EAGAIN
	}
}

// Close closes the socket once. It skips TLS's close_notify: the IdP learns of the close from TCP,
// and tls.Conn.Close would call back into this method.
func (c *blockingConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() { err = syscall.Close(c.fd) })
	return err
}

func (c *blockingConn) LocalAddr() net.Addr  { return c.local }
func (c *blockingConn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the deadline of every later read and write; crypto/tls is its only other caller.
func (c *blockingConn) SetDeadline(t time.Time) error {
	c.deadline = t
	return nil
}

// SetReadDeadline and SetWriteDeadline set the one deadline both directions share: the transport never
// needs them apart.
func (c *blockingConn) SetReadDeadline(t time.Time) error  { return c.SetDeadline(t) }
func (c *blockingConn) SetWriteDeadline(t time.Time) error { return c.SetDeadline(t) }

// arm sets the socket's timeout opt (SO_RCVTIMEO or SO_SNDTIMEO) to the time left before the deadline,
// or fails at once (as op) when none is left.
func (c *blockingConn) arm(opt int, op string) error {
	var tv syscall.Timeval // zero: wait without limit
	if !c.deadline.IsZero() {
		d := time.Until(c.deadline)
		if d <= 0 {
			return timeoutError{op}
		}
		// At least a microsecond: a zero timeval would mean no timeout at all.
		tv = syscall.NsecToTimeval(max(d, time.Microsecond).Nanoseconds())
	}
	if err := syscall.SetsockoptTimeval(c.fd, syscall.SOL_SOCKET, opt, &tv); err != nil {
		return fmt.Errorf("introspect: set socket timeout: %w", err)
	}
	return nil
}
