package databricks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/servingapp/servingapp/internal/databricks"
	"github.com/servingapp/servingapp/internal/databricks/emulator"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// sleeper records retry waits instead of sleeping.
type sleeper struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeper) Waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.waits)
}

type env struct {
	srv     *emulator.Server
	clock   *clock
	sleeper *sleeper
	account *databricks.AccountClient
	ws      *databricks.WorkspaceClient // no token source: use asUser
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := newClock()
	srv, err := emulator.Start(emulator.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	s := &sleeper{}
	retry := databricks.RetryPolicy{Sleep: s.Sleep}
	account, err := databricks.NewAccountClient(databricks.AccountConfig{
		Host:         srv.URL,
		AccountID:    srv.AccountID(),
		ClientID:     emulator.DefaultAdminClientID,
		ClientSecret: emulator.DefaultAdminSecret,
		Retry:        retry,
		Now:          c.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := databricks.NewWorkspaceClient(databricks.WorkspaceConfig{Host: srv.URL, Retry: retry, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, clock: c, sleeper: s, account: account, ws: ws}
}

// asUser returns a workspace client authenticated as a dev user.
func (e *env) asUser(t *testing.T, email string, scopes ...string) (*databricks.WorkspaceClient, string) {
	t.Helper()
	token, err := e.srv.IssueUserToken(email, scopes...)
	if err != nil {
		t.Fatal(err)
	}
	return e.ws.WithToken(databricks.StaticToken(token)), token
}

func TestAccountClientManagesIntegrationLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	policy := &databricks.TokenAccessPolicy{AccessTokenTTLInMinutes: 30, RefreshTokenTTLInMinutes: 600, EnableSingleUseRefreshTokens: true}
	created, err := e.account.CreateCustomAppIntegration(ctx, databricks.CreateCustomAppIntegrationRequest{
		Name:              "summarizer",
		Confidential:      true,
		RedirectURLs:      []string{"https://summarizer.apps.example.com/oauth/callback"},
		Scopes:            []string{"openid", "email", "profile", "offline_access", "all-apis"},
		TokenAccessPolicy: policy,
	})
	if err != nil {
		t.Fatal(err)
	}
	if created.IntegrationID == "" || created.ClientID == "" || created.ClientSecret == "" {
		t.Fatalf("create returned %v, want ids and a secret", created)
	}
	if s := fmt.Sprint(created); strings.Contains(s, created.ClientSecret) {
		t.Fatalf("formatted response %q leaks the client secret", s)
	}

	got, err := e.account.GetCustomAppIntegration(ctx, created.IntegrationID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "summarizer" || !got.Confidential || got.ClientID != created.ClientID ||
		!slices.Equal(got.RedirectURLs, []string{"https://summarizer.apps.example.com/oauth/callback"}) ||
		got.TokenAccessPolicy == nil || !got.TokenAccessPolicy.EnableSingleUseRefreshTokens || got.TokenAccessPolicy.AccessTokenTTLInMinutes != 30 {
		t.Fatalf("get = %+v", got)
	}

	steps := []struct {
		name       string
		update     databricks.UpdateCustomAppIntegrationRequest
		wantURLs   []string
		wantScopes []string
	}{
		{
			name:       "redirect list replaces the stored one",
			update:     databricks.UpdateCustomAppIntegrationRequest{RedirectURLs: []string{"https://a.example.com/oauth/callback", "https://b.example.com/oauth/callback"}},
			wantURLs:   []string{"https://a.example.com/oauth/callback", "https://b.example.com/oauth/callback"},
			wantScopes: []string{"openid", "email", "profile", "offline_access", "all-apis"},
		},
		{
			name:       "omitted list stays, scopes replaced",
			update:     databricks.UpdateCustomAppIntegrationRequest{Scopes: []string{"openid", "all-apis"}},
			wantURLs:   []string{"https://a.example.com/oauth/callback", "https://b.example.com/oauth/callback"},
			wantScopes: []string{"openid", "all-apis"},
		},
		{
			name:       "empty non-nil list clears",
			update:     databricks.UpdateCustomAppIntegrationRequest{RedirectURLs: []string{}},
			wantURLs:   []string{},
			wantScopes: []string{"openid", "all-apis"},
		},
	}
	for _, step := range steps {
		if err := e.account.UpdateCustomAppIntegration(ctx, created.IntegrationID, step.update); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		got, err := e.account.GetCustomAppIntegration(ctx, created.IntegrationID)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if !slices.Equal(got.RedirectURLs, step.wantURLs) || !slices.Equal(got.Scopes, step.wantScopes) {
			t.Fatalf("%s: got urls %q scopes %q, want %q %q", step.name, got.RedirectURLs, got.Scopes, step.wantURLs, step.wantScopes)
		}
		inspected, _ := e.srv.Integration(created.IntegrationID)
		if !slices.Equal(inspected.RedirectURLs, step.wantURLs) {
			t.Fatalf("%s: emulator holds %q", step.name, inspected.RedirectURLs)
		}
	}

	all, err := e.account.ListAllCustomAppIntegrations(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].IntegrationID != created.IntegrationID {
		t.Fatalf("list = %+v", all)
	}

	if err := e.account.DeleteCustomAppIntegration(ctx, created.IntegrationID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.account.GetCustomAppIntegration(ctx, created.IntegrationID); !databricks.IsNotFound(err) {
		t.Fatalf("get after delete: %v, want not found", err)
	}
	if err := e.account.DeleteCustomAppIntegration(ctx, created.IntegrationID); !databricks.IsNotFound(err) {
		t.Fatalf("second delete: %v, want not found", err)
	}
}

func TestListAllCustomAppIntegrationsFollowsEveryPage(t *testing.T) {
	tests := []struct {
		integrations, pageSize, wantRequests int
	}{
		{0, 2, 1},
		{1, 2, 1},
		{2, 2, 1},
		{7, 2, 4},
		{7, 3, 3},
		{7, 0, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d by %d", tt.integrations, tt.pageSize), func(t *testing.T) {
			e := newEnv(t)
			var want []string
			for i := range tt.integrations {
				in, _, err := e.srv.RegisterIntegration(emulator.Integration{Name: fmt.Sprintf("app-%d", i), Scopes: []string{"all-apis"}})
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, in.IntegrationID)
			}
			all, err := e.account.ListAllCustomAppIntegrations(context.Background(), tt.pageSize)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, in := range all {
				got = append(got, in.IntegrationID)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("listed %q, want %q", got, want)
			}
			if n := e.srv.RequestCount(emulator.RouteListIntegrations); n != int64(tt.wantRequests) {
				t.Fatalf("%d list requests, want %d", n, tt.wantRequests)
			}
		})
	}
}

func TestClientErrorsAreTypedAndCarryNoSecrets(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const bodyMarker = "PRIVATE-PROMPT-TEXT"
	if err := e.srv.SetPermission("echo", "bob@example.com", emulator.CanView); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.AddServicePrincipal(emulator.ServicePrincipal{ClientID: "plain-sp", Secret: "plain-sp-secret"}); err != nil {
		t.Fatal(err)
	}
	chat := databricks.ChatRequest{Messages: []databricks.ChatMessage{{Role: "user", Content: bodyMarker}}}

	tests := []struct {
		name       string
		call       func(t *testing.T) ([]string, error) // secrets the error must not contain, and the error
		wantStatus int
		wantCode   string
		is         func(error) bool
	}{
		{
			name: "missing integration",
			call: func(t *testing.T) ([]string, error) {
				_, err := e.account.GetCustomAppIntegration(ctx, "no-such-id")
				return nil, err
			},
			wantStatus: 404, wantCode: "RESOURCE_DOES_NOT_EXIST", is: databricks.IsNotFound,
		},
		{
			name: "invalid token policy",
			call: func(t *testing.T) ([]string, error) {
				_, err := e.account.CreateCustomAppIntegration(ctx, databricks.CreateCustomAppIntegrationRequest{
					Name: "x", TokenAccessPolicy: &databricks.TokenAccessPolicy{AccessTokenTTLInMinutes: 1},
				})
				return nil, err
			},
			wantStatus: 400, wantCode: "INVALID_PARAMETER_VALUE", is: databricks.IsBadRequest,
		},
		{
			name: "missing serving endpoint",
			call: func(t *testing.T) ([]string, error) {
				ws, token := e.asUser(t, "alice@example.com")
				_, err := ws.Invoke(ctx, "no-such-endpoint", chat)
				return []string{token, bodyMarker}, err
			},
			wantStatus: 404, wantCode: "RESOURCE_DOES_NOT_EXIST", is: databricks.IsNotFound,
		},
		{
			name: "user without CAN_QUERY",
			call: func(t *testing.T) ([]string, error) {
				ws, token := e.asUser(t, "bob@example.com")
				_, err := ws.Invoke(ctx, "echo", chat)
				return []string{token, bodyMarker}, err
			},
			wantStatus: 403, wantCode: "PERMISSION_DENIED", is: databricks.IsPermissionDenied,
		},
		{
			name: "token without serving scope",
			call: func(t *testing.T) ([]string, error) {
				ws, token := e.asUser(t, "alice@example.com", "sql")
				_, err := ws.Invoke(ctx, "echo", chat)
				return []string{token, bodyMarker}, err
			},
			wantStatus: 403, wantCode: "PERMISSION_DENIED", is: databricks.IsPermissionDenied,
		},
		{
			name: "unknown token",
			call: func(t *testing.T) ([]string, error) {
				_, err := e.ws.WithToken(databricks.StaticToken("forged-token-value")).Me(ctx)
				return []string{"forged-token-value"}, err
			},
			wantStatus: 401, wantCode: "401", is: databricks.IsUnauthenticated,
		},
		{
			name: "expired token",
			call: func(t *testing.T) ([]string, error) {
				ws, token := e.asUser(t, "alice@example.com")
				e.clock.Advance(emulator.DefaultAccessTokenTTL + time.Second)
				_, err := ws.Invoke(ctx, "echo", chat)
				return []string{token, bodyMarker}, err
			},
			wantStatus: 401, wantCode: "401", is: databricks.IsUnauthenticated,
		},
		{
			name: "wrong service principal secret",
			call: func(t *testing.T) ([]string, error) {
				c, err := databricks.NewAccountClient(databricks.AccountConfig{
					Host: e.srv.URL, AccountID: e.srv.AccountID(), ClientID: emulator.DefaultAdminClientID, ClientSecret: "wrong-secret-value",
				})
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.ListCustomAppIntegrations(ctx, databricks.ListCustomAppIntegrationsRequest{})
				return []string{"wrong-secret-value"}, err
			},
			wantStatus: 401, wantCode: "invalid_client", is: databricks.IsUnauthenticated,
		},
		{
			name: "service principal that is not an account admin",
			call: func(t *testing.T) ([]string, error) {
				c, err := databricks.NewAccountClient(databricks.AccountConfig{
					Host: e.srv.URL, AccountID: e.srv.AccountID(), ClientID: "plain-sp", ClientSecret: "plain-sp-secret",
				})
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.ListCustomAppIntegrations(ctx, databricks.ListCustomAppIntegrationsRequest{})
				return []string{"plain-sp-secret"}, err
			},
			wantStatus: 403, wantCode: "PERMISSION_DENIED", is: databricks.IsPermissionDenied,
		},
		{
			name: "unknown API path",
			call: func(t *testing.T) ([]string, error) {
				ws, token := e.asUser(t, "alice@example.com")
				_, err := ws.ServingEndpoint(ctx, "")
				return []string{token}, err
			},
			wantStatus: 404, wantCode: "ENDPOINT_NOT_FOUND", is: databricks.IsNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secrets, err := tt.call(t)
			var apiErr *databricks.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("error %v is not an *APIError", err)
			}
			if apiErr.StatusCode != tt.wantStatus || apiErr.ErrorCode != tt.wantCode {
				t.Fatalf("got %d %s, want %d %s (%v)", apiErr.StatusCode, apiErr.ErrorCode, tt.wantStatus, tt.wantCode, err)
			}
			if !tt.is(err) {
				t.Fatalf("classifier rejected %v", err)
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error %q contains a token or request body", err)
				}
			}
		})
	}
}

