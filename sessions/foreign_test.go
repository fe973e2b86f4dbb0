package sessions

import (
	"context"
	"sync"
	"testing"
	"unsafe"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/acl"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/auth"
)

// lockedCore is fakeCore made safe for the broker's other threads, as the engine is.
type lockedCore struct {
	mu sync.Mutex
	*fakeCore
}

func (c *lockedCore) FromMemory(req auth.Request) (auth.Decision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fakeCore.FromMemory(req)
}

func (c *lockedCore) Verify(ctx context.Context, req auth.Request) auth.Decision {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fakeCore.Verify(ctx, req)
}

func newForeignCore() *lockedCore {
	return &lockedCore{fakeCore: &fakeCore{delayed: map[string]bool{"slow": true}, decisions: map[string]auth.Decision{
		"good":   {Result: auth.Allow, Session: &auth.Session{}},
		"slow":   {Result: auth.Allow, Session: &auth.Session{}},
		"noacl":  {Result: auth.Allow},
		"defer":  {Result: auth.Defer},
		"rename": {Result: auth.Allow, Session: &auth.Session{}, Rename: true, Username: "other"},
	}}}
}

func TestForeign(t *testing.T) {
	a, b := Client(unsafe.Pointer(new(byte))), Client(unsafe.Pointer(new(byte)))
	type step struct {
		thread uintptr
		client Client
		token  string // a BASIC_AUTH with this token, or "" for an ACL check
		answer Answer
		result auth.Result
	}
	login := func(thread uintptr, c Client, token string, want Answer) step {
		return step{thread: thread, client: c, token: token, answer: want}
	}
	check := func(thread uintptr, c Client, want auth.Result) step {
		return step{thread: thread, client: c, result: want}
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"a valid token's rights answer its request's ACL check, once",
			[]step{login(1, a, "good", Allow), check(1, a, auth.Allow), check(1, a, auth.Defer)}},
		{"a check the memory cannot answer is verified on the spot, never delayed",
			[]step{login(1, a, "slow", Allow), check(1, a, auth.Allow)}},
		{"a renamed token is allowed without a rename",
			[]step{login(1, a, "rename", Allow), check(1, a, auth.Allow)}},
		{"rights stay with the thread and the client they were given to",
			[]step{login(1, a, "good", Allow), check(2, a, auth.Defer), check(1, b, auth.Defer), check(1, a, auth.Allow)}},
		{"a refused request takes back what an earlier one on the thread left",
			[]step{login(1, a, "good", Allow), login(1, a, "bad", Deny), check(1, a, auth.Defer)}},
		{"a later request on the thread replaces an earlier one's rights",
			[]step{login(1, a, "good", Allow), login(1, b, "good", Allow), check(1, a, auth.Defer), check(1, b, auth.Allow)}},
		{"a defer decision defers, and leaves no rights",
			[]step{login(1, a, "defer", Defer), check(1, a, auth.Defer)}},
		{"without acl_* options there are no rights to keep",
			[]step{login(1, a, "noacl", Allow), check(1, a, auth.Defer)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := NewForeign(newForeignCore())
			for i, s := range c.steps {
				if s.token != "" {
					if got := f.BasicAuth(s.thread, s.client, auth.Request{ClientID: "http-api", Password: s.token}); got != s.answer {
						t.Fatalf("step %d: BasicAuth(%q) = %v, want %v", i, s.token, got, s.answer)
					}
					continue
				}
				if got := f.ACLCheck(s.thread, s.client, acl.Read, "/api/v1/version"); got != s.result {
					t.Fatalf("step %d: ACLCheck = %v, want %v", i, got, s.result)
				}
			}
			if len(f.rights) > 1 {
				t.Errorf("%d threads' rights kept after the steps", len(f.rights))
			}
		})
	}
}

// Requests that never reach their ACL check (another plugin refused them) leave their rights behind,
// at most one per thread, and at most maxForeignThreads in all.
func TestForeignBounded(t *testing.T) {
	f := NewForeign(newForeignCore())
	c := Client(unsafe.Pointer(new(byte)))
	for thread := range uintptr(10 * maxForeignThreads) {
		f.BasicAuth(thread, c, auth.Request{Password: "good"})
		if n := len(f.rights); n > maxForeignThreads {
			t.Fatalf("%d entries after %d threads", n, thread+1)
		}
	}
}

// The HTTP API's thread and the broker's may ask at once; each request sees its own rights.
func TestForeignConcurrent(t *testing.T) {
	f := NewForeign(newForeignCore())
	var wg sync.WaitGroup
	for thread := range uintptr(8) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := Client(unsafe.Pointer(new(byte)))
			for range 1000 {
				if f.BasicAuth(thread, c, auth.Request{Password: "good"}) != Allow || f.ACLCheck(thread, c, acl.Read, "/api") != auth.Allow {
					t.Error("a request lost its rights to another thread's")
					return
				}
			}
		}()
	}
	wg.Wait()
}
