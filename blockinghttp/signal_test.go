//go:build linux

package blockinghttp

import (
	"cmp"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// signalGap is how often the thread running exchanges is signalled: often enough that every system
// call which waits is interrupted many times.
const signalGap = 50 * time.Microsecond

// onSignalledThread runs f on a thread of its own while another goroutine sends that thread SIGWINCH
// every signalGap, as the plugin wakes Mosquitto 2.1's broker thread. The handler is Go's, installed
// with SA_RESTART|SA_ONSTACK like the plugin's: a socket call with a timeout set, poll(2) and connect(2)
// still fail with EINTR when it runs. It returns how many signals were sent.
func onSignalledThread(t *testing.T, f func()) int {
	t.Helper()
	sigs := make(chan os.Signal, 1) // never read: the handler is what matters, not the delivery
	signal.Notify(sigs, syscall.SIGWINCH)
	defer signal.Stop(sigs)

	tids := make(chan int)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the thread ends with the goroutine rather than serve others.
		runtime.LockOSThread()
		tids <- syscall.Gettid()
		f()
	}()
	tid := <-tids
	sent := 0
	gap := syscall.NsecToTimespec(signalGap.Nanoseconds())
	for {
		select {
		case <-done:
			return sent
		default:
		}
		if err := syscall.Tgkill(os.Getpid(), tid, syscall.SIGWINCH); err != nil {
			t.Fatalf("tgkill: %v", err)
		}
		sent++
		syscall.Nanosleep(&gap, nil) // time.Sleep may round up to a millisecond
	}
}

// TestSignalsInterruptSocketCalls is the premise of TestExchangesUnderSignals: on the signalled thread,
// a read(2) with SO_RCVTIMEO fails with EINTR rather than being restarted.
func TestSignalsInterruptSocketCalls(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	tv := syscall.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := syscall.SetsockoptTimeval(fds[0], syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	var interrupted int
	var last error
	onSignalledThread(t, func() {
		deadline := time.Now().Add(100 * time.Millisecond)
		for time.Now().Before(deadline) {
			_, last = syscall.Read(fds[0], make([]byte, 1))
			if last == syscall.EINTR {
				interrupted++
			}
		}
	})
	if interrupted == 0 {
		t.Fatalf("no read(2) was interrupted (last error %v): the signals do not test anything", last)
	}
	t.Logf("%d reads interrupted", interrupted)
}

// TestExchangesUnderSignals runs exchanges on a thread that is signalled every signalGap, against
// servers that make the transport wait in every system call it makes: connect(2) to a listener that
// does not accept, read(2) of a trickled answer, write(2) of a request the server reads slowly. Each
// exchange must end as it would without signals: with the answer, or with a timeout at its deadline.
func TestExchangesUnderSignals(t *testing.T) {
	const acceptDelay = 200 * time.Millisecond
	active := "200 " + activeBody
	cases := []struct {
		name     string
		url      func(t *testing.T) string
		form     string        // testForm when empty
		timeout  time.Duration // 3 s when zero
		requests int           // 1 when zero
		want     string
		atLeast  time.Duration // how long the exchanges must take: proof that they waited
	}{
		{name: "answers on a kept connection", requests: 100, atLeast: 100 * time.Millisecond,
			url: func(t *testing.T) string {
				return newScriptedIdP(t, jsonAnswer(activeBody).with(func(a *answer) { a.delay = time.Millisecond })).URL()
			}, want: active},
		{name: "answer trickled within the timeout", atLeast: 100 * time.Millisecond,
			url: func(t *testing.T) string {
				return newScriptedIdP(t, jsonAnswer(activeBody).with(func(a *answer) { a.trickle = time.Millisecond })).URL()
			}, want: active},
		{name: "answer trickled past the timeout", timeout: 300 * time.Millisecond, atLeast: 300 * time.Millisecond,
			url: func(t *testing.T) string {
				return newScriptedIdP(t, jsonAnswer(activeBody).with(func(a *answer) { a.trickle = 20 * time.Millisecond })).URL()
			}, want: "timeout"},
		{name: "large request read late", form: strings.Repeat("t", 32<<20), atLeast: 200 * time.Millisecond,
			url: lateReader, want: active},
		{name: "connect accepted after a delay", atLeast: acceptDelay,
			url: func(t *testing.T) string { return fullBacklog(t, acceptDelay) }, want: active},
		{name: "connect never accepted", timeout: 300 * time.Millisecond, atLeast: 300 * time.Millisecond,
			url: func(t *testing.T) string { return fullBacklog(t, -1) }, want: "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url(t)
			timeout := cmp.Or(tc.timeout, 3*time.Second)
			rt := &Transport{MaxResponseHeaderBytes: testMaxHeaderBytes, IdleConnTimeout: testIdleConnTimeout}
			t.Cleanup(rt.CloseIdleConnections)
			form := cmp.Or(tc.form, testForm)
			var got []string
			var took time.Duration
			sent := onSignalledThread(t, func() {
				start := time.Now()
				for range max(tc.requests, 1) {
					got = append(got, post(t, rt, url, form, timeout))
				}
				took = time.Since(start)
			})
			t.Logf("%d exchanges in %v, %d signals", len(got), took, sent)
			for i, g := range got {
				if g != tc.want {
					t.Fatalf("exchange %d: %q, want %q", i+1, g, tc.want)
				}
			}
			// Generous above: the machine is shared; what matters is that nothing ends early.
			if took < tc.atLeast || took > time.Duration(len(got))*timeout+time.Second {
				t.Errorf("took %v, want at least %v and within the timeout", took, tc.atLeast)
			}
		})
	}
}

// lateReader is a server that reads a request's body only after 200 ms, so that a request larger than
// the socket buffers of both ends (a few MiB each on loopback) makes the client wait in write(2).
func lateReader(t *testing.T) string {
	h := func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		jsonReply(200, activeBody)(w, r)
	}
	return httptestIdP(h, nil)(t).url
}

// fullBacklog returns the URL of a server whose listen queue is full, so that a client's connect(2)
// waits (its SYN is dropped and sent again a second later), until the server starts accepting after
// delay; a negative delay never comes.
func fullBacklog(t *testing.T, delay time.Duration) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	// A backlog of 0 holds one connection not yet accepted.
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	filler, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: jsonReply(200, activeBody)}
	var wg sync.WaitGroup
	if delay >= 0 {
		wg.Go(func() {
			time.Sleep(delay)
			srv.Serve(ln)
		})
	}
	t.Cleanup(func() {
		filler.Close()
		srv.Close()
		ln.Close()
		wg.Wait()
	})
	return "http://" + ln.Addr().String() + "/introspect"
}
