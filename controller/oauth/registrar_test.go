package oauth_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servingapp/servingapp/api/appenv"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/local"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/controller/oauth"
	"github.com/servingapp/servingapp/internal/clock"
	"github.com/servingapp/servingapp/internal/databricks"
	"github.com/servingapp/servingapp/internal/databricks/emulator"
)

type recorder struct {
	mu       sync.Mutex
	reasons  []string
	messages []string
}

func (r *recorder) Event(_ context.Context, reason, m string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, reason)
	r.messages = append(r.messages, m)
}
func (r *recorder) Warning(ctx context.Context, reason, m string) { r.Event(ctx, reason, m) }

// message returns the message of the first event with reason.
func (r *recorder) message(reason string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := slices.Index(r.reasons, reason); i >= 0 {
		return r.messages[i], true
	}
	return "", false
}

type fixture struct {
	em      *emulator.Server
	account *databricks.AccountClient
	plat    *local.Platform
	clock   *clock.Manual
	reg     *oauth.Registrar
}

func newFixture(t *testing.T, opts ...emulator.Options) *fixture {
	t.Helper()
	var o emulator.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	em, err := emulator.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Close() })
	account, err := databricks.NewAccountClient(databricks.AccountConfig{
		Host: em.URL, AccountID: emulator.DefaultAccountID,
		ClientID: emulator.DefaultAdminClientID, ClientSecret: emulator.DefaultAdminSecret,
	})
	if err != nil {
		t.Fatal(err)
	}
	plat := &local.Platform{Gateway: &local.Gateway{}, Secrets: &local.Secrets{}}
	f := &fixture{em: em, account: account, plat: plat, clock: clock.NewManual(time.Now())}
	f.reg = f.registrar(account)
	return f
}

