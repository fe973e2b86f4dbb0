package auth

import (
	"fmt"
	"strings"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/config"
)

// Reload takes up what an operator may change without restarting the broker (Mosquitto's SIGHUP):
// it re-reads client_secret_file and ca_file and fetches jwt_issuer's keys again. Other options keep
// the values they had at start-up: Mosquitto does not hand them over again.
//
// The two files are read on the calling thread, which is the broker's, as Mosquitto reads its own
// password_file and acl_file on SIGHUP: a few hundred bytes each, and the next request to the IdP
// already uses what they hold. The key fetch runs in the background. A file that cannot be used
// (missing, unreadable, empty, a ca_file without a certificate) leaves the value in use as it was,
// with a warning naming the option and the file. Sessions, leases and cached verdicts are untouched:
// they rest on tokens, which the files do not change.
func (e *Engine) Reload() {
	var done []string
	if e.client != nil && e.cfg.ClientSecretFile != "" {
		secret, err := config.ReadSecretFile(e.cfg.ClientSecretFile)
		if err == nil {
			err = e.client.SetSecret(secret)
		}
		if err != nil {
			e.keeping("client_secret_file", err, "the client secret in use")
		} else {
			done = append(done, "client_secret_file re-read")
		}
	}
	if e.cfg.CAFile != "" {
		if roots, n, err := loadCAFile(e.cfg.CAFile); err != nil {
			e.keeping("ca_file", err, "the CAs in use")
		} else {
			if e.client != nil {
				e.client.SetRootCAs(roots)
			}
			if e.v.jwt != nil {
				e.v.jwt.SetTLS(keyFetchTLS(e.cfg, roots))
			}
			done = append(done, fmt.Sprintf("ca_file re-read: %d certificate%s", n, map[bool]string{true: "s"}[n != 1]))
		}
	}
	if e.v.jwt != nil {
		// After the CAs: the fetch connects with the new ones.
		e.v.jwt.Refetch()
		done = append(done, "JWKS refetch started")
	}
	if len(done) > 0 {
		e.log.Log(LevelInfo, "reload: "+strings.Join(done, "; "))
	}
}

// keeping logs why a file could not be taken up on reload. err names the file, never what it holds.
func (e *Engine) keeping(key string, err error, what string) {
	e.log.Log(LevelWarning, fmt.Sprintf("reload: %v; keeping %s", &config.OptionError{Key: key, Err: err}, what))
}
