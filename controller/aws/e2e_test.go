package aws

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/servingapp/servingapp/api/appenv"
	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/controller/oauth"
	"github.com/servingapp/servingapp/internal/awsemu"
	"github.com/servingapp/servingapp/internal/databricks"
	"github.com/servingapp/servingapp/internal/databricks/emulator"
	"github.com/servingapp/servingapp/internal/natstest"
)

// TestReconcilerRunsAppsOnAWSFromStoreToDeletion drives the controller's
// reconciler with the real store (embedded NATS), the OAuth registrar
// against the Databricks emulator with this platform as its secret store,
// and this platform against the AWS emulator: apply, Ready, delete.
func TestReconcilerRunsAppsOnAWSFromStoreToDeletion(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	url, _ := natstest.Start(t)
	_, js := natstest.Connect(t, url)
	st := must(store.New(ctx, js, store.Options{}))(t)
	if err := audit.EnsureStreams(ctx, js, audit.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	db, account := databricksAccount(t)
	reg := prometheus.NewRegistry()
	p := e.platformWith(func(o *Options) { o.Registerer = reg })
	registrar := &oauth.Registrar{Account: account, Secrets: p, Clock: e.clk, ControllerID: testController, SecretPrefix: "servingapp/"}
	rec := &controller.StreamRecorder{JS: js, Log: slog.New(slog.DiscardHandler), Clock: e.clk, ControllerID: testController}
	r := &controller.Reconciler{Store: st, Platform: p, Registrar: registrar, Recorder: rec, Config: modelConfig(), Clock: e.clk}

	a := spec("e2e", func(s *v1.ServingApp) {
		s.Metadata = v1.ObjectMeta{Name: "e2e", Namespace: "team"}
		s.Spec.Allowlist = cidrs(4)
	})
	if _, _, err := st.Apply(ctx, a); err != nil {
		t.Fatal(err)
	}
	converge := func(key string) {
		t.Helper()
		var last error
		for range 12 {
			res, err := r.Reconcile(ctx, key)
			if err == nil && res.RequeueAfter == 0 {
				return
			}
			last = err
			e.later()
		}
		t.Fatalf("%s did not converge: %v", key, last)
	}
	converge("team.e2e")
	status, _, err := st.GetStatus(ctx, "team", "e2e")
	if err != nil {
		t.Fatal(err)
	}
	if status.Phase != v1.PhaseReady || status.Resources.ServiceARN == "" || status.Resources.TargetGroupARN == "" ||
		len(status.Resources.RuleARNs) != 2 || len(status.Resources.SecretARNs) != 2 || status.Resources.OAuthIntegrationID == "" {
		t.Fatalf("status = %s %q resources %+v", status.Phase, status.Message, status.Resources)
	}
	if status.Replicas.Running != 2 {
		t.Errorf("replicas %+v", status.Replicas)
	}

	// The client secret the registrar stored through the platform is in
	// Secrets Manager, tagged, and reaches the container as a secret.
	name := "servingapp/team/e2e/oauth-client-secret"
	sec := must(e.raw.sm.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: awssdk.String(name)}))(t)
	tags := smTags(sec.Tags)
	if tags["servingapp.io/managed-by"] != testController || tags[oauth.TagIntegrationID] != status.Resources.OAuthIntegrationID {
		t.Errorf("client secret tags %v", tags)
	}
	td := must(e.raw.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: awssdk.String(status.Resources.TaskDefinitionARN)}))(t)
	found := false
	for _, s := range td.TaskDefinition.ContainerDefinitions[0].Secrets {
		if awssdk.ToString(s.Name) == appenv.ClientSecret && awssdk.ToString(s.ValueFrom) == awssdk.ToString(sec.ARN) {
			found = true
		}
	}
	if !found {
		t.Errorf("the container does not get %s from %s", appenv.ClientSecret, awssdk.ToString(sec.ARN))
	}

	// A resync of a Ready app changes nothing in AWS.
	e.later()
	before := e.srv.Calls()
	converge("team.e2e")
	if m := e.srv.Calls().Since(before).Mutating(); m != 0 {
		t.Errorf("resync made %d mutating AWS calls", m)
	}

	// Every AWS call was counted in the metrics, by service, operation and outcome.
	counted := map[string]float64{}
	for l, n := range callCounts(t, reg) {
		counted[l.service+"/"+l.operation] += n
	}
	for _, want := range []string{"ecs/CreateService", "ecs/DescribeServices", "elasticloadbalancing/CreateRule", "secretsmanager/CreateSecret", "secretsmanager/ListSecrets"} {
		if counted[want] == 0 {
			t.Errorf("no %s calls counted: %v", want, counted)
		}
	}

	// Delete: the finalizer runs Platform.Delete, then the object goes.
	if _, err := st.Delete(ctx, "team", "e2e"); err != nil {
		t.Fatal(err)
	}
	converge("team.e2e")
	if _, err := st.Get(ctx, "team", "e2e"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the app is still in the store: %v", err)
	}
	if got := e.inventory(p, model.Ref{Namespace: "team", Name: "e2e"}); got != (inventory{}) {
		t.Errorf("after deletion: %+v", got)
	}
	sec = must(e.raw.sm.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: awssdk.String(name)}))(t)
	if sec.DeletedDate == nil {
		t.Error("the client secret is not scheduled for deletion")
	}
	if left := db.Integrations(); len(left) != 0 {
		t.Errorf("the app's OAuth integration is still in the Databricks account: %+v", left)
	}
	if n := e.srv.Calls().Outcome(awsemu.OutcomeServerError); n != 0 {
		t.Errorf("%d server errors", n)
	}
}

