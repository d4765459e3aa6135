package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the JWKS cache, after istiod's JwksResolver
// (pilot/pkg/model/jwks_resolver.go): keys are refreshed every 20 minutes
// (PILOT_JWT_PUB_KEY_REFRESH_INTERVAL), a failed fetch is retried after at
// most a minute, and keys nobody used, or that could not be refreshed, for a
// week are dropped.
const (
	DefaultRefreshInterval = 20 * time.Minute
	failureRetryInterval   = time.Minute
	requestRetryInterval   = time.Second // requests do not refetch more often after a failure
	evictionDuration       = 7 * 24 * time.Hour
	maxJWKSBytes           = 1 << 20
	openIDDiscoverySuffix  = "/.well-known/openid-configuration"
)

// JWKSCache fetches remote key sets on first use and keeps them fresh in the
// background. One cache is shared by every compiled configuration, so a
// configuration update never refetches keys. It is safe for concurrent use.
type JWKSCache struct {
	client   *http.Client
	refresh  time.Duration
	retry    time.Duration // background retry after a failure
	maxStale time.Duration
	now      func() time.Time
	log      atomic.Pointer[slog.Logger]

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	entries map[jwksSource]*jwksEntry
}

// jwksSource names a key set: a jwksUri, or (uri empty) the issuer whose
// OpenID discovery document names it.
type jwksSource struct {
	uri    string
	issuer string
}

func (s jwksSource) String() string {
	if s.uri != "" {
		return s.uri
	}
	return strings.TrimSuffix(s.issuer, "/") + openIDDiscoverySuffix
}

type jwksEntry struct {
	src jwksSource

	mu        sync.Mutex
	keys      *keySet       // last good key set, nil before the first success
	fetchedAt time.Time     // last successful fetch
	attemptAt time.Time     // start of the last fetch
	lastErr   error         // outcome of the last fetch
	inflight  chan struct{} // closed when the running fetch ends; nil when idle
	timeout   time.Duration
	usedAt    time.Time
}

// NewJWKSCache returns a cache that fetches with client (nil: a default
// client) and refreshes every key set each refresh interval (0 or less:
// DefaultRefreshInterval). Close stops the background refresh.
func NewJWKSCache(client *http.Client, refresh time.Duration) *JWKSCache {
	if client == nil {
		client = &http.Client{}
	}
	if refresh <= 0 {
		refresh = DefaultRefreshInterval
	}
	c := &JWKSCache{
		client:   client,
		refresh:  refresh,
		retry:    min(refresh, failureRetryInterval),
		maxStale: evictionDuration,
		now:      time.Now,
		entries:  map[jwksSource]*jwksEntry{},
	}
	c.log.Store(slog.New(slog.DiscardHandler))
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.loop()
	return c
}

var (
	defaultCache     *JWKSCache
	defaultCacheOnce sync.Once
)

// DefaultJWKSCache is the process-wide cache Compile uses when
// Options.JWKS is nil.
func DefaultJWKSCache() *JWKSCache {
	defaultCacheOnce.Do(func() { defaultCache = NewJWKSCache(nil, DefaultRefreshInterval) })
	return defaultCache
}

// SetLogger sets where fetch failures and key updates are logged.
func (c *JWKSCache) SetLogger(l *slog.Logger) {
	if l != nil {
		c.log.Store(l)
	}
}

// Close stops the background refresh and cancels running fetches.
func (c *JWKSCache) Close() {
	c.cancel()
	c.wg.Wait()
}

// errNoKeys is returned when a fetch did not finish in time and no keys are
// known yet.
var errNoKeys = errors.New("jwks not fetched yet")

// keys returns the key set of src, fetching it if it was never fetched. It
// waits at most timeout (and not past ctx) for a running fetch.
func (c *JWKSCache) keys(ctx context.Context, src jwksSource, timeout time.Duration) (*keySet, error) {
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	e := c.entry(src)
	now := c.now()
	e.mu.Lock()
	e.usedAt = now
	e.timeout = timeout
	if e.keys != nil {
		ks := e.keys
		e.mu.Unlock()
		return ks, nil
	}
	if e.inflight == nil {
		if e.lastErr != nil && now.Sub(e.attemptAt) < requestRetryInterval {
			err := e.lastErr
			e.mu.Unlock()
			return nil, err
		}
		c.startLocked(e, now)
	}
	done := e.inflight
	e.mu.Unlock()

	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, fmt.Errorf("%w after %v", errNoKeys, timeout)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.keys == nil {
		if e.lastErr != nil {
			return nil, e.lastErr
		}
		return nil, errNoKeys
	}
	return e.keys, nil
}

