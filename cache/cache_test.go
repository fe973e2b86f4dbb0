package cache

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestGetPutExpiry(t *testing.T) {
	clk := &clock{time.Unix(1000, 0)}
	c := New[string](10, clk.now)
	k := KeyOf("token")
	if _, ok := c.Get(k); ok {
		t.Fatal("hit in an empty cache")
	}
	c.Put(k, "v", clk.t.Add(time.Minute))
	if v, ok := c.Get(k); !ok || v != "v" {
		t.Fatalf("got %q %v", v, ok)
	}
	clk.t = clk.t.Add(time.Minute)
	if _, ok := c.Get(k); ok {
		t.Error("hit at the expiry instant")
	}
	if c.Len() != 0 {
		t.Error("expired entry not removed on lookup")
	}
	c.Put(k, "past", clk.t)
	if c.Len() != 0 {
		t.Error("stored an entry that had already expired")
	}
}

func TestLRUEviction(t *testing.T) {
	clk := &clock{time.Unix(1000, 0)}
	c := New[int](3, clk.now)
	exp := clk.t.Add(time.Hour)
	for i := 0; i < 3; i++ {
		c.Put(KeyOf(fmt.Sprint(i)), i, exp)
	}
	c.Get(KeyOf("0"))          // 0 is now the most recently used; 1 the least
	c.Put(KeyOf("3"), 3, exp)  // evicts 1
	c.Put(KeyOf("0"), 10, exp) // replaces, no eviction
	for k, want := range map[string]bool{"0": true, "1": false, "2": true, "3": true} {
		if _, ok := c.Get(KeyOf(k)); ok != want {
			t.Errorf("key %s present=%v, want %v", k, ok, want)
		}
	}
	if v, _ := c.Get(KeyOf("0")); v != 10 {
		t.Errorf("replaced value %d, want 10", v)
	}
	if c.Len() != 3 {
		t.Errorf("len %d, want 3", c.Len())
	}
}

func TestDisabled(t *testing.T) {
	c := New[int](0, nil)
	c.Put(KeyOf("a"), 1, time.Now().Add(time.Hour))
	if _, ok := c.Get(KeyOf("a")); ok {
		t.Error("a cache of size 0 stored an entry")
	}
}

func TestConcurrent(t *testing.T) {
	c := New[int](100, nil)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				k := KeyOf(fmt.Sprint(i % 150))
				c.Put(k, g, time.Now().Add(time.Minute))
				c.Get(k)
			}
		}(g)
	}
	wg.Wait()
	if c.Len() > 100 {
		t.Errorf("len %d exceeds the bound", c.Len())
	}
}

func BenchmarkHit(b *testing.B) {
	c := New[int](1000, nil)
	tok := "eyJhbGciOiJSUzI1NiJ9.a-typical-token-of-some-length-0123456789abcdef"
	c.Put(KeyOf(tok), 1, time.Now().Add(time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Get(KeyOf(tok)); !ok {
			b.Fatal("miss")
		}
	}
}

// Sweep removes every expired entry and no live one, however lookups, puts and evictions move entries
// between its rounds.
func TestSweep(t *testing.T) {
	clk := &clock{time.Unix(1000, 0)}
	c := New[int](500, clk.now)
	live := map[Key]bool{}
	for i := 0; i < 1000; i++ {
		k := KeyOf(fmt.Sprint(i))
		ttl := time.Second
		if i%3 == 0 {
			ttl = time.Hour
		}
		c.Put(k, i, clk.t.Add(ttl))
		if i%7 == 0 {
			c.Get(KeyOf(fmt.Sprint(i / 2))) // moves an older entry to the front
		}
		if i%5 == 0 {
			c.Sweep(3) // a round with nothing expired yet, leaving the cursor mid-list
		}
	}
	clk.t = clk.t.Add(time.Minute)
	rounds := 0
	for done := false; !done; rounds++ {
		_, done = c.Sweep(7)
		// Between rounds the broker keeps using the cache.
		c.Get(KeyOf(fmt.Sprint(rounds * 3)))
		c.Put(KeyOf(fmt.Sprint("new", rounds)), rounds, clk.t.Add(time.Hour))
		live[KeyOf(fmt.Sprint("new", rounds))] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if clk.t.UnixNano() >= e.expires {
			t.Errorf("expired entry %d left after a full sweep", e.val)
		}
		delete(live, k)
	}
	if len(live) != 0 {
		t.Errorf("%d live entries put during the sweep are gone", len(live))
	}
	n := 0
	for e := c.head; e != nil; e = e.next {
		n++
	}
	if n != len(c.entries) {
		t.Errorf("list has %d entries, map %d", n, len(c.entries))
	}
}
