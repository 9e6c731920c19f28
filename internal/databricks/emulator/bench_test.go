package emulator_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/servingapp/servingapp/internal/databricks/emulator"
)

// benchServer starts an emulator with a confidential app and a loopback
// client that keeps plenty of idle connections.
func benchServer(b *testing.B) (*emulator.Server, *http.Client, app) {
	b.Helper()
	srv, err := emulator.Start(emulator.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	in, secret, err := srv.RegisterIntegration(emulator.Integration{
		Name: "bench", Confidential: true, RedirectURLs: []string{redirectURL}, Scopes: strings.Fields(allScopes),
	})
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return srv, client, app{Integration: in, secret: secret}
}

func post(b *testing.B, c *http.Client, target, contentType, body, bearer string) *http.Response {
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp
}

func reportRate(b *testing.B, unit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}

// BenchmarkTokenExchange measures token endpoint capacity on loopback:
// client-credentials grants, and full user logins (login form submit plus
// PKCE code exchange with a signed ID token).
func BenchmarkTokenExchange(b *testing.B) {
	b.Run("client_credentials", func(b *testing.B) {
		srv, client, _ := benchServer(b)
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {"all-apis"},
			"client_id": {emulator.DefaultAdminClientID}, "client_secret": {emulator.DefaultAdminSecret}}.Encode()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if resp := post(b, client, srv.URL+"/oidc/v1/token", "application/x-www-form-urlencoded", form, ""); resp.StatusCode != 200 {
					b.Errorf("token: %d", resp.StatusCode)
				}
			}
		})
		reportRate(b, "exchanges/s")
	})
	b.Run("authorization_code", func(b *testing.B) {
		srv, client, a := benchServer(b)
		authorize := srv.URL + "/oidc/v1/authorize?" + authorizeParams(a, nil).Encode()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp := post(b, client, authorize, "application/x-www-form-urlencoded", "user=alice%40example.com", "")
				loc, err := url.Parse(resp.Header.Get("Location"))
				if err != nil || resp.StatusCode != http.StatusFound {
					b.Errorf("authorize: %d", resp.StatusCode)
					continue
				}
				form := codeForm(a, loc.Query().Get("code")).Encode()
				if resp := post(b, client, srv.URL+"/oidc/v1/token", "application/x-www-form-urlencoded", form, ""); resp.StatusCode != 200 {
					b.Errorf("token: %d", resp.StatusCode)
				}
			}
		})
		reportRate(b, "logins/s")
	})
}

// BenchmarkInvocation measures serving capacity on loopback per model, and
// streamed.
func BenchmarkInvocation(b *testing.B) {
	text := "Model Serving exposes models behind REST endpoints. Serving endpoints scale with traffic. " +
		"Users call serving endpoints with their own tokens. The emulator answers deterministically."
	cases := []struct{ name, endpoint, body string }{
		{"echo", "echo", `{"messages":[{"role":"user","content":"` + text + `"}]}`},
		{"summarizer", "summarizer", `{"messages":[{"role":"user","content":"` + text + `"}]}`},
		{"summarizer_stream", "summarizer", `{"stream":true,"messages":[{"role":"user","content":"` + text + `"}]}`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			srv, client, _ := benchServer(b)
			token, err := srv.IssueUserToken("alice@example.com")
			if err != nil {
				b.Fatal(err)
			}
			target := srv.URL + "/serving-endpoints/" + c.endpoint + "/invocations"
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if resp := post(b, client, target, "application/json", c.body, token); resp.StatusCode != 200 {
						b.Errorf("invoke: %d", resp.StatusCode)
					}
				}
			})
			reportRate(b, "invocations/s")
		})
	}
}
