package webapp

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/servingapp/servingapp/api/appenv"
)

func validEnv() map[string]string {
	return map[string]string{
		appenv.DatabricksHost:  "https://dbc-1234.cloud.databricks.com",
		appenv.ServingEndpoint: "databricks-claude",
		appenv.ClientID:        "client-1",
		appenv.ClientSecret:    "secret",
		appenv.RedirectURL:     "https://summarizer.apps.example.com/chat/oauth/callback",
		appenv.AppNamespace:    "analytics",
		appenv.AppName:         "summarizer",
		appenv.PathPrefix:      "/chat/",
		appenv.SessionKey:      base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")),
	}
}

func TestConfigFromEnvAppliesDefaults(t *testing.T) {
	env := validEnv()
	env[appenv.AllowedEmailDomains] = "Example.com, @corp.example"
	env[appenv.TrustedProxies] = "10.0.0.0/16, 192.168.1.7"
	c, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "https://dbc-1234.cloud.databricks.com/oidc" || c.PathPrefix != "/chat" || c.SessionTTL != DefaultSessionTTL ||
		c.IdleTimeout != DefaultIdleTimeout || c.MaxRequestBytes != 1<<20 || c.InvokeTimeout != 120*time.Second ||
		c.ListenAddr != ":8080" || len(c.Scopes) != 5 || c.MaxTokens != DefaultMaxTokens || c.SystemPrompt == "" ||
		c.MaxPendingRequests != DefaultMaxPendingRequests {
		t.Fatalf("defaults: %+v", c)
	}
	if strings.Join(c.AllowedEmailDomains, ",") != "example.com,corp.example" {
		t.Fatalf("domains %v", c.AllowedEmailDomains)
	}
	if len(c.TrustedProxies) != 2 || !c.TrustedProxies[1].Contains(netip.MustParseAddr("192.168.1.7")) {
		t.Fatalf("proxies %v", c.TrustedProxies)
	}
}

func TestConfigFromEnvReportsEveryProblemOnItsOwnLine(t *testing.T) {
	tests := []struct {
		name   string
		change map[string]string
		want   []string
	}{
		{"nothing set", nil, []string{appenv.DatabricksHost + ": is required", appenv.ServingEndpoint + ": is required",
			appenv.ClientID + ": is required", appenv.RedirectURL + ": is required", appenv.AppNamespace + ": is required",
			appenv.AppName + ": is required", appenv.SessionKey + ": is required"}},
		{"short session key", map[string]string{appenv.SessionKey: base64.StdEncoding.EncodeToString([]byte("short"))}, []string{appenv.SessionKey + ": decodes to 5 bytes"}},
		{"redirect path outside the prefix", map[string]string{appenv.RedirectURL: "https://a.example.com/oauth/callback"}, []string{appenv.RedirectURL + `: path "/oauth/callback" must be "/chat/oauth/callback"`}},
		{"plain http without the dev flag", map[string]string{appenv.RedirectURL: "http://127.0.0.1:8080/chat/oauth/callback"}, []string{appenv.RedirectURL + ": " + `"http://127.0.0.1:8080/chat/oauth/callback" must be https`}},
		{"bad durations and numbers", map[string]string{appenv.SessionTTL: "forever", appenv.InvokeTimeout: "-1s", appenv.MaxTokens: "many"}, []string{appenv.SessionTTL + ":", appenv.InvokeTimeout + ":", appenv.MaxTokens + ":"}},
		{"bad proxies and domains", map[string]string{appenv.TrustedProxies: "10.0.0.0/33", appenv.AllowedEmailDomains: "not a domain"}, []string{appenv.TrustedProxies + ":", appenv.AllowedEmailDomains + ":"}},
		{"scopes without openid", map[string]string{appenv.Scopes: "all-apis offline_access"}, []string{appenv.Scopes + ": "}},
		{"bad names and host", map[string]string{appenv.AppName: "Not_A_Label", appenv.DatabricksHost: "dbc-1234"}, []string{appenv.AppName + ":", appenv.DatabricksHost + ":"}},
		{"bad dev flag", map[string]string{appenv.InsecureDevCookies: "maybe"}, []string{appenv.InsecureDevCookies + ":"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := validEnv()
			if tt.change == nil {
				env = map[string]string{}
			}
			for k, v := range tt.change {
				env[k] = v
			}
			_, err := ConfigFromEnv(func(k string) string { return env[k] })
			if err == nil {
				t.Fatal("accepted")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want)+1 {
				t.Errorf("%d problem lines, want %d:\n%s", len(lines)-1, len(tt.want), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%s", w, err)
				}
			}
		})
	}
}

