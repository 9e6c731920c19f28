package login

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// ErrKeysUnavailable matches a verification that could not be done now:
// the provider's signing keys (JWKS) could not be fetched, or the wait for
// them ended. It says nothing about the token; try again later.
var ErrKeysUnavailable = errors.New("the identity provider's signing keys could not be fetched")

// maxJWKSBytes bounds a JWKS answer.
const maxJWKSBytes = 1 << 20

// keysFetchTimeout bounds one JWKS fetch when the HTTP client sets no
// timeout: go-oidc shares one fetch among all waiting verifications, so a
// hung one would hold them all.
const keysFetchTimeout = 30 * time.Second

// keySet is go-oidc's remote key set with one addition: when a signature
// cannot be checked because the keys could not be fetched, it says so
// through the context (go-oidc's verifier flattens the error to text, and
// matching text would be fragile).
type keySet struct {
	remote *oidc.RemoteKeySet
}

// fetchProblem receives the key set's report for one verification.
type fetchProblem struct{ err error }

type fetchProblemKey struct{}

func newKeySet(client *http.Client, jwksURL string) *keySet {
	c := *client
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = keysTransport{base: base}
	if c.Timeout == 0 {
		c.Timeout = keysFetchTimeout
	}
	// The key set outlives Discover's context: fetches happen whenever a
	// token names a key not seen yet.
	return &keySet{remote: oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), &c), jwksURL)}
}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := k.remote.VerifySignature(ctx, jwt)
	if err != nil && (errors.Is(err, ErrKeysUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		if p, ok := ctx.Value(fetchProblemKey{}).(*fetchProblem); ok {
			p.err = err
		}
	}
	return payload, err
}

// keysTransport turns every JWKS answer that is not a key set (a network
// error, a non-200 status, a proxy's HTML page) into ErrKeysUnavailable,
// which reaches keySet through go-oidc's wrapped fetch error.
type keysTransport struct{ base http.RoundTripper }

func (t keysTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeysUnavailable, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	_ = resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: read the answer: %w", ErrKeysUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: HTTP %d", ErrKeysUnavailable, resp.StatusCode)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if len(body) > maxJWKSBytes || json.Unmarshal(body, &set) != nil || set.Keys == nil {
		return nil, fmt.Errorf("%w: the answer is not a JSON Web Key Set", ErrKeysUnavailable)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

// verify checks an ID token. When it fails only because the signing keys
// could not be fetched, the error matches ErrKeysUnavailable; any other
// error is a verdict on the token.
func (p *Provider) verify(ctx context.Context, raw string) (*oidc.IDToken, error) {
	problem := &fetchProblem{}
	idt, err := p.verifier.Verify(context.WithValue(ctx, fetchProblemKey{}, problem), raw)
	if err != nil && problem.err != nil {
		return nil, fmt.Errorf("%w (%s)", ErrKeysUnavailable, verifyProblem(err))
	}
	return idt, err
}