// adminIntegration registers an integration an admin made by hand, with a
// redirect URL of its own, for apps in existing mode to share.
func (f *fixture) adminIntegration(t *testing.T) emulator.Integration {
	t.Helper()
	in, _, err := f.em.RegisterIntegration(emulator.Integration{
		Name: "shared-by-admin", Confidential: true,
		RedirectURLs: []string{"https://other.example.com/callback"},
		Scopes:       []string{"openid", "email", "profile", "offline_access", "all-apis"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// registrar returns a new registrar (a new controller process: nothing in
// memory) on the fixture's secret store, calling the account API through api.
func (f *fixture) registrar(api oauth.AccountAPI) *oauth.Registrar {
	return &oauth.Registrar{
		Account: api, Secrets: f.plat, Clock: f.clock, ControllerID: "test",
		Sleep: func(context.Context, time.Duration) error { return nil },
	}
}

// patchLog is an AccountAPI that records the redirect URL lists it PATCHes
// and, with failWithout set, fails (as a crash would cut it off) every PATCH
// whose list lacks that URL.
type patchLog struct {
	oauth.AccountAPI
	failWithout string
	mu          sync.Mutex
	patches     [][]string
}

func (p *patchLog) UpdateCustomAppIntegration(ctx context.Context, id string, req databricks.UpdateCustomAppIntegrationRequest) error {
	p.mu.Lock()
	if req.RedirectURLs != nil {
		p.patches = append(p.patches, slices.Clone(req.RedirectURLs))
	}
	p.mu.Unlock()
	if p.failWithout != "" && req.RedirectURLs != nil && !slices.Contains(req.RedirectURLs, p.failWithout) {
		return errors.New("connection reset")
	}
	return p.AccountAPI.UpdateCustomAppIntegration(ctx, id, req)
}

func testApp(name string, mode v1.IntegrationMode, integrationID string) *model.App {
	ref := model.Ref{Namespace: "team", Name: name, UID: "uid-" + name}
	return &model.App{
		Ref: ref,
		OAuth: model.OAuth{Mode: mode, IntegrationID: integrationID,
			RedirectURL: "https://" + name + ".apps.example.com/oauth/callback",
			Scopes:      []string{"openid", "email", "profile", "offline_access", "all-apis"}},
		Env: map[string]string{}, SecretEnv: map[string]string{},
		Tags:      map[string]string{model.TagApp: ref.String()},
		Allowlist: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	}
}

func TestManagedRegistrationCreatesOnceAndStoresSecret(t *testing.T) {
	f := newFixture(t)
	rec := &recorder{}
	app := testApp("web", v1.IntegrationManaged, "")
	cond, err := f.reg.Register(context.Background(), app, rec)
	if err != nil {
		t.Fatal(err)
	}
	if cond.Status != v1.ConditionTrue || cond.Reason != "RegisteredPropagating" || !strings.Contains(cond.Message, "30 minutes") {
		t.Fatalf("condition %+v", cond)
	}
	in, ok := f.em.Integration(app.OAuth.IntegrationID)
	if !ok || !in.Confidential || !slices.Equal(in.RedirectURLs, []string{app.OAuth.RedirectURL}) || in.Name != f.reg.IntegrationName(app.Ref) || !strings.HasPrefix(in.Name, "servingapp-test-team-web-") {
		t.Fatalf("integration %+v", in)
	}
	secret, err := f.plat.GetSecret(context.Background(), app.SecretEnv[appenv.ClientSecret])
	if err != nil || len(secret) == 0 {
		t.Fatalf("client secret not stored: %v", err)
	}
	if app.Env[appenv.ClientID] != in.ClientID {
		t.Fatalf("client id env %q, want %q", app.Env[appenv.ClientID], in.ClientID)
	}
	// Steady state: no change, and after the propagation window plain Registered.
	f.clock.Advance(31 * time.Minute)
	again := testApp("web", v1.IntegrationManaged, "")
	cond, err = f.reg.Register(context.Background(), again, rec)
	if err != nil || cond.Reason != "Registered" || again.OAuth.IntegrationID != app.OAuth.IntegrationID {
		t.Fatalf("second register: %v %+v %s", err, cond, again.OAuth.IntegrationID)
	}
	if n := len(f.em.Integrations()); n != 1 {
		t.Fatalf("%d integrations, want 1", n)
	}
	if got := strings.Join(rec.reasons, ","); got != "OAuthIntegrationCreated" {
		t.Fatalf("events %s", got)
	}
	// A changed host updates the redirect URL in place.
	moved := testApp("web", v1.IntegrationManaged, "")
	moved.OAuth.RedirectURL = "https://web2.apps.example.com/oauth/callback"
	if _, err := f.reg.Register(context.Background(), moved, rec); err != nil {
		t.Fatal(err)
	}
	if in, _ := f.em.Integration(app.OAuth.IntegrationID); !slices.Equal(in.RedirectURLs, []string{moved.OAuth.RedirectURL}) {
		t.Fatalf("redirect not updated: %v", in.RedirectURLs)
	}
}

// lostStore is a SecretStore whose PutSecret fails while cut is set, as a
// controller that dies after Databricks created the integration but before
// Secrets Manager stored its secret.
type lostStore struct {
	oauth.SecretStore
	cut bool
}

func (l *lostStore) PutSecret(ctx context.Context, app *model.App, name string, value []byte, tags map[string]string) (string, error) {
	if l.cut {
		return "", errors.New("controller killed")
	}
	return l.SecretStore.PutSecret(ctx, app, name, value, tags)
}

// TestCrashBetweenCreateAndStoreRecreates: the controller dies between
// creating the integration and storing its secret, so the integration is
// unusable (the secret is never returned again): the next reconcile, by a
// new controller process, deletes it and creates a new one, with an event.
func TestCrashBetweenCreateAndStoreRecreates(t *testing.T) {
	f := newFixture(t)
	dying := f.registrar(f.account)
	store := &lostStore{SecretStore: f.plat, cut: true}
	dying.Secrets = store
	app := testApp("web", v1.IntegrationManaged, "")
	if _, err := dying.Register(context.Background(), app, &recorder{}); err == nil {
		t.Fatal("register succeeded although the secret could not be stored")
	}
	all := f.em.Integrations()
	if len(all) != 1 {
		t.Fatalf("%d integrations after the crash, want the 1 created", len(all))
	}
	lost := all[0]

	rec := &recorder{}
	app = testApp("web", v1.IntegrationManaged, "")
	if _, err := f.registrar(f.account).Register(context.Background(), app, rec); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.em.Integration(lost.IntegrationID); ok {
		t.Fatal("integration with the lost secret still exists")
	}
	if app.OAuth.IntegrationID == lost.IntegrationID || len(f.em.Integrations()) != 1 {
		t.Fatalf("not recreated: %s, %d integrations", app.OAuth.IntegrationID, len(f.em.Integrations()))
	}
	if !slices.Contains(rec.reasons, "OAuthIntegrationRecreated") {
		t.Fatalf("events %v", rec.reasons)
	}
	secret, err := f.plat.GetSecret(context.Background(), app.SecretEnv[appenv.ClientSecret])
	if err != nil || len(secret) == 0 {
		t.Fatalf("client secret of the new integration not stored: %v", err)
	}
}

// TestAppsWhoseNamesJoinAlikeKeepTheirOwnIntegrations: team-a/web and
// team/a-web (and two controllers whose ids and namespaces join alike) would
// share "servingapp-<controller>-<namespace>-<name>"; each must keep its own
// integration rather than take the other's for one whose secret was lost.
func TestAppsWhoseNamesJoinAlikeKeepTheirOwnIntegrations(t *testing.T) {
	f := newFixture(t)
	type party struct {
		reg *oauth.Registrar
		app *model.App
	}
	other := f.registrar(f.account)
	other.ControllerID = "test-team"
	a := testApp("web", v1.IntegrationManaged, "")
	a.Ref.Namespace = "team-a"
	b := testApp("a-web", v1.IntegrationManaged, "")
	c := testApp("web", v1.IntegrationManaged, "")
	c.Ref.Namespace = "a"
	// test + team-a/web, test + team/a-web and test-team + a/web all join
	// to "servingapp-test-team-a-web".
	parties := []party{{f.reg, a}, {f.reg, b}, {other, c}}
	names := map[string]bool{}
	for _, p := range parties {
		names[p.reg.IntegrationName(p.app.Ref)] = true
	}
	if len(names) != len(parties) {
		t.Fatalf("integration names collide: %v", names)
	}
	for round := range 2 {
		for _, p := range parties {
			app := testApp(p.app.Ref.Name, v1.IntegrationManaged, "")
			app.Ref = p.app.Ref
			rec := &recorder{}
			if _, err := p.reg.Register(context.Background(), app, rec); err != nil {
				t.Fatalf("round %d, %s: %v", round, app.Ref, err)
			}
			if slices.Contains(rec.reasons, "OAuthIntegrationRecreated") {
				t.Fatalf("round %d, %s deleted another app's integration: %v", round, app.Ref, rec.messages)
			}
		}
	}
	if n := len(f.em.Integrations()); n != len(parties) {
		t.Fatalf("%d integrations, want %d", n, len(parties))
	}
}

func TestExistingIntegrationConcurrentRegistrationKeepsBoth(t *testing.T) {
	f := newFixture(t)
	shared := f.adminIntegration(t)
	var wg sync.WaitGroup
	apps := make([]*model.App, 6)
	errs := make([]error, len(apps))
	for i := range apps {
		apps[i] = testApp(fmt.Sprintf("app%d", i), v1.IntegrationExisting, shared.IntegrationID)
		wg.Go(func() { _, errs[i] = f.reg.Register(context.Background(), apps[i], &recorder{}) })
	}
	wg.Wait()
	in, _ := f.em.Integration(shared.IntegrationID)
	for i, a := range apps {
		if errs[i] != nil {
			t.Fatalf("app%d: %v", i, errs[i])
		}
		if !slices.Contains(in.RedirectURLs, a.OAuth.RedirectURL) {
			t.Fatalf("%s missing from %v", a.OAuth.RedirectURL, in.RedirectURLs)
		}
		if a.Env[appenv.ClientID] != shared.ClientID {
			t.Fatal("client id not taken from the shared integration")
		}
	}
	if !slices.Contains(in.RedirectURLs, "https://other.example.com/callback") {
		t.Fatal("someone else's redirect URL was lost")
	}
	// Unregister removes only ours.
	for _, a := range apps[:3] {
		if err := f.reg.Unregister(context.Background(), a, false, &recorder{}); err != nil {
			t.Fatal(err)
		}
	}
	in, _ = f.em.Integration(shared.IntegrationID)
	if len(in.RedirectURLs) != 4 || slices.Contains(in.RedirectURLs, apps[0].OAuth.RedirectURL) {
		t.Fatalf("after unregister: %v", in.RedirectURLs)
	}
}

func TestUnregisterAndRetain(t *testing.T) {
	f := newFixture(t)
	app := testApp("web", v1.IntegrationManaged, "")
	if _, err := f.reg.Register(context.Background(), app, &recorder{}); err != nil {
		t.Fatal(err)
	}
	if err := f.reg.Unregister(context.Background(), app, true, &recorder{}); err != nil || len(f.em.Integrations()) != 1 {
		t.Fatalf("retain deleted the integration: %v", err)
	}
	if err := f.reg.Unregister(context.Background(), app, false, &recorder{}); err != nil || len(f.em.Integrations()) != 0 {
		t.Fatalf("delete left the integration: %v", err)
	}
}

func TestExistingErrorsAreTerminal(t *testing.T) {
	f := newFixture(t)
	narrow, _, _ := f.em.RegisterIntegration(emulator.Integration{Name: "narrow", Confidential: true, Scopes: []string{"openid"}})
	cases := []struct {
		name, id, reason string
	}{
		{"missing integration", "does-not-exist", "OAuthIntegrationNotFound"},
		{"scopes not allowed", narrow.IntegrationID, "ScopesNotAllowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cond, err := f.reg.Register(context.Background(), testApp("web", v1.IntegrationExisting, tc.id), &recorder{})
			var term *model.TerminalError
			if err == nil || cond.Reason != tc.reason || !errorsAs(err, &term) {
				t.Fatalf("err %v cond %+v", err, cond)
			}
		})
	}
}

// TestManagedSteadyStateIgnoresListOrder: Databricks may answer redirect
// URLs and scopes in another order, with repeats; a reconcile of an
// unchanged app then PATCHes nothing and the status settles to Registered.
func TestManagedSteadyStateIgnoresListOrder(t *testing.T) {
	f := newFixture(t, emulator.Options{ScrambleLists: true})
	ctx := context.Background()
	if _, err := f.reg.Register(ctx, testApp("web", v1.IntegrationManaged, ""), &recorder{}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(31 * time.Minute)
	f.em.ResetRequestCounts()
	rec := &recorder{}
	cond, err := f.reg.Register(ctx, testApp("web", v1.IntegrationManaged, ""), rec)
	if err != nil {
		t.Fatal(err)
	}
	if n := f.em.RequestCount(emulator.RouteUpdateIntegration); n != 0 {
		t.Errorf("steady-state reconcile made %d PATCH calls, want 0", n)
	}
	if cond.Reason != "Registered" || len(rec.reasons) != 0 {
		t.Errorf("condition %s, events %v; want Registered and no events", cond.Reason, rec.reasons)
	}
}

// TestManagedReconcileReadsTheKnownIntegrationByID: a steady-state reconcile
// reads the integration by the id its client secret is tagged with and lists
// nothing; listing is for recovery only (the integration was deleted by hand).
func TestManagedReconcileReadsTheKnownIntegrationByID(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i := range 5 { // other apps' integrations make the listing longer
		if _, err := f.reg.Register(ctx, testApp(fmt.Sprintf("other%d", i), v1.IntegrationManaged, ""), &recorder{}); err != nil {
			t.Fatal(err)
		}
	}
	first := testApp("web", v1.IntegrationManaged, "")
	if _, err := f.reg.Register(ctx, first, &recorder{}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name              string
		before            func(t *testing.T)
		wantList, wantGet int64
		wantNewID         bool
	}{
		{"steady state", func(*testing.T) {}, 0, 1, false},
		{"after a restart", func(*testing.T) { f.reg = f.registrar(f.account) }, 0, 1, false},
		{"integration deleted by hand", func(t *testing.T) {
			if err := f.account.DeleteCustomAppIntegration(ctx, first.OAuth.IntegrationID); err != nil {
				t.Fatal(err)
			}
		}, 1, 1, true},
	}
	for _, step := range steps {
		step.before(t)
		f.em.ResetRequestCounts()
		app := testApp("web", v1.IntegrationManaged, "")
		if _, err := f.reg.Register(ctx, app, &recorder{}); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if n := f.em.RequestCount(emulator.RouteListIntegrations); n != step.wantList {
			t.Errorf("%s: %d list calls, want %d", step.name, n, step.wantList)
		}
		if n := f.em.RequestCount(emulator.RouteGetIntegration); n != step.wantGet {
			t.Errorf("%s: %d get calls, want %d", step.name, n, step.wantGet)
		}
		if got := app.OAuth.IntegrationID != first.OAuth.IntegrationID; got != step.wantNewID {
			t.Errorf("%s: integration %s (was %s), want new: %v", step.name, app.OAuth.IntegrationID, first.OAuth.IntegrationID, step.wantNewID)
		}
		if _, ok := f.em.Integration(app.OAuth.IntegrationID); !ok {
			t.Errorf("%s: integration %s does not exist", step.name, app.OAuth.IntegrationID)
		}
	}
}

// TestExistingMoveRemovesThePreviousRedirectURL: when an app's host, path
// prefix or integration changes, the new redirect URL is added first and the
// previous one removed after, even across a controller restart, leaving
// other apps' URLs alone.
func TestExistingMoveRemovesThePreviousRedirectURL(t *testing.T) {
	const other = "https://other.example.com/callback"
	cases := []struct {
		name        string
		newURL      string
		otherTarget bool // the move also switches to another shared integration
	}{
		{"host", "https://web-new.apps.example.com/oauth/callback", false},
		{"path prefix", "https://web.apps.example.com/v2/oauth/callback", false},
		{"integration", "https://web.apps.example.com/oauth/callback", true},
		{"host and integration", "https://web-new.apps.example.com/oauth/callback", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			scopes := []string{"openid", "email", "profile", "offline_access", "all-apis"}
			shared, _, _ := f.em.RegisterIntegration(emulator.Integration{Name: "shared", Confidential: true, RedirectURLs: []string{other}, Scopes: scopes})
			second, _, _ := f.em.RegisterIntegration(emulator.Integration{Name: "second", Confidential: true, RedirectURLs: []string{other}, Scopes: scopes})
			neighbour := testApp("neighbour", v1.IntegrationExisting, shared.IntegrationID)
			old := testApp("web", v1.IntegrationExisting, shared.IntegrationID)
			for _, a := range []*model.App{neighbour, old} {
				if _, err := f.reg.Register(ctx, a, &recorder{}); err != nil {
					t.Fatal(err)
				}
			}
			target := shared.IntegrationID
			if tc.otherTarget {
				target = second.IntegrationID
			}
			moved := testApp("web", v1.IntegrationExisting, target)
			moved.OAuth.RedirectURL = tc.newURL
			log := &patchLog{AccountAPI: f.account}
			rec := &recorder{}
			if _, err := f.registrar(log).Register(ctx, moved, rec); err != nil { // a restarted controller
				t.Fatal(err)
			}
			wantShared := []string{other, neighbour.OAuth.RedirectURL}
			wantSecond := []string{other}
			if tc.otherTarget {
				wantSecond = append(wantSecond, tc.newURL)
			} else {
				wantShared = append(wantShared, tc.newURL)
			}
			for id, want := range map[string][]string{shared.IntegrationID: wantShared, second.IntegrationID: wantSecond} {
				if in, _ := f.em.Integration(id); !sameSet(in.RedirectURLs, want) {
					t.Errorf("integration %s lists %v, want %v", id, in.RedirectURLs, want)
				}
			}
			// Add before remove: the new URL was written first.
			if len(log.patches) != 2 || !slices.Contains(log.patches[0], tc.newURL) || slices.Contains(log.patches[1], old.OAuth.RedirectURL) {
				t.Errorf("PATCHes %v: want the new URL added, then the old one removed", log.patches)
			}
			if !slices.Contains(rec.reasons, "RedirectURLRegistered") || !slices.Contains(rec.reasons, "RedirectURLUnregistered") {
				t.Errorf("events %v", rec.reasons)
			}
			// Steady state afterwards: nothing to change.
			log.patches = nil
			if _, err := f.registrar(log).Register(ctx, moved, &recorder{}); err != nil || len(log.patches) != 0 {
				t.Errorf("reconcile after the move: %v, PATCHes %v", err, log.patches)
			}
			// Deleting the app removes only its URL.
			if err := f.reg.Unregister(ctx, moved, false, &recorder{}); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{shared.IntegrationID, second.IntegrationID} {
				if in, _ := f.em.Integration(id); slices.Contains(in.RedirectURLs, tc.newURL) || !slices.Contains(in.RedirectURLs, other) {
					t.Errorf("after unregister, integration %s lists %v", id, in.RedirectURLs)
				}
			}
		})
	}
}

// TestExistingMoveCutOffBeforeRemovalFinishesAfterRestart: a controller
// that added the new URL but died before removing the old one leaves it in
// the record; the next controller removes it.
func TestExistingMoveCutOffBeforeRemovalFinishesAfterRestart(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	shared, _, _ := f.em.RegisterIntegration(emulator.Integration{Name: "shared", Confidential: true,
		RedirectURLs: []string{"https://other.example.com/callback"}, Scopes: []string{"openid", "email", "profile", "offline_access", "all-apis"}})
	old := testApp("web", v1.IntegrationExisting, shared.IntegrationID)
	if _, err := f.reg.Register(ctx, old, &recorder{}); err != nil {
		t.Fatal(err)
	}
	moved := testApp("web", v1.IntegrationExisting, shared.IntegrationID)
	moved.OAuth.RedirectURL = "https://web-new.apps.example.com/oauth/callback"
	cut := &patchLog{AccountAPI: f.account, failWithout: old.OAuth.RedirectURL}
	if _, err := f.registrar(cut).Register(ctx, moved, &recorder{}); err == nil {
		t.Fatal("the removal was cut off, yet registration succeeded")
	}
	if in, _ := f.em.Integration(shared.IntegrationID); !slices.Contains(in.RedirectURLs, moved.OAuth.RedirectURL) || !slices.Contains(in.RedirectURLs, old.OAuth.RedirectURL) {
		t.Fatalf("test premise: both URLs should be there, got %v", in.RedirectURLs)
	}
	if _, err := f.registrar(f.account).Register(ctx, moved, &recorder{}); err != nil {
		t.Fatal(err)
	}
	if in, _ := f.em.Integration(shared.IntegrationID); !sameSet(in.RedirectURLs, []string{"https://other.example.com/callback", moved.OAuth.RedirectURL}) {
		t.Errorf("after the restart the integration lists %v", in.RedirectURLs)
	}
}

// TestUnregisterOfTheLastRedirectURL: removing an app's URL when it is the
// integration's only one sends an empty list. A server that keeps the list
// (reading an empty list as "absent") must not block the deletion forever:
// after a few tries the URL is reported for removal by hand.
func TestUnregisterOfTheLastRedirectURL(t *testing.T) {
	cases := []struct {
		name        string
		opts        emulator.Options
		wantURLs    int
		wantReason  string
		maxPatches  int64
		wantMessage []string
	}{
		{"server applies empty lists", emulator.Options{}, 0, "RedirectURLUnregistered", 1, nil},
		{"server ignores empty lists", emulator.Options{IgnoreEmptyLists: true}, 1, "RedirectURLNotRemoved", 3, []string{"by hand"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.opts)
			ctx := context.Background()
			shared, _, _ := f.em.RegisterIntegration(emulator.Integration{Name: "shared", Confidential: true,
				Scopes: []string{"openid", "email", "profile", "offline_access", "all-apis"}})
			app := testApp("web", v1.IntegrationExisting, shared.IntegrationID)
			if _, err := f.reg.Register(ctx, app, &recorder{}); err != nil {
				t.Fatal(err)
			}
			f.em.ResetRequestCounts()
			rec := &recorder{}
			if err := f.reg.Unregister(ctx, app, false, rec); err != nil {
				t.Fatalf("unregister blocks deletion: %v", err)
			}
			if in, _ := f.em.Integration(shared.IntegrationID); len(in.RedirectURLs) != tc.wantURLs {
				t.Errorf("redirect URLs %v, want %d", in.RedirectURLs, tc.wantURLs)
			}
			if n := f.em.RequestCount(emulator.RouteUpdateIntegration); n < 1 || n > tc.maxPatches {
				t.Errorf("%d PATCH calls, want 1 to %d", n, tc.maxPatches)
			}
			msg, ok := rec.message(tc.wantReason)
			if !ok {
				t.Fatalf("events %v lack %s", rec.reasons, tc.wantReason)
			}
			for _, want := range append(tc.wantMessage, shared.IntegrationID, app.OAuth.RedirectURL) {
				if !strings.Contains(msg, want) {
					t.Errorf("event %q does not name %q", msg, want)
				}
			}
		})
	}
}

func sameSet(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			return false
		}
	}
	return true
}