// TestConfigFromEnvReadsMaxPendingRequests: the bound on requests typed
// before sign-in comes from SERVINGAPP_MAX_PENDING_REQUESTS, a positive
// integer; anything else is one clear line naming the variable.
func TestConfigFromEnvReadsMaxPendingRequests(t *testing.T) {
	tests := []struct {
		value   string
		want    int
		problem string // "" when accepted
	}{
		{"", DefaultMaxPendingRequests, ""},
		{"1", 1, ""},
		{"4096", 4096, ""},
		{" 64 ", 64, ""},
		{"0", 0, `"0" is not a positive integer`},
		{"-5", 0, `"-5" is not a positive integer`},
		{"many", 0, `"many" is not a positive integer`},
		{"1.5", 0, `"1.5" is not a positive integer`},
		{"1e3", 0, `"1e3" is not a positive integer`},
		{"99999999999999999999", 0, `"99999999999999999999" is not a positive integer`},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			env := validEnv()
			env[appenv.MaxPendingRequests] = tt.value
			c, err := ConfigFromEnv(func(k string) string { return env[k] })
			if tt.problem == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.MaxPendingRequests != tt.want {
					t.Fatalf("MaxPendingRequests %d, want %d", c.MaxPendingRequests, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted as %d", c.MaxPendingRequests)
			}
			lines := strings.Split(err.Error(), "\n")
			if want := appenv.MaxPendingRequests + ": " + tt.problem; len(lines) != 2 || lines[1] != want {
				t.Fatalf("error:\n%s\nwant one problem line %q", err, want)
			}
		})
	}
}

// TestNewRefusesANegativeMaxPendingRequests: set directly (dev mode), zero
// means the default and a negative bound is a mistake, not a default.
func TestNewRefusesANegativeMaxPendingRequests(t *testing.T) {
	env := validEnv()
	c, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	c.MaxPendingRequests = -1
	app, err := New(c, Deps{})
	if err == nil {
		_ = app.Close(context.Background())
		t.Fatal("New accepted MaxPendingRequests -1")
	}
	if !strings.HasSuffix(err.Error(), "\nMaxPendingRequests: -1 is negative") {
		t.Fatalf("New with MaxPendingRequests -1: %v, want one problem naming the field", err)
	}
	c.MaxPendingRequests = 0
	if got := c.problems(false); len(got) != 0 {
		t.Fatalf("problems %q with a zero bound", got)
	}
	if d := c.withDefaults(); d.MaxPendingRequests != DefaultMaxPendingRequests {
		t.Fatalf("zero became %d, want the default %d", d.MaxPendingRequests, DefaultMaxPendingRequests)
	}
}

func TestSafeReturnTo(t *testing.T) {
	for _, base := range []string{"", "/chat"} {
		a := &App{base: base}
		tests := map[string]bool{
			base + "/":                     true,
			base + "/api/me":               true,
			base + "/?x=1&y=2":             true,
			"//evil.example":               false,
			"https://evil.example":         false,
			`/\evil.example`:               false,
			"/%5Cevil.example":             false,
			"/%2F%2Fevil.example":          false,
			base + "/../x":                 false,
			base + "/./x":                  false,
			base + "/a//b":                 false,
			base + "/#frag":                false,
			"javascript:alert(1)":          false,
			"":                             false,
			base + "/a\nb":                 false,
			base + "/?q=\xff":              false, // invalid UTF-8
			"/" + strings.Repeat("a", 600): false,
		}
		if base != "" {
			tests["/other"] = false
			tests["/chatty"] = false
		}
		for in, ok := range tests {
			if got := a.safeReturnTo(in); (got != "") != ok {
				t.Errorf("base %q: safeReturnTo(%q) = %q, want allowed=%v", base, in, got, ok)
			}
		}
	}
}

