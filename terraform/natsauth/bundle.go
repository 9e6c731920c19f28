package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// BundleVersion is the layout of the bundle file. terraform/nats.tf reads it.
const BundleVersion = 1

// Names of the roles that get NATS credentials.
const (
	RoleController = "controller"
	RoleWebapp     = "webapp"
	RoleAdmin      = "admin"
)

// Buckets, streams and subjects the permissions below are written for. They
// mirror api/store, controller (leases), api/audit and webapp/session.
const (
	specBucket    = "servingapp-specs"
	statusBucket  = "servingapp-status"
	leaseBucket   = "servingapp-leases"
	auditStream   = "SERVINGAPP_AUDIT"
	eventsStream  = "SERVINGAPP_EVENTS"
	auditSubjects = "servingapp.audit.>"
	eventSubjects = "servingapp.events.>"
)

// Bundle is everything the NATS servers and their clients need: the operator
// and account JWTs the servers trust (public), the seeds that sign them
// (secret, kept so users can be re-issued without changing the account, whose
// public key names the JetStream storage directory), and each role's creds.
type Bundle struct {
	Version       int              `json:"version"`
	Operator      Entity           `json:"operator"`
	SystemAccount Entity           `json:"system_account"`
	Account       Entity           `json:"account"`
	Users         map[string]*User `json:"users"`
}

// Entity is one signed identity: an operator or an account.
type Entity struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	Seed      string `json:"seed"`
	JWT       string `json:"jwt"`
}

// User is one role's credentials.
type User struct {
	PublicKey string `json:"public_key"`
	JWT       string `json:"jwt"`
	// Creds is the .creds file (JWT and seed) clients load with
	// nats.UserCredentials; it holds the user's seed.
	Creds string `json:"creds"`
	// PermissionsDigest is the SHA-256 of the permissions in JWT, so a
	// change to RolePermissions re-issues exactly the users it affects.
	PermissionsDigest string `json:"permissions_digest"`
}

