package webapp_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchClient is a keep-alive client with enough idle connections for the
// parallel benchmarks.
func benchClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 256
	tr.MaxIdleConnsPerHost = 256
	return &http.Client{Transport: tr}
}

// cookieHeader returns the browser's cookies for in as a Cookie header.
func cookieHeader(br *browser, in *instance) string {
	u, _ := url.Parse(in.url)
	var parts []string
	for _, c := range br.client.Jar.Cookies(u) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

// percentile returns the p-th percentile (0-100) of sorted durations, in µs.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return float64(sorted[i].Nanoseconds()) / 1e3
}

// BenchmarkAuthenticatedAPIMe measures signed-in GET /api/me over loopback
// HTTP with 2 and 32 concurrent keep-alive clients, with sessions in
// JetStream KV (embedded nats-server in the same process) and in memory.
// The clients run on the same cores as the app.
func BenchmarkAuthenticatedAPIMe(b *testing.B) {
	for _, bc := range []struct {
		name    string
		o       options
		clients int
	}{
		{"kv/clients=2", options{nats: true, quiet: true}, 2},
		{"kv/clients=32", options{nats: true, quiet: true}, 32},
		{"memory/clients=2", options{quiet: true}, 2},
		{"memory/clients=32", options{quiet: true}, 32},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newHarness(b, bc.o)
			in := h.instances[0]
			br := h.browser()
			br.login(in, "alice@example.com")
			cookie := cookieHeader(br, in)
			client := benchClient()
			target := in.at("/api/me")
			var (
				mu  sync.Mutex
				lat []time.Duration
			)
			b.SetParallelism(max(1, bc.clients/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				local := make([]time.Duration, 0, 4096)
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodGet, target, nil)
					req.Header.Set("Cookie", cookie)
					t0 := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					local = append(local, time.Since(t0))
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
			b.ReportMetric(percentile(lat, 50), "p50-µs")
			b.ReportMetric(percentile(lat, 99), "p99-µs")
		})
	}
}

// BenchmarkInvocationAddedLatency calls the emulator's summarizer endpoint
// directly and through the app's /api/invoke, alternately, one request at a
// time, and reports both latency distributions and the difference: what
// the app adds (session, token, proxying, audit event).
func BenchmarkInvocationAddedLatency(b *testing.B) {
	for _, bc := range []struct {
		name string
		o    options
	}{
		{"kv", options{nats: true, quiet: true}},
		{"memory", options{quiet: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newHarness(b, bc.o)
			in := h.instances[0]
			br := h.browser()
			br.login(in, "alice@example.com")
			csrf := br.csrf(in)
			cookie := cookieHeader(br, in)
			token, err := h.emu.IssueUserToken("alice@example.com")
			if err != nil {
				b.Fatal(err)
			}
			body, _ := json.Marshal(map[string]any{"messages": []map[string]string{{"role": "user", "content": summaryText}}, "max_tokens": 64})
			client := benchClient()
			call := func(target string, header map[string]string) time.Duration {
				req, _ := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				for k, v := range header {
					req.Header.Set(k, v)
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				d := time.Since(t0)
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("%s: status %d", target, resp.StatusCode)
				}
				return d
			}
			directURL := h.emu.URL + "/serving-endpoints/summarizer/invocations"
			direct := make([]time.Duration, 0, b.N)
			viaApp := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				direct = append(direct, call(directURL, map[string]string{"Authorization": "Bearer " + token}))
				viaApp = append(viaApp, call(in.at("/api/invoke"), map[string]string{"Cookie": cookie, "X-CSRF-Token": csrf}))
			}
			b.StopTimer()
			slices.Sort(direct)
			slices.Sort(viaApp)
			b.ReportMetric(percentile(direct, 50), "direct-p50-µs")
			b.ReportMetric(percentile(direct, 99), "direct-p99-µs")
			b.ReportMetric(percentile(viaApp, 50), "app-p50-µs")
			b.ReportMetric(percentile(viaApp, 99), "app-p99-µs")
			b.ReportMetric(percentile(viaApp, 50)-percentile(direct, 50), "added-p50-µs")
			b.ReportMetric(percentile(viaApp, 99)-percentile(direct, 99), "added-p99-µs")
		})
	}
}

// BenchmarkAPIMeHandler calls the app's handler in process from 32
// goroutines (no HTTP client or server), which isolates what the app spends
// on an authenticated request: session cookie, store read (a JetStream KV
// round trip for kv), unsealing, JSON, access log, metrics.
func BenchmarkAPIMeHandler(b *testing.B) {
	for _, bc := range []struct {
		name string
		o    options
	}{
		{"kv", options{nats: true, quiet: true}},
		{"memory", options{quiet: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newHarness(b, bc.o)
			in := h.instances[0]
			br := h.browser()
			br.login(in, "alice@example.com")
			cookie := cookieHeader(br, in)
			handler := in.app.Handler()
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest(http.MethodGet, in.at("/api/me"), nil)
					req.Header.Set("Cookie", cookie)
					rec := httptest.NewRecorder()
					handler.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Errorf("status %d", rec.Code)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}
