//go:build linux

package blockinghttp

import (
	"context"
	"net"
	"syscall"
	"time"
)

// polledSocket is a TCP connection through Go's network poller (Transport.GoPoller): a goroutine that
// waits on it is parked, as with net/http.
type polledSocket struct {
	*net.TCPConn
}

func dialPolled(ctx context.Context, host, port string, deadline time.Time) (polledSocket, error) {
	d := net.Dialer{Deadline: deadline}
	nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return polledSocket{}, err
	}
	return polledSocket{nc.(*net.TCPConn)}, nil
}

// open is blockingSocket.open on the poller's descriptor: one non-blocking recv(2) that peeks.
func (s polledSocket) open() bool {
	rc, err := s.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		for {
			_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err != syscall.EINTR {
				open = err == syscall.EAGAIN
				return true // done: never wait for readability
			}
		}
	})
	return err == nil && open
}
