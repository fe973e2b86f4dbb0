//go:build linux

package blockinghttp

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The tests in this file hold Transport to net/http's: the same servers, misbehaving the way real ones
// do, must give the same outcome on both, side by side in one test.

// transports are the transports compared, by name: net/http, and Transport on blocking sockets and
// through Go's poller.
var transports = []string{"net/http", "blocking", "polled"}

// Limits every transport is given, as package introspect gives them.
const (
	testMaxHeaderBytes  = 64 << 10
	testIdleConnTimeout = 90 * time.Second
)

// newTransport returns the transport called name, set up as introspect sets it up, closed at the end
// of the test.
func newTransport(t testing.TB, name string) http.RoundTripper {
	var rt interface {
		http.RoundTripper
		CloseIdleConnections()
	}
	switch name {
	case "net/http":
		rt = &http.Transport{MaxResponseHeaderBytes: testMaxHeaderBytes, IdleConnTimeout: testIdleConnTimeout}
	case "blocking", "polled":
		rt = &Transport{GoPoller: name == "polled", MaxResponseHeaderBytes: testMaxHeaderBytes, IdleConnTimeout: testIdleConnTimeout}
	}
	t.Cleanup(rt.CloseIdleConnections)
	return rt
}

// testForm is the body of a request: an introspection request's form, whose size does not matter.
const testForm = "token=tok-3xT7.Zq_9&token_type_hint=access_token"

// post sends form to url over rt as introspect does, a POST the transport may send again, and reads
// the whole answer within timeout. The outcome is what a caller can tell apart: the status and body of
// an answer read to its end, a timeout, or another error.
func post(t testing.TB, rt http.RoundTripper, url, form string, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header["Idempotency-Key"] = nil // marks the request as safe to send again; not sent
	resp, err := rt.RoundTrip(req)
	if err == nil {
		var body []byte
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			return fmt.Sprintf("%d %s", resp.StatusCode, body)
		}
	}
	t.Logf("%T: %v", rt, err) // the transports' messages differ, so only their class is compared
	if ne := net.Error(nil); errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "error"
}

// jsonReply answers every request with status and body as application/json.
func jsonReply(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

// answer is how a scripted IdP answers one request.
type answer struct {
	status  string   // status line without CRLF; "" is "HTTP/1.1 200 OK"
	interim bool     // a 100 Continue first
	headers []string // header lines besides the framing
	body    string
	framing framing
	cut     cut
	delay   time.Duration // before answering
	// trickle sends the answer one byte per trickle, from its first byte or, with trickleBody, from
	// the body's.
	trickle     time.Duration
	trickleBody bool
	// idleClose closes the connection when no next request has come this long after the answer.
	idleClose time.Duration
}

type framing int

const (
	contentLength framing = iota
	chunked
	closeDelimited // neither length nor chunking: the body ends when the connection does
	framings
)

// cut is where the server drops the connection.
type cut int

const (
	noCut              cut = iota
	cutBeforeAnswer        // reads the request and closes
	cutAfterStatus         // the status line only
	cutAfterHeaders        // the headers, none of the body
	cutMidBody             // half the body
	cutAfterAnswer         // the whole answer, then a close the headers did not announce
	resetAfterRequest      // reads the request and resets (SO_LINGER 0)
	resetDuringRequest     // resets after the first KiB of the request, while the client still writes
	cuts
)

// scriptedIdP is a raw TCP server that answers its k-th request (counting requests it read, on any
// connection) with script[min(k, len-1)], so a request a client sends again meets the next answer.
type scriptedIdP struct {
	ln     net.Listener
	script []answer
	served atomic.Int32 // requests read
	conns  atomic.Int32 // connections accepted
	done   chan struct{}
	wg     sync.WaitGroup

	mu   sync.Mutex
	open map[net.Conn]bool
}

func newScriptedIdP(t testing.TB, script ...answer) *scriptedIdP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedIdP{ln: ln, script: script, done: make(chan struct{}), open: map[net.Conn]bool{}}
	s.wg.Go(s.accept)
	t.Cleanup(s.close)
	return s
}

func (s *scriptedIdP) URL() string { return "http://" + s.ln.Addr().String() + "/introspect" }

