package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// jwtIssuer signs JWT access tokens for the JWT rows and publishes its keys, with discovery, on the fake
// IdP's server. Its keys are the sizes IdPs use: RSA 2048 and P-256.
type jwtIssuer struct {
	issuer string
	rsa    *rsa.PrivateKey
	ec     *ecdsa.PrivateKey
	jwks   []byte
}

func newJWTIssuer(issuer string) (*jwtIssuer, error) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("RSA key: %w", err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("EC key: %w", err)
	}
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	jwks, err := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "rs", "alg": "RS256", "use": "sig",
			"n": b64(rk.N.Bytes()), "e": b64(big.NewInt(int64(rk.E)).Bytes())},
		{"kty": "EC", "kid": "es", "alg": "ES256", "use": "sig", "crv": "P-256",
			"x": b64(ek.X.FillBytes(make([]byte, 32))), "y": b64(ek.Y.FillBytes(make([]byte, 32)))},
	}})
	if err != nil {
		return nil, err
	}
	return &jwtIssuer{issuer: issuer, rsa: rk, ec: ek, jwks: jwks}, nil
}

// register serves discovery and the key set, calling count for each request.
func (j *jwtIssuer) register(mux *http.ServeMux, count func()) {
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		count()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"issuer": j.issuer, "jwks_uri": j.issuer + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		count()
		w.Header().Set("Content-Type", "application/json")
		w.Write(j.jwks)
	})
}

// sign returns one RFC 9068 access token with a unique jti, valid for an hour.
func (j *jwtIssuer) sign(alg string, n int) (string, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	header := fmt.Sprintf(`{"alg":%q,"typ":"at+jwt","kid":%q}`, alg, map[string]string{"RS256": "rs", "ES256": "es"}[alg])
	now := time.Now().Unix()
	payload := fmt.Sprintf(`{"iss":%q,"sub":"device-%d","aud":"urn:mqtt","jti":"%d-%d","iat":%d,"exp":%d}`,
		j.issuer, n, n, now, now, now+3600)
	input := b64([]byte(header)) + "." + b64([]byte(payload))
	sum := sha256.Sum256([]byte(input))
	var sig []byte
	switch alg {
	case "RS256":
		s, err := rsa.SignPKCS1v15(nil, j.rsa, crypto.SHA256, sum[:])
		if err != nil {
			return "", err
		}
		sig = s
	case "ES256":
		r, s, err := ecdsa.Sign(rand.Reader, j.ec, sum[:])
		if err != nil {
			return "", err
		}
		sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	default:
		return "", fmt.Errorf("unknown alg %s", alg)
	}
	return input + "." + b64(sig), nil
}

// presign signs n distinct tokens on every core. RS256 signing takes milliseconds (far more than the
// broker's check), so tokens are made before the row rather than while it runs.
func (j *jwtIssuer) presign(alg string, n int) ([]string, error) {
	out := make([]string, n)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				tok, err := j.sign(alg, i)
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				out[i] = tok
			}
		})
	}
	wg.Wait()
	return out, firstErr
}

// tokenPool hands out each pre-signed token once.
func tokenPool(tokens []string) credentials {
	var next atomic.Int64
	return func() (string, string, bool) {
		i := next.Add(1) - 1
		if i >= int64(len(tokens)) {
			return "", "", false
		}
		return "bench", tokens[i], true
	}
}