// TestManagedCrashBetweenCreateAndStoreOnSecretsManager: Databricks creates
// the app's integration, then Secrets Manager fails every attempt to store
// its client secret (the controller's last act before it dies). A new
// controller process finds an integration whose secret can never be read
// again, deletes it, creates another and stores that one's secret: one
// integration, one tagged secret, and a warning event saying why.
func TestManagedCrashBetweenCreateAndStoreOnSecretsManager(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	db, account := databricksAccount(t)
	newRegistrar := func() *oauth.Registrar { // a new controller process
		return &oauth.Registrar{Account: account, Secrets: e.platform(), Clock: e.clk, ControllerID: testController, SecretPrefix: "servingapp/"}
	}
	managed := func() *model.App { return app(t, "managed-web") }

	if err := e.srv.SetFaults(awsemu.Fault{Service: awsemu.ServiceSecretsManager, Operation: "CreateSecret", Kind: awsemu.FaultServerError, Fraction: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := newRegistrar().Register(ctx, managed(), &events{}); err == nil {
		t.Fatal("registration succeeded although its client secret could not be stored")
	}
	lost := db.Integrations()
	if len(lost) != 1 {
		t.Fatalf("%d integrations after the failed store, want the 1 created", len(lost))
	}
	e.srv.ClearFaults()

	rec := &events{}
	a := managed()
	if _, err := newRegistrar().Register(ctx, a, rec); err != nil {
		t.Fatal(err)
	}
	now := db.Integrations()
	if len(now) != 1 || now[0].IntegrationID == lost[0].IntegrationID || a.OAuth.IntegrationID != now[0].IntegrationID {
		t.Fatalf("integrations %+v, app uses %s; want one new integration in place of %s", now, a.OAuth.IntegrationID, lost[0].IntegrationID)
	}
	if !slices.Contains(rec.reasons(), "OAuthIntegrationRecreated") {
		t.Errorf("events %v, want OAuthIntegrationRecreated", rec.reasons())
	}
	sec := must(e.raw.sm.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: awssdk.String(newRegistrar().SecretName(a.Ref))}))(t)
	if tags := smTags(sec.Tags); tags[oauth.TagIntegrationID] != now[0].IntegrationID || tags[model.TagManagedBy] != testController {
		t.Errorf("client secret tags %v", tags)
	}
	val := must(e.raw.sm.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: sec.ARN}))(t)
	if awssdk.ToString(val.SecretString) == "" {
		t.Error("the stored client secret is empty")
	}
}