func (s *scriptedIdP) close() {
	close(s.done)
	s.ln.Close()
	s.mu.Lock()
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *scriptedIdP) accept() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.conns.Add(1)
		s.mu.Lock()
		s.open[conn] = true
		s.mu.Unlock()
		s.wg.Go(func() {
			s.serve(conn.(*net.TCPConn))
			s.mu.Lock()
			delete(s.open, conn)
			s.mu.Unlock()
		})
	}
}

// serve answers requests on one connection until the script or the client closes it.
func (s *scriptedIdP) serve(conn *net.TCPConn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	idle := time.Duration(0)
	for {
		if idle > 0 {
			conn.SetReadDeadline(time.Now().Add(idle))
		}
		if _, err := br.Peek(1); err != nil {
			return
		}
		conn.SetReadDeadline(time.Time{})
		a := s.script[min(int(s.served.Add(1))-1, len(s.script)-1)]
		if a.cut == resetDuringRequest {
			io.ReadFull(br, make([]byte, 1024))
			conn.SetLinger(0)
			return
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		if !s.sleep(a.delay) || !s.write(conn, a) {
			return
		}
		idle = a.idleClose
	}
}

// write sends a's answer and says whether the connection stays open.
func (s *scriptedIdP) write(conn *net.TCPConn, a answer) bool {
	switch a.cut {
	case cutBeforeAnswer:
		return false
	case resetAfterRequest:
		conn.SetLinger(0)
		return false
	}
	head, body := a.bytes()
	switch a.cut {
	case cutAfterStatus:
		head, body = head[:strings.Index(head, "\r\n")+2], ""
	case cutAfterHeaders:
		body = ""
	case cutMidBody:
		body = body[:len(body)/2]
	}
	gap := a.trickle
	if a.trickleBody {
		if !s.send(conn, head, 0) {
			return false
		}
		head = ""
	}
	if !s.send(conn, head+body, gap) {
		return false
	}
	return a.cut == noCut && a.keptAlive()
}

// keptAlive says whether a real server would keep the connection open after this answer (RFC 9112
// §9.3): an HTTP/1.1 answer unless it says Connection: close, an HTTP/1.0 one only if it says
// Connection: keep-alive, and never one whose body ends with the connection (HTTP/1.0 has no chunking).
func (a answer) keptAlive() bool {
	http10 := strings.HasPrefix(a.status, "HTTP/1.0")
	switch {
	case a.framing == closeDelimited, http10 && a.framing == chunked, slices.Contains(a.headers, "Connection: close"):
		return false
	case http10:
		return slices.Contains(a.headers, "Connection: keep-alive")
	}
	return true
}

// bytes renders a's answer: the status line and headers, and the framed body.
func (a answer) bytes() (head, body string) {
	var h strings.Builder
	if a.interim {
		h.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	}
	status := a.status
	if status == "" {
		status = "HTTP/1.1 200 OK"
	}
	h.WriteString(status + "\r\n")
	for _, l := range a.headers {
		h.WriteString(l + "\r\n")
	}
	body = a.body
	switch a.framing {
	case contentLength:
		fmt.Fprintf(&h, "Content-Length: %d\r\n", len(body))
	case chunked:
		h.WriteString("Transfer-Encoding: chunked\r\n")
		var c strings.Builder
		for len(body) > 0 {
			n := min(len(body), 7)
			fmt.Fprintf(&c, "%x\r\n%s\r\n", n, body[:n])
			body = body[n:]
		}
		c.WriteString("0\r\n\r\n")
		body = c.String()
	}
	h.WriteString("\r\n")
	return h.String(), body
}

// send writes b in one go, or one byte per gap; it says whether all of it went out.
func (s *scriptedIdP) send(conn net.Conn, b string, gap time.Duration) bool {
	if gap == 0 {
		_, err := io.WriteString(conn, b)
		return err == nil
	}
	for i := range len(b) {
		if _, err := io.WriteString(conn, b[i:i+1]); err != nil || !s.sleep(gap) {
			return false
		}
	}
	return true
}

// sleep waits d unless the server closes first.
func (s *scriptedIdP) sleep(d time.Duration) bool {
	if d == 0 {
		return true
	}
	select {
	case <-time.After(d):
		return true
	case <-s.done:
		return false
	}
}

// jsonAnswer is a well-behaved answer with body, kept alive.
func jsonAnswer(body string) answer {
	return answer{headers: []string{"Content-Type: application/json"}, body: body}
}

// with returns a changed copy of a.
func (a answer) with(change func(*answer)) answer {
	change(&a)
	return a
}

const activeBody = `{"active":true,"sub":"alice","exp":1700000060}`

// idpServer is a server a behaviour starts afresh for each transport: a URL, and something to do
// between two requests (restart, say).
type idpServer struct {
	url     string
	between func()
}

func scripted(script ...answer) func(t *testing.T) idpServer {
	return func(t *testing.T) idpServer { return idpServer{url: newScriptedIdP(t, script...).URL()} }
}

// httptestIdP starts an httptest server with handler h, after configure (nil for none).
func httptestIdP(h http.HandlerFunc, configure func(*http.Server)) func(t *testing.T) idpServer {
	return func(t *testing.T) idpServer {
		srv := httptest.NewUnstartedServer(h)
		if configure != nil {
			configure(srv.Config)
		}
		srv.Start()
		t.Cleanup(srv.Close)
		return idpServer{url: srv.URL}
	}
}

// restartingIdP is an httptest server that is closed (with its connections) and started again on the
// same port between two requests, as an IdP restarted by its operator.
func restartingIdP(t *testing.T) idpServer {
	h := jsonReply(200, activeBody)
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close() })
	return idpServer{url: srv.URL, between: func() {
		addr := srv.Listener.Addr().String()
		srv.Close()
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("reopening %s: %v", addr, err)
		}
		srv = httptest.NewUnstartedServer(h)
		srv.Listener.Close()
		srv.Listener = ln
		srv.Start()
	}}
}

