package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The message rows measure what topic authorization costs per message: Mosquitto runs one WRITE check
// for the publisher and one READ check per subscriber for every message, on its only thread. The
// publisher is a device publishing under its own name; the subscribers are its tenant's dashboards.
const (
	msgTenant   = "acme"
	msgPubUser  = "dev-1"
	msgTopic    = "tenants/" + msgTenant + "/" + msgPubUser + "/telemetry"
	msgFilter   = "tenants/" + msgTenant + "/#"
	msgWindow   = 200 // messages the publisher may be ahead of the slowest subscriber
	msgPayload  = 64
	msgMaxAhead = 5 * time.Second // a subscriber silent this long ends the row with an error
)

// messageCounts is what a message row measured: messages published and delivered to every subscriber.
type messageCounts struct {
	Delivered int64 // messages every subscriber received
	Elapsed   time.Duration
	Err       error
}

// messageLoad connects subscribers (each subscribes to msgFilter) and a publisher, then publishes QoS 0
// messages to msgTopic for duration, never more than msgWindow ahead of the slowest subscriber: the
// rate is what the broker sustains, and no message is dropped for a full queue.
func messageLoad(ep endpoint, subscribers int, duration time.Duration, user func(role string, n int) (string, string)) messageCounts {
	subs := make([]*mqttConn, 0, subscribers)
	defer func() {
		for _, s := range subs {
			s.disconnect()
		}
	}()
	for n := range subscribers {
		name, pass := user("sub", n)
		c, err := subscribeAs(ep, fmt.Sprintf("bench-sub-%d", n), name, pass, msgFilter)
		if err != nil {
			return messageCounts{Err: err}
		}
		subs = append(subs, c)
	}
	name, pass := user("pub", 0)
	pub, code, err := dialConnect(ep, "bench-pub", name, pass, opTimeout)
	switch {
	case err != nil:
		return messageCounts{Err: err}
	case code != 0:
		pub.Close()
		return messageCounts{Err: fmt.Errorf("publisher refused with CONNACK code %d", code)}
	}
	defer pub.disconnect()
	_ = pub.SetDeadline(time.Time{})

	received := make([]atomic.Int64, subscribers)
	var wg sync.WaitGroup
	var readErr atomic.Pointer[error]
	stop := make(chan struct{})
	for i, s := range subs {
		wg.Go(func() {
			for {
				_ = s.SetReadDeadline(time.Now().Add(msgMaxAhead))
				first, _, err := readPacket(s.r)
				if err != nil {
					select {
					case <-stop:
					default:
						readErr.CompareAndSwap(nil, &err)
					}
					return
				}
				if first&0xF0 == pktPublish {
					received[i].Add(1)
				}
			}
		})
	}
	slowest := func() int64 {
		m := received[0].Load()
		for i := range received {
			m = min(m, received[i].Load())
		}
		return m
	}
	msg := encodePublish(msgTopic, make([]byte, msgPayload))
	start := time.Now()
	end := start.Add(duration)
	var sent int64
	for time.Now().Before(end) && readErr.Load() == nil {
		if sent-slowest() >= msgWindow {
			time.Sleep(50 * time.Microsecond)
			continue
		}
		if _, err := pub.Write(msg); err != nil {
			readErr.CompareAndSwap(nil, &err)
			break
		}
		sent++
	}
	res := messageCounts{Delivered: slowest(), Elapsed: time.Since(start)}
	close(stop)
	for _, s := range subs {
		_ = s.SetReadDeadline(time.Now())
	}
	wg.Wait()
	if p := readErr.Load(); p != nil {
		res.Err = *p
	}
	return res
}

// subscribeAs connects with the given credentials and subscribes to filter at QoS 0, insisting on a
// granted SUBACK: a row whose subscribers were refused would measure nothing.
func subscribeAs(ep endpoint, clientID, username, password, filter string) (*mqttConn, error) {
	c, code, err := dialConnect(ep, clientID, username, password, opTimeout)
	if err != nil {
		return nil, err
	}
	if code != 0 {
		c.Close()
		return nil, fmt.Errorf("subscriber %s refused with CONNACK code %d", clientID, code)
	}
	if _, err := c.Write(encodeSubscribe(1, filter, 0)); err != nil {
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
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
