// Package oauth registers ServingApps as OAuth clients of Databricks: one
// confidential custom app integration per app (managed), or our redirect URL
// added to an integration an admin made (existing). The controller runs it as
// the reconcile step behind the OAuthRegistered condition, on AWS and in dev
// mode alike, through the same account API client.
package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/servingapp/servingapp/api/appenv"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/internal/clock"
	"github.com/servingapp/servingapp/internal/databricks"
)

// Tags on the managed client secret. They hold no secret: they say which
// integration the stored secret belongs to, so a lost secret is detectable.
// TagUpdatedAt (RFC 3339) is when this controller last changed the app's
// integration; an existing-mode app's registration record carries it too.
// It is written before the change is made, so a controller that dies right
// after still reports the propagation window after its restart, and again
// once the change is made.
const (
	TagIntegrationID = "servingapp.io/oauth-integration-id"
	TagClientID      = "servingapp.io/oauth-client-id"
	TagUpdatedAt     = "servingapp.io/oauth-updated-at"
)

// TagRecordDigest on an app's registration record (see RecordName) is the
// SHA-256 of the record's value, so a steady-state reconcile sees from the
// tags alone that the record is current and never reads the value.
const TagRecordDigest = "servingapp.io/oauth-record-sha256"

// emptyListAttempts bounds how often a PATCH that empties an integration's
// redirect URLs is retried when the server keeps the list as it was (a
// proto3-based API may read an empty list as "field absent"). Then the URL
// is reported for removal by hand instead of blocking a deletion forever.
const emptyListAttempts = 3

// errEmptyListIgnored says a PATCH with an empty redirect URL list left the
// list as it was, emptyListAttempts times in a row.
var errEmptyListIgnored = errors.New("the server kept the redirect URLs after a PATCH with an empty list")

// PropagationWindow is how long Databricks can take to apply integration
// changes to logins.
const PropagationWindow = 30 * time.Minute

// AccountAPI is the part of the Databricks account API the registrar uses
// (databricks.AccountClient).
type AccountAPI interface {
	CreateCustomAppIntegration(ctx context.Context, req databricks.CreateCustomAppIntegrationRequest) (*databricks.CreateCustomAppIntegrationResponse, error)
	GetCustomAppIntegration(ctx context.Context, id string) (*databricks.CustomAppIntegration, error)
	ListAllCustomAppIntegrations(ctx context.Context, pageSize int) ([]databricks.CustomAppIntegration, error)
	UpdateCustomAppIntegration(ctx context.Context, id string, req databricks.UpdateCustomAppIntegrationRequest) error
	DeleteCustomAppIntegration(ctx context.Context, id string) error
}

// SecretStore keeps the managed client secrets and the registration records
// of existing-mode apps (Secrets Manager on AWS, memory in dev mode).
type SecretStore interface {
	// DescribeSecret finds the secret named name: its reference (ARN or name,
	// what task definitions use) and tags; ok is false when it does not exist.
	DescribeSecret(ctx context.Context, name string) (ref string, tags map[string]string, ok bool, err error)
	// PutSecret creates the secret, tagged with app.Tags and tags, or replaces
	// its value and tags; it returns the reference.
	PutSecret(ctx context.Context, app *model.App, name string, value []byte, tags map[string]string) (ref string, err error)
	// TagSecret adds or replaces tags of the secret ref.
	TagSecret(ctx context.Context, ref string, tags map[string]string) error
	// GetSecret returns the current value of the secret ref.
	GetSecret(ctx context.Context, ref string) ([]byte, error)
}

