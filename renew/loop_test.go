package renew

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"
)

// source hands out tokens living ttl from now, failing while fail is set.
type source struct {
	mu    sync.Mutex
	ttl   time.Duration
	fail  error
	calls int
}

func (s *source) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail != nil {
		return nil, s.fail
	}
	return &oauth2.Token{AccessToken: fmt.Sprintf("t%d", s.calls), Expiry: time.Now().Add(s.ttl)}, nil
}

func (s *source) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

// run starts a loop in the bubble with a first token from src, recording renewals and log lines.
type run struct {
	loop     *Loop
	mu       sync.Mutex
	renewals []Renewal
	logs     []string
	done     chan error
	cancel   context.CancelFunc
}

func start(t *testing.T, src *source, margin time.Duration, present func(context.Context, *oauth2.Token) (bool, error)) *run {
	t.Helper()
	r := &run{done: make(chan error, 1)}
	if present == nil {
		present = func(context.Context, *oauth2.Token) (bool, error) { return false, nil }
	}
	r.loop = &Loop{Tokens: src, Margin: margin, Present: present,
		Fatal: func(err error) bool { return errors.Is(err, errFatal) },
		Logf: func(f string, a ...any) {
			r.mu.Lock()
			r.logs = append(r.logs, fmt.Sprintf(f, a...))
			r.mu.Unlock()
		},
		OnRenew: func(rn Renewal) {
			r.mu.Lock()
			r.renewals = append(r.renewals, rn)
			r.mu.Unlock()
		}}
	tok, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	r.loop.Use(tok)
	ctx, cancel := context.WithCancel(t.Context())
	r.cancel = cancel
	go func() { r.done <- r.loop.Run(ctx) }()
	return r
}

func (r *run) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func (r *run) snapshot() ([]Renewal, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Renewal(nil), r.renewals...), append([]string(nil), r.logs...)
}

var errFatal = errors.New("invalid_client")

func TestRenewalTimes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ttl       time.Duration
		margin    time.Duration
		run       time.Duration
		wantEvery time.Duration // time from one token to the next
	}{
		{"margin before exp", time.Hour, 30 * time.Second, 3*time.Hour + time.Minute, time.Hour - 30*time.Second},
		{"short token renewed halfway", 5 * time.Second, 30 * time.Second, 16 * time.Second, 2500 * time.Millisecond},
		{"margin of exactly half", 20 * time.Second, 10 * time.Second, 45 * time.Second, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				t0 := time.Now()
				r := start(t, &source{ttl: tc.ttl}, tc.margin, nil)
				time.Sleep(tc.run)
				synctest.Wait()
				r.stop(t)
				got, logs := r.snapshot()
				want := int(tc.run / tc.wantEvery)
				if len(got) != want {
					t.Fatalf("%d renewals in %s, want %d", len(got), tc.run, want)
				}
				for i, rn := range got {
					if due := t0.Add(time.Duration(i+1) * tc.wantEvery); !rn.Due.Equal(due) || !rn.Done.Equal(due) {
						t.Errorf("renewal %d due %s done %s, want both at %s", i, rn.Due.Sub(t0), rn.Done.Sub(t0), due.Sub(t0))
					}
					if !rn.Exp.Equal(rn.Done.Add(tc.ttl)) || rn.Reconnected {
						t.Errorf("renewal %d: exp %s reconnected %v", i, rn.Exp.Sub(t0), rn.Reconnected)
					}
				}
				if len(logs) != 0 {
					t.Errorf("logs: %q", logs)
				}
			})
		})
	}
}

func TestTokenWithoutExpiryIsNeverRenewed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &source{}
		r := &Loop{Tokens: src, Margin: time.Second, Present: func(context.Context, *oauth2.Token) (bool, error) {
			t.Error("Present called")
			return false, nil
		}}
		r.Use(&oauth2.Token{AccessToken: "x"})
		ctx, cancel := context.WithTimeout(t.Context(), 1000*time.Hour)
		defer cancel()
		if err := r.Run(ctx); err != nil || src.calls != 0 {
			t.Fatalf("Run: %v, %d token calls", err, src.calls)
		}
	})
}