func TestRetriesHonourRetryAfterAndStopAtTheAttemptLimit(t *testing.T) {
	chat := databricks.ChatRequest{Messages: []databricks.ChatMessage{{Role: "user", Content: "hello"}}}
	tests := []struct {
		name         string
		faults       []emulator.Fault
		maxAttempts  int
		wantAttempts int64
		wantWaits    []time.Duration // exact waits; nil: only the count is checked
		wantWaitN    int
		wantErr      func(error) bool
	}{
		{
			name:         "429 with Retry-After twice, then success",
			faults:       []emulator.Fault{{StatusCode: 429, RetryAfter: 2 * time.Second, Times: 2}},
			wantAttempts: 3,
			wantWaits:    []time.Duration{2 * time.Second, 2 * time.Second},
		},
		{
			name:         "503 without Retry-After backs off",
			faults:       []emulator.Fault{{StatusCode: 503, Times: 1}},
			wantAttempts: 2,
			wantWaitN:    1,
		},
		{
			name:         "mixed 503 then 429 with a longer Retry-After",
			faults:       []emulator.Fault{{StatusCode: 503, Times: 1}, {StatusCode: 429, RetryAfter: 5 * time.Second, Times: 1}},
			wantAttempts: 3,
			wantWaitN:    2,
		},
		{
			name:         "persistent 429 gives up after MaxAttempts",
			faults:       []emulator.Fault{{StatusCode: 429, RetryAfter: time.Second}},
			maxAttempts:  3,
			wantAttempts: 3,
			wantWaits:    []time.Duration{time.Second, time.Second},
			wantErr:      databricks.IsTooManyRequests,
		},
		{
			name:         "Retry-After beyond MaxDelay is not waited for",
			faults:       []emulator.Fault{{StatusCode: 429, RetryAfter: 10 * time.Minute, Times: 1}},
			wantAttempts: 1,
			wantWaits:    []time.Duration{},
			wantErr:      databricks.IsTooManyRequests,
		},
		{
			name:         "500 is not retried",
			faults:       []emulator.Fault{{StatusCode: 500, Times: 1}},
			wantAttempts: 1,
			wantWaits:    []time.Duration{},
			wantErr:      func(err error) bool { return errors.Is(err, databricks.ErrInternal) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			token, err := e.srv.IssueUserToken("alice@example.com")
			if err != nil {
				t.Fatal(err)
			}
			ws, err := databricks.NewWorkspaceClient(databricks.WorkspaceConfig{
				Host:        e.srv.URL,
				TokenSource: databricks.StaticToken(token),
				Retry:       databricks.RetryPolicy{MaxAttempts: tt.maxAttempts, Sleep: e.sleeper.Sleep},
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range tt.faults {
				if err := e.srv.InjectFault("echo", f); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := ws.Invoke(context.Background(), "echo", chat)
			if tt.wantErr != nil {
				if !tt.wantErr(err) {
					t.Fatalf("err = %v", err)
				}
			} else if err != nil || resp.Text() != "hello" {
				t.Fatalf("Invoke = %v, %v", resp, err)
			}
			if n := e.srv.RequestCount(emulator.RouteInvocations); n != tt.wantAttempts {
				t.Fatalf("%d attempts, want %d", n, tt.wantAttempts)
			}
			waits := e.sleeper.Waits()
			if tt.wantWaits != nil && !slices.Equal(waits, tt.wantWaits) {
				t.Fatalf("waits %v, want %v", waits, tt.wantWaits)
			}
			if tt.wantWaits == nil && len(waits) != tt.wantWaitN {
				t.Fatalf("waits %v, want %d of them", waits, tt.wantWaitN)
			}
		})
	}
}

func TestRetryCoversAccountAPIAndTokenEndpoint(t *testing.T) {
	e := newEnv(t)
	if err := e.srv.InjectRouteFault(emulator.RouteAccountToken, emulator.Fault{StatusCode: 503, RetryAfter: time.Second, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.InjectRouteFault(emulator.RouteListIntegrations, emulator.Fault{StatusCode: 429, RetryAfter: 3 * time.Second, Times: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.account.ListAllCustomAppIntegrations(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	if got := e.srv.RequestCount(emulator.RouteAccountToken); got != 2 {
		t.Fatalf("%d token requests, want 2", got)
	}
	if got := e.srv.RequestCount(emulator.RouteListIntegrations); got != 3 {
		t.Fatalf("%d list requests, want 3", got)
	}
	if got, want := e.sleeper.Waits(), []time.Duration{time.Second, 3 * time.Second, 3 * time.Second}; !slices.Equal(got, want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
}

func TestRetryWaitEndsWithTheContext(t *testing.T) {
	e := newEnv(t)
	token, err := e.srv.IssueUserToken("alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ws, err := databricks.NewWorkspaceClient(databricks.WorkspaceConfig{
		Host:        e.srv.URL,
		TokenSource: databricks.StaticToken(token),
		Retry: databricks.RetryPolicy{Sleep: func(ctx context.Context, d time.Duration) error {
			cancel() // the caller gives up while we wait
			<-ctx.Done()
			return ctx.Err()
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.InjectFault("echo", emulator.Fault{StatusCode: 503}); err != nil {
		t.Fatal(err)
	}
	_, err = ws.Invoke(ctx, "echo", databricks.ChatRequest{Messages: []databricks.ChatMessage{{Role: "user", Content: "x"}}})
	if !errors.Is(err, context.Canceled) || !databricks.IsUnavailable(err) {
		t.Fatalf("err = %v, want both context.Canceled and unavailable", err)
	}
	if n := e.srv.RequestCount(emulator.RouteInvocations); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
}

func TestRetryAfterHTTPDateIsHonoured(t *testing.T) {
	c := newClock()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", c.Now().Add(4*time.Second).Format(http.TimeFormat))
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"name": "echo", "state": map[string]string{"ready": "READY"}})
	}))
	defer srv.Close()
	s := &sleeper{}
	ws, err := databricks.NewWorkspaceClient(databricks.WorkspaceConfig{
		Host: srv.URL, TokenSource: databricks.StaticToken("t"), Now: c.Now,
		Retry: databricks.RetryPolicy{Sleep: s.Sleep},
	})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := ws.ServingEndpoint(context.Background(), "echo")
	if err != nil || !ep.IsReady() {
		t.Fatalf("ServingEndpoint = %+v, %v", ep, err)
	}
	if got := s.Waits(); !slices.Equal(got, []time.Duration{4 * time.Second}) {
		t.Fatalf("waits %v, want [4s]", got)
	}
}

func TestAccountTokenIsFetchedOnceForConcurrentCallsAndRenewedBeforeExpiry(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const callers = 40
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			_, err := e.account.ListCustomAppIntegrations(ctx, databricks.ListCustomAppIntegrationsRequest{})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name          string
		advance       time.Duration
		wantTokenReqs int64
	}{
		{"all concurrent calls shared one token request", 0, 1},
		{"still fresh later on", 30 * time.Minute, 1},
		{"renewed within the expiry margin", 29*time.Minute + 30*time.Second, 2},
		{"the renewed token is cached again", time.Minute, 2},
	}
	for _, step := range steps {
		e.clock.Advance(step.advance)
		if _, err := e.account.ListCustomAppIntegrations(ctx, databricks.ListCustomAppIntegrationsRequest{}); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := e.srv.RequestCount(emulator.RouteAccountToken); got != step.wantTokenReqs {
			t.Fatalf("%s: %d token requests, want %d", step.name, got, step.wantTokenReqs)
		}
	}
}

func TestAccountClientRefetchesATokenTheServerRejects(t *testing.T) {
	serverClock := newClock()
	srv, err := emulator.Start(emulator.Options{Now: serverClock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Close() }()
	account, err := databricks.NewAccountClient(databricks.AccountConfig{
		Host: srv.URL, AccountID: srv.AccountID(),
		ClientID: emulator.DefaultAdminClientID, ClientSecret: emulator.DefaultAdminSecret,
		Now: newClock().Now, // the client's clock stands still: it believes its token is fresh
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := account.ListCustomAppIntegrations(ctx, databricks.ListCustomAppIntegrationsRequest{}); err != nil {
		t.Fatal(err)
	}
	serverClock.Advance(2 * time.Hour)
	if _, err := account.ListCustomAppIntegrations(ctx, databricks.ListCustomAppIntegrationsRequest{}); err != nil {
		t.Fatalf("after server-side expiry: %v", err)
	}
	if got := srv.RequestCount(emulator.RouteAccountToken); got != 2 {
		t.Fatalf("%d token requests, want 2", got)
	}
	if got := srv.RequestCount(emulator.RouteListIntegrations); got != 3 {
		t.Fatalf("%d list requests, want 3 (one rejected)", got)
	}
}

func TestWorkspaceInvokeRunsTheChatModels(t *testing.T) {
	e := newEnv(t)
	ws, _ := e.asUser(t, "alice@example.com")
	long := "Model Serving exposes models behind REST endpoints. The cafeteria serves soup on Fridays. " +
		"Serving endpoints scale with traffic and serve models to users. Users call serving endpoints with tokens. " +
		"Parking is available behind the building."
	tests := []struct {
		name, endpoint string
		req            databricks.ChatRequest
		wantText       string
		wantFinish     string
		wantServed     string
	}{
		{"echo", "echo", databricks.ChatRequest{Messages: []databricks.ChatMessage{{Role: "system", Content: "be brief"}, {Role: "user", Content: "Hello there"}}}, "Hello there", "stop", "echo-echo"},
		{"summarizer picks the central sentences", "summarizer", databricks.ChatRequest{Messages: []databricks.ChatMessage{{Role: "user", Content: long}}},
			"Model Serving exposes models behind REST endpoints. Serving endpoints scale with traffic and serve models to users.", "stop", "summarizer-summarizer"},
		{"max_tokens truncates", "echo", databricks.ChatRequest{MaxTokens: 2, Messages: []databricks.ChatMessage{{Role: "user", Content: "one two three four"}}}, "one two", "length", "echo-echo"},
		{"stop sequence ends early", "echo", databricks.ChatRequest{Stop: []string{" three"}, Messages: []databricks.ChatMessage{{Role: "user", Content: "one two three four"}}}, "one two", "stop", "echo-echo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := ws.Invoke(context.Background(), tt.endpoint, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Text() != tt.wantText || resp.Choices[0].FinishReason != tt.wantFinish || resp.ServedModel != tt.wantServed {
				t.Fatalf("got %q finish=%s served=%s", resp.Text(), resp.Choices[0].FinishReason, resp.ServedModel)
			}
			if resp.Object != "chat.completion" || resp.Choices[0].Message.Role != "assistant" {
				t.Fatalf("response shape: %+v", resp)
			}
			if u := resp.Usage; u == nil || u.PromptTokens == 0 || u.CompletionTokens == 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
				t.Fatalf("usage %+v", resp.Usage)
			}
		})
	}

	raw, err := ws.InvokeRaw(context.Background(), "echo", []byte(`{"messages":[{"role":"user","content":"raw"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if raw.ServedModel != "echo-echo" || !strings.Contains(string(raw.Body), `"content":"raw"`) {
		t.Fatalf("InvokeRaw = %s %s", raw.ServedModel, raw.Body)
	}
}

func TestStreamYieldsChunksThatAddUpToTheCompletion(t *testing.T) {
	e := newEnv(t)
	ws, _ := e.asUser(t, "alice@example.com")
	ctx := context.Background()
	req := databricks.ChatRequest{Messages: []databricks.ChatMessage{{Role: "user", Content: "Streaming works, one piece at a time."}}}
	whole, err := ws.Invoke(ctx, "echo", req)
	if err != nil {
		t.Fatal(err)
	}

	var text strings.Builder
	var chunks int
	var finish string
	var usage *databricks.Usage
	for chunk, err := range ws.Stream(ctx, "echo", req) {
		if err != nil {
			t.Fatal(err)
		}
		chunks++
		text.WriteString(chunk.Text())
		if chunk.ServedModel != "echo-echo" || chunk.Object != "chat.completion.chunk" {
			t.Fatalf("chunk %+v", chunk)
		}
		if len(chunk.Choices) > 0 && chunk.Choices[0].FinishReason != "" {
			finish = chunk.Choices[0].FinishReason
		}
		if chunk.Usage != nil {
			usage = chunk.Usage
		}
	}
	if text.String() != whole.Text() || chunks < 3 || finish != "stop" || usage == nil || usage.TotalTokens != whole.Usage.TotalTokens {
		t.Fatalf("streamed %q in %d chunks, finish %q, usage %+v; want %q", text.String(), chunks, finish, usage, whole.Text())
	}

	// Breaking out of the loop early is fine.
	for range ws.Stream(ctx, "echo", req) {
		break
	}

	// A callback error stops the stream and comes back.
	stop := errors.New("enough")
	seen := 0
	err = ws.StreamFunc(ctx, "echo", req, func(databricks.ChatChunk) error {
		seen++
		if seen == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || seen != 2 {
		t.Fatalf("StreamFunc = %v after %d chunks", err, seen)
	}

	// Errors before the stream starts are yielded once, typed.
	if err := e.srv.SetPermission("echo", "alice@example.com", emulator.NoPermission); err != nil {
		t.Fatal(err)
	}
	var errs []error
	for _, err := range ws.Stream(ctx, "echo", req) {
		errs = append(errs, err)
	}
	if len(errs) != 1 || !databricks.IsPermissionDenied(errs[0]) {
		t.Fatalf("stream errors %v, want one permission denied", errs)
	}
}

func TestServingEndpointReportsState(t *testing.T) {
	e := newEnv(t)
	ws, _ := e.asUser(t, "alice@example.com")
	ctx := context.Background()
	tests := []struct {
		name      string
		setup     func()
		endpoint  string
		wantReady bool
		wantErr   func(error) bool
	}{
		{"ready", func() {}, "summarizer", true, nil},
		{"not ready", func() { _ = e.srv.SetEndpointReady("summarizer", false) }, "summarizer", false, nil},
		{"missing", func() {}, "nope", false, databricks.IsNotFound},
		{"no permission at all", func() { _ = e.srv.SetPermission("echo", "alice@example.com", emulator.NoPermission) }, "echo", false, databricks.IsPermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			ep, err := ws.ServingEndpoint(ctx, tt.endpoint)
			if tt.wantErr != nil {
				if !tt.wantErr(err) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ep.Name != tt.endpoint || ep.IsReady() != tt.wantReady || ep.PermissionLevel != "CAN_QUERY" || ep.Config == nil || len(ep.Config.ServedEntities) != 1 {
				t.Fatalf("endpoint %+v", ep)
			}
		})
	}
}

func TestMeReturnsTheTokenOwner(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tests := []struct {
		email, wantName, wantGiven string
	}{
		{"alice@example.com", "Alice Example", "Alice"},
		{"bob@example.com", "Bob Example", "Bob"},
	}
	for _, tt := range tests {
		ws, _ := e.asUser(t, tt.email)
		me, err := ws.Me(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if me.UserName != tt.email || me.PrimaryEmail() != tt.email || me.DisplayName != tt.wantName || me.Name.GivenName != tt.wantGiven || !me.Active || me.ID == "" {
			t.Fatalf("Me = %+v", me)
		}
	}
	if _, err := e.ws.Me(ctx); err == nil {
		t.Fatal("Me without a token source succeeded")
	}
}

func TestClientCredentialsForWorkspaceTokens(t *testing.T) {
	e := newEnv(t)
	cc, err := databricks.NewClientCredentials(databricks.ClientCredentialsConfig{
		TokenURL:     databricks.WorkspaceTokenURL(e.srv.URL),
		ClientID:     emulator.DefaultAdminClientID,
		ClientSecret: emulator.DefaultAdminSecret,
		Now:          e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	me, err := e.ws.WithToken(cc).Me(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if me.UserName != emulator.DefaultAdminClientID {
		t.Fatalf("Me = %+v", me)
	}
}

func TestConstructorsRejectBadConfiguration(t *testing.T) {
	tests := []struct {
		name string
		make func() error
	}{
		{"workspace without host", func() error { _, err := databricks.NewWorkspaceClient(databricks.WorkspaceConfig{}); return err }},
		{"workspace with relative host", func() error {
			_, err := databricks.NewWorkspaceClient(databricks.WorkspaceConfig{Host: "dbc-1.cloud.databricks.com"})
			return err
		}},
		{"account without id", func() error {
			_, err := databricks.NewAccountClient(databricks.AccountConfig{Host: "https://accounts.cloud.databricks.com", ClientID: "a", ClientSecret: "b"})
			return err
		}},
		{"account without credentials", func() error {
			_, err := databricks.NewAccountClient(databricks.AccountConfig{Host: "https://accounts.cloud.databricks.com", AccountID: "x"})
			return err
		}},
	}
	for _, tt := range tests {
		if tt.make() == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

// TestStreamEndingWithoutDoneIsCleanOnlyAfterAFinishReason: [DONE] is not
// promised by Databricks, so its absence alone is no error; a stream cut off
// before any finish_reason is.
func TestStreamEndingWithoutDoneIsCleanOnlyAfterAFinishReason(t *testing.T) {
	cases := []struct {
		name    string
		events  []string
		wantErr error
	}{
		{"done", []string{`{"choices":[{"index":0,"delta":{"content":"a"}}]}`, `[DONE]`}, nil},
		{"finish reason, no done", []string{`{"choices":[{"index":0,"delta":{"content":"a"}}]}`, `{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`}, nil},
		{"cut off", []string{`{"choices":[{"index":0,"delta":{"content":"a"}}]}`}, databricks.ErrIncompleteStream},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				for _, ev := range tc.events {
					fmt.Fprintf(w, "data: %s\n\n", ev)
				}
			}))
			defer srv.Close()
			ws, err := databricks.NewWorkspaceClient(databricks.WorkspaceConfig{Host: srv.URL, TokenSource: databricks.StaticToken("t")})
			if err != nil {
				t.Fatal(err)
			}
			chunks := 0
			err = ws.StreamFunc(context.Background(), "echo", databricks.ChatRequest{Messages: []databricks.ChatMessage{{Role: "user", Content: "hi"}}},
				func(databricks.ChatChunk) error { chunks++; return nil })
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) || chunks == 0 {
				t.Fatalf("err %v after %d chunks, want %v", err, chunks, tc.wantErr)
			}
		})
	}
}

// TestAccountTokenRequestIsClientCredentialsWithHTTPBasic pins the M2M token
// request as Databricks documents it (and its SDKs send it): POST to
// /oidc/accounts/<id>/v1/token, grant_type=client_credentials and
// scope=all-apis in the form, the service principal's id and secret in HTTP
// Basic and never in the body; the token then goes out as a bearer token.
// The emulator takes either client authentication, so only this test would
// see the client drift to the form body.
func TestAccountTokenRequestIsClientCredentialsWithHTTPBasic(t *testing.T) {
	const id, secret, accountID = "sp-client-id", "sp/secret+with=chars", "acct-123"
	type seen struct {
		path, method, user, pass, contentType string
		basic                                 bool
		form                                  map[string][]string
	}
	var (
		mu     sync.Mutex
		tokens []seen
		bearer []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/oidc/") {
			user, pass, ok := r.BasicAuth()
			_ = r.ParseForm()
			tokens = append(tokens, seen{path: r.URL.Path, method: r.Method, user: user, pass: pass, basic: ok,
				contentType: r.Header.Get("Content-Type"), form: r.PostForm})
			_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "m2m-token", "token_type": "Bearer", "expires_in": 3600})
			return
		}
		bearer = append(bearer, r.Header.Get("Authorization"))
		_ = json.NewEncoder(w).Encode(map[string]any{"apps": []any{}})
	}))
	defer srv.Close()
	account, err := databricks.NewAccountClient(databricks.AccountConfig{Host: srv.URL, AccountID: accountID, ClientID: id, ClientSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := account.ListCustomAppIntegrations(context.Background(), databricks.ListCustomAppIntegrationsRequest{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tokens) != 1 {
		t.Fatalf("%d token requests, want 1", len(tokens))
	}
	tr := tokens[0]
	// RFC 6749 §2.3.1: Basic credentials are form-urlencoded first, so a
	// server decodes them; compare after decoding as the emulator does.
	user, _ := url.QueryUnescape(tr.user)
	pass, _ := url.QueryUnescape(tr.pass)
	checks := []struct {
		what string
		ok   bool
	}{
		{"path /oidc/accounts/<id>/v1/token", tr.path == "/oidc/accounts/"+accountID+"/v1/token"},
		{"method POST", tr.method == http.MethodPost},
		{"form encoded", strings.HasPrefix(tr.contentType, "application/x-www-form-urlencoded")},
		{"HTTP Basic with the client id and secret", tr.basic && user == id && pass == secret},
		{"grant_type=client_credentials", slices.Equal(tr.form["grant_type"], []string{"client_credentials"})},
		{"scope=all-apis", slices.Equal(tr.form["scope"], []string{"all-apis"})},
		{"no client_secret in the body", len(tr.form["client_secret"]) == 0},
		{"the token used as a bearer token", slices.Equal(bearer, []string{"Bearer m2m-token"})},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("token request: want %s; got %+v, API calls with %q", c.what, tr, bearer)
		}
	}
}
