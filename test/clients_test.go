//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// noConnack stands for "the broker closed the socket without a CONNACK": what a plugin returning a
// wrong code causes, and what the tests must never see.
const noConnack = 0xFF

// client is one connected MQTT client of either protocol version, with the messages it received.
type client struct {
	v3   mqtt.Client
	v5   *paho.Client
	msgs chan string    // "topic payload"
	lost chan time.Time // when the broker ended the connection
}

// connectionLost records the first time the broker ends the connection.
func (c *client) connectionLost() {
	select {
	case c.lost <- time.Now():
	default:
	}
}

// connect3 connects with MQTT 3.1.1 and returns the CONNACK return code; the client is nil unless 0.
func connect3(t *testing.T, port int, id, user, pass string) (*client, byte) {
	t.Helper()
	c := &client{msgs: make(chan string, 100), lost: make(chan time.Time, 1)}
	opts := mqtt.NewClientOptions().
		AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", port)).
		SetClientID(id).SetUsername(user).SetPassword(pass).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(10 * time.Second).SetCleanSession(true).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			c.msgs <- m.Topic() + " " + string(m.Payload())
		}).
		SetConnectionLostHandler(func(mqtt.Client, error) { c.connectionLost() })
	c.v3 = mqtt.NewClient(opts)
	tok := c.v3.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		t.Fatal("MQTT 3.1.1 connect timed out")
	}
	rc := tok.(*mqtt.ConnectToken).ReturnCode()
	if rc == 0 && tok.Error() != nil || rc == 0xFE {
		return nil, noConnack
	}
	if rc != 0 {
		return nil, rc
	}
	t.Cleanup(func() { c.v3.Disconnect(0) })
	return c, 0
}

// connect5 connects with MQTT 5 and returns the CONNACK reason code; the client is nil unless 0.
func connect5(t *testing.T, port int, id, user, pass string) (*client, byte) {
	t.Helper()
	return connectV5(t, port, nil, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true,
		Username: user, UsernameFlag: user != "", Password: []byte(pass), PasswordFlag: pass != ""})
}

// connectV5 sends cp with paho's v5 client (auther, when set, handles enhanced authentication) and
// returns the CONNACK reason code; the client is nil unless 0.
func connectV5(t *testing.T, port int, auther paho.Auther, cp *paho.Connect) (*client, byte) {
	t.Helper()
	c := &client{msgs: make(chan string, 100), lost: make(chan time.Time, 1)}
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	c.v5 = paho.NewClient(paho.ClientConfig{
		Conn:        conn,
		AuthHandler: auther,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet.Topic + " " + string(pr.Packet.Payload)
			return true, nil
		}},
		OnServerDisconnect: func(*paho.Disconnect) { c.connectionLost() },
		OnClientError:      func(error) { c.connectionLost() },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ca, err := c.v5.Connect(ctx, cp)
	if ca == nil {
		conn.Close()
		return nil, noConnack
	}
	if err != nil || ca.ReasonCode != 0 {
		return nil, ca.ReasonCode
	}
	t.Cleanup(func() { c.v5.Disconnect(&paho.Disconnect{}) })
	return c, 0
}

// Subscribe subscribes at QoS 1 and returns the granted code (0-2, or a failure code >= 0x80).
func (c *client) Subscribe(t *testing.T, filter string) byte {
	t.Helper()
	if c.v5 != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sa, err := c.v5.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
		if sa == nil {
			t.Fatalf("subscribe %s: %v", filter, err)
		}
		return sa.Reasons[0]
	}
	tok := c.v3.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return tok.(*mqtt.SubscribeToken).Result()[filter]
}

// Publish publishes at QoS 1 and waits for the PUBACK.
func (c *client) Publish(t *testing.T, topic, payload string) {
	t.Helper()
	if c.v5 != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.v5.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
			t.Fatalf("publish %s: %v", topic, err)
		}
		return
	}
	tok := c.v3.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// PublishRC publishes at QoS 1 with MQTT 5 and returns the PUBACK reason code (0x87: not authorized).
func (c *client) PublishRC(t *testing.T, topic, payload string) byte {
	t.Helper()
	if c.v5 == nil {
		t.Fatal("PublishRC needs an MQTT 5 client")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := c.v5.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if pr == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return pr.ReasonCode
}

// Expect waits for one message and checks it.
func (c *client) Expect(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-c.msgs:
		if got != want {
			t.Errorf("received %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("did not receive %q", want)
	}
}

// ExpectNothing checks that no message arrives for a short while.
func (c *client) ExpectNothing(t *testing.T) {
	t.Helper()
	select {
	case got := <-c.msgs:
		t.Errorf("received %q, want nothing", got)
	case <-time.After(300 * time.Millisecond):
	}
}

// connectFunc is connect3 or connect5, so cases run under both protocol versions.
type connectFunc func(t *testing.T, port int, id, user, pass string) (*client, byte)

// protocols runs a case under both protocol versions, with the code a refusal must carry in each:
// CONNACK 5 for MQTT 3.1.1, reason code 0x87 for MQTT 5.
var protocols = []struct {
	name    string
	connect connectFunc
	refused byte
}{
	{"mqtt311", connect3, 5},
	{"mqtt5", connect5, 0x87},
}

// connectPacket is a raw MQTT 3.1.1 CONNECT with clean session, username "device" and the given
// password, for clients that must leave before their CONNACK or without a DISCONNECT. will, when
// given, is the topic and message of a QoS 0 Will.
func connectPacket(clientID, password string, will ...string) []byte {
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	flags := byte(0xC2) // username, password, clean session
	if len(will) == 2 {
		flags |= 0x04
	}
	body := append(str("MQTT"), 4, flags, 0, 60) // level 4; keepalive 60
	body = append(body, str(clientID)...)
	if len(will) == 2 {
		body = append(append(body, str(will[0])...), str(will[1])...)
	}
	body = append(body, str("device")...)
	body = append(body, str(password)...)
	pkt := []byte{0x10}
	for n := len(body); ; {
		b := byte(n % 128)
		if n /= 128; n > 0 {
			b |= 0x80
		}
		pkt = append(pkt, b)
		if n == 0 {
			break
		}
	}
	return append(pkt, body...)
}
