package emulator

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"time"
)

// signingKey is one RS256 key; retireAt is zero for the current key.
type signingKey struct {
	kid      string
	priv     *rsa.PrivateKey
	retireAt time.Time
}

func newSigningKey() (*signingKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("emulator: generate RSA signing key: %w", err)
	}
	return &signingKey{kid: thumbprint(&priv.PublicKey), priv: priv}, nil
}

// thumbprint is the RFC 7638 JWK thumbprint, used as the key id.
func thumbprint(pub *rsa.PublicKey) string {
	canonical := fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, b64(big.NewInt(int64(pub.E)).Bytes()), b64(pub.N.Bytes()))
	sum := sha256.Sum256([]byte(canonical))
	return b64(sum[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// RotateKeys makes a new signing key current and returns its kid. The
// previous key stays in JWKS for the key grace period, so ID tokens signed
// before the rotation still verify.
func (e *Emulator) RotateKeys() (string, error) {
	key, err := newSigningKey()
	if err != nil {
		return "", err
	}
	now := e.now()
	e.keyMu.Lock()
	defer e.keyMu.Unlock()
	e.keys[0].retireAt = now.Add(e.keyGrace)
	keys := []*signingKey{key}
	for _, k := range e.keys {
		if k.retireAt.After(now) {
			keys = append(keys, k)
		}
	}
	e.keys = keys
	return key.kid, nil
}

// SigningKeyIDs returns the kids served in JWKS, the current key first.
func (e *Emulator) SigningKeyIDs() []string {
	now := e.now()
	e.keyMu.RLock()
	defer e.keyMu.RUnlock()
	var out []string
	for _, k := range e.keys {
		if k.retireAt.IsZero() || k.retireAt.After(now) {
			out = append(out, k.kid)
		}
	}
	return out
}

func (e *Emulator) currentKey() *signingKey {
	e.keyMu.RLock()
	defer e.keyMu.RUnlock()
	return e.keys[0]
}

type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// handleKeys serves the JSON Web Key Set.
func (e *Emulator) handleKeys(w http.ResponseWriter, r *http.Request) {
	now := e.now()
	e.keyMu.RLock()
	keys := make([]jwk, 0, len(e.keys))
	for _, k := range e.keys {
		if !k.retireAt.IsZero() && !k.retireAt.After(now) {
			continue
		}
		pub := &k.priv.PublicKey
		keys = append(keys, jwk{Kty: "RSA", Use: "sig", Alg: "RS256", Kid: k.kid, N: b64(pub.N.Bytes()), E: b64(big.NewInt(int64(pub.E)).Bytes())})
	}
	e.keyMu.RUnlock()
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
}

// signJWT signs claims as a compact RS256 JWT with the current key.
func (e *Emulator) signJWT(claims any) (string, error) {
	key := e.currentKey()
	header, err := json.Marshal(map[string]string{"alg": "RS256", "kid": key.kid, "typ": "JWT"})
	if err != nil {
		return "", fmt.Errorf("encode JWT header: %w", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode JWT claims: %w", err)
	}
	signingInput := b64(header) + "." + b64(payload)
	digest := sha256.Sum256([]byte(signingInput))
	sig, err := rsa.SignPKCS1v15(nil, key.priv, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("sign JWT: %w", err)
	}
	return signingInput + "." + b64(sig), nil
}

// atHash is the OpenID Connect at_hash of an access token for RS256: the
// base64url of the left half of its SHA-256.
func atHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return b64(sum[:len(sum)/2])
}
