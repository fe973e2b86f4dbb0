package grant

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Cache keeps tokens between runs of the command in one JSON file, so that `mqtt-oauth2 token` twice
// reuses a still valid access token and a device signs in once, then refreshes.
//
// The file holds refresh tokens, which are as good as a sign-in: it is written 0600 in a directory
// made 0700, and a file that group or others may read is refused rather than used. Each write
// replaces the whole file by a rename, so a reader never sees half a file; two commands that write
// at once may lose one's entry, which costs that one a new token next time, nothing more.
type Cache struct {
	path string
}

// NewCache returns a Cache kept in the file at path. Nothing is read or written until a token source
// needs it.
func NewCache(path string) *Cache { return &Cache{path: path} }

// DefaultCachePath is tokens.json in mqtt-oauth2's directory under the user's cache directory
// (os.UserCacheDir: $XDG_CACHE_HOME or ~/.cache on Linux).
func DefaultCachePath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the token cache: %w", err)
	}
	return filepath.Join(dir, "mqtt-oauth2", "tokens.json"), nil
}

// maxCacheFile bounds what load reads: a cache of a few entries is a few kB.
const maxCacheFile = 1 << 20

// cacheFile is the file's content. Version lets a later format refuse or convert this one.
type cacheFile struct {
	Version int                   `json:"version"`
	Entries map[string]cacheEntry `json:"entries"`
}

const cacheVersion = 1

// cacheEntry is one token. A zero Expiry is a token whose server sent no expires_in, which x/oauth2
// treats as never expiring; the entry keeps it zero so that it means the same after a reload.
type cacheEntry struct {
	AccessToken  string    `json:"access_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	RefreshToken string    `json:"refresh_token,omitempty"`
}

// cacheKey names the entry of one configuration: tokens of another issuer, client, grant, scope set,
// audience or resource must never be handed out for this one. It is a hash so that the file does not
// list which clients the user has.
func cacheKey(c *Config, grant string) string {
	scopes := slices.Clone(c.Scopes)
	slices.Sort(scopes)
	h := sha256.New()
	// NUL cannot occur in a URL, client id or scope, so the fields cannot run into each other.
	for _, f := range []string{"v1", c.Issuer, c.TokenURL, c.ClientID, grant, strings.Join(scopes, " "), c.Audience, c.Resource} {
		io.WriteString(h, f)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// read returns the whole file; a missing file is an empty cache.
func (c *Cache) read() (cacheFile, error) {
	f, err := os.Open(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return cacheFile{Version: cacheVersion, Entries: map[string]cacheEntry{}}, nil
	}
	if err != nil {
		return cacheFile{}, fmt.Errorf("cannot read the token cache: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return cacheFile{}, fmt.Errorf("cannot read the token cache: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return cacheFile{}, fmt.Errorf("the token cache %s is not a regular file", c.path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return cacheFile{}, fmt.Errorf("the token cache %s may be read by other users (mode %04o); run: chmod 600 %s",
			c.path, fi.Mode().Perm(), c.path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxCacheFile+1))
	if err != nil {
		return cacheFile{}, fmt.Errorf("cannot read the token cache: %w", err)
	}
	cf, err := parseCache(data)
	if err != nil {
		return cacheFile{}, fmt.Errorf("the token cache %s is damaged (delete it to start over): %w", c.path, err)
	}
	return cf, nil
}

// parseCache reads a cache file's content. Its errors never quote the content: it holds tokens.
func parseCache(data []byte) (cacheFile, error) {
	if len(data) > maxCacheFile {
		return cacheFile{}, fmt.Errorf("larger than %d bytes", maxCacheFile)
	}
	var cf cacheFile
	if err := json.Unmarshal(data, &cf); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return cacheFile{}, fmt.Errorf("not JSON (offset %d)", se.Offset)
		}
		return cacheFile{}, errors.New("not a token cache")
	}
	if cf.Version != cacheVersion {
		return cacheFile{}, fmt.Errorf("format version %d, not %d", cf.Version, cacheVersion)
	}
	if cf.Entries == nil {
		cf.Entries = map[string]cacheEntry{}
	}
	return cf, nil
}

// load returns the token stored under key, or nil when there is none.
func (c *Cache) load(key string) (*oauth2.Token, error) {
	cf, err := c.read()
	if err != nil {
		return nil, err
	}
	e, ok := cf.Entries[key]
	if !ok {
		return nil, nil
	}
	return &oauth2.Token{AccessToken: e.AccessToken, TokenType: e.TokenType, Expiry: e.Expiry, RefreshToken: e.RefreshToken}, nil
}

// save stores tok under key, keeping the other entries. The file is rewritten through a temporary
// file in the same directory and a rename, so that it is whole at every moment, and is never
// readable by others, not even between create and chmod.
func (c *Cache) save(key string, tok *oauth2.Token) error {
	cf, err := c.read()
	if err != nil {
		return err
	}
	cf.Entries[key] = cacheEntry{AccessToken: tok.AccessToken, TokenType: tok.TokenType, Expiry: tok.Expiry, RefreshToken: tok.RefreshToken}
	data, err := json.MarshalIndent(cf, "", "  ")
	if err != nil {
		return fmt.Errorf("cannot encode the token cache: %w", err)
	}
	dir := filepath.Dir(c.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot create the token cache directory: %w", err)
	}
	// CreateTemp makes the file 0600.
	tmp, err := os.CreateTemp(dir, ".tokens-*.tmp")
	if err != nil {
		return fmt.Errorf("cannot write the token cache: %w", err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), c.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("cannot write the token cache: %w", err)
	}
	return nil
}
