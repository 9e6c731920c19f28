package login_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// idp is a small OpenID provider that follows the specs rather than
// Databricks: its issuer may end in "/", its discovery document says which
// client authentication it accepts (or leaves the field out), and its JWKS
// can be made to fail. The token endpoint accepts any code and puts the code
// into the ID token as its nonce, so a test chooses the nonce by the code.
type idp struct {
	t      *testing.T
	srv    *httptest.Server
	issuer string
	key    *rsa.PrivateKey
	kid    string

	mu sync.Mutex
	// authMethods is token_endpoint_auth_methods_supported; nil leaves it out.
	authMethods []string
	// keyFailures are how the next JWKS requests fail, one entry each:
	// "drop" closes the connection, "503" answers 503, "html" answers 200
	// with a proxy's HTML page.
	keyFailures []string
	// claims changes the claims of the next ID tokens.
	claims func(map[string]any)
	// signer, when set, signs ID tokens instead of the published key.
	signer *rsa.PrivateKey
	// seen is what the token endpoint saw: "basic", "post" or "none", and
	// the client id.
	seen     []string
	clientID string
	secret   string
	refresh  int
}

// newIDP starts a provider at srv.URL + path (path may end in "/").
func newIDP(t *testing.T, path string, clientID, secret string) *idp {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &idp{t: t, key: key, kid: "key-1", clientID: clientID, secret: secret}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	p.issuer = p.srv.URL + path
	return p
}

func (p *idp) base() string { return strings.TrimSuffix(p.issuer, "/") }

func (p *idp) set(f func(p *idp)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *idp) authSeen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

func (p *idp) serve(w http.ResponseWriter, r *http.Request) {
	prefix := strings.TrimPrefix(p.base(), p.srv.URL)
	switch strings.TrimPrefix(r.URL.Path, prefix) {
	case "/.well-known/openid-configuration":
		p.mu.Lock()
		doc := map[string]any{
			"issuer":                                p.issuer,
			"authorization_endpoint":                p.base() + "/authorize",
			"token_endpoint":                        p.base() + "/token",
			"jwks_uri":                              p.base() + "/keys",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		}
		if p.authMethods != nil {
			doc["token_endpoint_auth_methods_supported"] = p.authMethods
		}
		p.mu.Unlock()
		writeJSON(w, http.StatusOK, doc)
	case "/keys":
		p.mu.Lock()
		failure := ""
		if len(p.keyFailures) > 0 {
			failure, p.keyFailures = p.keyFailures[0], p.keyFailures[1:]
		}
		p.mu.Unlock()
		switch failure {
		case "drop":
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		case "503":
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		case "html":
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html><body>Proxy login required</body></html>"))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"keys": []any{map[string]any{
			"kty": "RSA", "use": "sig", "alg": "RS256", "kid": p.kid,
			"n": b64(p.key.N.Bytes()), "e": b64(big.NewInt(int64(p.key.E)).Bytes()),
		}}})
	case "/token":
		p.token(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (p *idp) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	id, secret, how := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret"), "none"
	if user, pass, ok := r.BasicAuth(); ok {
		// RFC 6749 section 2.3.1: both parts are form-urlencoded first.
		id, _ = url.QueryUnescape(user)
		secret, _ = url.QueryUnescape(pass)
		how = "basic"
	} else if secret != "" {
		how = "post"
	}
	p.seen = append(p.seen, how)
	if id != p.clientID || secret != p.secret {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	now := time.Now()
	claims := map[string]any{
		"iss": p.issuer, "sub": "user-1", "aud": p.clientID,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"email": "carol@corp.example",
	}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		claims["nonce"] = r.PostForm.Get("code")
	case "refresh_token":
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	if p.claims != nil {
		p.claims(claims)
	}
	signer := p.key
	if p.signer != nil {
		signer = p.signer
	}
	p.refresh++
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":  "access-" + b64(big.NewInt(int64(p.refresh)).Bytes()),
		"token_type":    "Bearer",
		"expires_in":    3600,
		"refresh_token": "refresh-" + b64(big.NewInt(int64(p.refresh)).Bytes()),
		"id_token":      signRS256(p.kid, signer, claims),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func signRS256(kid string, key *rsa.PrivateKey, claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})
	c, _ := json.Marshal(claims)
	input := b64(h) + "." + b64(c)
	digest := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		panic(err)
	}
	return input + "." + b64(sig)
}
