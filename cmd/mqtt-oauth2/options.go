package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// options holds every option of every subcommand; each subcommand registers the ones it takes.
type options struct {
	issuer, tokenURL, deviceURL        string
	clientID, clientSecret, secretFile string
	grant                              string
	scope, audience, resource          string
	caFile, cache                      string
	noCache                            bool

	broker, mqttVersion, authMethod, username, id string
	margin                                        time.Duration
	topics                                        topicList
	qos                                           int
	retain                                        bool
	message                                       string
	lines, verbose, debug                         bool
	count                                         int

	tls *tls.Config // from caFile, made once by tlsConfig
}

type topicList []string

func (t *topicList) String() string     { return strings.Join(*t, " ") }
func (t *topicList) Set(v string) error { *t = append(*t, v); return nil }

// tokenFlags are the options that say how to get a token.
func tokenFlags(f *flag.FlagSet, o *options) {
	f.StringVar(&o.issuer, "issuer", "", "issuer URL; endpoints come from its discovery document")
	f.StringVar(&o.tokenURL, "token-url", "", "token endpoint, instead of the discovered one")
	f.StringVar(&o.deviceURL, "device-url", "", "device authorization endpoint, instead of the discovered one")
	f.StringVar(&o.clientID, "client-id", "", "OAuth client id (required)")
	f.StringVar(&o.secretFile, "client-secret-file", "", "file whose first line is the client secret")
	f.StringVar(&o.clientSecret, "client-secret", "", "client secret (visible in ps: prefer --client-secret-file)")
	f.StringVar(&o.grant, "grant", "", "client_credentials or device (default: client_credentials with a secret, else device)")
	f.StringVar(&o.scope, "scope", "", "space-separated scopes; add offline_access for a refresh token with the device grant")
	f.StringVar(&o.audience, "audience", "", "audience parameter of the token request (Auth0 and others)")
	f.StringVar(&o.resource, "resource", "", "resource indicator of the token request (RFC 8707)")
	f.StringVar(&o.caFile, "ca-file", "", "PEM CA certificates to trust for the IdP and the broker (default: the system's)")
	f.StringVar(&o.cache, "cache", "", "token cache file, mode 0600 (default: mqtt-oauth2/tokens.json in the user cache directory)")
	f.BoolVar(&o.noCache, "no-cache", false, "neither read nor write the token cache")
}

// mqttFlags are the options of a session with the broker.
func mqttFlags(f *flag.FlagSet, o *options) {
	f.StringVar(&o.broker, "broker", "mqtt://127.0.0.1:1883", "broker URL: mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS")
	f.StringVar(&o.mqttVersion, "mqtt-version", "5", "MQTT protocol version: 5 or 3.1.1")
	f.StringVar(&o.authMethod, "auth-method", "OAUTH2-JWT", "MQTT 5 authentication method carrying the token, as the plugin's enhanced_auth_method; none: send the token as the password")
	f.StringVar(&o.username, "username", "", "MQTT username (the plugin may require the one its template renders from the token)")
	f.StringVar(&o.id, "id", "", "MQTT client id (default: mqtt-oauth2- and random hex)")
	f.DurationVar(&o.margin, "margin", 30*time.Second, "renew the token this long before it expires (halfway through a shorter-lived one)")
	f.Var(&o.topics, "t", "topic (sub: filter, repeatable)")
	f.IntVar(&o.qos, "q", 1, "QoS: 0, 1 or 2")
	f.BoolVar(&o.debug, "d", false, "report connections and token renewals on stderr")
}

// configKeys are the option names a config file may hold; each subcommand takes those it knows.
func configKeys() map[string]bool {
	var o options
	f := flag.NewFlagSet("", flag.ContinueOnError)
	tokenFlags(f, &o)
	mqttFlags(f, &o)
	pubFlags(f, &o)
	subFlags(f, &o)
	keys := map[string]bool{}
	f.VisitAll(func(fl *flag.Flag) { keys[fl.Name] = true })
	return keys
}

func pubFlags(f *flag.FlagSet, o *options) {
	f.StringVar(&o.message, "m", "", "message to publish")
	f.BoolVar(&o.lines, "l", false, "publish each line of standard input as a message, renewing the token for as long as input lasts")
	f.BoolVar(&o.retain, "r", false, "retain the message")
}

func subFlags(f *flag.FlagSet, o *options) {
	f.BoolVar(&o.verbose, "v", false, "print each message's topic before its payload")
	f.IntVar(&o.count, "C", 0, "exit after this many messages (0: run until interrupted)")
}

// defaultConfig is read when --config is not given and the file exists.
func defaultConfig() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "mqtt-oauth2", "config")
}

// applyConfig sets the options of f not given on the command line from the config file: lines of
// "name = value" (or "name value"), with the option names of the command line; # starts a comment.
func applyConfig(f *flag.FlagSet, path string, explicit bool) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return nil
	}
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	given := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	known := configKeys()
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, _ := strings.Cut(line, "=")
		if !strings.Contains(line, "=") {
			name, value, _ = strings.Cut(line, " ")
		}
		name, value = strings.TrimSpace(strings.TrimLeft(name, "-")), strings.TrimSpace(value)
		if !known[name] {
			return fmt.Errorf("config %s line %d: unknown option %q", path, n, name)
		}
		if name == "client-secret" {
			if err := privateFile(path); err != nil {
				return fmt.Errorf("config %s holds client-secret: %w", path, err)
			}
		}
		if given[name] || f.Lookup(name) == nil {
			continue
		}
		if err := f.Set(name, value); err != nil {
			return fmt.Errorf("config %s line %d: %s: %w", path, n, name, err)
		}
	}
	return nil
}

// privateFile refuses a file that others than its owner may read.
func privateFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("it is readable by others (mode %04o): chmod 600 %s", st.Mode().Perm(), path)
	}
	return nil
}

// secret returns the client secret from --client-secret-file or --client-secret.
func (o *options) secret() (string, error) {
	if o.secretFile == "" {
		return o.clientSecret, nil
	}
	if o.clientSecret != "" {
		return "", errors.New("give --client-secret or --client-secret-file, not both")
	}
	data, err := os.ReadFile(o.secretFile)
	if err != nil {
		return "", fmt.Errorf("client secret: %w", err)
	}
	s, _, _ := strings.Cut(string(data), "\n")
	if s = strings.TrimSpace(s); s == "" {
		return "", fmt.Errorf("client secret: %s is empty", o.secretFile)
	}
	return s, nil
}
