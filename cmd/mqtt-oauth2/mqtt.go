package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/oauth2"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/grant"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/renew"
)

// session is a connection to the broker kept authenticated; v5 and v3 implement it.
type session interface {
	// publish sends one message and returns once the broker has it (QoS 1 and 2) or it is written.
	publish(ctx context.Context, topic string, payload []byte) error
	// done is closed when the session ends for good; err then says why (nil: ctx ended).
	done() <-chan struct{}
	err() error
	// close ends the session with a DISCONNECT and waits for it.
	close()
}

// message is one message received.
type message struct {
	topic   string
	payload []byte
}

// sessionConfig is what both protocol versions need.
type sessionConfig struct {
	o      *options
	tokens oauth2.TokenSource
	logf   func(format string, args ...any) // one line on stderr
	debugf func(format string, args ...any) // with -d only
	// retry keeps connecting with backoff when the first connection fails (sub); otherwise the first
	// failure ends the session (pub).
	retry bool
	// onMessage, if set, receives messages of the subscriptions in o.topics, made again on every
	// new connection. It returns before the message is acknowledged.
	onMessage func(message)
}

// connect opens a session to u and waits until it is up, or until it failed (pub) or ctx ended.
func connect(ctx context.Context, c sessionConfig, u *url.URL) (session, error) {
	if c.o.id == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		c.o.id = "mqtt-oauth2-" + hex.EncodeToString(b)
	}
	if c.o.mqttVersion == "5" {
		return connectV5(ctx, c, u)
	}
	return connectV3(ctx, c, u)
}

// fatal says which token errors end a session instead of being retried.
func fatal(err error) bool { return !grant.IsTransient(err) }

// backoff is the wait before attempt n to connect, or to get the first token: none for the first,
// since a renewal by reconnecting waits for it, then 1 s doubling to 30 s.
func backoff(n int) time.Duration {
	if n == 0 {
		return 0
	}
	return min(time.Second<<min(n-1, 5), 30*time.Second)
}

// onceLogger logs each distinct message once in a row, so a retried failure is one line.
type onceLogger struct {
	mu   sync.Mutex
	last string
	logf func(string, ...any)
}

func (l *onceLogger) log(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if msg != l.last {
		l.last = msg
		l.logf("%s", msg)
	}
}

func (l *onceLogger) reset() {
	l.mu.Lock()
	l.last = ""
	l.mu.Unlock()
}

// describeRenewal is the -d line for one renewal.
func describeRenewal(r renew.Renewal) string {
	how := "re-authenticated in-session"
	if r.Reconnected {
		how = "reconnected"
	}
	return fmt.Sprintf("token renewed: %s %s after it was due; the new one expires %s",
		how, r.Done.Sub(r.Due).Round(100*time.Microsecond), r.Exp.Format(time.RFC3339))
}

// v5 is a session on paho's autopaho, kept authenticated by a renew.Keeper.
type v5 struct {
	cm     *autopaho.ConnectionManager
	qos    byte
	retain bool
	cancel context.CancelFunc
	ending
}

