package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The message rows measure what topic authorization costs per message: Mosquitto runs one WRITE check
// for the publisher and one READ check per subscriber for every message, on its only thread. The
// publisher is a device publishing under its own name; the subscribers are its tenant's dashboards.
const (
	msgTenant  = "acme"
	msgPubUser = "dev-1"
	msgTopic   = "tenants/" + msgTenant + "/" + msgPubUser + "/telemetry"
	msgFilter  = "tenants/" + msgTenant + "/#"
	msgWindow  = 200 // messages the publisher may be ahead of the slowest subscriber
	// msgInflight is how many QoS 1 messages the publisher may have sent without their PUBACK: the
	// max_inflight_messages default of Mosquitto's own clients and of the broker.
	msgInflight = 20
	// msgBatch is the most messages the publisher hands the kernel in one write. One write per
	// message would make the load generator, not the broker, the bottleneck on a small machine; the
	// broker reads the same bytes either way.
	msgBatch   = 16
	msgPayload = 64
	msgStalled = 5 * time.Second // a full window this long without progress ends the row with an error
)

// messageCounts is what one round of a message row measured.
type messageCounts struct {
	Delivered int64 // messages every subscriber received
	Elapsed   time.Duration
	Err       error
}

// messageSession is one publisher and its subscribers (each subscribed to msgFilter at qos), connected
// to one broker for all the rounds of a row: connecting, and the plugin's introspection of each
// client's token, happen once, before any round is timed. Every reader signals progress after each
// packet it counts, so a publisher waiting for room in its windows wakes as soon as there is some.
type messageSession struct {
	qos      byte
	subs     []*mqttConn
	pub      *mqttConn
	received []atomic.Int64 // deliveries per subscriber
	acked    atomic.Int64   // the publisher's PUBACKs
	progress chan struct{}
	readErr  atomic.Pointer[error]
	closing  atomic.Bool
	wg       sync.WaitGroup
	// Used by round only, which is never called concurrently.
	sent int64
	id   uint16
}

// openMessages connects the subscribers, then the publisher, and starts reading from them.
func openMessages(ep endpoint, qos byte, subscribers int, user func(role string, n int) (string, string)) (*messageSession, error) {
	s := &messageSession{qos: qos, received: make([]atomic.Int64, subscribers), progress: make(chan struct{}, 1)}
	for n := range subscribers {
		name, pass := user("sub", n)
		c, err := subscribeAs(ep, fmt.Sprintf("bench-sub-%d", n), name, pass, msgFilter, qos)
		if err != nil {
			s.close()
			return nil, err
		}
		_ = c.SetDeadline(time.Time{})
		c.r = bufio.NewReaderSize(c.r, 64<<10) // a burst of deliveries per read, not a few
		s.subs = append(s.subs, c)
	}
	name, pass := user("pub", 0)
	pub, code, err := dialConnect(ep, "bench-pub", name, pass, opTimeout)
	switch {
	case err != nil:
		s.close()
		return nil, err
	case code != 0:
		pub.Close()
		s.close()
		return nil, fmt.Errorf("publisher refused with CONNACK code %d", code)
	}
	_ = pub.SetDeadline(time.Time{})
	s.pub = pub
	for i, c := range s.subs {
		s.read(c, false, &s.received[i])
	}
	if qos > 0 {
		s.read(pub, true, &s.acked)
	}
	return s, nil
}

func (s *messageSession) read(c *mqttConn, publisher bool, n *atomic.Int64) {
	s.wg.Go(func() {
		if err := readMessages(c, publisher, n, s.progress); err != nil && !s.closing.Load() {
			s.readErr.CompareAndSwap(nil, &err)
		}
	})
}

func (s *messageSession) err() error {
	if p := s.readErr.Load(); p != nil {
		return *p
	}
	return nil
}

// slowest is how many messages the subscriber that has received fewest has received.
func (s *messageSession) slowest() int64 {
	m := s.received[0].Load()
	for i := range s.received {
		m = min(m, s.received[i].Load())
	}
	return m
}

// wait blocks until a reader makes progress (true) or d passes (false).
func (s *messageSession) wait(d time.Duration) bool {
	select {
	case <-s.progress:
		return true
	case <-time.After(d):
		return false
	}
}

var errStalled = fmt.Errorf("nothing delivered or acknowledged for %v", msgStalled)

