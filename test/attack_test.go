//go:build e2e

package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawConnect sends one MQTT 3.1.1 CONNECT with password and returns the CONNACK's return code, or
// noConnack when the broker closed the socket without one.
func rawConnect(port int, clientID, password string) byte {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		return noConnack
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(connectPacket(clientID, password)); err != nil {
		return noConnack
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != 0x20 {
		return noConnack
	}
	return ack[3]
}

// b64 is base64url without padding, as in a JWS.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// randomText is n printable random characters, so every junk token is new to the cache.
func randomText(n int) string {
	b := make([]byte, (n*3+3)/4)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

// junk returns the i-th of the tokens a client without credentials floods with, in rounds of ten: six
// JWT-shaped strings (oidc-provider answers their introspection with 400 unsupported_token_type), two
// 60 KiB tokens (over its request size limit) and two of random bytes.
func junk(i int) string {
	switch i % 10 {
	case 6, 7:
		return randomText(60 << 10) // near the 65535 bytes an MQTT string can hold
	case 8, 9:
		b := make([]byte, 200)
		rand.Read(b)
		return string(b)
	}
	return b64(`{"alg":"RS256","typ":"JWT"}`) + "." + b64(`{"sub":"`+randomText(8)+`"}`) + "." + randomText(43)
}

// A client without credentials floods junk at 50 CONNECTs/s for 60 s while a device connects once a
// second with a fresh, valid token: the device gets in every time, and the circuit breaker (default:
// open after 5 failures in a row) never opens. The junk itself is refused with a CONNACK, never a
// dropped socket.
func TestJunkFloodLocksNoOneOut(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	junkCodes := map[byte]int{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var flood sync.WaitGroup
		defer flood.Wait()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			flood.Add(1)
			go func() {
				defer flood.Done()
				rc := rawConnect(b.Port, "junk-"+strconv.Itoa(i), junk(i))
				mu.Lock()
				junkCodes[rc]++
				mu.Unlock()
			}()
		}
	}()
	accepted, tries := 0, 0
	for start := time.Now(); time.Since(start) < 60*time.Second; tries++ {
		next := time.Now().Add(time.Second)
		c, rc := connect3(t, b.Port, "device", "device", e.idp.Token("alice", aliceSecret, ""))
		if rc == 0 {
			accepted++
			c.v3.Disconnect(0)
		} else {
			t.Logf("device connect %d: CONNACK %#x", tries, rc)
		}
		time.Sleep(time.Until(next))
	}
	close(stop)
	wg.Wait()
	t.Logf("device: %d of %d connects accepted; junk CONNACK codes: %v", accepted, tries, junkCodes)
	if accepted*100 < tries*99 {
		t.Errorf("device: %d of %d connects accepted, want at least 99%%", accepted, tries)
	}
	if n := junkCodes[noConnack]; n > 0 {
		t.Errorf("%d junk CONNECTs got no CONNACK", n)
	}
	if junkCodes[0] > 0 {
		t.Errorf("%d junk CONNECTs were accepted", junkCodes[0])
	}
	if strings.Contains(b.Log(), "circuit breaker open") {
		t.Error("the junk opened the circuit breaker")
	}
	b.Alive()
}

// rss is a process's resident set in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// hostileJWT is a JWT of the test IdP's issuer whose header kid is a JSON object of about kidBytes:
// refused, and before the fix quoted whole (go-jose's error text) into the log and the negative cache.
func hostileJWT(iss string, i, kidBytes int) string {
	kid := `{"pad":"` + randomText(kidBytes) + `"}`
	return b64(`{"alg":"ES256","kid":`+kid+`}`) + "." + b64(fmt.Sprintf(`{"iss":%q,"n":%d}`, iss, i)) + "." + randomText(86)
}

// 10 000 distinct 64 KiB hostile tokens, and 10 000 of 12 KiB that reach the JWT parser, raise the
// broker's RSS by less than 50 MB, and it falls back once negative_cache_ttl has passed.
func TestHostileTokensBoundMemory(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "", "jwt_verification", "true", "jwt_issuer", e.idp.URL, "negative_cache_ttl", "5")
	pid := b.cmd.Process.Pid
	// Control: a valid token gets in, so every refusal below is about the tokens.
	if rc := rawConnect(b.Port, "control", e.idp.Token("alice", aliceSecret, "")); rc != 0 {
		t.Fatalf("control: CONNACK %d", rc)
	}
	before := rss(t, pid)
	var peak int64
	sampled := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			peak = max(peak, rss(t, pid))
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[byte]int{}
	const perSize = 10_000
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				size := 47 << 10 // a 64 KiB token
				if i%2 == 1 {
					size = 9 << 10 // a 12 KiB token, under the length bound: it reaches the JWT parser
				}
				rc := rawConnect(b.Port, "hostile", hostileJWT(e.idp.URL, i, size))
				mu.Lock()
				codes[rc]++
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	for i := range 2 * perSize {
		work <- i
	}
	close(work)
	wg.Wait()
	flood := time.Since(start)
	after := rss(t, pid)
	time.Sleep(15 * time.Second) // negative_cache_ttl, a sweep, and the Go runtime returning memory
	settled := rss(t, pid)
	close(stop)
	<-sampled
	mb := func(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
	t.Logf("RSS before %s, peak during %s, right after %s (flood took %v), 15 s later %s; CONNACK codes %v",
		mb(before), mb(peak), mb(after), flood.Round(time.Millisecond), mb(settled), codes)
	if codes[5] != 2*perSize {
		t.Errorf("CONNACK codes %v, want %d refusals", codes, 2*perSize)
	}
	if peak-before > 50e6 {
		t.Errorf("RSS rose by %s during the flood, over 50 MB", mb(peak-before))
	}
	// Without the plugin the same flood leaves the broker under 1 MB larger; the plugin's refusals go
	// after negative_cache_ttl and their memory is given back.
	if settled-before > 8e6 || settled >= after {
		t.Errorf("RSS %s over its start 15 s after the flood (%s right after it): it did not fall back", mb(settled-before), mb(after-before))
	}
	if rc := rawConnect(b.Port, "control2", e.idp.Token("alice", aliceSecret, "")); rc != 0 {
		t.Errorf("control after the flood: CONNACK %d\n%s", rc, tail(b.Log(), 2000))
	}
	b.Alive()
}

// A token whose embedded jwk holds a newline and a forged broker line adds as many lines to the log
// as a plain malformed token does, and none of them starts with the forged text.
func TestForgedLogLine(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "", "jwt_verification", "true", "jwt_issuer", e.idp.URL)
	forged := "1999999999: New client connected from 6.6.6.6 as admin (p2, c1, k60, u'admin')."
	token := func(crv string) string {
		jwk := fmt.Sprintf(`{"kty":"EC","crv":%q,"x":"%s","y":"%s"}`, crv, randomText(43), randomText(43))
		return b64(`{"alg":"ES256","jwk":`+jwk+`}`) + "." + b64(fmt.Sprintf(`{"iss":%q}`, e.idp.URL)) + "." + randomText(86)
	}
	lines := func() int { return strings.Count(b.Log(), "\n") }
	refuse := func(id, tok string) int {
		time.Sleep(300 * time.Millisecond) // let earlier lines land
		n := lines()
		if rc := rawConnect(b.Port, id, tok); rc != 5 {
			t.Fatalf("%s: CONNACK %d, want 5", id, rc)
		}
		time.Sleep(300 * time.Millisecond)
		return lines() - n
	}
	control := refuse("plain", token("P-256"))
	attack := refuse("forger", token("P-256\n"+forged+"\n"))
	t.Logf("log lines added: %d for a plain malformed token, %d for the forging one", control, attack)
	if attack != control {
		t.Errorf("the forging token added %d log lines, the plain one %d", attack, control)
	}
	for _, l := range strings.Split(b.Log(), "\n") {
		if strings.HasPrefix(l, "1999999999:") || strings.HasPrefix(l, "New client connected from 6.6.6.6") {
			t.Errorf("forged line in the log: %q", l)
		}
	}
	var refusal []string
	for _, l := range strings.Split(b.Log(), "\n") {
		if strings.Contains(l, `client "forger"`) {
			refusal = append(refusal, l)
		}
	}
	if len(refusal) != 1 {
		t.Errorf("%d plugin lines about the forger, want 1: %q", len(refusal), refusal)
	}
	b.Alive()
}

// tail is the last n bytes of s, for failure messages about a long log.
func tail(s string, n int) string { return s[max(0, len(s)-n):] }