// An unreachable IdP is retried with doubling backoff up to lastRetry, logged once, and the renewal
// goes through when it comes back.
func TestTransientFailureRetriedWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &source{ttl: time.Hour}
		t0 := time.Now()
		r := start(t, src, time.Minute, nil)
		time.Sleep(59*time.Minute - time.Second)
		src.setFail(errors.New("dial tcp 127.0.0.1:9: connection refused"))
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		// Attempts at 59:00, 59:01, :03, :07, :15, :31, 60:01 and 60:31 (the wait stops at 30 s): 8 by 60:59.
		if calls := src.calls - 1; calls != 8 {
			t.Errorf("%d attempts while failing, want 8", calls)
		}
		src.setFail(nil)
		time.Sleep(31 * time.Second)
		synctest.Wait()
		r.stop(t)
		got, logs := r.snapshot()
		if len(got) != 1 || !got[0].Due.Equal(t0.Add(59*time.Minute)) {
			t.Fatalf("renewals %+v", got)
		}
		if len(logs) != 1 || !strings.Contains(logs[0], "connection refused") {
			t.Errorf("logs %q, want one line naming the failure", logs)
		}
	})
}

func TestFatalTokenErrorEndsTheLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &source{ttl: time.Minute}
		r := start(t, src, 10*time.Second, nil)
		src.setFail(fmt.Errorf("the identity provider refused the client credentials: %w", errFatal))
		time.Sleep(time.Minute)
		select {
		case err := <-r.done:
			if !errors.Is(err, errFatal) {
				t.Fatalf("Run: %v", err)
			}
		default:
			t.Fatal("Run still running after a fatal error")
		}
		r.cancel()
	})
}

func TestPresentFailureRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		fails := 2
		present := func(context.Context, *oauth2.Token) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			if fails > 0 {
				fails--
				return false, errors.New("connection with the MQTT server is currently down")
			}
			return false, nil
		}
		t0 := time.Now()
		r := start(t, &source{ttl: time.Minute}, 10*time.Second, present)
		time.Sleep(55 * time.Second)
		synctest.Wait()
		r.stop(t)
		got, logs := r.snapshot()
		// Due at 50 s, failed at 50 and 51, done at 53.
		if len(got) != 1 || !got[0].Done.Equal(t0.Add(53*time.Second)) {
			t.Fatalf("renewals %+v", got)
		}
		if len(logs) != 1 {
			t.Errorf("logs %q, want the repeated failure once", logs)
		}
	})
}

// A source that hands back the current token is not a renewal: it is retried, and reported.
func TestStaleTokenIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tok := &oauth2.Token{AccessToken: "same", Expiry: time.Now().Add(time.Minute)}
		l := &Loop{Tokens: oauth2.StaticTokenSource(tok), Margin: 10 * time.Second,
			Present: func(context.Context, *oauth2.Token) (bool, error) {
				t.Error("Present called with the current token")
				return false, nil
			}}
		var logs []string
		l.Logf = func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }
		l.Use(tok)
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		_ = l.Run(ctx)
		if len(logs) != 1 || !strings.Contains(logs[0], "ReuseTokenSourceWithExpiry") {
			t.Errorf("logs %q", logs)
		}
	})
}

// A new connection with a new token (Use) moves the next renewal, also while a retry waits.
func TestUseReschedules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &source{ttl: time.Minute}
		t0 := time.Now()
		r := start(t, src, 10*time.Second, nil)
		time.Sleep(30 * time.Second)
		tok, _ := src.Token() // a reconnect at 30 s carried this one
		r.loop.Use(tok)
		time.Sleep(55 * time.Second)
		synctest.Wait()
		r.stop(t)
		got, _ := r.snapshot()
		if len(got) != 1 || !got[0].Due.Equal(t0.Add(80*time.Second)) {
			t.Fatalf("renewals %+v, want one due at 80 s", got)
		}
	})
}

// A session that reconnected has called Use itself with its connection's token; the loop does not
// overwrite it with the token it fetched.
func TestReconnectKeepsTheConnectionsToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &source{ttl: time.Minute}
		loops := make(chan *Loop, 1)
		present := func(context.Context, *oauth2.Token) (bool, error) {
			tok, _ := src.Token() // the new CONNECT fetched its own
			time.Sleep(5 * time.Second)
			l := <-loops
			l.Use(tok)
			return true, nil
		}
		t0 := time.Now()
		r := start(t, src, 10*time.Second, present)
		loops <- r.loop
		time.Sleep(51 * time.Second)
		synctest.Wait()
		r.stop(t)
		got, _ := r.snapshot()
		if len(got) != 1 || !got[0].Reconnected || !got[0].Exp.Equal(t0.Add(50*time.Second+time.Minute)) {
			t.Fatalf("renewals %+v", got)
		}
	})
}
