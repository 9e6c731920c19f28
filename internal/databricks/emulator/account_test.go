package emulator_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/servingapp/servingapp/internal/databricks/emulator"
)

func TestAccountAPIReturnsTheSecretOnlyAtCreate(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	admin := h.accountToken(t, emulator.DefaultAdminClientID, emulator.DefaultAdminSecret)
	tests := []struct {
		name         string
		confidential bool
		wantSecret   bool
	}{
		{"confidential", true, true},
		{"public", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"name":"` + tt.name + `","confidential":` + map[bool]string{true: "true", false: "false"}[tt.confidential] +
				`,"redirect_urls":["https://x.example.com/oauth/callback"],"scopes":["openid","all-apis"]}`
			status, created, _ := h.api(t, "POST", h.integrationsPath(), admin, body)
			if status != 200 || str(created["integration_id"]) == "" || str(created["client_id"]) == "" || (created["client_secret"] != nil) != tt.wantSecret {
				t.Fatalf("create: %d %v", status, created)
			}
			status, got, _ := h.api(t, "GET", h.integrationsPath()+"/"+str(created["integration_id"]), admin, "")
			if status != 200 || got["client_secret"] != nil || got["client_id"] != created["client_id"] || got["confidential"] != tt.confidential {
				t.Fatalf("get: %d %v", status, got)
			}
			_, list, _ := h.api(t, "GET", h.integrationsPath(), admin, "")
			for _, a := range list["apps"].([]any) {
				if a.(map[string]any)["client_secret"] != nil {
					t.Fatalf("list leaks a secret: %v", a)
				}
			}
		})
	}
}

func TestAccountAPIPatchReplacesOnlyTheListsItCarries(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	admin := h.accountToken(t, emulator.DefaultAdminClientID, emulator.DefaultAdminSecret)
	in, _, err := h.srv.RegisterIntegration(emulator.Integration{
		Name: "existing", Confidential: true,
		RedirectURLs: []string{"https://one.example.com/cb"}, Scopes: []string{"openid", "all-apis"},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := h.integrationsPath() + "/" + in.IntegrationID
	steps := []struct {
		patch                string
		wantStatus           int
		wantURLs, wantScopes []string
		wantAccessTTL        int
	}{
		{`{"redirect_urls":["https://two.example.com/cb"]}`, 200, []string{"https://two.example.com/cb"}, []string{"openid", "all-apis"}, 60},
		{`{"scopes":["openid","offline_access","all-apis"],"token_access_policy":{"access_token_ttl_in_minutes":15}}`, 200, []string{"https://two.example.com/cb"}, []string{"openid", "offline_access", "all-apis"}, 15},
		{`{"redirect_urls":null}`, 200, []string{"https://two.example.com/cb"}, []string{"openid", "offline_access", "all-apis"}, 15},
		{`{"redirect_urls":[]}`, 200, []string{}, []string{"openid", "offline_access", "all-apis"}, 15},
		{`{"name":"renamed","confidential":false}`, 200, []string{}, []string{"openid", "offline_access", "all-apis"}, 15},
		{`{"user_authorized_scopes":["sql"]}`, 400, []string{}, []string{"openid", "offline_access", "all-apis"}, 15},
		{`{"token_access_policy":{"refresh_token_ttl_in_minutes":1}}`, 400, []string{}, []string{"openid", "offline_access", "all-apis"}, 15},
		{`{"redirect_urls":["not a url"]}`, 400, []string{}, []string{"openid", "offline_access", "all-apis"}, 15},
		{`{"redirect_urls":"https://x"}`, 400, []string{}, []string{"openid", "offline_access", "all-apis"}, 15},
	}
	for i, step := range steps {
		status, out, _ := h.api(t, "PATCH", path, admin, step.patch)
		if status != step.wantStatus {
			t.Fatalf("step %d %s: %d %v", i, step.patch, status, out)
		}
		_, got, _ := h.api(t, "GET", path, admin, "")
		urls, scopes := strs(got["redirect_urls"]), strs(got["scopes"])
		ttl := got["token_access_policy"].(map[string]any)["access_token_ttl_in_minutes"].(float64)
		if !slices.Equal(urls, step.wantURLs) || !slices.Equal(scopes, step.wantScopes) || int(ttl) != step.wantAccessTTL {
			t.Fatalf("step %d %s: urls %q scopes %q ttl %v", i, step.patch, urls, scopes, ttl)
		}
		if got["name"] != "existing" || got["confidential"] != true {
			t.Fatalf("step %d: name or confidentiality changed: %v", i, got)
		}
	}
	inspected, _ := h.srv.Integration(in.IntegrationID)
	if len(inspected.RedirectURLs) != 0 {
		t.Fatalf("emulator view %v", inspected.RedirectURLs)
	}
}

// TestAccountAPIQuirkModes: ScrambleLists answers lists in another order
// (with a repeat), IgnoreEmptyLists keeps a list a PATCH empties; neither
// changes what is stored or a PATCH with a non-empty list.
func TestAccountAPIQuirkModes(t *testing.T) {
	urls := []string{"https://one.example.com/cb", "https://two.example.com/cb"}
	cases := []struct {
		name           string
		opts           emulator.Options
		patch          string
		wantGetURLs    []string // as GET and list answer
		wantStoredURLs []string
	}{
		{"scramble", emulator.Options{ScrambleLists: true}, `{"redirect_urls":["https://one.example.com/cb","https://two.example.com/cb"]}`,
			[]string{"https://two.example.com/cb", "https://one.example.com/cb", "https://two.example.com/cb"}, urls},
		{"ignore empty lists", emulator.Options{IgnoreEmptyLists: true}, `{"redirect_urls":[]}`, urls, urls},
		{"ignore empty lists, non-empty patch", emulator.Options{IgnoreEmptyLists: true}, `{"redirect_urls":["https://two.example.com/cb"]}`,
			[]string{"https://two.example.com/cb"}, []string{"https://two.example.com/cb"}},
		{"default empties", emulator.Options{}, `{"redirect_urls":[]}`, []string{}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.opts)
			admin := h.accountToken(t, emulator.DefaultAdminClientID, emulator.DefaultAdminSecret)
			in, _, err := h.srv.RegisterIntegration(emulator.Integration{Name: "quirks", Confidential: true, RedirectURLs: urls, Scopes: []string{"openid"}})
			if err != nil {
				t.Fatal(err)
			}
			path := h.integrationsPath() + "/" + in.IntegrationID
			if status, out, _ := h.api(t, "PATCH", path, admin, tc.patch); status != 200 {
				t.Fatalf("patch: %d %v", status, out)
			}
			_, got, _ := h.api(t, "GET", path, admin, "")
			if u := strs(got["redirect_urls"]); !slices.Equal(u, tc.wantGetURLs) {
				t.Errorf("GET redirect_urls %q, want %q", u, tc.wantGetURLs)
			}
			_, list, _ := h.api(t, "GET", h.integrationsPath(), admin, "")
			for _, a := range list["apps"].([]any) {
				if a := a.(map[string]any); a["integration_id"] == in.IntegrationID && !slices.Equal(strs(a["redirect_urls"]), tc.wantGetURLs) {
					t.Errorf("list redirect_urls %q, want %q", strs(a["redirect_urls"]), tc.wantGetURLs)
				}
			}
			if stored, _ := h.srv.Integration(in.IntegrationID); !slices.Equal(stored.RedirectURLs, tc.wantStoredURLs) {
				t.Errorf("stored %q, want %q", stored.RedirectURLs, tc.wantStoredURLs)
			}
		})
	}
}

func TestAccountAPIValidatesCreateAndPaging(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	admin := h.accountToken(t, emulator.DefaultAdminClientID, emulator.DefaultAdminSecret)
	tests := []struct {
		name, method, path, body string
		wantStatus               int
		wantCode                 string
	}{
		{"no name", "POST", "", `{"confidential":true}`, 400, "INVALID_PARAMETER_VALUE"},
		{"relative redirect URL", "POST", "", `{"name":"a","redirect_urls":["/cb"]}`, 400, "INVALID_PARAMETER_VALUE"},
		{"user scopes outside scopes", "POST", "", `{"name":"a","scopes":["openid"],"user_authorized_scopes":["all-apis"]}`, 400, "INVALID_PARAMETER_VALUE"},
		{"access TTL too long", "POST", "", `{"name":"a","token_access_policy":{"access_token_ttl_in_minutes":1441}}`, 400, "INVALID_PARAMETER_VALUE"},
		{"not JSON", "POST", "", `{`, 400, "MALFORMED_REQUEST"},
		{"bad page token", "GET", "?page_token=zzz", "", 400, "INVALID_PARAMETER_VALUE"},
		{"bad page size", "GET", "?page_size=-1", "", 400, "INVALID_PARAMETER_VALUE"},
		{"get unknown", "GET", "/nope", "", 404, "RESOURCE_DOES_NOT_EXIST"},
		{"patch unknown", "PATCH", "/nope", `{}`, 404, "RESOURCE_DOES_NOT_EXIST"},
		{"delete unknown", "DELETE", "/nope", "", 404, "RESOURCE_DOES_NOT_EXIST"},
	}
	for _, tt := range tests {
		status, out, _ := h.api(t, tt.method, h.integrationsPath()+tt.path, admin, tt.body)
		if status != tt.wantStatus || out["error_code"] != tt.wantCode {
			t.Errorf("%s: %d %v", tt.name, status, out)
		}
	}

	// Creator names only on request.
	status, _, _ := h.api(t, "POST", h.integrationsPath(), admin, `{"name":"mine"}`)
	if status != 200 {
		t.Fatal(status)
	}
	for query, want := range map[string]any{"": nil, "?include_creator_username=true": emulator.DefaultAdminClientID} {
		_, list, _ := h.api(t, "GET", h.integrationsPath()+query, admin, "")
		apps := list["apps"].([]any)
		if got := apps[len(apps)-1].(map[string]any)["creator_username"]; got != want {
			t.Errorf("list%s: creator_username %v, want %v", query, got, want)
		}
	}
}

func TestRequestCountsPerRoute(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	h.srv.ResetRequestCounts()
	token, _ := h.srv.IssueUserToken("alice@example.com")
	for range 3 {
		h.api(t, "GET", "/api/2.0/preview/scim/v2/Me", token, "")
	}
	h.api(t, "POST", "/serving-endpoints/echo/invocations", token, `{"messages":[{"role":"user","content":"x"}]}`)
	h.accountToken(t, emulator.DefaultAdminClientID, emulator.DefaultAdminSecret)
	want := map[string]int64{emulator.RouteMe: 3, emulator.RouteInvocations: 1, emulator.RouteAccountToken: 1}
	got := h.srv.RequestCounts()
	if len(got) != len(want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
	for route, n := range want {
		if got[route] != n || h.srv.RequestCount(route) != n {
			t.Fatalf("%s: %d, want %d", route, got[route], n)
		}
	}
	if err := h.srv.InjectRouteFault("GET /nope", emulator.Fault{StatusCode: 503}); err == nil || !strings.Contains(err.Error(), "unknown route") {
		t.Fatalf("InjectRouteFault on an unknown route: %v", err)
	}
}

func strs(v any) []string {
	list, _ := v.([]any)
	out := []string{}
	for _, s := range list {
		out = append(out, s.(string))
	}
	return out
}