// trickleHandler answers activeBody one byte per gap after flushing the headers.
func trickleHandler(gap time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(activeBody)))
		for i := range len(activeBody) {
			if _, err := w.Write([]byte{activeBody[i]}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-time.After(gap):
			case <-r.Context().Done():
				return
			}
		}
	}
}

func TestTransportsAgainstServerBehaviours(t *testing.T) {
	const (
		trickleTimeout = 300 * time.Millisecond
		gap            = 50 * time.Millisecond // activeBody takes 46 × 50 ms: far beyond trickleTimeout
	)
	ok := jsonAnswer(activeBody)
	active, inactive := "200 "+activeBody, `200 {"active":false}`
	cases := []struct {
		name    string
		server  func(t *testing.T) idpServer
		form    string        // testForm when empty
		timeout time.Duration // 2 s when zero
		pause   time.Duration // between requests
		want    []string      // the outcome of each request in turn
	}{
		{name: "idle connection closed after 100 ms (httptest), next request after 200 ms",
			server: httptestIdP(jsonReply(200, activeBody), func(s *http.Server) { s.IdleTimeout = 100 * time.Millisecond }),
			pause:  200 * time.Millisecond, want: []string{active, active, active}},
		{name: "idle connection closed after 100 ms (raw), next request after 200 ms",
			server: scripted(ok.with(func(a *answer) { a.idleClose = 100 * time.Millisecond })),
			pause:  200 * time.Millisecond, want: []string{active, active, active}},
		{name: "kept connection closed as the next request arrives",
			server: scripted(ok, ok.with(func(a *answer) { a.cut = cutBeforeAnswer }), ok),
			want:   []string{active, active}},
		{name: "kept connection reset as the next request arrives",
			server: scripted(ok, ok.with(func(a *answer) { a.cut = resetAfterRequest }), ok),
			want:   []string{active, active}},
		{name: "kept connection closed after an answer that did not say so",
			server: scripted(ok.with(func(a *answer) { a.cut = cutAfterAnswer })),
			want:   []string{active, active, active}},
		{name: "Connection: close (httptest)",
			server: httptestIdP(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Connection", "close")
				jsonReply(200, activeBody)(w, r)
			}, nil),
			want: []string{active, active}},
		{name: "Connection: close (raw)",
			server: scripted(ok.with(func(a *answer) { a.headers = append(a.headers, "Connection: close"); a.cut = cutAfterAnswer })),
			want:   []string{active, active}},
		{name: "closed after the headers", server: scripted(ok.with(func(a *answer) { a.cut = cutAfterHeaders })),
			want: []string{"error"}},
		{name: "closed after the status line", server: scripted(ok.with(func(a *answer) { a.cut = cutAfterStatus })),
			want: []string{"error"}},
		{name: "closed in the middle of the body", server: scripted(ok.with(func(a *answer) { a.cut = cutMidBody })),
			want: []string{"error"}},
		{name: "closed in the middle of a chunked body",
			server: scripted(ok.with(func(a *answer) { a.framing = chunked; a.cut = cutMidBody })),
			want:   []string{"error"}},
		{name: "closed without an answer on a new connection", server: scripted(ok.with(func(a *answer) { a.cut = cutBeforeAnswer })),
			want: []string{"error"}},
		{name: "chunked body, kept alive", server: scripted(ok.with(func(a *answer) { a.framing = chunked })),
			want: []string{active, active}},
		{name: "chunked inactive", server: scripted(jsonAnswer(`{"active":false}`).with(func(a *answer) { a.framing = chunked })),
			want: []string{inactive, inactive}},
		{name: "close-delimited body (HTTP/1.1)", server: scripted(ok.with(func(a *answer) { a.framing = closeDelimited })),
			want: []string{active, active}},
		{name: "close-delimited body (HTTP/1.0)",
			server: scripted(ok.with(func(a *answer) { a.status = "HTTP/1.0 200 OK"; a.framing = closeDelimited })),
			want:   []string{active, active}},
		{name: "100 Continue before the answer", server: scripted(ok.with(func(a *answer) { a.interim = true })),
			want: []string{active, active}},
		{name: "headers over 64 KiB",
			server: scripted(ok.with(func(a *answer) { a.headers = append(a.headers, "X-Pad: "+strings.Repeat("p", 70<<10)) })),
			want:   []string{"error"}},
		{name: "restarted between two requests", server: restartingIdP, want: []string{active, active}},
		{name: "reset while the client writes a large request",
			server: scripted(ok.with(func(a *answer) { a.cut = resetDuringRequest })),
			form:   strings.Repeat("t", 8<<20), want: []string{"error"}},
		{name: "headers trickled past the timeout", timeout: trickleTimeout,
			server: scripted(ok.with(func(a *answer) { a.trickle = gap })),
			want:   []string{"timeout"}},
		{name: "body trickled past the timeout (raw)", timeout: trickleTimeout,
			server: scripted(ok.with(func(a *answer) { a.trickle, a.trickleBody = gap, true })),
			want:   []string{"timeout"}},
		{name: "chunked body trickled past the timeout", timeout: trickleTimeout,
			server: scripted(ok.with(func(a *answer) { a.trickle, a.trickleBody, a.framing = gap, true, chunked })),
			want:   []string{"timeout"}},
		{name: "body trickled past the timeout (httptest)", timeout: trickleTimeout,
			server: httptestIdP(trickleHandler(gap), nil), want: []string{"timeout"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			timeout := cmp.Or(tc.timeout, 2*time.Second)
			form := cmp.Or(tc.form, testForm)
			got := map[string][]string{}
			for _, tr := range transports {
				srv := tc.server(t)
				rt := newTransport(t, tr)
				for i := range tc.want {
					if i > 0 {
						time.Sleep(tc.pause)
						if srv.between != nil {
							srv.between()
						}
					}
					start := time.Now()
					got[tr] = append(got[tr], post(t, rt, srv.url, form, timeout))
					// Generous: the machine is shared; what matters is that it is not one timeout per byte.
					if d := time.Since(start); d > timeout+time.Second {
						t.Errorf("%s, request %d: took %v with timeout %v", tr, i+1, d, timeout)
					}
				}
			}
			for _, tr := range transports[1:] {
				if !slices.Equal(got["net/http"], got[tr]) {
					t.Errorf("net/http: %q, %s: %q", got["net/http"], tr, got[tr])
				}
			}
			for _, tr := range transports {
				if !slices.Equal(got[tr], tc.want) {
					t.Errorf("%s: %q, want %q", tr, got[tr], tc.want)
				}
			}
		})
	}
}