// Registrar implements controller.Registrar.
type Registrar struct {
	Account AccountAPI
	Secrets SecretStore
	Clock   clock.Clock
	// ControllerID makes integration names unique per installation.
	ControllerID string
	// SecretPrefix starts the managed client secret's name (default "servingapp/").
	SecretPrefix string
	// TokenPolicy of managed integrations; nil leaves Databricks' defaults.
	TokenPolicy *databricks.TokenAccessPolicy
	// InstantPropagation says integration changes reach logins at once (the
	// dev-mode emulator); otherwise status warns for PropagationWindow.
	InstantPropagation bool
	// Sleep waits between verification retries of a shared integration.
	Sleep func(context.Context, time.Duration) error
	// Log receives warnings that also go out as events; nil discards them.
	Log *slog.Logger

	mu    sync.Mutex
	locks map[string]*sync.Mutex // integration id → serializes our own read-merge-writes
}

// lock serializes this controller's edits of one shared integration: PATCH
// replaces whole lists, so two of our workers merging at once would drop one
// URL. Writers outside this controller are caught by the verify loop and,
// failing that, by the next resync.
func (r *Registrar) lock(id string) func() {
	r.mu.Lock()
	if r.locks == nil {
		r.locks = map[string]*sync.Mutex{}
	}
	l, ok := r.locks[id]
	if !ok {
		l = &sync.Mutex{}
		r.locks[id] = l
	}
	r.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// IntegrationName is the name of an app's managed integration:
// "servingapp-<controller>-<namespace>-<name>-<hash>". The readable part
// alone is ambiguous ('-' may occur in each piece: team-a/web and team/a-web
// would share it), and the registrar deletes integrations it finds under an
// app's name without a stored secret, so the name ends in a hash of the
// controller id, namespace and name, which ('/' occurs in none of them)
// tells every app of every controller apart.
func (r *Registrar) IntegrationName(ref model.Ref) string {
	sum := sha256.Sum256([]byte(r.ControllerID + "/" + ref.Namespace + "/" + ref.Name))
	return fmt.Sprintf("servingapp-%s-%s-%s-%s", r.ControllerID, ref.Namespace, ref.Name, hex.EncodeToString(sum[:])[:integrationNameHashLen])
}

// integrationNameHashLen is how many hex digits of the hash end an
// integration name (40 bits).
const integrationNameHashLen = 10

// SecretName is the name of an app's managed client secret.
func (r *Registrar) SecretName(ref model.Ref) string {
	return r.secretPrefix() + ref.Namespace + "/" + ref.Name + "/oauth-client-secret"
}

// RecordName is the name of an app's registration record: a secret holding
// no secret, only which redirect URLs the app put on which shared
// integrations (existing mode), so a moved app's old URL can be removed even
// after a controller restart. It is tagged as the app's, so it goes with the
// app's other secrets.
func (r *Registrar) RecordName(ref model.Ref) string {
	return r.secretPrefix() + ref.Namespace + "/" + ref.Name + "/oauth-registration"
}

func (r *Registrar) secretPrefix() string {
	if r.SecretPrefix == "" {
		return "servingapp/"
	}
	return r.SecretPrefix
}

func (r *Registrar) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

// Register implements controller.Registrar.
func (r *Registrar) Register(ctx context.Context, app *model.App, rec model.Recorder) (v1.Condition, error) {
	var (
		cond v1.Condition
		err  error
	)
	switch app.OAuth.Mode {
	case v1.IntegrationExisting:
		cond, err = r.registerExisting(ctx, app, rec)
	default:
		cond, err = r.registerManaged(ctx, app, rec)
	}
	if err != nil {
		reason := "RegistrationFailed"
		var term *model.TerminalError
		if errors.As(err, &term) {
			reason = term.Reason
		}
		return v1.Condition{Status: v1.ConditionFalse, Reason: reason, Message: err.Error()}, err
	}
	return cond, nil
}

func (r *Registrar) registerManaged(ctx context.Context, app *model.App, rec model.Recorder) (v1.Condition, error) {
	name := r.IntegrationName(app.Ref)
	secretName := r.SecretName(app.Ref)
	ref, tags, haveSecret, err := r.Secrets.DescribeSecret(ctx, secretName)
	if err != nil {
		return v1.Condition{}, fmt.Errorf("read client secret %s: %w", secretName, err)
	}
	known := ""
	if haveSecret {
		known = tags[TagIntegrationID]
	}
	if tags == nil {
		tags = map[string]string{}
	}
	current, err := r.findManaged(ctx, name, known, rec)
	if err != nil {
		return v1.Condition{}, err
	}
	now := r.Clock.Now()
	if current == nil {
		resp, err := r.Account.CreateCustomAppIntegration(ctx, databricks.CreateCustomAppIntegrationRequest{
			Name:              name,
			Confidential:      true,
			RedirectURLs:      []string{app.OAuth.RedirectURL},
			Scopes:            app.OAuth.Scopes,
			TokenAccessPolicy: r.TokenPolicy,
		})
		if err != nil {
			return v1.Condition{}, classify("create OAuth integration", err)
		}
		// Store the secret at once: Databricks never returns it again.
		ref, err = r.Secrets.PutSecret(ctx, app, secretName, []byte(resp.ClientSecret), map[string]string{
			TagIntegrationID: resp.IntegrationID, TagClientID: resp.ClientID, TagUpdatedAt: now.UTC().Format(time.RFC3339),
		})
		if err != nil {
			return v1.Condition{}, fmt.Errorf("store client secret of integration %s: %w", resp.IntegrationID, err)
		}
		rec.Event(ctx, "OAuthIntegrationCreated", fmt.Sprintf("integration %s created for redirect URL %s", resp.IntegrationID, app.OAuth.RedirectURL))
		tags = map[string]string{TagIntegrationID: resp.IntegrationID, TagClientID: resp.ClientID, TagUpdatedAt: now.UTC().Format(time.RFC3339)}
		current = &databricks.CustomAppIntegration{IntegrationID: resp.IntegrationID, ClientID: resp.ClientID, RedirectURLs: []string{app.OAuth.RedirectURL}, Scopes: app.OAuth.Scopes}
	}
	// As sets: Databricks documents neither the order it answers lists in
	// nor that it deduplicates them, and comparing in order would PATCH on
	// every reconcile and keep the status propagating forever.
	if !sameSet(current.RedirectURLs, []string{app.OAuth.RedirectURL}) || !sameSet(current.Scopes, app.OAuth.Scopes) {
		if err := r.stamp(ctx, ref, tags, now); err != nil {
			return v1.Condition{}, err
		}
		err := r.Account.UpdateCustomAppIntegration(ctx, current.IntegrationID, databricks.UpdateCustomAppIntegrationRequest{
			RedirectURLs: []string{app.OAuth.RedirectURL}, Scopes: app.OAuth.Scopes,
		})
		if err != nil {
			return v1.Condition{}, classify("update OAuth integration "+current.IntegrationID, err)
		}
		now = r.Clock.Now()
		if err := r.stamp(ctx, ref, tags, now); err != nil {
			return v1.Condition{}, err
		}
		rec.Event(ctx, "OAuthIntegrationUpdated", fmt.Sprintf("integration %s now has redirect URL %s and scopes %s", current.IntegrationID, app.OAuth.RedirectURL, strings.Join(app.OAuth.Scopes, " ")))
	}
	// An app that used a shared integration before may have left its
	// redirect URL there.
	rc, err := r.readRecord(ctx, app.Ref, registration{})
	if err != nil {
		return v1.Condition{}, err
	}
	if err := r.reconcileRecord(ctx, app, rc, registration{}, rec); err != nil {
		return v1.Condition{}, err
	}
	app.OAuth.IntegrationID = current.IntegrationID
	app.OAuth.ClientID = tags[TagClientID]
	app.OAuth.ClientSecretRef = ref
	app.Env[appenv.ClientID] = app.OAuth.ClientID
	app.SecretEnv[appenv.ClientSecret] = ref
	updated, _ := time.Parse(time.RFC3339, tags[TagUpdatedAt])
	return r.registered(app, updated, now), nil
}

// findManaged returns the app's managed integration, nil when none usable
// exists. With the id the stored secret is tagged with (known) it is one
// GET; only when that id is unknown or gone does it list every integration
// of the account, which is also the only way to find integrations a crash
// between create and store left without a stored secret: those it deletes.
// (With one writer per app, a lost integration can only appear while the
// known one is absent, so the GET path misses none.)
func (r *Registrar) findManaged(ctx context.Context, name, known string, rec model.Recorder) (*databricks.CustomAppIntegration, error) {
	if known != "" {
		in, err := r.Account.GetCustomAppIntegration(ctx, known)
		switch {
		case err == nil && in.Name == name:
			return in, nil
		case err != nil && !databricks.IsNotFound(err):
			return nil, classify("read OAuth integration "+known, err)
		}
		// Deleted by someone, or not ours by name (the tag was edited):
		// recover from the listing.
	}
	all, err := r.Account.ListAllCustomAppIntegrations(ctx, 100)
	if err != nil {
		return nil, classify("list OAuth integrations", err)
	}
	var current *databricks.CustomAppIntegration
	for i := range all {
		in := all[i]
		if in.Name != name {
			continue
		}
		if current == nil && known != "" && in.IntegrationID == known {
			current = &in
			continue
		}
		// Named ours without a stored secret: lost, the secret can never be
		// read again.
		if err := r.Account.DeleteCustomAppIntegration(ctx, in.IntegrationID); err != nil && !databricks.IsNotFound(err) {
			return nil, classify("delete OAuth integration with a lost secret", err)
		}
		rec.Warning(ctx, "OAuthIntegrationRecreated", fmt.Sprintf("integration %s had no stored client secret (a crash between create and store); deleted it to create a new one", in.IntegrationID))
	}
	return current, nil
}

func (r *Registrar) registerExisting(ctx context.Context, app *model.App, rec model.Recorder) (v1.Condition, error) {
	id := app.OAuth.IntegrationID
	want := registration{IntegrationID: id, RedirectURL: app.OAuth.RedirectURL}
	var (
		updated time.Time    // when we last changed the integration for this app
		noted   storedRecord // the app's record, with want in it
	)
	changed, in, err := func() (bool, *databricks.CustomAppIntegration, error) {
		defer r.lock(id)()
		in, err := r.Account.GetCustomAppIntegration(ctx, id)
		if databricks.IsNotFound(err) {
			return false, nil, model.Terminal("OAuthIntegrationNotFound", fmt.Errorf("integration %s does not exist in the Databricks account: check spec.databricks.oauth.integrationId", id))
		}
		if err != nil {
			return false, nil, classify("read OAuth integration "+id, err)
		}
		if missing := missingScopes(in.Scopes, app.OAuth.Scopes); len(missing) > 0 {
			return false, nil, model.Terminal("ScopesNotAllowed", fmt.Errorf("integration %s does not allow scopes %s: ask its owner to add them, or drop them from spec.databricks.oauth.scopes", id, strings.Join(missing, " ")))
		}
		// Note the URL in the record before adding it, so a crash right
		// after the add cannot lose track of it; likewise the time of the
		// change, so a restarted controller still reports the window.
		noted, err = r.noteRecord(ctx, app, want)
		if err != nil {
			return false, nil, err
		}
		if !slices.Contains(in.RedirectURLs, want.RedirectURL) {
			if err := r.stamp(ctx, noted.ref, noted.tags, r.Clock.Now()); err != nil {
				return false, nil, err
			}
		}
		changed, in, err := r.editRedirects(ctx, id, in, func(urls []string) []string {
			if slices.Contains(urls, want.RedirectURL) {
				return nil
			}
			return append(slices.Clone(urls), want.RedirectURL)
		}, func(urls []string) bool { return slices.Contains(urls, want.RedirectURL) })
		if err == nil && changed {
			err = r.stamp(ctx, noted.ref, noted.tags, r.Clock.Now())
		}
		updated, _ = time.Parse(time.RFC3339, noted.tags[TagUpdatedAt]) // zero when never stamped
		return changed, in, err
	}()
	if err != nil {
		return v1.Condition{}, err
	}
	if changed {
		rec.Event(ctx, "RedirectURLRegistered", fmt.Sprintf("redirect URL %s added to shared integration %s", want.RedirectURL, id))
	}
	// Only now, with the new URL in place, remove the ones this app
	// registered before (another host or path prefix, another integration):
	// add before remove, so logins never break. Only this reconcile writes
	// the app's record, so noted is still what is stored.
	if err := r.reconcileRecord(ctx, app, noted, want, rec); err != nil {
		return v1.Condition{}, err
	}
	if err := r.dropManaged(ctx, app, rec); err != nil {
		return v1.Condition{}, err
	}
	app.OAuth.ClientID = in.ClientID
	app.Env[appenv.ClientID] = in.ClientID
	return r.registered(app, updated, r.Clock.Now()), nil
}

// dropManaged deletes the managed integration an app had before it moved to
// an existing one (called once the existing one has the app's redirect URL,
// so logins never break): nobody signs in through it any more, and left
// alone it would stay in the account with nothing owning it. Its client
// secret stays among the app's secrets, deleted with the app, with the
// integration id tag emptied so the next reconcile finds nothing to do.
func (r *Registrar) dropManaged(ctx context.Context, app *model.App, rec model.Recorder) error {
	name := r.SecretName(app.Ref)
	ref, tags, ok, err := r.Secrets.DescribeSecret(ctx, name)
	if err != nil {
		return fmt.Errorf("read client secret %s: %w", name, err)
	}
	id := tags[TagIntegrationID]
	if !ok || id == "" || id == app.OAuth.IntegrationID {
		return nil
	}
	in, err := r.Account.GetCustomAppIntegration(ctx, id)
	switch {
	case databricks.IsNotFound(err):
	case err != nil:
		return classify("read the app's former OAuth integration "+id, err)
	case in.Name == r.IntegrationName(app.Ref): // ours by name, not someone's integration the tag was edited to
		if err := r.Account.DeleteCustomAppIntegration(ctx, id); err != nil && !databricks.IsNotFound(err) {
			return classify("delete the app's former OAuth integration "+id, err)
		}
		rec.Event(ctx, "OAuthIntegrationDeleted", fmt.Sprintf("integration %s deleted: the app now signs in through integration %s", id, app.OAuth.IntegrationID))
	}
	if err := r.Secrets.TagSecret(ctx, ref, map[string]string{TagIntegrationID: ""}); err != nil {
		return fmt.Errorf("untag client secret %s from integration %s: %w", name, id, err)
	}
	return nil
}

// stamp records in the tags of the secret ref that this controller changes
// (or just changed) the app's integration at t; see TagUpdatedAt. tags are
// the secret's tags as known, updated in place; nothing is written when
// they say so already.
func (r *Registrar) stamp(ctx context.Context, ref string, tags map[string]string, t time.Time) error {
	v := t.UTC().Format(time.RFC3339)
	if tags[TagUpdatedAt] == v {
		return nil
	}
	if err := r.Secrets.TagSecret(ctx, ref, map[string]string{TagUpdatedAt: v}); err != nil {
		return fmt.Errorf("record the integration change on secret %s: %w", ref, err)
	}
	tags[TagUpdatedAt] = v
	return nil
}

// registration is one redirect URL an app put on a shared integration.
type registration struct {
	IntegrationID string `json:"integration_id"`
	RedirectURL   string `json:"redirect_url"`
}

// record is the value of an app's registration record: every redirect URL
// the app may have on shared integrations. It lists one entry in steady
// state, two while a move is under way, none for a managed app.
type record struct {
	Registered []registration `json:"registered"`
}

func (rc record) encode() ([]byte, string) {
	b, _ := json.Marshal(rc) // strings only: cannot fail
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

// steadyRecord is the record an app has once registration is done: its one
// registration, or none.
func steadyRecord(want registration) record {
	if want.RedirectURL == "" {
		return record{Registered: []registration{}}
	}
	return record{Registered: []registration{want}}
}

// storedRecord is an app's registration record as read.
type storedRecord struct {
	record
	exists bool              // the record secret exists
	steady bool              // it is steadyRecord(want): nothing to remove or write
	ref    string            // the record secret's reference, when it exists
	tags   map[string]string // its tags (TagUpdatedAt among them)
}

// readRecord reads the app's registration record. When the digest tag says
// it is steadyRecord(want), it does so without reading the value.
func (r *Registrar) readRecord(ctx context.Context, ref model.Ref, want registration) (storedRecord, error) {
	name := r.RecordName(ref)
	secretRef, tags, ok, err := r.Secrets.DescribeSecret(ctx, name)
	if err != nil {
		return storedRecord{}, fmt.Errorf("read registration record %s: %w", name, err)
	}
	if !ok {
		return storedRecord{tags: map[string]string{}}, nil
	}
	if tags == nil {
		tags = map[string]string{}
	}
	stored := storedRecord{exists: true, ref: secretRef, tags: tags}
	steady := steadyRecord(want)
	if _, digest := steady.encode(); tags[TagRecordDigest] == digest {
		stored.record, stored.steady = steady, true
		return stored, nil
	}
	raw, err := r.Secrets.GetSecret(ctx, secretRef)
	if err != nil {
		return storedRecord{}, fmt.Errorf("read registration record %s: %w", name, err)
	}
	if err := json.Unmarshal(raw, &stored.record); err != nil {
		// Nothing to act on: the record is rewritten from what is known now.
		r.log().Warn("unreadable OAuth registration record, rewriting it", "app", ref.String(), "record", name, "err", err)
		stored.record = record{}
	}
	return stored, nil
}

// writeRecord stores rc as the app's record and returns the secret's
// reference. Its other tags (TagUpdatedAt) stay.
func (r *Registrar) writeRecord(ctx context.Context, app *model.App, rc record) (string, error) {
	name := r.RecordName(app.Ref)
	value, digest := rc.encode()
	ref, err := r.Secrets.PutSecret(ctx, app, name, value, map[string]string{TagRecordDigest: digest})
	if err != nil {
		return "", fmt.Errorf("write registration record %s: %w", name, err)
	}
	return ref, nil
}

// noteRecord adds want to the app's record unless it is there, and returns
// the record as it now is, as readRecord would now read it.
func (r *Registrar) noteRecord(ctx context.Context, app *model.App, want registration) (storedRecord, error) {
	rc, err := r.readRecord(ctx, app.Ref, want)
	if err != nil {
		return storedRecord{}, err
	}
	if rc.steady || slices.Contains(rc.Registered, want) {
		return rc, nil
	}
	rc.Registered = append(rc.Registered, want)
	if rc.ref, err = r.writeRecord(ctx, app, rc.record); err != nil {
		return storedRecord{}, err
	}
	rc.exists = true
	rc.steady = slices.Equal(rc.Registered, steadyRecord(want).Registered)
	return rc, nil
}

// reconcileRecord removes every redirect URL the record rc (as read for
// want, or as noteRecord left it) lists but want, then records that only
// want is left. Without a record (an app registered before records existed,
// or a managed app that never shared) there is nothing to remove and, for a
// managed app, nothing to write.
func (r *Registrar) reconcileRecord(ctx context.Context, app *model.App, rc storedRecord, want registration, rec model.Recorder) error {
	if rc.steady || (!rc.exists && want.RedirectURL == "") {
		return nil
	}
	for _, old := range rc.Registered {
		if old == want {
			continue
		}
		// The URL may now be another app's (two apps swapped hosts); that
		// app adds it back at its next reconcile.
		if err := r.removeRedirect(ctx, old, "previous redirect URL", rec); err != nil {
			return err
		}
	}
	_, err := r.writeRecord(ctx, app, steadyRecord(want))
	return err
}

// removeRedirect removes one redirect URL from a shared integration. When
// the server will not let the last URL go (it keeps a list a PATCH empties),
// it warns, naming what to remove by hand, and returns nil: a URL left on an
// integration must not block a deletion forever.
func (r *Registrar) removeRedirect(ctx context.Context, g registration, what string, rec model.Recorder) error {
	defer r.lock(g.IntegrationID)()
	in, err := r.Account.GetCustomAppIntegration(ctx, g.IntegrationID)
	if databricks.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return classify("read OAuth integration "+g.IntegrationID, err)
	}
	changed, _, err := r.editRedirects(ctx, g.IntegrationID, in, func(urls []string) []string {
		if !slices.Contains(urls, g.RedirectURL) {
			return nil
		}
		return slices.DeleteFunc(slices.Clone(urls), func(u string) bool { return u == g.RedirectURL })
	}, func(urls []string) bool { return !slices.Contains(urls, g.RedirectURL) })
	if errors.Is(err, errEmptyListIgnored) {
		msg := fmt.Sprintf("%s %s is the last redirect URL of shared integration %s and Databricks kept it after %d updates with an empty list; remove it by hand in the account console, the controller will not try again",
			what, g.RedirectURL, g.IntegrationID, emptyListAttempts)
		r.log().Warn("redirect URL left on a shared integration", "integration", g.IntegrationID, "redirect_url", g.RedirectURL)
		rec.Warning(ctx, "RedirectURLNotRemoved", msg)
		return nil
	}
	if err != nil {
		return err
	}
	if changed {
		rec.Event(ctx, "RedirectURLUnregistered", fmt.Sprintf("%s %s removed from shared integration %s", what, g.RedirectURL, g.IntegrationID))
	}
	return nil
}

// editRedirects reads, merges and writes an integration's redirect URLs, then
// reads again to verify: PATCH replaces the whole list, so a concurrent writer
// can drop our change, and we write again until it sticks. A PATCH emptying
// the list that leaves it exactly as it was, emptyListAttempts times, is a
// server reading an empty list as "no change": errEmptyListIgnored.
func (r *Registrar) editRedirects(ctx context.Context, id string, in *databricks.CustomAppIntegration, edit func([]string) []string, done func([]string) bool) (bool, *databricks.CustomAppIntegration, error) {
	changed := false
	ignored := 0
	for attempt := 0; attempt < 8; attempt++ {
		next := edit(in.RedirectURLs)
		if next == nil {
			return changed, in, nil
		}
		before := in.RedirectURLs
		if len(next) == 0 {
			next = []string{} // non-nil, so the request carries the empty list
		}
		if err := r.Account.UpdateCustomAppIntegration(ctx, id, databricks.UpdateCustomAppIntegrationRequest{RedirectURLs: next}); err != nil {
			return changed, nil, classify("update redirect URLs of integration "+id, err)
		}
		changed = true
		if err := r.sleep(ctx, time.Duration(attempt*attempt)*20*time.Millisecond); err != nil {
			return changed, nil, err
		}
		got, err := r.Account.GetCustomAppIntegration(ctx, id)
		if err != nil {
			return changed, nil, classify("verify redirect URLs of integration "+id, err)
		}
		in = got
		if done(in.RedirectURLs) {
			return changed, in, nil
		}
		if len(next) == 0 && sameSet(in.RedirectURLs, before) {
			if ignored++; ignored >= emptyListAttempts {
				return changed, in, errEmptyListIgnored
			}
		}
	}
	return changed, nil, fmt.Errorf("redirect URLs of integration %s keep being overwritten by a concurrent writer", id)
}

func (r *Registrar) sleep(ctx context.Context, d time.Duration) error {
	if r.Sleep != nil {
		return r.Sleep(ctx, d)
	}
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Unregister implements controller.Registrar: managed integrations are
// deleted, and from a shared one only our redirect URLs are removed. With
// retain nothing changes in Databricks.
func (r *Registrar) Unregister(ctx context.Context, app *model.App, retain bool, rec model.Recorder) error {
	if retain {
		return nil
	}
	if app.OAuth.Mode == v1.IntegrationExisting {
		want := registration{IntegrationID: app.OAuth.IntegrationID, RedirectURL: app.OAuth.RedirectURL}
		if want.RedirectURL == "" {
			return nil // no model could be built; nothing of ours can be named
		}
		// A move not finished yet may have left a previous URL. The record
		// is usually gone already (the platform deletes the app's secrets
		// first); then a finished move left nothing but want.
		rc, err := r.readRecord(ctx, app.Ref, want)
		if err != nil {
			return err
		}
		targets := []registration{want}
		for _, g := range rc.Registered {
			if !slices.Contains(targets, g) {
				targets = append(targets, g)
			}
		}
		for _, g := range targets {
			if err := r.removeRedirect(ctx, g, "redirect URL", rec); err != nil {
				return err
			}
		}
		return nil
	}
	// Listing, not the id the client secret is tagged with: the platform
	// has deleted the app's secrets by now, and only the listing finds an
	// integration a crash left without a stored secret. This runs once per
	// deletion, not per resync.
	all, err := r.Account.ListAllCustomAppIntegrations(ctx, 100)
	if err != nil {
		return classify("list OAuth integrations", err)
	}
	for _, in := range all {
		if in.Name != r.IntegrationName(app.Ref) {
			continue
		}
		if err := r.Account.DeleteCustomAppIntegration(ctx, in.IntegrationID); err != nil && !databricks.IsNotFound(err) {
			return classify("delete OAuth integration "+in.IntegrationID, err)
		}
		rec.Event(ctx, "OAuthIntegrationDeleted", "integration "+in.IntegrationID+" deleted")
	}
	return nil
}

func (r *Registrar) registered(app *model.App, updated, now time.Time) v1.Condition {
	if !r.InstantPropagation && !updated.IsZero() && now.Before(updated.Add(PropagationWindow)) {
		return v1.Condition{Status: v1.ConditionTrue, Reason: "RegisteredPropagating", Message: fmt.Sprintf(
			"Redirect URL %s registered at %s; Databricks can take up to 30 minutes to apply integration changes to logins, so logins may fail until %s.",
			app.OAuth.RedirectURL, updated.UTC().Format(time.RFC3339), updated.Add(PropagationWindow).UTC().Format(time.RFC3339))}
	}
	return v1.Condition{Status: v1.ConditionTrue, Reason: "Registered", Message: "Redirect URL " + app.OAuth.RedirectURL + " is registered."}
}

// classify marks Databricks errors that retrying will not fix as terminal.
func classify(what string, err error) error {
	switch {
	case databricks.IsPermissionDenied(err):
		return model.Terminal("AccessDenied", fmt.Errorf("%s: %w: the account service principal needs account admin rights", what, err))
	case databricks.IsUnauthenticated(err):
		return model.Terminal("Unauthenticated", fmt.Errorf("%s: %w: check the account service principal's credentials", what, err))
	case databricks.IsBadRequest(err):
		return model.Terminal("InvalidParameter", fmt.Errorf("%s: %w", what, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// sameSet reports whether a and b hold the same strings, in any order and
// with any repeats.
func sameSet(a, b []string) bool {
	return len(missingScopes(a, b)) == 0 && len(missingScopes(b, a)) == 0
}

// missingScopes returns the scopes of want that have does not list.
func missingScopes(have, want []string) []string {
	var out []string
	for _, s := range want {
		if !slices.Contains(have, s) {
			out = append(out, s)
		}
	}
	return out
}
