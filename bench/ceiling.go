package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The ceiling rows answer "how fast could any plugin be?" for the fresh-token rows. With no plugin, each
// client first sends its fresh token to the fake IdP itself, as the cheapest client could (one
// hand-built HTTP/1.1 request on a kept connection, one answer read), and then connects. The
// exchange costs this machine's two cores what it would cost a plugin with no overhead at all: the
// IdP's handling, the request and the answer through the loopback. A plugin's fresh-token row can
// come near its ceiling's rate and cannot pass it.

// ceilingRow returns a row body that runs the connect load with fresh tokens, each one sent to the
// fake IdP by the client before it connects.
func (e *env) ceilingRow() func(context.Context, *broker, time.Duration) rowResult {
	return func(ctx context.Context, b *broker, d time.Duration) rowResult {
		asker, err := newIdPAsker(e.idp.URL)
		if err != nil {
			return rowResult{unit: "conn/s", errors: 1, detail: err.Error()}
		}
		defer asker.close()
		r := e.connectRow(asker.credentials(), false)(ctx, b, d)
		if n := asker.failed.Load(); n > 0 {
			r.errors += n
			r.detail = fmt.Sprintf("%d IdP exchanges failed, the first: %v; %s", n, asker.firstErr.Load(), r.detail)
		}
		return r
	}
}

// idpAsker sends tokens to the fake IdP on kept connections, one exchange at a time on each.
type idpAsker struct {
	addr  string
	head  string // the request up to its Content-Length value
	idle  sync.Pool
	mu    sync.Mutex
	conns []net.Conn // every connection made, to close at the end
	// failed counts exchanges that did not end in a 200 answer; firstErr keeps the first one's error.
	failed   atomic.Int64
	firstErr atomic.Value
}

type idpConn struct {
	net.Conn
	r *bufio.Reader
}

func newIdPAsker(endpoint string) (*idpAsker, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("fake IdP URL: %w", err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte(idpClientID + ":" + idpClientSecret))
	return &idpAsker{addr: u.Host, head: "POST " + u.Path + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nAuthorization: Basic " + auth + "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "}, nil
}

// credentials returns fresh tokens, each one asked about before it is returned. A failed exchange is
// counted and its token returned all the same: the connect does not need it.
func (a *idpAsker) credentials() credentials {
	fresh := freshTokens()
	return func() (string, string, bool) {
		user, token, _ := fresh()
		if err := a.ask(token); err != nil {
			a.failed.Add(1)
			a.firstErr.CompareAndSwap(nil, err)
		}
		return user, token, true
	}
}

func (a *idpAsker) ask(token string) error {
	c, _ := a.idle.Get().(*idpConn)
	if c == nil {
		nc, err := net.DialTimeout("tcp", a.addr, opTimeout)
		if err != nil {
			return fmt.Errorf("dial the fake IdP: %w", err)
		}
		a.mu.Lock()
		a.conns = append(a.conns, nc)
		a.mu.Unlock()
		c = &idpConn{Conn: nc, r: bufio.NewReader(nc)}
	}
	body := "token=" + token
	if err := c.SetDeadline(time.Now().Add(opTimeout)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, a.head+strconv.Itoa(len(body))+"\r\n\r\n"+body); err != nil {
		return fmt.Errorf("write to the fake IdP: %w", err)
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return fmt.Errorf("read the fake IdP's answer: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read the fake IdP's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return errors.New("the fake IdP answered " + resp.Status)
	}
	a.idle.Put(c)
	return nil
}

func (a *idpAsker) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.conns {
		c.Close()
	}
}