// TestReusesLiveConnections is the positive control of the behaviours above: a connection the server
// keeps is kept, one it closed is not tried, and one idle for IdleConnTimeout is not kept.
func TestReusesLiveConnections(t *testing.T) {
	cases := []struct {
		name        string
		idleClose   time.Duration // the server's
		idleTimeout time.Duration // the client's
		pause       time.Duration // between requests
		want        int32         // connections for three requests
	}{
		{"kept", 0, testIdleConnTimeout, 0, 1},
		{"closed by the server after 50 ms idle", 50 * time.Millisecond, testIdleConnTimeout, 100 * time.Millisecond, 3},
		{"idle as long as IdleConnTimeout", 0, 50 * time.Millisecond, 100 * time.Millisecond, 3},
	}
	for _, tc := range cases {
		for _, polled := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, GoPoller %t", tc.name, polled), func(t *testing.T) {
				srv := newScriptedIdP(t, jsonAnswer(activeBody).with(func(a *answer) { a.idleClose = tc.idleClose }))
				rt := &Transport{GoPoller: polled, MaxResponseHeaderBytes: testMaxHeaderBytes, IdleConnTimeout: tc.idleTimeout}
				t.Cleanup(rt.CloseIdleConnections)
				for range 3 {
					if got := post(t, rt, srv.URL(), testForm, 2*time.Second); got != "200 "+activeBody {
						t.Fatal(got)
					}
					time.Sleep(tc.pause)
				}
				if n, served := srv.conns.Load(), srv.served.Load(); n != tc.want || served != 3 {
					t.Errorf("%d connections for %d requests, want %d for 3", n, served, tc.want)
				}
			})
		}
	}
}

