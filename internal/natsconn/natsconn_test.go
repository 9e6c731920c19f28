package natsconn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

func TestOptions(t *testing.T) {
	okp, _ := nkeys.CreateAccount()
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	claims := jwt.NewUserClaims(upub)
	token, err := claims.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	useed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(token, useed)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(file, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, creds, ca, err string
		n                    int
	}{
		{"none", "", "", "", 0},
		{"content", string(creds), "", "", 1},
		{"file", file, "", "", 1},
		{"missing file", "/no/such.creds", "", "no such file", 0},
		{"garbage content", "-----BEGIN NATS USER JWT-----\nnot a jwt\n------END NATS USER JWT------", "", "NATS credentials: no user", 0},
		{"bad ca", "", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "no PEM certificate", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := Options(tc.creds, tc.ca)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want %q, got %v", tc.err, err)
				}
				if strings.Contains(err.Error(), string(useed)) {
					t.Fatal("error carries the seed")
				}
				return
			}
			if err != nil || len(opts) != tc.n {
				t.Fatalf("%d options, %v", len(opts), err)
			}
		})
	}
}
