package sessions

import (
	"context"
	"sync"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/acl"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/auth"
)

// Foreign answers the checks Mosquitto makes on threads other than the broker thread, for clients it
// makes up. In 2.1 these come from the HTTP API: libmicrohttpd's thread authenticates each request with
// a client on its stack named "http-api", carrying the request's basic-auth username and password, then
// checks read access to the URL path (such as /api/v1/systree) as a topic. Such a client never
// connects, cannot be delayed (only the broker thread completes delayed checks) and is gone when the
// request ends. So the check runs on the calling thread, within the configured timeout, and the
// Machine, which belongs to the broker thread, never sees it.
//
// The only thing kept between a request's BASIC_AUTH and its ACL check is the rights its token gave,
// keyed by the calling thread and matched to the client's address, which is compared, never followed.
// The ACL check takes them away, so nothing outlives the request.
type Foreign struct {
	core Core

	mu     sync.Mutex
	rights map[uintptr]foreignRights // by calling thread
}

type foreignRights struct {
	client Client
	rights *auth.Session
}

// maxForeignThreads bounds Foreign's memory: libmicrohttpd authenticates on one thread, and an entry is
// removed by its request's ACL check, so more than this many is a broker change nobody planned for, and
// forgetting them all only refuses those requests' ACL checks.
const maxForeignThreads = 64

// NewForeign makes the answerer of one plugin instance's foreign checks.
func NewForeign(core Core) *Foreign {
	return &Foreign{core: core, rights: make(map[uintptr]foreignRights)}
}

// BasicAuth decides a made-up client's username and password at once. It never renames the client: the
// broker frees the username it gave with its own allocator, and the client lives for one request anyway.
func (f *Foreign) BasicAuth(thread uintptr, c Client, req auth.Request) Answer {
	d, ok := f.core.FromMemory(req)
	if !ok {
		d = f.core.Verify(context.Background(), req)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.rights, thread)
	switch d.Result {
	case auth.Allow:
		if d.Session != nil {
			if len(f.rights) >= maxForeignThreads {
				clear(f.rights)
			}
			f.rights[thread] = foreignRights{client: c, rights: d.Session}
		}
		return Allow
	case auth.Defer:
		return Defer
	}
	return Deny
}

// ACLCheck decides a made-up client's check from the rights its BASIC_AUTH gave on this thread, and
// forgets them. Without any (another plugin admitted it) the check is left to the broker's other rules.
func (f *Foreign) ACLCheck(thread uintptr, c Client, access acl.Access, topic string) auth.Result {
	var rights *auth.Session
	f.mu.Lock()
	if r, ok := f.rights[thread]; ok && r.client == c {
		rights = r.rights
		delete(f.rights, thread)
	}
	f.mu.Unlock()
	return f.core.Authorize(rights, access, topic, 0, false, time.Now())
}
