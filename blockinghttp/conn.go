//go:build linux

package blockinghttp

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// blockingSocket is a TCP connection on a blocking socket. It implements net.Conn so that crypto/tls
// can run over it.
//
// Its deadline is absolute and bounds everything done on it, however the peer spreads its bytes: before
// each read(2) or write(2) the time left is set as the socket's SO_RCVTIMEO or SO_SNDTIMEO, so a server
// that sends one byte at a time is cut off at the deadline, not after one timeout per byte. That is one
// setsockopt(2) per such call (well under a microsecond; a request makes two or three).
//
// The thread may be signalled while it waits: the plugin wakes Mosquitto 2.1's broker thread with a
// signal whose handler has SA_RESTART. That does not restart the calls made here: with a socket timeout
// set, read(2) and write(2) fail with EINTR, and ppoll(2) always does. Each is made again with the time
// then left. connect(2) must not be made again, so it never waits (see connect).
type blockingSocket struct {
	fd       int
	local    net.Addr
	remote   net.Addr
	once     sync.Once
	deadline time.Time // zero: no deadline
}

// dialBlocking resolves host and connects to port before the deadline.
func dialBlocking(ctx context.Context, host, port string, deadline time.Time) (*blockingSocket, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for _, ip := range ips {
		c, err := dialIP(ip.IP, port, deadline)
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// dialIP connects to ip and port before the deadline.
func dialIP(ip net.IP, port string, deadline time.Time) (*blockingSocket, error) {
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
	// Non-blocking until connected: see connect.
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, syscall.IPPROTO_TCP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	c := &blockingSocket{fd: fd, remote: &net.TCPAddr{IP: ip, Port: p}, deadline: deadline}
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	if err := c.connect(sa); err != nil {
		c.Close()
		return nil, err
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

// connect connects the socket to sa before the deadline and makes it blocking. A blocking connect(2)
// that a signal interrupts fails with EINTR while the handshake goes on in the kernel; called again, it
// fails with EALREADY, or waits anew for as long as the socket's timeout, past the deadline. So the
// socket is non-blocking here and the thread waits for the handshake in ppoll(2), which a signal
// interrupts harmlessly, then reads its result as SO_ERROR.
func (c *blockingSocket) connect(sa syscall.Sockaddr) error {
	switch err := syscall.Connect(c.fd, sa); err {
	case nil:
	case syscall.EINPROGRESS, syscall.EINTR: // EINTR cannot come without a wait, but means the same
		if err := c.awaitConnected(); err != nil {
			return err
		}
		errno, err := syscall.GetsockoptInt(c.fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
		if err != nil {
			return os.NewSyscallError("getsockopt", err)
		}
		if errno != 0 {
			return os.NewSyscallError("connect", syscall.Errno(errno))
		}
	default:
		return os.NewSyscallError("connect", err)
	}
	if err := syscall.SetNonblock(c.fd, false); err != nil {
		return os.NewSyscallError("fcntl", err)
	}
	return nil
}

// awaitConnected waits in ppoll(2) until the handshake has ended, well or not, or the deadline has
// passed. A signal ends ppoll(2) early whatever its handler's flags; the wait then goes on with the time
// left.
func (c *blockingSocket) awaitConnected() error {
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLOUT}}
	for {
		var left *unix.Timespec // nil: no limit
		if !c.deadline.IsZero() {
			d := time.Until(c.deadline)
			if d <= 0 {
				return timeoutError{"connect"}
			}
			ts := unix.NsecToTimespec(d.Nanoseconds())
			left = &ts
		}
		n, err := unix.Ppoll(fds, left, nil)
		switch {
		case err == unix.EINTR:
		case err != nil:
			return os.NewSyscallError("ppoll", err)
		case n > 0:
			return nil
		}
		// Interrupted, or the time is up: the deadline is looked at again.
	}
}

// timeoutError is what a read, write or connect past the deadline returns; it is a net.Error so
// callers recognise the timeout.
type timeoutError struct{ op string }

func (e timeoutError) Error() string   { return "blockinghttp: " + e.op + " timed out" }
func (e timeoutError) Timeout() bool   { return true }
func (e timeoutError) Temporary() bool { return true }

func (c *blockingSocket) Read(p []byte) (int, error) {
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

func (c *blockingSocket) Write(p []byte) (int, error) {
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
func (c *blockingSocket) open() bool {
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

// Close closes the socket once. It skips TLS's close_notify: the server learns of the close from TCP,
// and tls.Conn.Close would call back into this method. An EINTR from close(2) is not retried: Linux has
// released the descriptor by then, and its number may already be another thread's.
func (c *blockingSocket) Close() error {
	err := net.ErrClosed
	c.once.Do(func() { err = syscall.Close(c.fd) })
	return err
}

func (c *blockingSocket) LocalAddr() net.Addr  { return c.local }
func (c *blockingSocket) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the deadline of every later read and write; crypto/tls is its only other caller.
func (c *blockingSocket) SetDeadline(t time.Time) error {
	c.deadline = t
	return nil
}

// SetReadDeadline and SetWriteDeadline set the one deadline both directions share: the transport never
// needs them apart.
func (c *blockingSocket) SetReadDeadline(t time.Time) error  { return c.SetDeadline(t) }
func (c *blockingSocket) SetWriteDeadline(t time.Time) error { return c.SetDeadline(t) }

// arm sets the socket's timeout opt (SO_RCVTIMEO or SO_SNDTIMEO) to the time left before the deadline,
// or fails at once (as op) when none is left.
func (c *blockingSocket) arm(opt int, op string) error {
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
		return fmt.Errorf("blockinghttp: set socket timeout: %w", err)
	}
	return nil
}