// lostAnswer is an AccountAPI whose next PATCH takes effect and then fails,
// as when the answer is lost and the controller dies before it learns.
type lostAnswer struct {
	oauth.AccountAPI
	mu   sync.Mutex
	lost bool
}

func (l *lostAnswer) UpdateCustomAppIntegration(ctx context.Context, id string, req databricks.UpdateCustomAppIntegrationRequest) error {
	if err := l.AccountAPI.UpdateCustomAppIntegration(ctx, id, req); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost {
		return nil
	}
	l.lost = true
	return errors.New("connection reset")
}

// TestPropagationWindowSurvivesARestart: for 30 minutes after this
// controller changed an app's integration the condition says
// RegisteredPropagating, also when it is asked by a restarted controller,
// and also when the controller died right after the change, before it
// learned the change was made.
func TestPropagationWindowSurvivesARestart(t *testing.T) {
	const moved = "https://moved.apps.example.com/oauth/callback"
	scopes := []string{"openid", "email", "profile", "offline_access", "all-apis"}
	tests := []struct {
		name string
		mode v1.IntegrationMode
		// change makes the change through api, and returns the app as
		// registered after it; the clock then reads the time of the change.
		change func(t *testing.T, f *fixture, api oauth.AccountAPI) *model.App
		lost   bool // the change's answer is lost and the process dies
	}{
		{"managed, restarted", v1.IntegrationManaged, managedMove(moved), false},
		{"managed, died after the change", v1.IntegrationManaged, managedMove(moved), true},
		{"existing, restarted", v1.IntegrationExisting, existingAdd(scopes), false},
		{"existing, died after the change", v1.IntegrationExisting, existingAdd(scopes), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			var api oauth.AccountAPI = f.account
			if tc.lost {
				api = &lostAnswer{AccountAPI: f.account}
			}
			a := tc.change(t, f, api)
			changedAt := f.clock.Now()
			steps := []struct {
				after time.Duration
				want  string
			}{
				{0, "RegisteredPropagating"},
				{10 * time.Minute, "RegisteredPropagating"},
				{29 * time.Minute, "RegisteredPropagating"},
				{31 * time.Minute, "Registered"},
			}
			for _, step := range steps {
				f.clock.Advance(changedAt.Add(step.after).Sub(f.clock.Now()))
				again := testApp("web", tc.mode, a.OAuth.IntegrationID)
				again.OAuth.RedirectURL = a.OAuth.RedirectURL
				log := &patchLog{AccountAPI: f.account}
				cond, err := f.registrar(log).Register(ctx, again, &recorder{}) // a restarted controller
				if err != nil {
					t.Fatalf("%s after the change: %v", step.after, err)
				}
				if cond.Reason != step.want {
					t.Errorf("%s after the change: %s (%s), want %s", step.after, cond.Reason, cond.Message, step.want)
				}
				if len(log.patches) != 0 {
					t.Errorf("%s after the change: the restarted controller changed the integration again: %v", step.after, log.patches)
				}
			}
		})
	}
}