// databricksAccount starts a Databricks emulator for the test and returns it
// with an account API client signed in as its admin service principal.
func databricksAccount(t *testing.T) (*emulator.Server, *databricks.AccountClient) {
	t.Helper()
	db, err := emulator.Start(emulator.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	account := must(databricks.NewAccountClient(databricks.AccountConfig{
		Host: db.URL, AccountID: emulator.DefaultAccountID, ClientID: emulator.DefaultAdminClientID, ClientSecret: emulator.DefaultAdminSecret,
	}))(t)
	return db, account
}

// TestExistingModeRegistrationRecordInSecretsManager: the registrar keeps an
// existing-mode app's registration record in Secrets Manager through this
// platform: tagged as the app's, read by its tags alone in steady state, and
// used after a restart to remove the app's previous redirect URL.
func TestExistingModeRegistrationRecordInSecretsManager(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	db, account := databricksAccount(t)
	shared, _, err := db.RegisterIntegration(emulator.Integration{Name: "shared", Confidential: true,
		RedirectURLs: []string{"https://other.example.com/callback"}, Scopes: []string{"openid", "email", "profile", "offline_access", "all-apis"}})
	if err != nil {
		t.Fatal(err)
	}
	newRegistrar := func() *oauth.Registrar { // a new controller process
		return &oauth.Registrar{Account: account, Secrets: e.platform(), Clock: e.clk, ControllerID: testController, SecretPrefix: "servingapp/",
			Sleep: func(context.Context, time.Duration) error { return nil }}
	}
	existing := func(host string) *model.App {
		return app(t, "shared-web", func(s *v1.ServingApp) {
			s.Spec.Route.Host = host
			s.Spec.Databricks.OAuth = v1.OAuth{Integration: v1.IntegrationExisting, IntegrationID: shared.IntegrationID, ClientSecretRef: "servingapp/admin/shared-client-secret"}
		})
	}
	before := existing("web.apps.example.com")
	if _, err := newRegistrar().Register(ctx, before, &events{}); err != nil {
		t.Fatal(err)
	}
	name := newRegistrar().RecordName(before.Ref)
	sec := must(e.raw.sm.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: awssdk.String(name)}))(t)
	if tags := smTags(sec.Tags); tags[model.TagApp] != before.Ref.String() || tags[model.TagManagedBy] != testController || tags[oauth.TagRecordDigest] == "" {
		t.Errorf("record tags %v", tags)
	}

	// Steady state: the record is known current from the listing's tags.
	e.later()
	calls := e.srv.Calls()
	if _, err := newRegistrar().Register(ctx, existing("web.apps.example.com"), &events{}); err != nil {
		t.Fatal(err)
	}
	if d := e.srv.Calls().Since(calls); d.Mutating() != 0 || d.Operation(awsemu.ServiceSecretsManager, "GetSecretValue") != 0 {
		t.Errorf("steady-state registration made %d mutating calls and %d GetSecretValue calls, want none",
			d.Mutating(), d.Operation(awsemu.ServiceSecretsManager, "GetSecretValue"))
	}

	moved := existing("web2.apps.example.com")
	if _, err := newRegistrar().Register(ctx, moved, &events{}); err != nil {
		t.Fatal(err)
	}
	in, _ := db.Integration(shared.IntegrationID)
	if slices.Contains(in.RedirectURLs, before.OAuth.RedirectURL) || !slices.Contains(in.RedirectURLs, moved.OAuth.RedirectURL) || len(in.RedirectURLs) != 2 {
		t.Errorf("after the move the integration lists %v", in.RedirectURLs)
	}
}
