package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// opTimeout bounds one connect: long enough for the 2 s slow IdP plus the broker's queue, short enough
// that a hung broker ends the row.
const opTimeout = 10 * time.Second

// maxOpsPerWorker bounds each worker's loop in count as well as in time.
const maxOpsPerWorker = 5_000_000

// credentials returns the username and password for one connect; ok is false when a finite source
// (pre-signed JWTs) has run out, which ends the row early rather than reusing a token. It is called from
// every worker at once, so it must be safe for concurrent use.
type credentials func() (username, password string, ok bool)

// fixedCredentials is a credentials source that always returns the same pair.
func fixedCredentials(user, pass string) credentials {
	return func() (string, string, bool) { return user, pass, true }
}

// freshTokens returns a new 32-byte random base64url token per connect, like an opaque token from an
// IdP, so no cache can answer for it.
func freshTokens() credentials {
	return func() (string, string, bool) {
		var b [32]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
		return "bench", base64.RawURLEncoding.EncodeToString(b[:]), true
	}
}

// connectCounts is what a connect row measured.
type connectCounts struct {
	OK, Refused, Errors int64
	// Elapsed is the mean of the workers' busy times, each from the start to the end of the worker's
	// last connect, begun before duration passed. A worker connects back to back, so its busy time is
	// what its connects took: OK / Elapsed is the rate the workers kept up. Time to the end of the
	// slowest worker's last connect would charge every worker for that tail, about half a connect's
	// latency: at 64 workers, 1.5% of a 100 ms round at 20k conn/s and 3% at 10k, against 0.1% of a
	// 3 s row, which would bias a group's ratios and make its rows look slower than those run on
	// their own.
	Elapsed     time.Duration
	FirstErr    error
	RefusedCode byte // one of the refusal return codes, to print
	Exhausted   bool // the credentials ran out before duration passed
	// Answers holds one entry per connect that got a CONNACK, accepted or refused.
	Answers []answer
}

// answer is one connect that got its CONNACK.
type answer struct {
	password string        // the token, to match with the fake IdP's record of its answer
	at       time.Time     // when the CONNACK had been read
	took     time.Duration // from the start of the dial to then, the TLS handshake included
}

// connectLoad runs `workers` goroutines that connect, check the CONNACK and disconnect until duration
// passes (or ctx ends). Every connect uses a unique client id so the broker never takes over a session.
func connectLoad(ctx context.Context, ep endpoint, workers int, duration time.Duration, creds credentials) connectCounts {
	var ok, refused, errs atomic.Int64
	var lastCode atomic.Uint32
	var once sync.Once
	var exhausted atomic.Bool
	var res connectCounts
	end := time.Now().Add(duration)
	start := time.Now()
	answers := make([][]answer, workers) // one slice per worker: no lock on the hot path
	busy := make([]time.Duration, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for n := 0; n < maxOpsPerWorker && time.Now().Before(end) && ctx.Err() == nil; n++ {
				user, pass, more := creds()
				if !more {
					exhausted.Store(true)
					break
				}
				start := time.Now()
				code, at, err := connectOnce(ep, fmt.Sprintf("bench-%d-%d", w, n), user, pass)
				if err == nil {
					answers[w] = append(answers[w], answer{password: pass, at: at, took: at.Sub(start)})
				}
				switch {
				case err != nil:
					errs.Add(1)
					once.Do(func() { res.FirstErr = err })
					time.Sleep(10 * time.Millisecond) // do not spin on a dead broker
				case code != 0:
					refused.Add(1)
					lastCode.Store(uint32(code))
				default:
					ok.Add(1)
				}
			}
			busy[w] = time.Since(start)
		})
	}
	wg.Wait()
	for _, b := range busy {
		res.Elapsed += b / time.Duration(workers)
	}
	res.Answers = slices.Concat(answers...)
	res.OK, res.Refused, res.Errors = ok.Load(), refused.Load(), errs.Load()
	res.RefusedCode = byte(lastCode.Load())
	res.Exhausted = exhausted.Load()
	return res
}

// connectOnce does one full connect/CONNACK/DISCONNECT cycle and returns the CONNACK return code and
// when the CONNACK had been read.
func connectOnce(ep endpoint, clientID, user, pass string) (byte, time.Time, error) {
	c, code, err := dialConnect(ep, clientID, user, pass, opTimeout)
	at := time.Now()
	if err != nil {
		return 0, at, err
	}
	if code != 0 {
		c.Close() // the broker closes after a refusal; no DISCONNECT to send
		return code, at, nil
	}
	c.disconnect()
	return 0, at, nil
}