func (c *JWKSCache) entry(src jwksSource) *jwksEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[src]
	if e == nil {
		e = &jwksEntry{src: src, timeout: DefaultFetchTimeout}
		c.entries[src] = e
	}
	return e
}

// startLocked starts a fetch of e in the background; e.mu is held.
func (c *JWKSCache) startLocked(e *jwksEntry, now time.Time) {
	if c.ctx.Err() != nil {
		return
	}
	e.inflight = make(chan struct{})
	e.attemptAt = now
	timeout := e.timeout
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.fetch(e, timeout)
	}()
}

func (c *JWKSCache) fetch(e *jwksEntry, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	ks, err := c.load(ctx, e.src)
	cancel()
	now := c.now()
	log := c.log.Load()
	e.mu.Lock()
	if err == nil {
		if e.keys == nil || e.lastErr != nil {
			log.Info("jwks fetched", "jwks", e.src.String(), "keys", len(ks.keys))
		}
		e.keys, e.fetchedAt, e.lastErr = ks, now, nil
	} else {
		e.lastErr = err
		stale := e.keys != nil && now.Sub(e.fetchedAt) >= c.maxStale
		if stale {
			e.keys = nil // not refreshed for too long: stop trusting it
		}
		log.Warn("jwks fetch failed", "jwks", e.src.String(), "error", err,
			"keepingStaleKeys", e.keys != nil, "dropped", stale)
	}
	close(e.inflight)
	e.inflight = nil
	e.mu.Unlock()
}

// load fetches and parses a key set.
func (c *JWKSCache) load(ctx context.Context, src jwksSource) (*keySet, error) {
	uri := src.uri
	if uri == "" {
		if src.issuer == "" {
			return nil, errors.New("neither jwksUri nor issuer to discover it from")
		}
		body, err := c.get(ctx, strings.TrimSuffix(src.issuer, "/")+openIDDiscoverySuffix)
		if err != nil {
			return nil, fmt.Errorf("openid discovery: %w", err)
		}
		var doc struct {
			JwksURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(body, &doc); err != nil || doc.JwksURI == "" {
			return nil, fmt.Errorf("openid discovery of %q: no jwks_uri", src.issuer)
		}
		uri = doc.JwksURI
	}
	body, err := c.get(ctx, uri)
	if err != nil {
		return nil, err
	}
	return parseJWKS(body)
}

func (c *JWKSCache) get(ctx context.Context, uri string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("GET %s: status %d", uri, resp.StatusCode)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("GET %s: document larger than %d bytes", uri, maxJWKSBytes)
	}
	return body, nil
}

// loop refreshes key sets in the background until Close.
func (c *JWKSCache) loop() {
	defer c.wg.Done()
	tick := min(c.refresh/2, failureRetryInterval)
	if tick < time.Millisecond {
		tick = time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			c.sweep()
		}
	}
}

// sweep starts the fetches that are due and forgets unused key sets.
func (c *JWKSCache) sweep() {
	now := c.now()
	c.mu.Lock()
	entries := make([]*jwksEntry, 0, len(c.entries))
	for _, e := range c.entries {
		entries = append(entries, e)
	}
	c.mu.Unlock()
	for _, e := range entries {
		e.mu.Lock()
		if e.inflight == nil && now.Sub(e.usedAt) >= evictionDuration {
			e.mu.Unlock()
			c.mu.Lock()
			delete(c.entries, e.src)
			c.mu.Unlock()
			continue
		}
		due := false
		switch {
		case e.inflight != nil:
		case e.keys == nil || e.lastErr != nil:
			due = now.Sub(e.attemptAt) >= c.retry
		default:
			due = now.Sub(e.fetchedAt) >= c.refresh
		}
		if due {
			c.startLocked(e, now)
		}
		e.mu.Unlock()
	}
}
