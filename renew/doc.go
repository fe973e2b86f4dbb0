// Package renew keeps an MQTT session authenticated with OAuth 2.0 access tokens: it presents a fresh
// token before the current one expires, for as long as the session lasts.
//
// A broker running mosquitto-oauth2 holds each client to its token's exp. With MQTT 5 and the
// plugin's enhanced_auth_method, a Keeper hands the broker the next token in an AUTH packet
// (re-authentication), so the connection, its subscriptions and messages in flight are untouched.
// Where the broker does not take the method (CONNACK 0x8C) or refuses a re-authentication, the
// Keeper says so once, then renews by ending the connection with a normal DISCONNECT and letting
// autopaho connect again with the new token; a session with a Session Expiry Interval keeps its
// subscriptions and queued messages across it. Loop is the schedule alone, for other clients.
//
// Tokens come from any oauth2.TokenSource, such as golang.org/x/oauth2/clientcredentials:
//
//	src := (&clientcredentials.Config{ClientID: id, ClientSecret: secret,
//		TokenURL: "https://idp.example/oauth2/token"}).TokenSource(ctx)
//	k := renew.New(src, renew.Options{AuthMethod: "OAUTH2-JWT", Margin: 30 * time.Second,
//		Logf: log.Printf})
//	cfg := autopaho.ClientConfig{
//		ServerUrls:            []*url.URL{broker},
//		KeepAlive:             30,
//		SessionExpiryInterval: 300,
//		ClientConfig:          paho.ClientConfig{ClientID: "dev-42"},
//	}
//	k.Configure(&cfg)
//	cm, err := autopaho.NewConnection(ctx, cfg)
//	if err != nil {
//		return err
//	}
//	go func() { errc <- k.Run(ctx, cm) }()
//	// use cm: Publish, Subscribe (in OnConnectionUp, so a new connection subscribes again), ...
package renew