func connectV5(ctx context.Context, c sessionConfig, u *url.URL) (session, error) {
	tlsCfg, err := c.o.tlsConfig()
	if err != nil {
		return nil, err
	}
	method := c.o.authMethod
	if strings.EqualFold(method, "none") {
		method = ""
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &v5{cancel: cancel, ending: newEnding(), qos: byte(c.o.qos), retain: c.o.retain}
	k := renew.New(c.tokens, renew.Options{AuthMethod: method, Username: c.o.username, Margin: c.o.margin,
		Fatal: fatal, Logf: c.logf, OnRenew: func(r renew.Renewal) { c.debugf("%s", describeRenewal(r)) }})
	first := make(chan error, 1)
	errs := &onceLogger{logf: c.logf}
	zero := uint32(0)
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        tlsCfg,
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		// The session outlives a reconnection (a renewal where the broker cannot re-authenticate):
		// subscriptions and QoS 1 and 2 messages wait for the next connection.
		SessionExpiryInterval: 300,
		ReconnectBackoff:      backoff,
		ConnectTimeout:        10 * time.Second,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			errs.reset()
			c.debugf("connected to %s", u.Redacted())
			select {
			case first <- nil:
			default:
			}
			if len(c.o.topics) == 0 {
				return
			}
			go func() {
				subs := make([]paho.SubscribeOptions, len(c.o.topics))
				for i, t := range c.o.topics {
					subs[i] = paho.SubscribeOptions{Topic: t, QoS: byte(c.o.qos)}
				}
				ack, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
				if err == nil {
					for i, code := range ack.Reasons {
						if code >= 0x80 && i < len(subs) {
							err = fmt.Errorf("the broker refused the subscription to %s (reason 0x%02X)", subs[i].Topic, code)
							break
						}
					}
				}
				if err != nil && ctx.Err() == nil {
					s.fail(fmt.Errorf("subscribing: %w", err))
				}
			}()
		},
		OnConnectError: func(err error) {
			if !c.retry {
				select {
				case first <- err:
				default:
				}
				return
			}
			errs.log("cannot connect (retrying, at most 30 s apart): %v", connectErrorText(err))
		},
		// At the end, the session goes too: this client id's messages would otherwise queue for 300 s.
		DisconnectPacketBuilder: func() *paho.Disconnect {
			return &paho.Disconnect{ReasonCode: 0, Properties: &paho.DisconnectProperties{SessionExpiryInterval: &zero}}
		},
		ClientConfig: paho.ClientConfig{ClientID: c.o.id},
	}
	if c.onMessage != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			c.onMessage(message{topic: p.Packet.Topic, payload: p.Packet.Payload})
			return true, nil
		}}
	}
	k.Configure(&cfg)
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	s.cm = cm
	go func() {
		if err := k.Run(ctx, cm); err != nil {
			s.fail(err)
		}
	}()
	select {
	case err := <-first:
		if err != nil {
			s.close()
			return nil, errors.New(connectErrorText(err))
		}
	case <-s.fin:
		s.close()
		return nil, s.err()
	case <-ctx.Done():
		s.close()
		return nil, ctx.Err()
	}
	return s, nil
}

// ending is how a session ends for good: the first failure closes done and is kept for err.
type ending struct {
	fin    chan struct{}
	mu     sync.Mutex
	failed error
}

func newEnding() ending { return ending{fin: make(chan struct{})} }

func (e *ending) fail(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failed == nil {
		e.failed = err
		close(e.fin)
	}
}

func (e *ending) done() <-chan struct{} { return e.fin }

func (e *ending) err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.failed
}

// connectErrorText turns autopaho's connection errors into one line.
func connectErrorText(err error) string {
	if tokErr := tokenFailure(err); tokErr != nil {
		return "getting a token: " + tokErr.Error()
	}
	var ce *autopaho.ConnackError
	if errors.As(err, &ce) {
		text := fmt.Sprintf("the broker refused the connection: CONNACK 0x%02X (%s)", ce.ReasonCode, connackReason(ce.ReasonCode))
		if ce.Reason != "" {
			text += ": " + ce.Reason
		}
		return text
	}
	return err.Error()
}

// tokenFailure finds in err's chain the reason a token could not be had, nil if there is none.
func tokenFailure(err error) error {
	var ue *grant.UnreachableError
	if errors.As(err, &ue) {
		return ue
	}
	var pe *grant.ProviderError
	if errors.As(err, &pe) {
		return pe
	}
	for _, e := range []error{grant.ErrInvalidClient, grant.ErrRefreshRefused, grant.ErrSignInRequired,
		grant.ErrAccessDenied, grant.ErrCodeExpired} {
		if errors.Is(err, e) {
			return e
		}
	}
	return nil
}

func connackReason(code byte) string {
	switch code {
	case 0x86:
		return "bad user name or password"
	case 0x87:
		return "not authorized"
	case 0x8C:
		return "bad authentication method"
	case 0x85:
		return "client identifier not valid"
	case 0x88:
		return "server unavailable"
	}
	return "refused"
}

func (s *v5) publish(ctx context.Context, topic string, payload []byte) error {
	p := &paho.Publish{Topic: topic, QoS: s.qos, Retain: s.retain, Payload: payload}
	for attempt := 0; ; attempt++ {
		resp, err := s.cm.Publish(ctx, p)
		if err == nil {
			if resp != nil && resp.ReasonCode >= 0x80 {
				return fmt.Errorf("the broker refused the message to %s (reason 0x%02X)", topic, resp.ReasonCode)
			}
			return nil
		}
		if attempt == 2 || ctx.Err() != nil {
			return fmt.Errorf("publishing to %s: %w", topic, err)
		}
		// A renewal by reconnecting may have taken the connection away: wait for the next one.
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = s.cm.AwaitConnection(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("publishing to %s: no connection: %w", topic, err)
		}
	}
}

