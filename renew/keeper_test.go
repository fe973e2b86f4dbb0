package renew

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// fakeBroker is just enough of an MQTT 5 server to answer CONNECT and AUTH as a broker with or
// without the method would. Each connection's CONNECT is recorded.
type fakeBroker struct {
	ln       net.Listener
	method   string // the method it takes; "" answers a CONNECT naming one with 0x8C
	reauthOK bool   // whether it accepts re-authentication
	mu       sync.Mutex
	connects []*packets.Connect
}

func newFakeBroker(t *testing.T, method string, reauthOK bool) *fakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBroker{ln: ln, method: method, reauthOK: reauthOK}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(conn)
		}
	}()
	return b
}

func (b *fakeBroker) url() *url.URL { return &url.URL{Scheme: "mqtt", Host: b.ln.Addr().String()} }

func (b *fakeBroker) serve(conn net.Conn) {
	defer conn.Close()
	send := func(typ byte, set func(*packets.ControlPacket)) {
		p := packets.NewControlPacket(typ)
		set(p)
		p.WriteTo(conn)
	}
	for {
		p, err := packets.ReadPacket(conn)
		if err != nil {
			return
		}
		switch c := p.Content.(type) {
		case *packets.Connect:
			b.mu.Lock()
			b.connects = append(b.connects, c)
			b.mu.Unlock()
			method := c.Properties.AuthMethod
			send(packets.CONNACK, func(p *packets.ControlPacket) {
				if method != "" && method != b.method {
					p.Content.(*packets.Connack).ReasonCode = 0x8C
				} else if method != "" {
					p.Content.(*packets.Connack).Properties.AuthMethod = method
				}
			})
			if method != "" && method != b.method {
				return
			}
		case *packets.Auth:
			if b.reauthOK {
				send(packets.AUTH, func(p *packets.ControlPacket) {
					p.Content.(*packets.Auth).Properties.AuthMethod = c.Properties.AuthMethod
				})
				continue
			}
			send(packets.DISCONNECT, func(p *packets.ControlPacket) { p.Content.(*packets.Disconnect).ReasonCode = 0x87 })
			return
		case *packets.Pingreq:
			send(packets.PINGRESP, func(*packets.ControlPacket) {})
		case *packets.Disconnect:
			return
		}
	}
}

// connected returns what each CONNECT carried: the method, and the password or auth data.
func (b *fakeBroker) connected() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, c := range b.connects {
		if c.Properties.AuthMethod != "" {
			out = append(out, c.Properties.AuthMethod+":"+string(c.Properties.AuthData))
		} else {
			out = append(out, "password:"+string(c.Password))
		}
	}
	return out
}

// keep runs a Keeper against b with 2-second tokens renewed halfway, until two renewals are done.
func keep(t *testing.T, b *fakeBroker) ([]Renewal, []string) {
	t.Helper()
	src := &source{ttl: 2 * time.Second}
	var mu sync.Mutex
	var renewals []Renewal
	var logs []string
	two := make(chan struct{})
	k := New(src, Options{AuthMethod: "OAUTH2-JWT", Margin: time.Minute,
		Logf: func(f string, a ...any) {
			mu.Lock()
			logs = append(logs, fmt.Sprintf(f, a...))
			mu.Unlock()
		},
		OnRenew: func(r Renewal) {
			mu.Lock()
			defer mu.Unlock()
			if renewals = append(renewals, r); len(renewals) == 2 {
				close(two)
			}
		}})
	cfg := autopaho.ClientConfig{ServerUrls: []*url.URL{b.url()}, KeepAlive: 30,
		ReconnectBackoff: func(int) time.Duration { return 0 }, ClientConfig: paho.ClientConfig{ClientID: "k"}}
	k.Configure(&cfg)
	ctx, cancel := context.WithCancel(t.Context())
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx, cm) }()
	select {
	case <-two:
	case <-time.After(10 * time.Second):
		t.Fatalf("no two renewals in 10 s; logs %q, connects %q", logs, b.connected())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-cm.Done()
	mu.Lock()
	defer mu.Unlock()
	return append([]Renewal(nil), renewals...), append([]string(nil), logs...)
}

// The Keeper against brokers that take the method and re-authentication, that refuse the method at
// CONNECT, and that take it at CONNECT but refuse re-authentication.
func TestKeeper(t *testing.T) {
	for _, tc := range []struct {
		name         string
		method       string
		reauthOK     bool
		reconnected  bool
		say          string
		connectsWith string // every accepted CONNECT's credential kind
	}{
		{"re-authentication", "OAUTH2-JWT", true, false, "", "OAUTH2-JWT:"},
		{"method refused at CONNECT", "", false, true, "the broker does not take authentication method OAUTH2-JWT (CONNACK 0x8C)", "password:"},
		{"re-authentication refused", "OAUTH2-JWT", false, true, "the broker refused re-authentication (reason 0x87)", "OAUTH2-JWT:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBroker(t, tc.method, tc.reauthOK)
			renewals, logs := keep(t, b)
			for _, r := range renewals {
				if r.Reconnected != tc.reconnected || r.Exp.Before(r.Done) {
					t.Errorf("renewal %+v, want reconnected %v", r, tc.reconnected)
				}
			}
			if tc.say == "" && len(logs) != 0 || tc.say != "" && (len(logs) != 1 || !strings.HasPrefix(logs[0], tc.say)) {
				t.Errorf("logs %q, want %q once", logs, tc.say)
			}
			connects := b.connected()
			if tc.method == "" {
				connects = connects[1:] // the one refused with 0x8C
			}
			seen := map[string]bool{}
			for _, c := range connects {
				if !strings.HasPrefix(c, tc.connectsWith) || seen[c] {
					t.Errorf("connects %q: want each with %s and a token of its own", connects, tc.connectsWith)
					break
				}
				seen[c] = true
			}
			if want := 1; !tc.reconnected && len(connects) != want {
				t.Errorf("%d connections, want %d", len(connects), want)
			}
		})
	}
}
