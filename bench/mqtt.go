package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The bench speaks just enough MQTT 3.1.1 by hand: a client library would add its own goroutines,
// buffering and retries to every connect and blur what the broker itself costs. TLS is crypto/tls.

// MQTT 3.1.1 fixed-header first bytes of the packets the bench sends or expects.
const (
	pktConnect    = 0x10
	pktConnack    = 0x20
	pktPublish    = 0x30 // QoS 0, no DUP, no RETAIN; QoS 1 is pktPublish | 0x02
	pktPuback     = 0x40
	pktSubscribe  = 0x82 // SUBSCRIBE requires flags 0b0010
	pktSuback     = 0x90
	pktDisconnect = 0xE0
)

// maxRemainingLength is the largest value the four-byte varint can carry (MQTT 3.1.1 §2.2.3).
const maxRemainingLength = 268_435_455

// maxPacket bounds what readPacket accepts: the bench only ever receives tiny packets, so anything
// bigger means the stream is out of sync and must not make it allocate 256 MiB.
const maxPacket = 64 << 10

// clientKeepAlive is the keepalive every bench client asks for, in seconds: within the bench
// broker's max_keepalive 600, which a 2.1 broker enforces on 3.1.1 clients with CONNACK 2.
const clientKeepAlive = 60

// disconnectPacket is the whole DISCONNECT packet: no variable header, no payload.
var disconnectPacket = []byte{pktDisconnect, 0x00}

// errMalformed is wrapped by every decoding error so callers can tell protocol damage from I/O errors.
var errMalformed = errors.New("malformed MQTT packet")

// appendRemainingLength appends n in MQTT's variable-length encoding: 7 bits per byte, low group first,
// high bit set when more bytes follow.
func appendRemainingLength(b []byte, n int) []byte {
	if n < 0 || n > maxRemainingLength {
		panic(fmt.Sprintf("remaining length %d out of range", n))
	}
	for {
		digit := byte(n % 128)
		n /= 128
		if n > 0 {
			digit |= 0x80
		}
		b = append(b, digit)
		if n == 0 {
			return b
		}
	}
}

// readRemainingLength decodes the variable-length integer that follows a fixed header's first byte. More
// than four bytes is a protocol error, not a bigger number.
func readRemainingLength(r io.ByteReader) (int, error) {
	n, mult := 0, 1
	for i := 0; i < 4; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, fmt.Errorf("reading remaining length: %w", err)
		}
		n += int(b&0x7F) * mult
		if b&0x80 == 0 {
			return n, nil
		}
		mult *= 128
	}
	return 0, fmt.Errorf("%w: remaining length longer than 4 bytes", errMalformed)
}

// appendString appends s as an MQTT UTF-8 string: a two-byte big-endian length, then the bytes.
func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// packet frames body behind the fixed header byte first.
func packet(first byte, body []byte) []byte {
	out := appendRemainingLength([]byte{first}, len(body))
	return append(out, body...)
}

// encodeConnect builds a clean-session MQTT 3.1.1 CONNECT carrying a username and a password, the way a
// device presents its access token to the plugin.
func encodeConnect(clientID, username, password string, keepAlive uint16) []byte {
	const flags = 0x80 | 0x40 | 0x02 // username, password, clean session
	body := appendString(nil, "MQTT")
	body = append(body, 4, flags) // protocol level 4 = 3.1.1
	body = binary.BigEndian.AppendUint16(body, keepAlive)
	body = appendString(body, clientID)
	body = appendString(body, username)
	body = appendString(body, password)
	return packet(pktConnect, body)
}

// encodeSubscribe builds a SUBSCRIBE for a single topic filter.
func encodeSubscribe(packetID uint16, filter string, qos byte) []byte {
	body := binary.BigEndian.AppendUint16(nil, packetID)
	body = appendString(body, filter)
	body = append(body, qos)
	return packet(pktSubscribe, body)
}

// encodePublish builds a PUBLISH at QoS 0, which has no packet identifier, or QoS 1, which carries id.
func encodePublish(topic string, qos byte, id uint16, payload []byte) []byte {
	body := appendString(nil, topic)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, id)
	}
	body = append(body, payload...)
	return packet(pktPublish|qos<<1, body)
}

// appendPuback appends the PUBACK that acknowledges the QoS 1 PUBLISH with packet identifier id.
func appendPuback(b []byte, id uint16) []byte {
	return binary.BigEndian.AppendUint16(append(b, pktPuback, 2), id)
}

