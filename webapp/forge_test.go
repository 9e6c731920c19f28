package webapp_test

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"sync"
)

// Keys for forged ID tokens: "trusted" is added to the JWKS the apps see
// (through hookTransport), "unknown" never is.
var (
	keysOnce               sync.Once
	trustedKey, unknownKey *rsa.PrivateKey
)

const (
	trustedKID = "test-trusted-key"
	unknownKID = "test-unknown-key"
)

func testKeys() (*rsa.PrivateKey, *rsa.PrivateKey) {
	keysOnce.Do(func() {
		var err error
		if trustedKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if unknownKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return trustedKey, unknownKey
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// trustedJWK is the public JWK of trustedKey.
func trustedJWK() map[string]any {
	k, _ := testKeys()
	return map[string]any{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": trustedKID,
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes()),
	}
}

// signedByTrusted returns a forger for hookTransport.setForge: it changes
// the claims of the emulator's real ID token and signs them with trustedKey.
func signedByTrusted(change func(claims map[string]any)) func(map[string]any, string) string {
	trusted, _ := testKeys()
	return func(c map[string]any, _ string) string {
		change(c)
		return signJWT("RS256", trustedKID, trusted, "", c)
	}
}

// jwtClaims decodes a JWT's payload without verifying it.
func jwtClaims(token string) map[string]any {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return map[string]any{}
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return map[string]any{}
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return m
}

// signJWT signs claims: alg RS256 with key (kid), HS256 with secret, or none.
func signJWT(alg, kid string, key *rsa.PrivateKey, secret string, claims map[string]any) string {
	header := map[string]string{"alg": alg, "typ": "JWT"}
	if kid != "" {
		header["kid"] = kid
	}
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(claims)
	input := b64(h) + "." + b64(p)
	switch alg {
	case "RS256":
		digest := sha256.Sum256([]byte(input))
		sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
		if err != nil {
			panic(err)
		}
		return input + "." + b64(sig)
	case "HS256":
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(input))
		return input + "." + b64(mac.Sum(nil))
	default:
		return input + "."
	}
}

// atHash is the OpenID Connect at_hash of an access token (RS256).
func atHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return b64(sum[:16])
}