// RolePermissions is what each role may publish and subscribe to. Every
// client receives replies on _INBOX.>; nothing else is implied.
//
//   - controller: the whole JetStream API of the account (it creates and sizes
//     the buckets and streams), the spec, status and lease buckets, and the
//     reconcile event subjects. It never publishes audit events.
//   - webapp: publishes audit events (creating the audit stream if missing, as
//     api/audit.EnsureStream does) and keeps sessions in one KV bucket per
//     app (webapp/session.BucketName, "servingapp-sessions_<ns>_<name>").
//     Subject wildcards match whole tokens, so "any bucket whose name starts
//     with servingapp-sessions_" cannot be said; instead it may use KV buckets
//     in general and is denied every platform stream: specs, status, leases,
//     reconcile events, and reading or reconfiguring the audit stream. It can
//     never delete or purge a stream or message.
//   - admin (servingctl): the spec and status buckets, and read-only access to
//     every stream through consumers (describe, audit tail and export). It
//     cannot delete or purge a stream or its messages, nor forge audit or
//     reconcile events.
func RolePermissions() map[string]jwt.Permissions {
	inbox := jwt.Permission{Allow: jwt.StringList{"_INBOX.>"}}
	kv := func(bucket string) []string {
		return []string{
			"$KV." + bucket + ".>",
			"$JS.API.STREAM.INFO.KV_" + bucket,
			"$JS.API.STREAM.CREATE.KV_" + bucket,
			"$JS.API.STREAM.UPDATE.KV_" + bucket,
		}
	}
	// untouchable lists the JetStream API subjects that act on stream s.
	untouchable := func(s string) []string {
		return []string{
			"$JS.API.STREAM.*." + s,
			"$JS.API.STREAM.MSG.*." + s,
			"$JS.API.DIRECT.GET." + s,
			"$JS.API.DIRECT.GET." + s + ".>",
			"$JS.API.CONSUMER.*." + s,
			"$JS.API.CONSUMER.*." + s + ".>",
			"$JS.API.CONSUMER.*.*." + s + ".>",
		}
	}
	destructive := []string{
		"$JS.API.STREAM.DELETE.>",
		"$JS.API.STREAM.PURGE.>",
		"$JS.API.STREAM.MSG.DELETE.>",
		"$JS.API.STREAM.RESTORE.>",
		"$JS.API.STREAM.SNAPSHOT.>",
		"$JS.API.STREAM.PEER.REMOVE.>",
		"$JS.API.STREAM.LEADER.STEPDOWN.>",
		"$JS.API.CONSUMER.LEADER.STEPDOWN.>",
		"$JS.API.META.>",
		"$JS.API.SERVER.>",
		"$JS.API.ACCOUNT.>",
	}

	webappDeny := append([]string{}, destructive...)
	for _, s := range []string{"KV_" + specBucket, "KV_" + statusBucket, "KV_" + leaseBucket, eventsStream} {
		webappDeny = append(webappDeny, untouchable(s)...)
	}
	for _, b := range []string{specBucket, statusBucket, leaseBucket} {
		webappDeny = append(webappDeny, "$KV."+b+".>")
	}
	// The audit stream: create it if missing and publish to it, nothing else.
	for _, subj := range untouchable(auditStream) {
		if subj != "$JS.API.STREAM.*."+auditStream {
			webappDeny = append(webappDeny, subj)
		}
	}
	webappDeny = append(webappDeny,
		"$JS.API.STREAM.UPDATE."+auditStream,
		eventSubjects,
	)

	return map[string]jwt.Permissions{
		RoleController: {
			Pub: jwt.Permission{Allow: jwt.StringList{
				"$JS.API.>",
				"$JS.ACK.>",
				"$JS.FC.>",
				"$KV." + specBucket + ".>",
				"$KV." + statusBucket + ".>",
				"$KV." + leaseBucket + ".>",
				eventSubjects,
			}},
			Sub: inbox,
		},
		RoleWebapp: {
			Pub: jwt.Permission{
				Allow: jwt.StringList{
					"$JS.API.INFO",
					"$JS.API.STREAM.INFO.*",
					"$JS.API.STREAM.CREATE.*",
					"$JS.API.STREAM.UPDATE.*",
					"$JS.API.STREAM.MSG.GET.*",
					"$JS.API.DIRECT.GET.>",
					"$JS.API.CONSUMER.CREATE.>",
					"$JS.API.CONSUMER.INFO.>",
					"$JS.API.CONSUMER.DELETE.>",
					"$JS.API.CONSUMER.MSG.NEXT.>",
					"$JS.ACK.>",
					"$JS.FC.>",
					"$KV.*.>",
					auditSubjects,
				},
				Deny: webappDeny,
			},
			Sub: inbox,
		},
		RoleAdmin: {
			Pub: jwt.Permission{
				Allow: append(jwt.StringList{
					"$JS.API.INFO",
					"$JS.API.STREAM.INFO.*",
					"$JS.API.STREAM.NAMES",
					"$JS.API.STREAM.LIST",
					"$JS.API.STREAM.MSG.GET.*",
					"$JS.API.DIRECT.GET.>",
					"$JS.API.CONSUMER.CREATE.>",
					"$JS.API.CONSUMER.INFO.>",
					"$JS.API.CONSUMER.DELETE.>",
					"$JS.API.CONSUMER.NAMES.>",
					"$JS.API.CONSUMER.LIST.>",
					"$JS.API.CONSUMER.MSG.NEXT.>",
					"$JS.ACK.>",
					"$JS.FC.>",
				}, append(kv(specBucket), kv(statusBucket)...)...),
				Deny: append(append(jwt.StringList{}, destructive...), auditSubjects, eventSubjects),
			},
			Sub: inbox,
		},
	}
}

// Roles lists the roles in a fixed order.
func Roles() []string { return []string{RoleAdmin, RoleController, RoleWebapp} }

