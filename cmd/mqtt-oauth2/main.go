// Command mqtt-oauth2 is the device side of mosquitto-oauth2: it gets OAuth 2.0 access tokens (client
// credentials grant, or the device authorization grant with a QR code) and publishes or subscribes
// through an MQTT broker with them, renewing each token before it expires: in-session by MQTT 5
// re-authentication where the broker takes it, else by reconnecting.
//
//	mqtt-oauth2 token [options]             print an access token
//	mqtt-oauth2 pub [options] -t TOPIC -m MESSAGE
//	mqtt-oauth2 sub [options] -t FILTER...
//
// Every subcommand takes --help. Exit codes: 0 done, 1 failed (one line on stderr says why), 2 bad
// usage.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/oauth2"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/grant"
)

const usage = `mqtt-oauth2 gets OAuth 2.0 access tokens for a device and keeps an MQTT session authenticated with them.

Usage:
  mqtt-oauth2 token [options]                     print an access token (client credentials or device grant)
  mqtt-oauth2 pub [options] -t TOPIC -m MESSAGE   publish, with a token it gets and renews
  mqtt-oauth2 sub [options] -t FILTER...          subscribe and print messages, renewing the token in-session

Run "mqtt-oauth2 SUBCOMMAND --help" for a subcommand's options. Options may also come from a config file
(--config, default %s): one "name = value" line per option, names as on the command line.
`

// errUsage is a command line that cannot run; its message has been printed.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, usage, defaultConfig())
		return 2
	}
	var sub func(context.Context, *options, io.Reader, io.Writer, io.Writer) error
	f := flag.NewFlagSet("mqtt-oauth2 "+args[0], flag.ContinueOnError)
	f.SetOutput(stderr)
	var o options
	config := f.String("config", "", "config file (default "+defaultConfig()+" if it exists)")
	switch args[0] {
	case "token":
		tokenFlags(f, &o)
		sub = tokenCmd
	case "pub":
		tokenFlags(f, &o)
		mqttFlags(f, &o)
		pubFlags(f, &o)
		sub = pubCmd
	case "sub":
		tokenFlags(f, &o)
		mqttFlags(f, &o)
		subFlags(f, &o)
		sub = subCmd
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(stdout, usage, defaultConfig())
		return 0
	default:
		fmt.Fprintf(stderr, "mqtt-oauth2: unknown subcommand %q\n"+usage, args[0], defaultConfig())
		return 2
	}
	f.Usage = func() {
		fmt.Fprintf(f.Output(), "Usage: mqtt-oauth2 %s [options]\n\nOptions:\n", args[0])
		f.PrintDefaults()
	}
	if err := f.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if f.NArg() > 0 {
		fmt.Fprintf(stderr, "mqtt-oauth2 %s: unexpected argument %q\n", args[0], f.Arg(0))
		return 2
	}
	path, explicit := *config, *config != ""
	if !explicit {
		path = defaultConfig()
	}
	if path != "" {
		if err := applyConfig(f, path, explicit); err != nil {
			fmt.Fprintf(stderr, "mqtt-oauth2: %v\n", err)
			return 2
		}
	}
	if err := sub(ctx, &o, stdin, stdout, stderr); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintf(stderr, "mqtt-oauth2 %s: %v\n", args[0], err)
		}
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

// usageError prints a bad-usage message and returns errUsage.
func usageError(stderr io.Writer, format string, args ...any) error {
	fmt.Fprintf(stderr, "mqtt-oauth2: "+format+"\n", args...)
	return errUsage
}

// tlsConfig trusts --ca-file if given, else the system's roots.
func (o *options) tlsConfig() (*tls.Config, error) {
	if o.tls != nil {
		return o.tls, nil // the IdP's client and the broker's connection share it: the CA file is read once
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.caFile == "" {
		o.tls = cfg
		return cfg, nil
	}
	pem, err := os.ReadFile(o.caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", o.caFile)
	}
	cfg.RootCAs = pool
	o.tls = cfg
	return cfg, nil
}

// grantConfig says, from the options, which authorization server to ask, as which client, for what;
// it discovers the endpoints the options do not give. prompt receives the device flow's instructions;
// nil makes a needed sign-in an error instead.
func grantConfig(ctx context.Context, o *options, prompt io.Writer, stderr io.Writer) (*grant.Config, error) {
	if o.clientID == "" {
		return nil, usageError(stderr, "--client-id is required")
	}
	if o.issuer == "" && o.tokenURL == "" {
		return nil, usageError(stderr, "--issuer (or --token-url) is required")
	}
	secret, err := o.secret()
	if err != nil {
		return nil, err
	}
	kind := o.grantKind()
	if kind != "device" && kind != "client_credentials" {
		return nil, usageError(stderr, "--grant must be client_credentials or device, not %q", kind)
	}
	if kind == "client_credentials" && secret == "" {
		return nil, usageError(stderr, "the client credentials grant needs --client-secret-file")
	}
	tlsCfg, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsCfg, TLSHandshakeTimeout: 10 * time.Second}}
	cfg := &grant.Config{
		Endpoints:    grant.Endpoints{Issuer: o.issuer, TokenURL: o.tokenURL, DeviceAuthURL: o.deviceURL},
		ClientID:     o.clientID,
		ClientSecret: secret,
		Scopes:       strings.Fields(o.scope),
		Audience:     o.audience,
		Resource:     o.resource,
		HTTPClient:   hc,
		Prompt:       prompt,
		Margin:       o.margin,
	}
	if o.issuer != "" && (o.tokenURL == "" || (kind == "device" && o.deviceURL == "")) {
		ep, err := grant.Discover(ctx, hc, o.issuer)
		if err != nil {
			return nil, err
		}
		if o.tokenURL != "" {
			ep.TokenURL = o.tokenURL
		}
		if o.deviceURL != "" {
			ep.DeviceAuthURL = o.deviceURL
		}
		cfg.Endpoints = ep
	}
	if !o.noCache {
		path := o.cache
		if path == "" {
			if path, err = grant.DefaultCachePath(); err != nil {
				return nil, err
			}
		}
		cfg.Cache = grant.NewCache(path)
	}
	return cfg, nil
}

// tokenSource is cfg's source for the grant the options name.
func tokenSource(ctx context.Context, o *options, cfg *grant.Config) oauth2.TokenSource {
	if o.grantKind() == "device" {
		return cfg.Device(ctx)
	}
	return cfg.ClientCredentials(ctx)
}

// grantKind is --grant, or by default client_credentials for a client with a secret, else device.
func (o *options) grantKind() string {
	switch {
	case o.grant != "":
		return o.grant
	case o.clientSecret != "" || o.secretFile != "":
		return "client_credentials"
	}
	return "device"
}

func tokenCmd(ctx context.Context, o *options, _ io.Reader, stdout, stderr io.Writer) error {
	cfg, err := grantConfig(ctx, o, stderr, stderr)
	if err != nil {
		return err
	}
	tok, err := tokenSource(ctx, o, cfg).Token()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok.AccessToken)
	return err
}
