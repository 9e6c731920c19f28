package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// KeySize is the size of the app's session key: 32 bytes (AES-256).
const KeySize = 32

// sealVersion prefixes sealed data so the format can change later.
const sealVersion = 1

// ErrUnsealable is returned by Open for data that was not sealed by this key
// and purpose, or was altered.
var ErrUnsealable = errors.New("session: sealed data is invalid")

// Sealer encrypts and authenticates small values with AES-256-GCM under a
// key derived (HKDF-SHA256) from the app's session key and a purpose, so
// session records and cookies never share a key. It is safe for concurrent use.
type Sealer struct {
	aead cipher.AEAD
	rand io.Reader
}

// NewSealer derives the key for purpose from secret (KeySize bytes). rand
// supplies nonces; nil means crypto/rand.
func NewSealer(secret []byte, purpose string, rand io.Reader) (*Sealer, error) {
	if len(secret) != KeySize {
		return nil, fmt.Errorf("session key must be %d bytes, got %d", KeySize, len(secret))
	}
	key, err := hkdf.Key(sha256.New, secret, nil, "servingapp "+purpose, KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive %s key: %w", purpose, err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("create AES cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("create AES-GCM: %w", err)
	}
	return &Sealer{aead: aead, rand: rand}, nil
}

// Seal encrypts plaintext, binding it to aad (which Open must repeat).
func (s *Sealer) Seal(plaintext, aad []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+s.aead.Overhead())
	out[0] = sealVersion
	nonce := out[1 : 1+ns]
	if s.rand == nil {
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("make nonce: %w", err)
		}
	} else if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return nil, fmt.Errorf("make nonce: %w", err)
	}
	return s.aead.Seal(out, nonce, plaintext, aad), nil
}

// Open decrypts what Seal produced with the same aad.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < 1+ns+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, ErrUnsealable
	}
	out, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], aad)
	if err != nil {
		return nil, ErrUnsealable
	}
	return out, nil
}