// NewBundle creates an operator, a system account, the servingapp account
// with JetStream enabled, and one user per role.
func NewBundle() (*Bundle, error) {
	b := &Bundle{Version: BundleVersion, Users: map[string]*User{}}
	op, err := newEntity(nkeys.CreateOperator, "servingapp")
	if err != nil {
		return nil, err
	}
	b.Operator = op
	if b.SystemAccount, err = newEntity(nkeys.CreateAccount, "SYS"); err != nil {
		return nil, err
	}
	if b.Account, err = newEntity(nkeys.CreateAccount, "SERVINGAPP"); err != nil {
		return nil, err
	}
	if err := b.signAccounts(); err != nil {
		return nil, err
	}
	if _, err := b.Reconcile(time.Now()); err != nil {
		return nil, err
	}
	return b, nil
}

func newEntity(create func() (nkeys.KeyPair, error), name string) (Entity, error) {
	kp, err := create()
	if err != nil {
		return Entity{}, fmt.Errorf("create %s key: %w", name, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return Entity{}, fmt.Errorf("read %s public key: %w", name, err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return Entity{}, fmt.Errorf("read %s seed: %w", name, err)
	}
	return Entity{Name: name, PublicKey: pub, Seed: string(seed)}, nil
}

// signAccounts signs the operator and both account JWTs. JWTs are stamped
// with the current time by the jwt package.
func (b *Bundle) signAccounts() error {
	opKP, err := nkeys.FromSeed([]byte(b.Operator.Seed))
	if err != nil {
		return fmt.Errorf("operator seed: %w", err)
	}
	oc := jwt.NewOperatorClaims(b.Operator.PublicKey)
	oc.Name = b.Operator.Name
	oc.SystemAccount = b.SystemAccount.PublicKey
	if b.Operator.JWT, err = oc.Encode(opKP); err != nil {
		return fmt.Errorf("sign operator: %w", err)
	}

	sys := jwt.NewAccountClaims(b.SystemAccount.PublicKey)
	sys.Name = b.SystemAccount.Name
	if b.SystemAccount.JWT, err = sys.Encode(opKP); err != nil {
		return fmt.Errorf("sign system account: %w", err)
	}

	acc := jwt.NewAccountClaims(b.Account.PublicKey)
	acc.Name = b.Account.Name
	acc.Limits.JetStreamLimits = jwt.JetStreamLimits{
		MemoryStorage: jwt.NoLimit,
		DiskStorage:   jwt.NoLimit,
		Streams:       jwt.NoLimit,
		Consumer:      jwt.NoLimit,
	}
	if b.Account.JWT, err = acc.Encode(opKP); err != nil {
		return fmt.Errorf("sign account: %w", err)
	}
	return nil
}

// Reconcile issues a user for every role that has none, and rotates a
// role's user (new key, old one revoked) when its permissions changed, so
// narrowed permissions cannot be bypassed with the old creds. It reports
// whether anything changed.
func (b *Bundle) Reconcile(now time.Time) (bool, error) {
	if b.Users == nil {
		b.Users = map[string]*User{}
	}
	changed := false
	perms := RolePermissions()
	for _, role := range Roles() {
		digest, err := digestOf(perms[role])
		if err != nil {
			return false, err
		}
		switch u := b.Users[role]; {
		case u == nil:
			if b.Users[role], err = b.issueUser(role, perms[role], digest); err != nil {
				return false, err
			}
		case u.PermissionsDigest != digest:
			if err := b.Rotate(role, now); err != nil {
				return false, err
			}
		default:
			continue
		}
		changed = true
	}
	return changed, nil
}

// Rotate gives role a new key and revokes the old one in the account, so the
// old creds stop working once the servers load the new account JWT.
func (b *Bundle) Rotate(role string, now time.Time) error {
	old, ok := b.Users[role]
	if !ok {
		return fmt.Errorf("no user for role %q (roles: %v)", role, Roles())
	}
	perms := RolePermissions()[role]
	digest, err := digestOf(perms)
	if err != nil {
		return err
	}
	nu, err := b.issueUser(role, perms, digest)
	if err != nil {
		return err
	}
	acc, err := jwt.DecodeAccountClaims(b.Account.JWT)
	if err != nil {
		return fmt.Errorf("decode account: %w", err)
	}
	// Revocation covers JWTs of that key issued at or before the timestamp.
	acc.RevokeAt(old.PublicKey, now)
	if b.Account.JWT, err = resign(acc, b.Operator.Seed); err != nil {
		return err
	}
	b.Users[role] = nu
	return nil
}

func resign(acc *jwt.AccountClaims, operatorSeed string) (string, error) {
	opKP, err := nkeys.FromSeed([]byte(operatorSeed))
	if err != nil {
		return "", fmt.Errorf("operator seed: %w", err)
	}
	t, err := acc.Encode(opKP)
	if err != nil {
		return "", fmt.Errorf("sign account: %w", err)
	}
	return t, nil
}

func (b *Bundle) issueUser(role string, perms jwt.Permissions, digest string) (*User, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("user %s key: %w", role, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("user %s public key: %w", role, err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("user %s seed: %w", role, err)
	}
	accKP, err := nkeys.FromSeed([]byte(b.Account.Seed))
	if err != nil {
		return nil, fmt.Errorf("account seed: %w", err)
	}
	uc := jwt.NewUserClaims(pub)
	uc.Name = role
	uc.Permissions = perms
	token, err := uc.Encode(accKP)
	if err != nil {
		return nil, fmt.Errorf("sign user %s: %w", role, err)
	}
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		return nil, fmt.Errorf("format creds for %s: %w", role, err)
	}
	return &User{PublicKey: pub, JWT: token, Creds: string(creds), PermissionsDigest: digest}, nil
}

func digestOf(p jwt.Permissions) (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("encode permissions: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Check verifies that the bundle is complete and that every JWT is signed by
// the key it claims: operator → accounts → users.
func (b *Bundle) Check() error {
	if b.Version != BundleVersion {
		return fmt.Errorf("bundle version %d, want %d", b.Version, BundleVersion)
	}
	oc, err := jwt.DecodeOperatorClaims(b.Operator.JWT)
	if err != nil {
		return fmt.Errorf("operator JWT: %w", err)
	}
	if oc.Subject != b.Operator.PublicKey || oc.SystemAccount != b.SystemAccount.PublicKey {
		return errors.New("operator JWT does not match the bundle's operator and system account")
	}
	var acc *jwt.AccountClaims
	for _, e := range []Entity{b.SystemAccount, b.Account} {
		ac, err := jwt.DecodeAccountClaims(e.JWT)
		if err != nil {
			return fmt.Errorf("account %s JWT: %w", e.Name, err)
		}
		if ac.Subject != e.PublicKey || !oc.DidSign(ac) {
			return fmt.Errorf("account %s JWT is not the bundle's account signed by its operator", e.Name)
		}
		acc = ac
	}
	if !acc.Limits.IsJSEnabled() {
		return errors.New("account has JetStream disabled")
	}
	for _, role := range Roles() {
		u := b.Users[role]
		if u == nil {
			return fmt.Errorf("no user for role %s", role)
		}
		uc, err := jwt.DecodeUserClaims(u.JWT)
		if err != nil {
			return fmt.Errorf("user %s JWT: %w", role, err)
		}
		if uc.Subject != u.PublicKey || !acc.DidSign(uc) || acc.IsClaimRevoked(uc) {
			return fmt.Errorf("user %s JWT is not signed by the account, or is revoked", role)
		}
		if !slices.Contains(Roles(), uc.Name) {
			return fmt.Errorf("user %s JWT names unknown role %q", role, uc.Name)
		}
	}
	return nil
}