func (s *v5) close() {
	s.cancel()
	if s.cm != nil {
		<-s.cm.Done()
	}
}

// pubCmd publishes -m, or each line of standard input with -l.
func pubCmd(ctx context.Context, o *options, stdin io.Reader, _, stderr io.Writer) error {
	if len(o.topics) != 1 || o.topics[0] == "" || strings.ContainsAny(o.topics[0], "+#") {
		return usageError(stderr, "pub takes one -t TOPIC, without wildcards")
	}
	if o.lines == (o.message != "") {
		return usageError(stderr, "pub takes -m MESSAGE or -l (lines of standard input)")
	}
	s, err := start(ctx, o, stderr, false, nil)
	if err != nil {
		return err
	}
	defer s.close()
	send := func(payload []byte) error {
		select {
		case <-s.done():
			return s.err()
		default:
		}
		return s.publish(ctx, o.topics[0], payload)
	}
	if !o.lines {
		return send([]byte(o.message))
	}
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64*1024), 256*1024*1024)
	for sc.Scan() {
		if err := send(sc.Bytes()); err != nil {
			return err
		}
	}
	return sc.Err()
}

// subCmd prints the messages of the -t filters until interrupted, or -C messages.
func subCmd(ctx context.Context, o *options, _ io.Reader, stdout, stderr io.Writer) error {
	if len(o.topics) == 0 {
		return usageError(stderr, "sub takes at least one -t FILTER")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	seen := 0
	w := bufio.NewWriter(stdout)
	onMessage := func(m message) {
		mu.Lock()
		defer mu.Unlock()
		if o.count > 0 && seen >= o.count {
			return
		}
		if o.verbose {
			w.WriteString(m.topic)
			w.WriteByte(' ')
		}
		w.Write(m.payload)
		w.WriteByte('\n')
		w.Flush()
		seen++
		if o.count > 0 && seen == o.count {
			cancel()
		}
	}
	s, err := start(ctx, o, stderr, true, onMessage)
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted, or -C messages came
		}
		return err
	}
	defer s.close()
	select {
	case <-ctx.Done():
		return nil
	case <-s.done():
		return s.err()
	}
}

// start builds the token source and connects. A device client that has no token yet signs in here,
// with the instructions on stderr; once connected the session runs unattended, so a sign-in needed
// later (a refresh token refused) ends it with a message instead of a prompt nobody may see.
func start(ctx context.Context, o *options, stderr io.Writer, retry bool, onMessage func(message)) (session, error) {
	// The session's options are checked before any sign-in: a typo must not cost a person a code.
	if o.margin <= 0 {
		return nil, usageError(stderr, "--margin must be positive")
	}
	u, err := url.Parse(o.broker)
	if err != nil || u.Host == "" {
		return nil, usageError(stderr, "--broker %q is not a URL like mqtt://host:1883", o.broker)
	}
	if _, ok := v3Schemes[strings.ToLower(u.Scheme)]; !ok {
		return nil, usageError(stderr, "--broker %s: scheme %q is not mqtt:// or mqtts://", u.Redacted(), u.Scheme)
	}
	if o.qos < 0 || o.qos > 2 {
		return nil, usageError(stderr, "-q must be 0, 1 or 2")
	}
	if o.mqttVersion != "5" && o.mqttVersion != "3.1.1" && o.mqttVersion != "4" {
		return nil, usageError(stderr, "--mqtt-version must be 5 or 3.1.1, not %q", o.mqttVersion)
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "mqtt-oauth2: "+format+"\n", args...) }
	var cfg *grant.Config
	var ts oauth2.TokenSource
	errs := &onceLogger{logf: logf}
	for attempt := 0; ; attempt++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff(attempt)):
		}
		if cfg, err = grantConfig(ctx, o, stderr, stderr); err == nil {
			ts = tokenSource(ctx, o, cfg)
			_, err = ts.Token()
		}
		if err == nil {
			break
		}
		if !retry || !grant.IsTransient(err) {
			return nil, err
		}
		errs.log("%v (retrying, at most 30 s apart)", err)
	}
	if cfg.Cache != nil && o.grantKind() == "device" {
		// The sign-in above left its tokens in the cache; this source renews from there, silently.
		cfg.Prompt = nil
		ts = cfg.Device(ctx)
	}
	debugf := func(string, ...any) {}
	if o.debug {
		debugf = logf
	}
	return connect(ctx, sessionConfig{o: o, tokens: ts, logf: logf, debugf: debugf, retry: retry, onMessage: onMessage}, u)
}
