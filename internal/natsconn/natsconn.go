// Package natsconn turns credentials and CA settings into nats.go options.
// The web app receives them as values (ECS injects secrets as variable
// contents), people and the controller usually as file paths; both work.
package natsconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Options returns the nats.go options for creds (a .creds file's content or
// its path; empty for none) and ca (PEM content or a file path; empty for the
// system roots).
func Options(creds, ca string) ([]nats.Option, error) {
	var opts []nats.Option
	if creds != "" {
		o, err := credsOption(creds)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	if ca != "" {
		pem := []byte(ca)
		if !strings.Contains(ca, "-----BEGIN") {
			b, err := os.ReadFile(ca)
			if err != nil {
				return nil, fmt.Errorf("read NATS CA: %w", err)
			}
			pem = b
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("NATS CA: no PEM certificate found")
		}
		opts = append(opts, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	return opts, nil
}

func credsOption(creds string) (nats.Option, error) {
	if !strings.Contains(creds, "-----BEGIN") {
		if _, err := os.Stat(creds); err != nil {
			return nil, fmt.Errorf("NATS credentials: %w", err)
		}
		return nats.UserCredentials(creds), nil
	}
	// Never put the content in an error: it holds the user's seed.
	token, err := jwt.ParseDecoratedJWT([]byte(creds))
	if err != nil {
		return nil, errors.New("NATS credentials: no user JWT in the given content")
	}
	kp, err := nkeys.ParseDecoratedNKey([]byte(creds))
	if err != nil {
		return nil, errors.New("NATS credentials: no user seed in the given content")
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, errors.New("NATS credentials: unreadable user seed")
	}
	return nats.UserJWTAndSeed(token, string(seed)), nil
}