// readPacket reads one whole packet and returns its first byte and the rest after the remaining length.
func readPacket(r *bufio.Reader) (byte, []byte, error) {
	first, err := r.ReadByte()
	if err != nil {
		return 0, nil, fmt.Errorf("reading fixed header: %w", err)
	}
	n, err := readRemainingLength(r)
	if err != nil {
		return 0, nil, err
	}
	if n > maxPacket {
		return 0, nil, fmt.Errorf("%w: %d-byte packet (type %#x) is larger than the bench expects", errMalformed, n, first)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, fmt.Errorf("reading %d-byte body of packet type %#x: %w", n, first, err)
	}
	return first, body, nil
}

// decodePublish splits a PUBLISH body into topic, packet identifier (0 at QoS 0, which has none) and
// payload.
func decodePublish(first byte, body []byte) (string, uint16, []byte, error) {
	if first&0xF0 != pktPublish {
		return "", 0, nil, fmt.Errorf("%w: packet type %#x is not PUBLISH", errMalformed, first)
	}
	if len(body) < 2 {
		return "", 0, nil, fmt.Errorf("%w: PUBLISH shorter than its topic length", errMalformed)
	}
	n := int(binary.BigEndian.Uint16(body))
	rest := body[2:]
	if len(rest) < n {
		return "", 0, nil, fmt.Errorf("%w: PUBLISH topic runs past the packet", errMalformed)
	}
	topic, rest := string(rest[:n]), rest[n:]
	var id uint16
	if (first>>1)&0x03 != 0 {
		if len(rest) < 2 {
			return "", 0, nil, fmt.Errorf("%w: PUBLISH QoS>0 without packet identifier", errMalformed)
		}
		id, rest = binary.BigEndian.Uint16(rest), rest[2:]
	}
	return topic, id, rest, nil
}

// connackCode checks that a packet is a CONNACK and returns its return code (0 = accepted).
func connackCode(first byte, body []byte) (byte, error) {
	if first != pktConnack || len(body) != 2 {
		return 0, fmt.Errorf("%w: expected CONNACK, got type %#x with %d bytes", errMalformed, first, len(body))
	}
	return body[1], nil
}

// mqttConn is one raw MQTT connection with a buffered reader for incoming packets.
type mqttConn struct {
	net.Conn
	r *bufio.Reader
}

// endpoint is where a broker listens, and how to reach it: plain TCP, or TLS when TLS is set.
type endpoint struct {
	Addr string
	TLS  *tls.Config
}

// dial opens a connection and, for TLS, completes the handshake before deadline.
func (ep endpoint) dial(deadline time.Time) (net.Conn, error) {
	d := &net.Dialer{Deadline: deadline}
	if ep.TLS == nil {
		return d.Dial("tcp", ep.Addr)
	}
	return (&tls.Dialer{NetDialer: d, Config: ep.TLS}).DialContext(context.Background(), "tcp", ep.Addr)
}

// dialConnect opens a connection, sends CONNECT and waits for the CONNACK, all within timeout. It
// returns the CONNACK return code; a refusal (non-zero code) is not an error, the caller counts it.
func dialConnect(ep endpoint, clientID, username, password string, timeout time.Duration) (*mqttConn, byte, error) {
	deadline := time.Now().Add(timeout)
	nc, err := ep.dial(deadline)
	if err != nil {
		return nil, 0, fmt.Errorf("dial %s: %w", ep.Addr, err)
	}
	c := &mqttConn{Conn: nc, r: bufio.NewReaderSize(nc, 512)}
	if err := c.SetDeadline(deadline); err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("set deadline: %w", err)
	}
	if _, err := c.Write(encodeConnect(clientID, username, password, clientKeepAlive)); err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("write CONNECT: %w", err)
	}
	first, body, err := readPacket(c.r)
	if err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("read CONNACK: %w", err)
	}
	code, err := connackCode(first, body)
	if err != nil {
		c.Close()
		return nil, 0, err
	}
	return c, code, nil
}

// disconnect sends DISCONNECT and waits (briefly) for the broker to close first. Letting the broker close
// first puts TIME_WAIT on the broker's side of the socket, so tens of thousands of short connections do
// not exhaust the client's ephemeral ports.
func (c *mqttConn) disconnect() {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write(disconnectPacket); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, c.r)
}
