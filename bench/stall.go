package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// The stall rows answer one question: while the plugin waits for the IdP on behalf of one connecting
// client, do the broker's other clients wait too? Mosquitto 2.0 runs plugins on its only thread, so an
// uncached introspection that takes 2 s should freeze every delivery for 2 s.
const (
	stallWindow    = 3 * time.Second
	stallSlowStart = 500 * time.Millisecond // the slow connect starts this far into the window
	stallInterval  = 5 * time.Millisecond   // 200 msg/s
	stallGrace     = 500 * time.Millisecond // after the window, for deliveries still queued
	stallTopic     = "bench/stall"
	lateThreshold  = 50 * time.Millisecond
	maxStallMsgs   = 10_000 // bound on the publisher's and the subscriber's loops
)

// stallResult is what a stall row measured.
type stallResult struct {
	Sent, Received int
	Worst, P99     time.Duration
	Late           int // deliveries slower than lateThreshold
	SlowWait       time.Duration
	SlowErr        error // the slow client's connect failed or was refused
	Elapsed        time.Duration
}

// stallTest runs one stall window on a broker whose plugin accepts warmToken quickly. slowToken is the
// token of the client that connects during the window; with precache it connects once before the
// window, so the window shows what a cached (or uncached) second connect costs.
func stallTest(ep endpoint, warmToken, slowToken string, precache bool) (stallResult, error) {
	var res stallResult
	sub, err := subscribe(ep, warmToken)
	if err != nil {
		return res, err
	}
	defer sub.Close()
	pub, err := connectAccepted(ep, "stall-pub", warmToken)
	if err != nil {
		return res, err
	}
	defer pub.Close()
	if precache {
		if _, err := connectAccepted(ep, "stall-slow-first", slowToken); err != nil {
			return res, fmt.Errorf("first connect of the slow client: %w", err)
		}
	}

	base := time.Now()
	latencies := make(chan []time.Duration, 1)
	go func() { latencies <- receiveLatencies(sub, base, base.Add(stallWindow+stallGrace)) }()
	slow := make(chan stallResult, 1)
	go func() { slow <- slowConnect(ep, slowToken, stallSlowStart) }()

	res.Sent, err = publishFor(pub, base, stallWindow)
	res.Elapsed = time.Since(base) // the rate is over the publishing window, not the grace after it
	if err != nil {
		return res, err
	}
	s := <-slow // bounded by stallSlowStart + opTimeout
	res.SlowWait, res.SlowErr = s.SlowWait, s.SlowErr
	lat := <-latencies // bounded by the subscriber's read deadline
	res.summarize(lat)
	return res, nil
}

// summarize fills the latency figures from the per-message delivery latencies.
func (r *stallResult) summarize(lat []time.Duration) {
	r.Received = len(lat)
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	r.Worst = lat[len(lat)-1]
	r.P99 = percentile(lat, 99)
	for _, l := range lat {
		if l > lateThreshold {
			r.Late++
		}
	}
}

// connectAccepted connects and insists on CONNACK 0: the stall rows' helpers must be in, or the row
// measures nothing.
func connectAccepted(ep endpoint, clientID, token string) (*mqttConn, error) {
	c, code, err := dialConnect(ep, clientID, "bench", token, opTimeout)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", clientID, err)
	}
	if code != 0 {
		c.Close()
		return nil, fmt.Errorf("connect %s: refused with CONNACK code %d", clientID, code)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// subscribe connects the measuring subscriber and waits for its SUBACK, so no message published
// afterwards can be missed.
func subscribe(ep endpoint, token string) (*mqttConn, error) {
	c, err := subscribeAs(ep, "stall-sub", "bench", token, stallTopic, 0)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// publishFor publishes one timestamped QoS 0 message per stallInterval for window and returns how many
// it sent. The payload is the send time as nanoseconds since base on this process's monotonic clock,
// so the subscriber in the same process can compute the delivery latency exactly.
func publishFor(pub *mqttConn, base time.Time, window time.Duration) (int, error) {
	tick := time.NewTicker(stallInterval)
	defer tick.Stop()
	end := time.After(window)
	sent := 0
	for sent < maxStallMsgs {
		select {
		case <-end:
			return sent, nil
		case <-tick.C:
		}
		payload := binary.BigEndian.AppendUint64(nil, uint64(time.Since(base)))
		_ = pub.SetWriteDeadline(time.Now().Add(opTimeout))
		if _, err := pub.Write(encodePublish(stallTopic, 0, 0, payload)); err != nil {
			return sent, fmt.Errorf("publish message %d: %w", sent, err)
		}
		sent++
	}
	return sent, nil
}

// receiveLatencies reads PUBLISH packets until the deadline and returns each one's delivery latency.
func receiveLatencies(sub *mqttConn, base, deadline time.Time) []time.Duration {
	_ = sub.SetReadDeadline(deadline)
	var lat []time.Duration
	for len(lat) < maxStallMsgs {
		first, body, err := readPacket(sub.r)
		if err != nil {
			return lat // the deadline, normally
		}
		topic, _, payload, err := decodePublish(first, body)
		if err != nil || topic != stallTopic || len(payload) != 8 {
			continue
		}
		sentAt := time.Duration(binary.BigEndian.Uint64(payload))
		lat = append(lat, time.Since(base)-sentAt)
	}
	return lat
}

// slowConnect waits for delay, then connects with token and measures how long the CONNACK took.
func slowConnect(ep endpoint, token string, delay time.Duration) stallResult {
	time.Sleep(delay)
	start := time.Now()
	c, err := connectAccepted(ep, fmt.Sprintf("stall-slow-%d", rand.Uint32()), token)
	res := stallResult{SlowWait: time.Since(start), SlowErr: err}
	if err == nil {
		c.disconnect()
	}
	return res
}