// round publishes qos messages to msgTopic for duration, never more than msgWindow ahead of the
// slowest subscriber and, at QoS 1, never more than msgInflight ahead of its PUBACKs: the rate is what
// the broker sustains, and no message is dropped for a full queue. Then it waits for every message
// sent to arrive, and counts that time too: counting only what arrived within duration would leave out
// a full window of messages, a larger share of a slower row's round, and bias every ratio. So each
// round starts with nothing in flight.
func (s *messageSession) round(duration time.Duration) messageCounts {
	// The publisher waits for room for a whole batch rather than sending one message per wake-up; at
	// QoS 1 for half its in-flight window, so the broker always has messages in hand.
	need := int64(msgBatch)
	if s.qos > 0 {
		need = msgInflight / 2
	}
	template := encodePublish(msgTopic, s.qos, 0, make([]byte, msgPayload))
	idAt := len(template) - msgPayload - 2 // where a QoS 1 packet identifier sits in template
	batch := make([]byte, 0, msgBatch*len(template))
	first := s.slowest()
	start := time.Now()
	end := start.Add(duration)
	var err error
	for err == nil && time.Now().Before(end) {
		if err = s.err(); err != nil {
			break
		}
		room := min(msgBatch, msgWindow-(s.sent-s.slowest()))
		if s.qos > 0 {
			room = min(room, msgInflight-(s.sent-s.acked.Load()))
		}
		if room < need {
			if !s.wait(min(time.Until(end), msgStalled)) && time.Now().Before(end) {
				err = errStalled
			}
			continue
		}
		batch = batch[:0]
		for range room {
			batch = append(batch, template...)
			if s.qos > 0 {
				s.id = s.id%0xFFFF + 1 // 1 to 65535; 0 is not a packet identifier
				binary.BigEndian.PutUint16(batch[len(batch)-len(template)+idAt:], s.id)
			}
		}
		if _, err = s.pub.Write(batch); err == nil {
			s.sent += room
		}
	}
	if err == nil {
		err = s.drain()
	}
	return messageCounts{Delivered: s.slowest() - first, Elapsed: time.Since(start), Err: err}
}

// drain waits until every subscriber has received, and at QoS 1 the publisher has had acknowledged,
// every message sent.
func (s *messageSession) drain() error {
	deadline := time.Now().Add(msgStalled)
	for s.slowest() < s.sent || s.qos > 0 && s.acked.Load() < s.sent {
		if err := s.err(); err != nil {
			return err
		}
		if !s.wait(time.Until(deadline)) && time.Now().After(deadline) {
			return fmt.Errorf("%d messages sent not delivered: %w", s.sent-s.slowest(), errStalled)
		}
	}
	return s.err()
}

// close stops the readers and disconnects every client.
func (s *messageSession) close() {
	s.closing.Store(true)
	conns := slices.Clip(s.subs)
	if s.pub != nil {
		conns = append(conns, s.pub)
	}
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now())
	}
	s.wg.Wait()
	for _, c := range conns {
		c.disconnect()
	}
}

// readMessages reads c until an error (the caller ends it with a read deadline), counting PUBLISHes
// (a subscriber) or PUBACKs (the publisher) in n and signalling progress after each. A subscriber
// acknowledges each QoS 1 PUBLISH; its PUBACKs go out together once it has read all that had arrived,
// as a client library's would under load (the broker stops at 20 unacknowledged, so that is soon).
func readMessages(c *mqttConn, publisher bool, n *atomic.Int64, progress chan<- struct{}) error {
	var acks []byte
	for {
		first, body, err := readPacket(c.r)
		if err != nil {
			return err
		}
		switch {
		case publisher && first == pktPuback:
		case !publisher && first&0xF0 == pktPublish:
			_, id, _, err := decodePublish(first, body)
			if err != nil {
				return err
			}
			if id != 0 {
				acks = appendPuback(acks, id)
			}
		default:
			continue
		}
		n.Add(1)
		select {
		case progress <- struct{}{}:
		default:
		}
		if len(acks) > 0 && c.r.Buffered() == 0 {
			_ = c.SetWriteDeadline(time.Now().Add(msgStalled))
			if _, err := c.Write(acks); err != nil {
				return fmt.Errorf("write PUBACK: %w", err)
			}
			acks = acks[:0]
		}
	}
}

// subscribeAs connects with the given credentials and subscribes to filter at qos, insisting on a
// SUBACK that grants qos: a row whose subscribers were refused or downgraded would measure the wrong
// thing.
func subscribeAs(ep endpoint, clientID, username, password, filter string, qos byte) (*mqttConn, error) {
	c, code, err := dialConnect(ep, clientID, username, password, opTimeout)
	if err != nil {
		return nil, err
	}
	if code != 0 {
		c.Close()
		return nil, fmt.Errorf("subscriber %s refused with CONNACK code %d", clientID, code)
	}
	if _, err := c.Write(encodeSubscribe(1, filter, qos)); err != nil {
		c.Close()
		return nil, fmt.Errorf("write SUBSCRIBE: %w", err)
	}
	first, body, err := readPacket(c.r)
	switch {
	case err != nil:
		err = fmt.Errorf("read SUBACK: %w", err)
	case first != pktSuback || len(body) != 3:
		err = fmt.Errorf("%w: expected SUBACK, got type %#x with %d bytes", errMalformed, first, len(body))
	case body[2] >= 0x80:
		err = fmt.Errorf("subscription to %s refused (SUBACK %#x)", filter, body[2])
	case body[2] != qos:
		err = fmt.Errorf("subscription to %s granted QoS %d, not %d", filter, body[2], qos)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