// countingServer serves h until the end of the test and counts the connections it accepts.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	conns := new(atomic.Int32)
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, conns
}

// TestCancelCutsExchangeThroughPoller: through the poller, a request whose context is cancelled while
// the server thinks ends at once with the context's error, as with net/http, and its connection is not
// kept: the next request gets its answer on a new one. On blocking sockets the exchange runs to its
// answer (the positive control that the server was still thinking).
func TestCancelCutsExchangeThroughPoller(t *testing.T) {
	const think = 500 * time.Millisecond
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			var slow atomic.Int32
			srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
				if slow.Add(1) == 1 {
					time.Sleep(think)
				}
				jsonReply(200, activeBody)(w, r)
			})
			rt := newTransport(t, tr)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			time.AfterFunc(50*time.Millisecond, cancel)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader(testForm))
			start := time.Now()
			resp, err := rt.RoundTrip(req)
			took := time.Since(start)
			if tr == "blocking" {
				if err != nil || took < think {
					t.Fatalf("after %v: %v; want the answer after the server's %v", took, err, think)
				}
				resp.Body.Close()
				return
			}
			if !errors.Is(err, context.Canceled) || took > think/2 {
				t.Fatalf("after %v: %v; want context.Canceled at once", took, err)
			}
			if got := post(t, rt, srv.URL, testForm, 2*time.Second); got != "200 "+activeBody {
				t.Fatal(got)
			}
			if n := conns.Load(); n != 2 {
				t.Errorf("%d connections, want 2: the cut one not kept", n)
			}
		})
	}
}

// TestClosesConnectionsInUseAfterCloseIdle: a connection still answering when the caller closes the
// idle ones is closed once its answer is read, not kept, as with net/http, so a transport the caller
// has replaced keeps nothing; a request after that keeps its connection again.
func TestClosesConnectionsInUseAfterCloseIdle(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			srv, conns := countingServer(t, jsonReply(200, activeBody))
			rt := newTransport(t, tr)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader(testForm))
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			rt.(interface{ CloseIdleConnections() }).CloseIdleConnections()
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			for range 2 {
				if got := post(t, rt, srv.URL, testForm, 2*time.Second); got != "200 "+activeBody {
					t.Fatal(got)
				}
			}
			if n := conns.Load(); n != 2 {
				t.Errorf("%d connections for 3 requests, want 2 (the first not kept, the second kept)", n)
			}
		})
	}
}

