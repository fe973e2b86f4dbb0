// Package doorbell wakes Mosquitto's event loop from another goroutine.
//
// Mosquitto 2.1 completes a delayed check only when it runs the plugin's tick, and it runs ticks when
// its event loop wakes: on socket activity, or after about 100 ms when nothing happens, whatever
// interval the plugin asks for. A plugin has no call to wake the loop from another thread. So the bell
// is an MQTT connection of the plugin's own to the broker: a PINGREQ on it is socket activity, the loop
// wakes, the tick runs and the answer goes out at once instead of up to 100 ms later.
//
// The connection authenticates with a random client id and a random 256-bit secret that exist only in
// this process's memory; the plugin accepts that pair, from a loopback address only, before any other
// check. The bell never publishes or subscribes.
package doorbell

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// pingreq is the two-byte MQTT PINGREQ packet: the cheapest thing a client can send.
var pingreq = []byte{0xC0, 0x00}

// redialAfter keeps a broker that refuses the bell (a TLS-only listener, say) from being dialled on
// every answer.
const redialAfter = 10 * time.Second

// Bell is one connection to the broker used only to wake it. Its methods are safe for concurrent use.
type Bell struct {
	ID     string // the MQTT client id the bell connects with
	secret string
	addr   string
	dial   func() (net.Conn, error)
	// Log, when set before the first Ring, receives a line when the bell cannot connect and when it
	// connects again: once per change, from a background goroutine.
	Log func(msg string)

	mu       sync.Mutex
	conn     net.Conn
	dialling bool
	retryAt  time.Time
	closed   bool
	failing  bool // the last dial failed
}

// New makes a bell that connects to addr (host:port of a plain-TCP listener) when first rung.
func New(addr string) (*Bell, error) {
	id, err := randomHex(8)
	if err != nil {
		return nil, err
	}
	secret, err := randomHex(32)
	if err != nil {
		return nil, err
	}
	return &Bell{
		ID:     "oauth2-doorbell-" + id,
		secret: secret,
		addr:   addr,
		dial:   func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 2*time.Second) },
	}, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("doorbell: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Matches says whether a CONNECT is the bell's own: its client id and secret, from a loopback address.
func (b *Bell) Matches(clientID, password, address string) bool {
	if clientID != b.ID {
		return false
	}
	ip := net.ParseIP(address)
	return ip != nil && ip.IsLoopback() && subtle.ConstantTimeCompare([]byte(password), []byte(b.secret)) == 1
}

// Ring wakes the broker with one PINGREQ. Callers coalesce rings themselves (the plugin rings once per
// tick at most). Without a connection yet it starts one in the background and the broker wakes on its
// own timer this time.
func (b *Bell) Ring() {
	b.mu.Lock()
	conn := b.conn
	if conn == nil {
		b.connectLocked()
	}
	b.mu.Unlock()
	if conn != nil {
		if _, err := conn.Write(pingreq); err != nil {
			b.drop(conn)
		}
	}
}

// Close ends the connection; later rings do nothing.
func (b *Bell) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.conn != nil {
		b.conn.Close()
		b.conn = nil
	}
}

// connectLocked dials in the background: the broker answers the CONNECT from its own thread, which may
// be the caller's.
func (b *Bell) connectLocked() {
	if b.dialling || b.closed || time.Now().Before(b.retryAt) {
		return
	}
	b.dialling = true
	go func() {
		conn, err := b.dial()
		if err == nil {
			_, err = conn.Write(connectPacket(b.ID, b.secret))
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		b.dialling = false
		if err != nil || b.closed {
			b.retryAt = time.Now().Add(redialAfter)
			if conn != nil {
				conn.Close()
			}
			if err != nil {
				b.failedLocked(err)
			}
			return
		}
		b.conn = conn
		go b.discard(conn)
	}()
}

// failedLocked records that the bell could not get in, and says so once until it gets in again.
func (b *Bell) failedLocked(err error) {
	if !b.failing && b.Log != nil {
		b.Log(fmt.Sprintf("doorbell: cannot connect to %s (%v): delayed answers wait for the broker's own wake-ups; retrying every %v",
			b.addr, err, redialAfter))
	}
	b.failing = true
}

// discard checks the broker's CONNACK, then reads and drops what it sends (PINGRESPs) until the
// connection ends, so the broker never blocks writing to the bell.
func (b *Bell) discard(conn net.Conn) {
	connack := make([]byte, 4)
	_, err := io.ReadFull(conn, connack)
	if err == nil && (connack[0] != 0x20 || connack[3] != 0) {
		err = fmt.Errorf("CONNACK %x", connack)
	}
	b.mu.Lock()
	switch {
	case err != nil && !b.closed:
		b.failedLocked(err)
	case err == nil && b.failing:
		b.failing = false
		if b.Log != nil {
			b.Log("doorbell: connected to " + b.addr)
		}
	}
	b.mu.Unlock()
	if err == nil {
		io.Copy(io.Discard, conn)
	}
	b.drop(conn)
}

func (b *Bell) drop(conn net.Conn) {
	conn.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == conn {
		b.conn = nil
		b.retryAt = time.Now().Add(redialAfter)
	}
}

// connectPacket is an MQTT 3.1.1 CONNECT: clean session, no keepalive (the bell may stay silent for
// hours), username and client id the same, and the secret as password.
func connectPacket(id, secret string) []byte {
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	body := append(str("MQTT"), 4, 0xC2, 0, 0)
	body = append(body, str(id)...)
	body = append(body, str(id)...)
	body = append(body, str(secret)...)
	pkt := []byte{0x10}
	for n := len(body); ; { // remaining length: 7 bits a byte, high bit set while more follow
		digit := byte(n % 128)
		if n /= 128; n > 0 {
			digit |= 0x80
		}
		pkt = append(pkt, digit)
		if n == 0 {
			return append(pkt, body...)
		}
	}
}
