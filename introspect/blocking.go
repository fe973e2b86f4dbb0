package introspect

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
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
type blockingTransport struct {
	tlsConfig   *tls.Config // nil for http endpoints
	maxResponse int64

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
		// A kept connection the server closed meanwhile fails on first use: try once on a new one.
		if !reused || attempt > 0 || time.Now().After(deadline) {
			return nil, err
		}
	}
}

func (t *blockingTransport) exchange(conn *blockingConn, req *http.Request, deadline time.Time) (*http.Response, error) {
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	w := bufio.NewWriter(conn.rw)
	if err := req.Write(w); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	// One response may not exceed the header cap plus the body cap (which the caller enforces again).
	conn.lim.N = t.maxResponse
	resp, err := http.ReadResponse(conn.br, req)
	if err != nil {
		return nil, err
	}
	resp.Body = &keepBody{ReadCloser: resp.Body, t: t, conn: conn, keep: !resp.Close}
	return resp, nil
}

// get returns a kept connection or dials a new one before the deadline.
func (t *blockingTransport) get(req *http.Request, deadline time.Time) (*blockingConn, bool, error) {
	t.mu.Lock()
	if n := len(t.idle); n > 0 {
		c := t.idle[n-1]
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		return c, true, nil
	}
	t.mu.Unlock()
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
		if err := tc.HandshakeContext(req.Context()); err != nil {
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

// blockingConn is a TCP connection on a blocking socket, with deadlines enforced by the kernel
// (SO_RCVTIMEO, SO_SNDTIMEO). It implements net.Conn so that crypto/tls can run over it.
type blockingConn struct {
	fd     int
	local  net.Addr
	remote net.Addr
	once   sync.Once
	// rw is what HTTP goes through: the socket itself, or the TLS connection over it; br buffers
	// reads from rw for the life of the connection.
	rw  io.ReadWriteCloser
	lim io.LimitedReader // over rw: bounds what one response may send, headers included
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
	c := &blockingConn{fd: fd, remote: &net.TCPAddr{IP: ip, Port: p}}
	c.rw = c
	if err := c.SetDeadline(deadline); err != nil {
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
		n, err := syscall.Read(c.fd, p)
		switch {
		case err == syscall.EINTR:
			continue
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
		n, err := syscall.Write(c.fd, p[written:])
		switch {
		case err == syscall.EINTR:
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

// Close closes the socket once. It skips TLS's close_notify: the IdP learns of the close from TCP,
// and tls.Conn.Close would call back into this method.
func (c *blockingConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() { err = syscall.Close(c.fd) })
	return err
}

func (c *blockingConn) LocalAddr() net.Addr  { return c.local }
func (c *blockingConn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline turns an absolute deadline into the socket's receive and send timeouts.
func (c *blockingConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *blockingConn) SetReadDeadline(t time.Time) error {
	return c.setTimeout(syscall.SO_RCVTIMEO, t)
}

func (c *blockingConn) SetWriteDeadline(t time.Time) error {
	return c.setTimeout(syscall.SO_SNDTIMEO, t)
}

func (c *blockingConn) setTimeout(opt int, t time.Time) error {
	d := time.Until(t)
	if t.IsZero() {
		d = 0 // no timeout
	} else if d <= 0 {
		d = time.Microsecond // already past: fail at once rather than wait forever
	}
	tv := syscall.NsecToTimeval(d.Nanoseconds())
	if err := syscall.SetsockoptTimeval(c.fd, syscall.SOL_SOCKET, opt, &tv); err != nil {
		return fmt.Errorf("introspect: set socket timeout: %w", err)
	}
	return nil
}