func TestClientAddressBelievesOnlyTrustedProxies(t *testing.T) {
	a := &App{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	tests := []struct {
		name, peer, xff, proto string
		tls                    bool
		ip, scheme             string
	}{
		{"direct client", "203.0.113.9:5000", "", "", false, "203.0.113.9", "http"},
		{"direct client lies", "203.0.113.9:5000", "1.2.3.4", "https", false, "203.0.113.9", "http"},
		{"direct TLS", "203.0.113.9:5000", "", "", true, "203.0.113.9", "https"},
		{"through the ALB", "10.0.1.5:5000", "198.51.100.7", "https", false, "198.51.100.7", "https"},
		{"client prepends a fake hop", "10.0.1.5:5000", "1.2.3.4, 198.51.100.7", "https", false, "198.51.100.7", "https"},
		{"two trusted hops", "10.0.1.5:5000", "198.51.100.7, 10.0.2.9", "http", false, "198.51.100.7", "http"},
		{"garbage header", "10.0.1.5:5000", "not-an-ip", "gopher", false, "10.0.1.5", "http"},
		{"IPv6 client", "10.0.1.5:5000", "2001:db8::1", "https", false, "2001:db8::1", "https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.peer
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			if tt.proto != "" {
				r.Header.Set("X-Forwarded-Proto", tt.proto)
			}
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			peer, trusted := a.peer(r)
			ip, scheme := a.clientAddress(r, peer, trusted)
			if ip != tt.ip || scheme != tt.scheme {
				t.Fatalf("got %s %s, want %s %s", ip, scheme, tt.ip, tt.scheme)
			}
		})
	}
}

func TestPreferredLanguage(t *testing.T) {
	tests := map[string]string{
		"":                        "en",
		"ja":                      "ja",
		"ja-JP,ja;q=0.9,en;q=0.8": "ja",
		"en-US,en;q=0.9,ja;q=0.8": "en",
		"fr-FR,ja;q=0.5":          "ja",
		"fr":                      "en",
		"en;q=0.2, ja;q=0.7":      "ja",
		"ja;q=0":                  "en",
	}
	for header, want := range tests {
		if got := preferredLanguage(header); got != want {
			t.Errorf("preferredLanguage(%q) = %s, want %s", header, got, want)
		}
	}
	for key := range catalog["en"] {
		if catalog["ja"][key] == "" {
			t.Errorf("no Japanese text for %s", key)
		}
	}
}

func TestConfigFromEnvKeepsTheIssuerExactly(t *testing.T) {
	tests := []struct{ issuer, want string }{
		{"", "https://dbc-1234.cloud.databricks.com/oidc"},
		{"https://login.example.com/tenant/", "https://login.example.com/tenant/"},
		{"https://login.example.com/", "https://login.example.com/"},
		{"https://login.example.com", "https://login.example.com"},
		{" https://login.example.com/tenant/ ", "https://login.example.com/tenant/"},
	}
	for _, tt := range tests {
		t.Run(tt.issuer, func(t *testing.T) {
			env := validEnv()
			env[appenv.DatabricksHost] = "https://dbc-1234.cloud.databricks.com/"
			env[appenv.Issuer] = tt.issuer
			c, err := ConfigFromEnv(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if c.Issuer != tt.want || c.DatabricksHost != "https://dbc-1234.cloud.databricks.com" {
				t.Fatalf("issuer %q, host %q; want issuer %q", c.Issuer, c.DatabricksHost, tt.want)
			}
		})
	}
}

// TestAppDiscoversAnIssuerWithATrailingSlash configures an app from the
// environment against a provider whose discovery issuer ends in "/" (as
// some independent providers' do) and waits for it to become ready, which
// needs discovery to accept the issuer.
func TestAppDiscoversAnIssuerWithATrailingSlash(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/tenant/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                 srv.URL + "/tenant/",
			"authorization_endpoint": srv.URL + "/tenant/authorize",
			"token_endpoint":         srv.URL + "/tenant/token",
			"jwks_uri":               srv.URL + "/tenant/keys",
		})
	}))
	defer srv.Close()
	env := validEnv()
	env[appenv.Issuer] = srv.URL + "/tenant/"
	env[appenv.AuditOutboxDir] = t.TempDir()
	cfg, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	app, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer func() { _ = app.Close(ctx) }()
	if err := app.Ready(ctx); err != nil {
		t.Fatalf("an app configured with issuer %s/tenant/: %v", srv.URL, err)
	}
}
