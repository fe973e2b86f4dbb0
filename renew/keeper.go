package renew

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/oauth2"
)

// Options says how a Keeper presents tokens.
type Options struct {
	// AuthMethod is the MQTT 5 Authentication Method whose Authentication Data carries the token, in
	// CONNECT and in re-authentication (the plugin's enhanced_auth_method, e.g. "OAUTH2-JWT"). Empty:
	// the token is the CONNECT's password and every renewal is a new connection.
	AuthMethod string
	// Username goes in every CONNECT when not empty.
	Username string
	// Margin is how long before exp a token is replaced (see Loop.Margin).
	Margin time.Duration
	// Fatal, Logf and OnRenew are as in Loop. Logf also gets the one line that says a broker made
	// the Keeper renew by reconnecting.
	Fatal   func(error) bool
	Logf    func(format string, args ...any)
	OnRenew func(Renewal)
}

// Keeper keeps a session run by autopaho authenticated with tokens from an oauth2.TokenSource.
type Keeper struct {
	loop  Loop
	opts  Options
	fatal chan error

	mu       sync.Mutex
	noMethod bool          // the broker answered CONNACK 0x8C: the token goes in the password
	noReauth bool          // the broker refused a re-authentication: renewals reconnect
	said     bool          // the switch to reconnecting has been reported
	pending  *oauth2.Token // the token of the CONNECT in flight
	conn     net.Conn      // the connection up now, closed to reconnect
	up       chan struct{} // closed when the next connection is up
}

// reauthReason is MQTT 5's "Re-authenticate" reason code for a client's AUTH packet.
const reauthReason = 0x19

// reauthTimeout bounds the wait for the broker's answer to a re-authentication.
const reauthTimeout = 10 * time.Second

// badAuthMethod is CONNACK 0x8C, "Bad authentication method".
const badAuthMethod = 0x8C

// New returns a Keeper for tokens; it takes effect through Configure and Run.
func New(tokens oauth2.TokenSource, o Options) *Keeper {
	k := &Keeper{opts: o, fatal: make(chan error, 1), up: make(chan struct{})}
	k.loop = Loop{
		Tokens:  oauth2.ReuseTokenSourceWithExpiry(nil, tokens, o.Margin),
		Margin:  o.Margin,
		Fatal:   o.Fatal,
		Logf:    o.Logf,
		OnRenew: o.OnRenew,
	}
	return k
}

// Configure makes cfg's connections carry the Keeper's tokens: it sets ConnectPacketBuilder and
// AttemptConnection (mqtt:// and mqtts:// URLs, TLS from cfg.TlsCfg), and wraps OnConnectionUp and
// OnConnectError, calling the ones already set.
func (k *Keeper) Configure(cfg *autopaho.ClientConfig) {
	build := cfg.ConnectPacketBuilder
	cfg.ConnectPacketBuilder = func(cp *paho.Connect, u *url.URL) (*paho.Connect, error) {
		if build != nil {
			var err error
			if cp, err = build(cp, u); err != nil {
				return nil, err
			}
		}
		return k.connectPacket(cp)
	}
	timeout := cfg.ConnectTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	cfg.AttemptConnection = func(ctx context.Context, c autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return k.dial(ctx, c.TlsCfg, u)
	}
	if cfg.AuthHandler == nil {
		// paho calls it on every CONNACK of a connection that named a method.
		cfg.AuthHandler = singleStep{k.opts.AuthMethod}
	}
	onUp := cfg.OnConnectionUp
	cfg.OnConnectionUp = func(cm *autopaho.ConnectionManager, ca *paho.Connack) {
		k.connected()
		if onUp != nil {
			onUp(cm, ca)
		}
	}
	onErr := cfg.OnConnectError
	cfg.OnConnectError = func(err error) {
		k.connectFailed(err)
		if onErr != nil {
			onErr(err)
		}
	}
}

// Run renews tokens until ctx ends (nil) or a token cannot be had for a reason Options.Fatal accepts.
// cm must come from a ClientConfig passed to Configure.
func (k *Keeper) Run(ctx context.Context, cm *autopaho.ConnectionManager) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	k.loop.Present = func(ctx context.Context, tok *oauth2.Token) (bool, error) { return k.present(ctx, cm, tok) }
	done := make(chan error, 1)
	go func() { done <- k.loop.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case err := <-k.fatal:
		return err
	}
}

