// Package cache holds verified tokens in memory so that a device reconnecting with the same token (and
// Mosquitto's re-check of every client on SIGHUP) costs no call to the identity provider.
//
// Entries are keyed by a SHA-256 hash of the token, never the token: a heap dump or a debugger then
// shows nothing a client could replay. The cache is bounded: past its size the least recently used
// entry goes, and every entry carries its own expiry.
package cache

import (
	"crypto/sha256"
	"sync"
	"time"
	"unsafe"
)

// Key is the SHA-256 hash of a token.
type Key [sha256.Size]byte

// KeyOf hashes a token. It reads the string's bytes in place: a []byte conversion would copy the token
// to the heap on every lookup, and Sum256 neither keeps nor changes its input.
func KeyOf(token string) Key {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// Cache is a size-bounded LRU map from Key to V whose entries expire. It is safe for concurrent use;
// its lock is held only for map and list operations, never across I/O.
type Cache[V any] struct {
	mu      sync.Mutex
	max     int
	entries map[Key]*entry[V]
	// head is the most recently used entry, tail the least; the list is intrusive so a hit allocates
	// nothing.
	head, tail *entry[V]
	now        func() time.Time
	// cursor is where the next Sweep goes on, walking from the tail towards the head; nil means start
	// at the tail. Entries that move or go keep it pointing at a live entry (see unlink).
	cursor *entry[V]
}

type entry[V any] struct {
	key        Key
	val        V
	expires    int64 // unix nanoseconds
	prev, next *entry[V]
}

// New makes a cache of at most max entries. now is the clock (nil for time.Now).
func New[V any](max int, now func() time.Time) *Cache[V] {
	if now == nil {
		now = time.Now
	}
	return &Cache[V]{max: max, entries: make(map[Key]*entry[V]), now: now}
}

// Get returns the value for k if it is present and not expired. An expired entry is removed.
func (c *Cache[V]) Get(k Key) (V, bool) {
	now := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		var zero V
		return zero, false
	}
	if now >= e.expires {
		c.remove(e)
		var zero V
		return zero, false
	}
	c.moveToFront(e)
	return e.val, true
}

// Put stores v under k until expires, replacing any entry for k. An expiry not in the future stores
// nothing. When the cache is full the least recently used entry is evicted.
func (c *Cache[V]) Put(k Key, v V, expires time.Time) {
	if c.max <= 0 || !expires.After(c.now()) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		e.val, e.expires = v, expires.UnixNano()
		c.moveToFront(e)
		return
	}
	for len(c.entries) >= c.max {
		c.remove(c.tail)
	}
	e := &entry[V]{key: k, val: v, expires: expires.UnixNano()}
	c.entries[k] = e
	c.pushFront(e)
}

// Delete removes the entry for k, if any.
func (c *Cache[V]) Delete(k Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		c.remove(e)
	}
}

// Sweep removes expired entries, examining at most n of them from where the last Sweep stopped, and
// says how many it removed and whether it reached the most recently used end. A caller that sweeps in rounds of a few thousand
// until done holds the lock only microseconds at a time, and reclaims the entries of refused tokens
// that nobody looks up again (a flood of junk) without waiting for them to be evicted.
func (c *Cache[V]) Sweep(n int) (removed int, done bool) {
	now := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.cursor
	if e == nil {
		e = c.tail
	}
	for ; e != nil && n > 0; n-- {
		prev := e.prev
		if now >= e.expires {
			c.remove(e)
			removed++
		}
		e = prev
	}
	c.cursor = e
	return removed, e == nil
}

// Len is the number of entries, expired ones included until they are looked up, swept or evicted.
func (c *Cache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *Cache[V]) pushFront(e *entry[V]) {
	e.prev, e.next = nil, c.head
	if c.head != nil {
		c.head.prev = e
	}
	c.head = e
	if c.tail == nil {
		c.tail = e
	}
}

func (c *Cache[V]) unlink(e *entry[V]) {
	if c.cursor == e {
		c.cursor = e.prev
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		c.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		c.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (c *Cache[V]) moveToFront(e *entry[V]) {
	if c.head != e {
		c.unlink(e)
		c.pushFront(e)
	}
}

func (c *Cache[V]) remove(e *entry[V]) {
	c.unlink(e)
	delete(c.entries, e.key)
}
