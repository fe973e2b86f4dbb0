package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"golang.org/x/oauth2"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/renew"
)

// v3Schemes maps the broker URL schemes the command takes (renew.Keeper's, for MQTT 5) to paho v3's.
var v3Schemes = map[string]string{"mqtt": "tcp", "tcp": "tcp", "mqtts": "ssl", "ssl": "ssl", "tls": "ssl"}

// v3 is an MQTT 3.1.1 session on paho's v3 client. MQTT 3.1.1 has no re-authentication, so each
// renewal is a new connection that carries the new token as its password, on the same persistent
// session (clean session off), subscribing again.
type v3 struct {
	c      mqtt.Client
	qos    byte
	retain bool
	cancel context.CancelFunc
	ending
	mu  sync.Mutex // guards tok
	tok *oauth2.Token
}

func connectV3(ctx context.Context, c sessionConfig, u *url.URL) (session, error) {
	tlsCfg, err := c.o.tlsConfig()
	if err != nil {
		return nil, err
	}
	scheme := v3Schemes[strings.ToLower(u.Scheme)]
	tokens := oauth2.ReuseTokenSourceWithExpiry(nil, c.tokens, c.o.margin)
	tok, err := tokens.Token()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &v3{qos: byte(c.o.qos), retain: c.o.retain, cancel: cancel, ending: newEnding(), tok: tok}
	loop := &renew.Loop{Tokens: tokens, Margin: c.o.margin, Fatal: fatal, Logf: c.logf,
		OnRenew: func(r renew.Renewal) { c.debugf("%s", describeRenewal(r)) }}
	var said sync.Once
	loop.Present = func(ctx context.Context, tok *oauth2.Token) (bool, error) {
		said.Do(func() {
			c.logf("MQTT 3.1.1 has no re-authentication: renewing the token by reconnecting from now on")
		})
		s.mu.Lock()
		s.tok = tok
		s.mu.Unlock()
		s.c.Disconnect(250)
		t := s.c.Connect()
		select {
		case <-t.Done():
			return true, t.Error()
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
	errs := &onceLogger{logf: c.logf}
	opts := mqtt.NewClientOptions().
		AddBroker(scheme + "://" + u.Host).
		SetClientID(c.o.id).
		SetProtocolVersion(4).
		SetCleanSession(false).
		SetTLSConfig(tlsCfg).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(30 * time.Second).
		SetConnectRetry(c.retry).
		SetConnectRetryInterval(time.Second).
		SetOrderMatters(true).
		// Called for every connection attempt: a token from the source when it has one, since a
		// reconnection after a network failure may come when the one in hand is near its end.
		SetCredentialsProvider(func() (string, string) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if fresh, err := tokens.Token(); err == nil {
				s.tok = fresh
			} else if c.retry {
				errs.log("cannot renew the token (retrying): %v", err)
			}
			return c.o.username, s.tok.AccessToken
		}).
		SetOnConnectHandler(func(cl mqtt.Client) {
			errs.reset()
			c.debugf("connected to %s", u.Redacted())
			s.mu.Lock()
			tok := s.tok
			s.mu.Unlock()
			loop.Use(tok)
			if len(c.o.topics) == 0 {
				return
			}
			filters := map[string]byte{}
			for _, t := range c.o.topics {
				filters[t] = byte(c.o.qos)
			}
			// paho runs this handler on a goroutine of its own, so it may wait. A connection that
			// dropped meanwhile subscribes again on the next one.
			t := cl.SubscribeMultiple(filters, func(_ mqtt.Client, m mqtt.Message) {
				c.onMessage(message{topic: m.Topic(), payload: m.Payload()})
			})
			t.Wait()
			if err := t.Error(); err != nil && cl.IsConnectionOpen() {
				s.fail(fmt.Errorf("subscribing: %w", err))
			}
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			errs.log("connection lost (reconnecting): %v", err)
		})
	s.c = mqtt.NewClient(opts)
	t := s.c.Connect()
	if c.retry {
		// With ConnectRetry the first token only completes on success: report failures meanwhile.
		go func() {
			for !t.WaitTimeout(10 * time.Second) {
				if ctx.Err() != nil {
					return
				}
				errs.log("cannot connect to %s yet (retrying)", u.Redacted())
			}
		}()
	}
	select {
	case <-t.Done():
	case <-ctx.Done():
		s.close()
		return nil, ctx.Err()
	}
	if err := t.Error(); err != nil {
		s.close()
		return nil, v3ConnectError(err)
	}
	go func() {
		if err := loop.Run(ctx); err != nil {
			s.fail(err)
		}
	}()
	return s, nil
}

// v3ConnectError says what a refused MQTT 3.1.1 connection means.
func v3ConnectError(err error) error {
	switch {
	case errors.Is(err, packets.ErrorRefusedNotAuthorised):
		return errors.New("the broker refused the connection: CONNACK 5 (not authorized)")
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword):
		return errors.New("the broker refused the connection: CONNACK 4 (bad user name or password)")
	}
	return fmt.Errorf("cannot connect: %w", err)
}

func (s *v3) publish(ctx context.Context, topic string, payload []byte) error {
	t := s.c.Publish(topic, s.qos, s.retain, payload)
	select {
	case <-t.Done():
		if err := t.Error(); err != nil {
			return fmt.Errorf("publishing to %s: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *v3) close() {
	s.cancel()
	if s.c.IsConnected() {
		s.c.Disconnect(250)
	}
}
