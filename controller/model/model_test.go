package model

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/servingapp/servingapp/api/appenv"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
)

func app(mutate func(*v1.ServingApp)) *v1.ServingApp {
	a := &v1.ServingApp{APIVersion: v1.APIVersion, Kind: v1.Kind,
		Metadata: v1.ObjectMeta{Name: "chat", Namespace: "platform", UID: "uid-1", Generation: 3},
		Spec: v1.ServingAppSpec{
			Route:      v1.Route{Host: "apps.example.com", PathPrefix: "/chat"},
			Allowlist:  []string{"10.0.0.0/8"},
			Databricks: v1.Databricks{Host: "https://dbc-1.cloud.databricks.com", ServingEndpoint: "llama"},
			Env:        map[string]string{"A": "b"},
		}}
	if mutate != nil {
		mutate(a)
	}
	v1.SetDefaults(a)
	return a
}

var cfg = Config{ControllerID: "prod", DefaultImage: "webapp:1", AppDomain: "apps.example.com", AppNATSURL: "nats://n:4222"}

func TestBuild(t *testing.T) {
	cases := []struct {
		name  string
		app   *v1.ServingApp
		cfg   Config
		check func(t *testing.T, m *App)
	}{
		{"prefix route", app(nil), cfg, func(t *testing.T, m *App) {
			if m.URL != "https://apps.example.com/chat/" || m.OAuth.RedirectURL != "https://apps.example.com/chat/oauth/callback" {
				t.Fatalf("url %s redirect %s", m.URL, m.OAuth.RedirectURL)
			}
			if len(m.PathPatterns) != 2 || m.PathPatterns[0] != "/chat" || m.PathPatterns[1] != "/chat/*" {
				t.Fatalf("patterns %v", m.PathPatterns)
			}
		}},
		{"root route", app(func(a *v1.ServingApp) { a.Spec.Route.PathPrefix = "/" }), cfg, func(t *testing.T, m *App) {
			if m.URL != "https://apps.example.com/" || m.OAuth.RedirectURL != "https://apps.example.com/oauth/callback" || m.PathPatterns[0] != "/*" {
				t.Fatalf("url %s redirect %s patterns %v", m.URL, m.OAuth.RedirectURL, m.PathPatterns)
			}
		}},
		{"derived host", app(func(a *v1.ServingApp) { a.Spec.Route.Host = "" }), cfg, func(t *testing.T, m *App) {
			if m.Host != "chat.platform.apps.example.com" {
				t.Fatalf("host %s", m.Host)
			}
		}},
		{"dev mode", app(nil), Config{ControllerID: "dev", DefaultImage: "local", Scheme: "http", Port: 8080, HostOverrideSuffix: "localhost", DatabricksHostOverride: "http://127.0.0.1:9999"}, func(t *testing.T, m *App) {
			if m.URL != "http://chat.platform.localhost:8080/chat/" || m.Env[appenv.DatabricksHost] != "http://127.0.0.1:9999" {
				t.Fatalf("url %s host %s", m.URL, m.Env[appenv.DatabricksHost])
			}
		}},
		{"injected env", app(nil), cfg, func(t *testing.T, m *App) {
			want := map[string]string{appenv.AppName: "chat", appenv.AppNamespace: "platform", appenv.ServingEndpoint: "llama", appenv.SessionTTL: "8h", appenv.NATSURL: "nats://n:4222", "A": "b", appenv.PathPrefix: "/chat"}
			for k, v := range want {
				if m.Env[k] != v {
					t.Errorf("%s = %q, want %q", k, m.Env[k], v)
				}
			}
		}},
		{"autoscaled starts at min", app(func(a *v1.ServingApp) {
			a.Spec.Autoscaling = &v1.Autoscaling{MinReplicas: 3, MaxReplicas: 9, TargetInvocationsPerReplicaPerMinute: 10}
		}), cfg, func(t *testing.T, m *App) {
			if !m.Autoscaled || m.Replicas != 3 || m.MaxReplicas != 9 {
				t.Fatalf("%+v", m)
			}
		}},
		{"tags", app(nil), Config{ControllerID: "prod", DefaultImage: "x", ExtraTags: map[string]string{"cost": "1"}}, func(t *testing.T, m *App) {
			if m.Tags[TagManagedBy] != "prod" || m.Tags[TagApp] != "platform/chat" || m.Tags[TagUID] != "uid-1" || m.Tags["cost"] != "1" {
				t.Fatalf("tags %v", m.Tags)
			}
		}},
		{"existing oauth secret", app(func(a *v1.ServingApp) {
			a.Spec.Databricks.OAuth = v1.OAuth{Integration: v1.IntegrationExisting, IntegrationID: "i", ClientSecretRef: "s/x"}
		}), cfg, func(t *testing.T, m *App) {
			if m.SecretEnv[appenv.ClientSecret] != "s/x" {
				t.Fatalf("secret env %v", m.SecretEnv)
			}
		}},
		{"allowlist parsed", app(nil), cfg, func(t *testing.T, m *App) {
			if len(m.Allowlist) != 1 || m.Allowlist[0] != netip.MustParsePrefix("10.0.0.0/8") {
				t.Fatalf("%v", m.Allowlist)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Build(tc.app, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, m)
		})
	}
}

func TestBuildIsPureAndReportsInvalid(t *testing.T) {
	a := app(nil)
	m1, _ := Build(a, cfg)
	m2, _ := Build(a, cfg)
	m1.Env["X"] = "mutated"
	if _, ok := m2.Env["X"]; ok || a.Spec.Env["X"] != "" {
		t.Fatal("models share maps with each other or with the spec")
	}
	_, err := Build(app(func(a *v1.ServingApp) { a.Spec.Route.Host = "" }), Config{DefaultImage: "x"})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("want ErrInvalid, got %v", err)
	}
	_, err = Build(app(nil), Config{})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("no image: want ErrInvalid, got %v", err)
	}
}