// fuzzAnswer decodes one answer from the front of data, one byte per choice (missing bytes choose 0):
// the status line, a 100 Continue or not, the content type, a Connection header, one more header, the
// body, its framing, where the server cuts the connection, a delay, and an idle close. Left out: trickles
// and resets during the request, which take a timeout or a large request each and have their own cases
// in TestTransportsAgainstServerBehaviours.
func fuzzAnswer(data []byte) (answer, []byte) {
	choose := func(n int) int {
		if len(data) == 0 {
			return 0
		}
		v := int(data[0]) % n
		data = data[1:]
		return v
	}
	pick := func(options ...string) string { return options[choose(len(options))] }
	var a answer
	a.status = pick("", "HTTP/1.0 200 OK", "HTTP/1.1 500 Internal Server Error", "HTTP/1.1 204 No Content",
		"HTTP/1.1 302 Found", "HTTP/1.1 200", "HTTP/1.1 2x0 OK", "HTTP/1.1 401 Unauthorized")
	a.interim = choose(4) == 1
	for _, h := range []string{
		pick("Content-Type: application/json", "Content-Type: application/json; charset=utf-8", "Content-Type: text/html", ""),
		pick("", "Connection: close", "Connection: keep-alive"),
		pick("", "Keep-Alive: timeout=1", "Content-Length: 3", "X-Pad: "+strings.Repeat("p", 70<<10)),
	} {
		if h != "" {
			a.headers = append(a.headers, h)
		}
	}
	a.body = pick(`{"active":true}`, `{"active":false}`, `{"active":true`, ``, `{"active":true,"exp":1}`)
	a.framing = framing(choose(int(framings)))
	a.cut = cut(choose(int(resetDuringRequest)))
	a.delay = time.Duration(choose(3)) * 5 * time.Millisecond
	a.idleClose = time.Duration(choose(2)) * 10 * time.Millisecond
	if a.status == "HTTP/1.1 204 No Content" {
		// A 204 has no body: one sent anyway would be read as the start of the next answer.
		a.body, a.framing = "", contentLength
	}
	return a, data
}

// FuzzTransports sends two requests in a row, with a pause, to a scripted IdP whose answers the input
// describes (see fuzzAnswer), once over each transport, and requires the same outcomes.
func FuzzTransports(f *testing.F) {
	zeros := make([]byte, 10) // one plain answer
	for _, seed := range [][]byte{
		{},                       // two plain answers, kept alive
		{0, 0, 0, 1, 0, 1, 0, 0}, // inactive, Connection: close
		{0, 0, 0, 0, 0, 0, 1},    // chunked
		{1, 0, 0, 0, 0, 0, 2},    // HTTP/1.0, close-delimited
		{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}, // idle close, then a request after it
		{0, 0, 0, 0, 0, 0, 0, 5},              // a close the answer did not announce
		append(zeros, 0, 0, 0, 0, 0, 0, 0, 6), // reset as the second request arrives
		append(zeros, 0, 0, 0, 0, 0, 0, 0, 1), // closed as the second request arrives
		{0, 0, 0, 0, 0, 0, 1, 4},              // cut in a chunked body
		{2, 0, 0, 0, 0, 2, 0, 3},              // 500, cut after the headers
		{3, 1, 1, 2, 1, 0, 1, 0},              // 204 after a 100 Continue
		{4, 0, 2, 0, 2},                       // 302, conflicting lengths
		{6, 0, 0, 0, 3, 0, 0, 0, 2},           // malformed status, oversized headers
		{0, 0, 0, 1, 0, 4, 0, 0, 2, 1, 7},     // expired, delayed; then a 401
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		first, rest := fuzzAnswer(data)
		second, rest := fuzzAnswer(rest)
		pause := time.Duration(0)
		if len(rest) > 0 {
			pause = time.Duration(rest[0]%3) * 10 * time.Millisecond
		}
		const timeout = 2 * time.Second
		got := map[string][]string{}
		for _, tr := range transports {
			srv := newScriptedIdP(t, first, second)
			rt := newTransport(t, tr)
			for i := range 2 {
				if i > 0 {
					time.Sleep(pause)
				}
				start := time.Now()
				got[tr] = append(got[tr], post(t, rt, srv.URL(), testForm, timeout))
				// Wider than in TestTransportsAgainstServerBehaviours, which tests timeouts: fuzzing
				// runs workers side by side on a shared machine.
				if d := time.Since(start); d > timeout+2*time.Second {
					t.Errorf("%s, request %d: took %v with timeout %v", tr, i+1, d, timeout)
				}
			}
		}
		for _, tr := range transports[1:] {
			if !slices.Equal(got["net/http"], got[tr]) {
				t.Errorf("net/http: %q, %s: %q\nanswers: %+v\n%+v\npause %v",
					got["net/http"], tr, got[tr], first, second, pause)
			}
		}
	})
}
