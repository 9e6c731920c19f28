package natstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// Secured is a server that, like production's, accepts only TLS clients
// with user credentials of its operator.
type Secured struct {
	URL    string // tls://127.0.0.1:port
	CAFile string // PEM of the CA that signed the server certificate
	// CredsFile is a .creds file of a user allowed everything in the
	// JetStream-enabled account.
	CredsFile string
}

// StartSecured starts a JetStream server with TLS (a certificate for
// 127.0.0.1 from a CA made for the test) and operator-mode JWT
// authentication, as the terraform NATS cluster runs, for tests of clients'
// --creds and --ca handling. It is shut down when the test ends.
func StartSecured(t testing.TB) Secured {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("secured nats-server: %v", err)
		}
	}
	tlsDir := filepath.Join(dir, "tls")
	caFile := WritePKI(t, tlsDir)
	cert, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, "server.pem"), filepath.Join(tlsDir, "server-key.pem"))
	must(err)

	operator, err := nkeys.CreateOperator()
	must(err)
	opPub, _ := operator.PublicKey()
	opClaims := jwt.NewOperatorClaims(opPub)
	newAccount := func(name string, jetStream bool) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, _ := kp.PublicKey()
		c := jwt.NewAccountClaims(pub)
		c.Name = name
		if jetStream {
			c.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		token, err := c.Encode(operator)
		must(err)
		return kp, pub, token
	}
	_, sysPub, sysJWT := newAccount("SYS", false)
	opClaims.SystemAccount = sysPub
	account, accPub, accJWT := newAccount("APP", true)
	resolver := &server.MemAccResolver{}
	must(resolver.Store(sysPub, sysJWT))
	must(resolver.Store(accPub, accJWT))

	user, err := nkeys.CreateUser()
	must(err)
	userPub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(userPub)
	uc.IssuerAccount = accPub
	userJWT, err := uc.Encode(account)
	must(err)
	seed, _ := user.Seed()
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	must(err)
	credsFile := filepath.Join(dir, "user.creds")
	must(os.WriteFile(credsFile, creds, 0o600))

	srv, err := server.NewServer(&server.Options{
		ServerName:       "natstest-secured",
		Host:             "127.0.0.1",
		Port:             server.RANDOM_PORT,
		JetStream:        true,
		StoreDir:         filepath.Join(dir, "js"),
		NoLog:            true,
		NoSigs:           true,
		TrustedOperators: []*jwt.OperatorClaims{opClaims},
		SystemAccount:    sysPub,
		AccountResolver:  resolver,
		TLSConfig:        &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}},
		TLSTimeout:       5,
	})
	must(err)
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(readyTimeout) {
		t.Fatal("secured nats-server: not ready")
	}
	port := srv.Addr().(*net.TCPAddr).Port
	return Secured{URL: "tls://127.0.0.1:" + strconv.Itoa(port), CAFile: caFile, CredsFile: credsFile}
}

// WritePKI writes a PKI for TLS tests on loopback to dir (created if
// missing), like the tls_* resources in terraform/nats.tf: ca.pem, a CA made
// for the test, and server.pem and server-key.pem, a certificate for
// 127.0.0.1 and localhost that the CA signed, for server and client auth
// (cluster routes use both). It returns the path of ca.pem.
func WritePKI(t testing.TB, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// issue makes a key and a certificate from tmpl, signed by parent's key
	// (self-signed when parent is nil).
	issue := func(tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, []byte) {
		t.Helper()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		return key, der
	}
	caKey, caDER := issue(&x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "natstest CA"},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	caCert, _ := x509.ParseCertificate(caDER)
	key, der := issue(&x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, caCert, caKey)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"ca.pem":         {Type: "CERTIFICATE", Bytes: caDER},
		"server.pem":     {Type: "CERTIFICATE", Bytes: der},
		"server-key.pem": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "ca.pem")
}