// managedMove registers a managed app, lets its window pass, then moves its
// redirect URL through api.
func managedMove(url string) func(t *testing.T, f *fixture, api oauth.AccountAPI) *model.App {
	return func(t *testing.T, f *fixture, api oauth.AccountAPI) *model.App {
		ctx := context.Background()
		first := testApp("web", v1.IntegrationManaged, "")
		if _, err := f.reg.Register(ctx, first, &recorder{}); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Hour)
		moved := testApp("web", v1.IntegrationManaged, "")
		moved.OAuth.RedirectURL = url
		_, err := f.registrar(api).Register(ctx, moved, &recorder{})
		if _, lossy := api.(*lostAnswer); lossy != (err != nil) {
			t.Fatalf("moving the redirect URL: %v", err)
		}
		if in, _ := f.em.Integration(first.OAuth.IntegrationID); !slices.Equal(in.RedirectURLs, []string{url}) {
			t.Fatalf("test premise: the integration lists %v, want %s", in.RedirectURLs, url)
		}
		moved.OAuth.IntegrationID = first.OAuth.IntegrationID
		return moved
	}
}

// existingAdd adds an existing-mode app's redirect URL to a shared
// integration through api.
func existingAdd(scopes []string) func(t *testing.T, f *fixture, api oauth.AccountAPI) *model.App {
	return func(t *testing.T, f *fixture, api oauth.AccountAPI) *model.App {
		shared, _, err := f.em.RegisterIntegration(emulator.Integration{Name: "shared", Confidential: true,
			RedirectURLs: []string{"https://other.example.com/callback"}, Scopes: scopes})
		if err != nil {
			t.Fatal(err)
		}
		a := testApp("web", v1.IntegrationExisting, shared.IntegrationID)
		_, err = f.registrar(api).Register(context.Background(), a, &recorder{})
		if _, lossy := api.(*lostAnswer); lossy != (err != nil) {
			t.Fatalf("adding the redirect URL: %v", err)
		}
		if in, _ := f.em.Integration(shared.IntegrationID); !slices.Contains(in.RedirectURLs, a.OAuth.RedirectURL) {
			t.Fatalf("test premise: the integration lists %v", in.RedirectURLs)
		}
		return a
	}
}

