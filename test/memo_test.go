//go:build e2e

package e2e

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sent is one message of a stream: when its PUBLISH left and when its PUBACK came back. The broker
// checks each subscriber's read access between the two.
type sent struct{ at, acked time.Time }

// collect drains c's messages into a set of payloads until stop is closed.
func collect(c *client, stop <-chan struct{}, wg *sync.WaitGroup) map[string]bool {
	got := map[string]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case m := <-c.msgs:
				got[strings.TrimPrefix(m, "stream/t ")] = true
			case <-stop:
				return
			}
		}
	}()
	return got
}

// plugin.c remembers Go's ACL answers, so a stream of messages on one topic is answered from C after
// the first. With disconnect_on_expiry false, such a remembered allow must still end exactly at the
// token's exp: a subscriber receives every message acknowledged before its exp and none published from
// exp on, while a control subscriber, whose token lives an hour, receives them all. A second
// subscriber re-authenticates (MQTT 5 AUTH) mid-stream, which replaces its rights and lease: it keeps
// receiving past its first token's exp and until exactly its second token's.
func TestACLMemoEndsAtExp(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "", "acl_rule", "allow all stream/#", "disconnect_on_expiry", "false",
		"enhanced_auth_method", "OAUTH2-JWT",
		"jwt_verification", "true", "jwt_issuer", e.idp.URL, "jwt_audience", jwtAudiences)
	if !b.WaitLog("signing keys from", 10*time.Second) {
		t.Fatalf("no key fetch:\n%s", b.Log())
	}
	// shorty's tokens live 2 s from a whole second.
	tok := e.idp.Token("shorty", "shorty-secret", "urn:mqtt:es256")
	exp := jwtExpiry(t, tok)
	short, rc := connect5(t, b.Port, "memo-short", "device", tok)
	if rc != 0 {
		t.Fatalf("shorty: CONNACK %#x", rc)
	}
	renewer, rc := connectExt(t, b.Port, "memo-renewer", "OAUTH2-JWT", []byte(e.idp.Token("shorty", "shorty-secret", "urn:mqtt:es256")))
	if rc != 0 {
		t.Fatalf("renewer: CONNACK %#x", rc)
	}
	control := connectAs(t, b, e, "memo-control", "carol", "carol-secret")
	pub := connectAs(t, b, e, "memo-pub", "carol", "carol-secret")
	for _, c := range []*client{short, renewer, control} {
		expectSubscribe(t, c, "stream/#", true)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	gotShort, gotRenewer, gotControl := collect(short, stop, &wg), collect(renewer, stop, &wg), collect(control, stop, &wg)

	// The renewer re-authenticates 600 ms before the first exp; the stream runs past the second.
	var mu sync.Mutex
	var second time.Time
	renewed := make(chan bool, 1)
	time.AfterFunc(time.Until(exp.Add(-600*time.Millisecond)), func() {
		fresh := e.idp.Token("shorty", "shorty-secret", "urn:mqtt:es256")
		mu.Lock()
		second = jwtExpiry(t, fresh)
		mu.Unlock()
		renewed <- renewer.reauth(t, "OAUTH2-JWT", fresh)
	})
	msgs := map[string]sent{}
	for i := 0; ; i++ {
		at := time.Now()
		mu.Lock()
		end := second
		mu.Unlock()
		if !end.IsZero() && at.After(end.Add(500*time.Millisecond)) || at.After(exp.Add(5*time.Second)) {
			break
		}
		payload := strconv.Itoa(i)
		pub.Publish(t, "stream/t", payload)
		msgs[payload] = sent{at, time.Now()}
		time.Sleep(10 * time.Millisecond)
	}
	if !<-renewed {
		t.Fatal("re-authentication refused")
	}
	if !second.After(exp) {
		t.Fatalf("the fresh token expires no later than the first (%v)", second)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	check := func(name string, got map[string]bool, until time.Time) {
		t.Helper()
		before, late := 0, 0
		for p, m := range msgs {
			switch {
			case m.acked.Before(until) && !got[p]:
				t.Errorf("%s: message %s, acknowledged %v before exp, not received", name, p, until.Sub(m.acked))
			case !m.at.Before(until) && got[p]:
				t.Errorf("%s: message %s, published %v after exp, received", name, p, m.at.Sub(until))
			case got[p]:
				before++
			default:
				late++
			}
		}
		t.Logf("%s: %d received before exp, %d not received after it", name, before, late)
		if late == 0 {
			t.Errorf("%s: the stream did not run past exp", name)
		}
	}
	check("subscriber", gotShort, exp)
	check("re-authenticated subscriber", gotRenewer, second)
	if len(gotControl) != len(msgs) {
		t.Errorf("control subscriber received %d of %d messages", len(gotControl), len(msgs))
	}
	b.Alive()
}
