package databricks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// RetryPolicy says how a client retries requests answered with 429 Too Many
// Requests or 503 Service Unavailable. Other failures are never retried. The
// zero value is a sensible default.
type RetryPolicy struct {
	// MaxAttempts is the total number of attempts, the first included.
	// Zero means 4; 1 disables retries.
	MaxAttempts int
	// BaseDelay is the backoff before the first retry; it doubles on each
	// further retry and a random part of up to half of it is shaved off.
	// Zero means 500ms.
	BaseDelay time.Duration
	// MaxDelay caps one wait. When the server's Retry-After asks for longer,
	// the client stops retrying and returns the error. Zero means 30s.
	MaxDelay time.Duration
	// Sleep waits d or until ctx is done, returning ctx.Err() in that case.
	// Nil means a real timer; tests inject a recorder so they never wait.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (p RetryPolicy) attempts() int {
	if p.MaxAttempts <= 0 {
		return 4
	}
	return p.MaxAttempts
}

func (p RetryPolicy) baseDelay() time.Duration {
	if p.BaseDelay <= 0 {
		return 500 * time.Millisecond
	}
	return p.BaseDelay
}

func (p RetryPolicy) maxDelay() time.Duration {
	if p.MaxDelay <= 0 {
		return 30 * time.Second
	}
	return p.MaxDelay
}

// delay is the wait before retry number retry (1-based): exponential backoff
// with jitter, but never shorter than what the server asked for.
func (p RetryPolicy) delay(retry int, retryAfter time.Duration) time.Duration {
	backoff := p.baseDelay() << min(retry-1, 16)
	if backoff > p.maxDelay() || backoff <= 0 {
		backoff = p.maxDelay()
	}
	d := backoff - rand.N(backoff/2+1)
	return max(d, retryAfter)
}

func (p RetryPolicy) sleep(ctx context.Context, d time.Duration) error {
	if p.Sleep != nil {
		return p.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retryable reports whether a status is worth retrying.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
}

// invalidator is implemented by token sources that cache tokens and can drop
// the cached one after the server rejected it.
type invalidator interface {
	Invalidate()
}

// transport sends requests to one Databricks host with retries, bearer
// authentication and error decoding. It is shared by the clients.
type transport struct {
	base   *url.URL
	client *http.Client
	retry  RetryPolicy
	now    func() time.Time
	tokens TokenSource // nil for unauthenticated endpoints (the token endpoint)
}

func newTransport(host string, client *http.Client, retry RetryPolicy, now func() time.Time, tokens TokenSource) (*transport, error) {
	if host == "" {
		return nil, fmt.Errorf("databricks: host is empty")
	}
	base, err := url.Parse(strings.TrimRight(host, "/"))
	if err != nil {
		return nil, fmt.Errorf("databricks: parse host: %w", err)
	}
	if base.Scheme != "http" && base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("databricks: host %q must be an absolute http or https URL", host)
	}
	base.RawQuery, base.Fragment = "", ""
	if client == nil {
		client = http.DefaultClient
	}
	if now == nil {
		now = time.Now
	}
	return &transport{base: base, client: client, retry: retry, now: now, tokens: tokens}, nil
}

// request describes one API call; body is replayed on every attempt.
type request struct {
	method      string
	path        string // absolute path, segments escaped with url.PathEscape
	query       url.Values
	body        []byte
	contentType string
	accept      string
	basicUser   string // HTTP Basic credentials, sent instead of a bearer token when set
	basicPass   string
}

func (t *transport) url(escapedPath string, query url.Values) string {
	s := strings.TrimRight(t.base.String(), "/") + escapedPath
	if len(query) > 0 {
		s += "?" + query.Encode()
	}
	return s
}

// do sends req, retrying 429 and 503 answers per the retry policy, and
// returns the 2xx response with its body open for the caller to read and
// close. Failures are *APIError (possibly wrapped) or transport errors.
func (t *transport) do(ctx context.Context, req request) (*http.Response, error) {
	target := t.url(req.path, req.query)
	reauthenticated := false
	for attempt := 1; ; attempt++ {
		httpReq, err := http.NewRequestWithContext(ctx, req.method, target, bytes.NewReader(req.body))
		if err != nil {
			return nil, fmt.Errorf("build %s %s request: %w", req.method, req.path, err)
		}
		if req.body == nil {
			httpReq.Body = http.NoBody
			httpReq.ContentLength = 0
		}
		if req.contentType != "" {
			httpReq.Header.Set("Content-Type", req.contentType)
		}
		accept := req.accept
		if accept == "" {
			accept = "application/json"
		}
		httpReq.Header.Set("Accept", accept)
		httpReq.Header.Set("User-Agent", "servingapp-databricks-client/1")
		switch {
		case req.basicUser != "":
			httpReq.SetBasicAuth(url.QueryEscape(req.basicUser), url.QueryEscape(req.basicPass))
		case t.tokens != nil:
			token, err := t.tokens.Token(ctx)
			if err != nil {
				return nil, fmt.Errorf("get access token: %w", err)
			}
			httpReq.Header.Set("Authorization", "Bearer "+token)
		}

		resp, err := t.client.Do(httpReq)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return resp, nil
		}
		apiErr := decodeError(resp, t.now)
		drainAndClose(resp.Body)

		if resp.StatusCode == http.StatusUnauthorized && !reauthenticated && req.basicUser == "" {
			// A cached token the server no longer accepts: drop it and try
			// once more with a fresh one. Does not count as an attempt.
			if inv, ok := t.tokens.(invalidator); ok {
				inv.Invalidate()
				reauthenticated = true
				attempt--
				continue
			}
		}
		if !retryable(resp.StatusCode) || attempt >= t.retry.attempts() {
			return nil, apiErr
		}
		wait := t.retry.delay(attempt, apiErr.RetryAfter)
		if wait > t.retry.maxDelay() {
			return nil, apiErr
		}
		if err := t.retry.sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("wait to retry after %w: %w", apiErr, err)
		}
	}
}

func drainAndClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxErrorBody))
	_ = body.Close()
}