// TestManagedToExistingDeletesTheFormerManagedIntegration: an app that moves
// from its own managed integration to a shared one leaves no integration of
// its own behind, once the shared one has its redirect URL; a spec pointing
// "existing" at the app's own managed integration keeps it.
func TestManagedToExistingDeletesTheFormerManagedIntegration(t *testing.T) {
	scopes := []string{"openid", "email", "profile", "offline_access", "all-apis"}
	for _, pointAtOwn := range []bool{false, true} {
		t.Run(map[bool]string{false: "to a shared integration", true: "to its own managed integration"}[pointAtOwn], func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			managed := testApp("web", v1.IntegrationManaged, "")
			if _, err := f.reg.Register(ctx, managed, &recorder{}); err != nil {
				t.Fatal(err)
			}
			own := managed.OAuth.IntegrationID
			target := own
			if !pointAtOwn {
				shared, _, _ := f.em.RegisterIntegration(emulator.Integration{Name: "shared", Confidential: true, RedirectURLs: []string{"https://other.example.com/callback"}, Scopes: scopes})
				target = shared.IntegrationID
			}
			moved := testApp("web", v1.IntegrationExisting, target)
			rec := &recorder{}
			if _, err := f.registrar(f.account).Register(ctx, moved, rec); err != nil { // a restarted controller
				t.Fatal(err)
			}
			in, _ := f.em.Integration(target)
			if !slices.Contains(in.RedirectURLs, moved.OAuth.RedirectURL) {
				t.Fatalf("target %v lacks %s", in.RedirectURLs, moved.OAuth.RedirectURL)
			}
			// Kept when it is the target, gone otherwise.
			if _, ownLeft := f.em.Integration(own); ownLeft != pointAtOwn {
				t.Fatalf("own managed integration %s present: %v, want %v", own, ownLeft, pointAtOwn)
			}
			_, recorded := rec.message("OAuthIntegrationDeleted")
			if recorded == pointAtOwn {
				t.Fatalf("OAuthIntegrationDeleted recorded: %v", recorded)
			}
			// The next reconcile has nothing left to delete.
			again := &recorder{}
			if _, err := f.reg.Register(ctx, testApp("web", v1.IntegrationExisting, target), again); err != nil {
				t.Fatal(err)
			}
			if _, ok := again.message("OAuthIntegrationDeleted"); ok {
				t.Fatal("deleted again on the next reconcile")
			}
		})
	}
}
