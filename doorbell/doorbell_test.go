package doorbell

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBroker accepts one connection, answers its CONNECT with a CONNACK and reports every packet
// type byte it reads after that.
func fakeBroker(t *testing.T) (addr string, connects chan []byte, pings chan struct{}) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	connects, pings = make(chan []byte, 1), make(chan struct{}, 100)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		hdr := make([]byte, 1)
		io.ReadFull(c, hdr)
		n, mult := 0, 1
		for {
			b := make([]byte, 1)
			io.ReadFull(c, b)
			n += int(b[0]&0x7f) * mult
			mult *= 128
			if b[0]&0x80 == 0 {
				break
			}
		}
		body := make([]byte, n)
		io.ReadFull(c, body)
		connects <- body
		c.Write([]byte{0x20, 0x02, 0x00, 0x00})
		p := make([]byte, 2)
		for {
			if _, err := io.ReadFull(c, p); err != nil {
				return
			}
			if bytes.Equal(p, pingreq) {
				pings <- struct{}{}
				c.Write([]byte{0xD0, 0x00})
			}
		}
	}()
	return l.Addr().String(), connects, pings
}

func TestRingConnectsThenPings(t *testing.T) {
	addr, connects, pings := fakeBroker(t)
	b, err := New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Ring() // no connection yet: starts one
	select {
	case body := <-connects:
		if !bytes.Contains(body, []byte(b.ID)) || !bytes.Contains(body, []byte(b.secret)) {
			t.Error("CONNECT lacks the id or the secret")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no CONNECT")
	}
	deadline := time.Now().Add(5 * time.Second)
	got := 0
	for got < 3 && time.Now().Before(deadline) {
		b.Ring()
		select {
		case <-pings:
			got++
		case <-time.After(50 * time.Millisecond):
		}
	}
	if got < 3 {
		t.Fatalf("%d pings arrived", got)
	}
}

func TestMatches(t *testing.T) {
	b, err := New("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New("127.0.0.1:1")
	tests := []struct {
		id, pass, addr string
		want           bool
	}{
		{b.ID, b.secret, "127.0.0.1", true},
		{b.ID, b.secret, "::1", true},
		{b.ID, b.secret, "192.0.2.7", false},
		{b.ID, other.secret, "127.0.0.1", false},
		{other.ID, b.secret, "127.0.0.1", false},
		{b.ID, "", "127.0.0.1", false},
		{b.ID, b.secret, "", false},
	}
	for i, tt := range tests {
		if got := b.Matches(tt.id, tt.pass, tt.addr); got != tt.want {
			t.Errorf("case %d: Matches = %v, want %v", i, got, tt.want)
		}
	}
	if b.ID == other.ID || b.secret == other.secret {
		t.Error("two bells share an id or a secret")
	}
}

func TestUnreachableBrokerIsNotRedialledAtOnce(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	b, _ := New(addr)
	var logged []string
	var mu sync.Mutex
	b.Log = func(msg string) { mu.Lock(); logged = append(logged, msg); mu.Unlock() }
	dials := 0
	dial := b.dial
	b.dial = func() (net.Conn, error) { dials++; return dial() }
	for i := 0; i < 20; i++ {
		b.Ring()
		time.Sleep(5 * time.Millisecond)
	}
	if dials != 1 {
		t.Errorf("%d dials to a broker that refused the first", dials)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(logged) != 1 || !strings.Contains(logged[0], "cannot connect to "+addr) {
		t.Errorf("logged %q, want one line saying the bell cannot connect", logged)
	}
}

func TestConnectPacketLength(t *testing.T) {
	b, _ := New("127.0.0.1:1")
	p := connectPacket(b.ID, b.secret)
	n, i := 0, 1
	for mult := 1; ; mult *= 128 {
		n += int(p[i]&0x7f) * mult
		if p[i]&0x80 == 0 {
			break
		}
		i++
	}
	if n != len(p)-i-1 {
		t.Errorf("remaining length %d, body %d bytes", n, len(p)-i-1)
	}
}

// A listener that takes the TCP connection but never answers the CONNECT (TLS only, say) is reported
// once, like one that refuses connections.
func TestListenerWithoutCONNACKIsReported(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	b, _ := New(l.Addr().String())
	logged := make(chan string, 10)
	b.Log = func(msg string) { logged <- msg }
	defer b.Close()
	for range 5 {
		b.Ring()
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case msg := <-logged:
		if !strings.Contains(msg, "cannot connect") {
			t.Errorf("logged %q", msg)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing logged")
	}
	select {
	case msg := <-logged:
		t.Errorf("logged twice: %q", msg)
	case <-time.After(100 * time.Millisecond):
	}
}