func (k *Keeper) connectPacket(cp *paho.Connect) (*paho.Connect, error) {
	tok, err := k.loop.Tokens.Token()
	if err != nil {
		return nil, tokenError{fmt.Errorf("getting a token: %w", err)}
	}
	k.mu.Lock()
	k.pending = tok
	method := k.opts.AuthMethod
	if k.noMethod {
		method = ""
	}
	k.mu.Unlock()
	if k.opts.Username != "" {
		cp.UsernameFlag, cp.Username = true, k.opts.Username
	}
	if method == "" {
		cp.PasswordFlag, cp.Password = true, []byte(tok.AccessToken)
		return cp, nil
	}
	if cp.Properties == nil {
		cp.Properties = &paho.ConnectProperties{}
	}
	cp.Properties.AuthMethod, cp.Properties.AuthData = method, []byte(tok.AccessToken)
	return cp, nil
}

func (k *Keeper) dial(ctx context.Context, tlsCfg *tls.Config, u *url.URL) (net.Conn, error) {
	var conn net.Conn
	var err error
	switch strings.ToLower(u.Scheme) {
	case "mqtt", "tcp":
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", u.Host)
	case "mqtts", "ssl", "tls":
		d := tls.Dialer{Config: tlsCfg}
		conn, err = d.DialContext(ctx, "tcp", u.Host)
	default:
		return nil, fmt.Errorf("broker URL %s: scheme %q is not mqtt:// or mqtts://", u.Redacted(), u.Scheme)
	}
	if err != nil {
		return nil, err
	}
	conn = packets.NewThreadSafeConn(conn)
	k.mu.Lock()
	k.conn = conn
	k.mu.Unlock()
	return conn, nil
}

func (k *Keeper) connected() {
	k.mu.Lock()
	tok := k.pending
	close(k.up)
	k.up = make(chan struct{})
	k.mu.Unlock()
	if tok != nil {
		k.loop.Use(tok)
	}
}

func (k *Keeper) connectFailed(err error) {
	var te tokenError
	if errors.As(err, &te) && k.opts.Fatal != nil && k.opts.Fatal(te.error) {
		select {
		case k.fatal <- te.error:
		default:
		}
		return
	}
	var ce *autopaho.ConnackError
	if !errors.As(err, &ce) || ce.ReasonCode != badAuthMethod || k.opts.AuthMethod == "" {
		return
	}
	k.mu.Lock()
	first := !k.noMethod
	k.noMethod, k.noReauth = true, true
	k.mu.Unlock()
	if first {
		k.say(fmt.Sprintf("the broker does not take authentication method %s (CONNACK 0x8C)", k.opts.AuthMethod))
	}
}

// present hands tok to the session: by MQTT 5 re-authentication where the broker takes it, else by
// a new connection.
func (k *Keeper) present(ctx context.Context, cm *autopaho.ConnectionManager, tok *oauth2.Token) (bool, error) {
	k.mu.Lock()
	reauth := k.opts.AuthMethod != "" && !k.noReauth
	k.mu.Unlock()
	if reauth {
		actx, cancel := context.WithTimeout(ctx, reauthTimeout)
		resp, err := cm.Authenticate(actx, &paho.Auth{ReasonCode: reauthReason,
			Properties: &paho.AuthProperties{AuthMethod: k.opts.AuthMethod, AuthData: []byte(tok.AccessToken)}})
		cancel()
		switch {
		case err == nil && resp.Success:
			return false, nil
		case errors.Is(err, autopaho.ConnectionDownError):
			return false, err
		case err != nil:
			return false, fmt.Errorf("re-authentication: %w", err)
		}
		// The broker ends a connection whose re-authentication it refuses: the next one carries tok.
		k.mu.Lock()
		k.noReauth = true
		k.mu.Unlock()
		k.say(fmt.Sprintf("the broker refused re-authentication (reason 0x%02X)", resp.ReasonCode))
	}
	return true, k.reconnect(ctx)
}

// reconnect ends the connection with a normal DISCONNECT (the session and its subscriptions stay,
// the Will is not sent) and waits for autopaho to connect again, with a fresh token.
func (k *Keeper) reconnect(ctx context.Context) error {
	k.mu.Lock()
	conn, up := k.conn, k.up
	k.mu.Unlock()
	if conn != nil {
		_, _ = (&paho.Disconnect{ReasonCode: 0}).Packet().WriteTo(conn)
		_ = conn.Close()
	}
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// singleStep is the paho.Auther of a method whose one step is the token: the broker never asks for
// more, and a request for more gets an empty answer, which it refuses.
type singleStep struct{ method string }

func (a singleStep) Authenticate(*paho.Auth) *paho.Auth {
	return &paho.Auth{ReasonCode: 0x18, Properties: &paho.AuthProperties{AuthMethod: a.method}}
}

func (singleStep) Authenticated() {}

// say reports, once, that renewals now take a new connection each.
func (k *Keeper) say(why string) {
	k.mu.Lock()
	first := !k.said
	k.said = true
	k.mu.Unlock()
	if first && k.opts.Logf != nil {
		k.opts.Logf("%s: renewing the token by reconnecting from now on", why)
	}
}
