package emulator_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servingapp/servingapp/internal/databricks/emulator"
)

func TestInvocationsValidateAndAnswerLikeAChatModel(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	token, err := h.srv.IssueUserToken("alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, endpoint, body string
		wantStatus           int
		wantCode             string
		wantText             string
		wantFinish           string
		wantChoices          int
	}{
		{"echo", "echo", `{"messages":[{"role":"user","content":"ping"}]}`, 200, "", "ping", "stop", 1},
		{"echo answers the last user message", "echo", `{"messages":[{"role":"system","content":"sys"},{"role":"user","content":"first"},{"role":"assistant","content":"ok"},{"role":"user","content":"second"}]}`, 200, "", "second", "stop", 1},
		{"content parts", "echo", `{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}`, 200, "", "ab", "stop", 1},
		{"n choices", "echo", `{"messages":[{"role":"user","content":"x"}],"n":3}`, 200, "", "x", "stop", 3},
		{"max_tokens", "echo", `{"messages":[{"role":"user","content":"a b c d e"}],"max_tokens":3}`, 200, "", "a b c", "length", 1},
		{"stop string", "echo", `{"messages":[{"role":"user","content":"keep this. drop this"}],"stop":"."}`, 200, "", "keep this", "stop", 1},
		{"summarizer keeps a single sentence", "summarizer", `{"messages":[{"role":"user","content":"Only one sentence here."}]}`, 200, "", "Only one sentence here.", "stop", 1},
		{"no messages", "echo", `{"messages":[]}`, 400, "INVALID_PARAMETER_VALUE", "", "", 0},
		{"completions input", "echo", `{"prompt":"hi"}`, 400, "INVALID_PARAMETER_VALUE", "", "", 0},
		{"dataframe input", "echo", `{"dataframe_split":{"columns":["a"],"data":[[1]]}}`, 400, "INVALID_PARAMETER_VALUE", "", "", 0},
		{"temperature above 2", "echo", `{"messages":[{"role":"user","content":"x"}],"temperature":2.5}`, 400, "INVALID_PARAMETER_VALUE", "", "", 0},
		{"max_tokens zero", "echo", `{"messages":[{"role":"user","content":"x"}],"max_tokens":0}`, 400, "INVALID_PARAMETER_VALUE", "", "", 0},
		{"unknown role", "echo", `{"messages":[{"role":"tool","content":"x"}]}`, 400, "INVALID_PARAMETER_VALUE", "", "", 0},
		{"no user message", "echo", `{"messages":[{"role":"system","content":"x"}]}`, 400, "INVALID_PARAMETER_VALUE", "", "", 0},
		{"malformed JSON", "echo", `{"messages":`, 400, "MALFORMED_REQUEST", "", "", 0},
		{"missing endpoint", "gpt-9", `{"messages":[{"role":"user","content":"x"}]}`, 404, "RESOURCE_DOES_NOT_EXIST", "", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, header := h.api(t, "POST", "/serving-endpoints/"+tt.endpoint+"/invocations", token, tt.body)
			if status != tt.wantStatus {
				t.Fatalf("status %d %v, want %d", status, body, tt.wantStatus)
			}
			if tt.wantCode != "" {
				if body["error_code"] != tt.wantCode || str(body["message"]) == "" {
					t.Fatalf("error %v, want %s", body, tt.wantCode)
				}
				return
			}
			if header.Get("served-model-name") != tt.endpoint+"-"+map[string]string{"echo": "echo", "summarizer": "summarizer"}[tt.endpoint] {
				t.Fatalf("served-model-name %q", header.Get("served-model-name"))
			}
			choices := body["choices"].([]any)
			if len(choices) != tt.wantChoices {
				t.Fatalf("%d choices, want %d", len(choices), tt.wantChoices)
			}
			first := choices[0].(map[string]any)
			msg := first["message"].(map[string]any)
			if msg["content"] != tt.wantText || msg["role"] != "assistant" || first["finish_reason"] != tt.wantFinish {
				t.Fatalf("choice %v, want %q %s", first, tt.wantText, tt.wantFinish)
			}
			usage := body["usage"].(map[string]any)
			if usage["total_tokens"].(float64) != usage["prompt_tokens"].(float64)+usage["completion_tokens"].(float64) || usage["completion_tokens"].(float64) == 0 {
				t.Fatalf("usage %v", usage)
			}
			if body["object"] != "chat.completion" || str(body["id"]) == "" || body["model"] == nil || body["created"] == nil {
				t.Fatalf("response %v", body)
			}
		})
	}
}

// sseEvents reads a streamed invocation and returns the data of each event.
func sseEvents(t *testing.T, h *harness, token, endpoint, body string) (*http.Response, []string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/serving-endpoints/"+endpoint+"/invocations", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("unexpected SSE line %q", line)
		}
		events = append(events, data)
	}
	return resp, events
}

func TestStreamingSendsChunksThenDone(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	token, _ := h.srv.IssueUserToken("alice@example.com")
	text := "The quick brown fox jumps over the lazy dog. It was not amused. The dog, however, slept on."
	tests := []struct{ endpoint string }{{"echo"}, {"summarizer"}}
	for _, tt := range tests {
		t.Run(tt.endpoint, func(t *testing.T) {
			body := `{"messages":[{"role":"user","content":"` + text + `"}]}`
			_, whole, _ := h.api(t, "POST", "/serving-endpoints/"+tt.endpoint+"/invocations", token, body)
			want := whole["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"].(string)

			resp, events := sseEvents(t, h, token, tt.endpoint, `{"stream":true,`+body[1:])
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") || resp.Header.Get("served-model-name") == "" {
				t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
			}
			if len(events) < 3 || events[len(events)-1] != "[DONE]" {
				t.Fatalf("events %q, want chunks ending with [DONE]", events)
			}
			var got strings.Builder
			var finish string
			var usage map[string]any
			for i, data := range events[:len(events)-1] {
				var chunk struct {
					Object  string `json:"object"`
					Choices []struct {
						Delta        map[string]string `json:"delta"`
						FinishReason *string           `json:"finish_reason"`
					} `json:"choices"`
					Usage map[string]any `json:"usage"`
				}
				if err := json.Unmarshal([]byte(data), &chunk); err != nil {
					t.Fatalf("chunk %d %q: %v", i, data, err)
				}
				if chunk.Object != "chat.completion.chunk" || len(chunk.Choices) != 1 {
					t.Fatalf("chunk %d: %s", i, data)
				}
				if i == 0 && chunk.Choices[0].Delta["role"] != "assistant" {
					t.Fatalf("first chunk lacks the role: %s", data)
				}
				got.WriteString(chunk.Choices[0].Delta["content"])
				if chunk.Choices[0].FinishReason != nil {
					finish = *chunk.Choices[0].FinishReason
				}
				if chunk.Usage != nil {
					usage = chunk.Usage
				}
			}
			if got.String() != want || finish != "stop" || usage == nil || usage["total_tokens"] != whole["usage"].(map[string]any)["total_tokens"] {
				t.Fatalf("streamed %q finish %q usage %v; want %q", got.String(), finish, usage, want)
			}
		})
	}
}

func TestSummarizerReturnsAShortExtractiveSummary(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"single sentence", "Just this.", "Just this."},
		{"picks the sentence about the topic",
			"Solar panels convert sunlight into electricity. My neighbour owns a red bicycle. Modern solar panels convert more sunlight than older panels.",
			"Modern solar panels convert more sunlight than older panels."},
		{"two sentences from a longer text, in order",
			"Kubernetes operators automate operations. Lunch was pasta. Operators reconcile desired state with actual state. " +
				"The weather is mild. Reconcile loops make operators robust. Birds sing.",
			"Operators reconcile desired state with actual state. Reconcile loops make operators robust."},
		{"japanese",
			"東京は日本の首都です。今日は晴れです。東京の人口は日本で最も多いです。",
			"東京は日本の首都です。"},
		{"line breaks separate sentences", "Drink coffee\nMonitor the model endpoint\nDeploy the model", "Monitor the model endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := emulator.Summarize(tt.text)
			if got != tt.want {
				t.Fatalf("Summarize = %q, want %q", got, tt.want)
			}
			if again := emulator.Summarize(tt.text); again != got {
				t.Fatalf("not deterministic: %q then %q", got, again)
			}
			if len(got) > len(tt.text) {
				t.Fatalf("summary longer than the text")
			}
		})
	}
}

func TestFaultsAndPermissionsPerEndpoint(t *testing.T) {
	var mu sync.Mutex
	var slept []time.Duration
	h := newHarness(t, emulator.Options{Sleep: func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		slept = append(slept, d)
		mu.Unlock()
		return nil
	}})
	alice, _ := h.srv.IssueUserToken("alice@example.com")
	bob, _ := h.srv.IssueUserToken("bob@example.com")
	if err := h.srv.SetPermission("summarizer", "bob@example.com", emulator.CanView); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.InjectFault("echo", emulator.Fault{StatusCode: 429, RetryAfter: 1500 * time.Millisecond, Times: 2}); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.InjectFault("echo", emulator.Fault{StatusCode: 503, Latency: 3 * time.Second, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.InjectFault("echo", emulator.Fault{Latency: 250 * time.Millisecond, Times: 1}); err != nil {
		t.Fatal(err)
	}
	body := `{"messages":[{"role":"user","content":"x"}]}`
	tests := []struct {
		name, token, endpoint string
		wantStatus            int
		wantCode              string
		wantRetryAfter        string
	}{
		{"bob cannot query the summarizer", bob, "summarizer", 403, "PERMISSION_DENIED", ""},
		{"alice can", alice, "summarizer", 200, "", ""},
		{"first 429", alice, "echo", 429, "REQUEST_LIMIT_EXCEEDED", "2"},
		{"second 429", alice, "echo", 429, "REQUEST_LIMIT_EXCEEDED", "2"},
		{"then a slow 503", alice, "echo", 503, "TEMPORARILY_UNAVAILABLE", ""},
		{"then only latency", alice, "echo", 200, "", ""},
		{"then healthy", bob, "echo", 200, "", ""},
	}
	for _, tt := range tests {
		status, out, header := h.api(t, "POST", "/serving-endpoints/"+tt.endpoint+"/invocations", tt.token, body)
		if status != tt.wantStatus || (tt.wantCode != "" && out["error_code"] != tt.wantCode) || header.Get("Retry-After") != tt.wantRetryAfter {
			t.Fatalf("%s: %d %v Retry-After=%q", tt.name, status, out, header.Get("Retry-After"))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(slept) != 2 || slept[0] != 3*time.Second || slept[1] != 250*time.Millisecond {
		t.Fatalf("injected latency %v, want [3s 250ms]", slept)
	}

	// Bob may still see the endpoint (CAN_VIEW), but not query it.
	if status, ep, _ := h.api(t, "GET", "/api/2.0/serving-endpoints/summarizer", bob, ""); status != 200 || ep["permission_level"] != "CAN_VIEW" {
		t.Fatalf("endpoint for bob: %d %v", status, ep)
	}
	// A persistent fault lasts until cleared.
	if err := h.srv.InjectFault("echo", emulator.Fault{StatusCode: 503}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if status, _, _ := h.api(t, "POST", "/serving-endpoints/echo/invocations", alice, body); status != 503 {
			t.Fatalf("persistent fault: %d", status)
		}
	}
	h.srv.ClearFaults()
	if status, _, _ := h.api(t, "POST", "/serving-endpoints/echo/invocations", alice, body); status != 200 {
		t.Fatalf("after ClearFaults: %d", status)
	}
}

func TestAddedEndpointsAndUsers(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	if err := h.srv.AddEndpoint(emulator.Endpoint{Name: "databricks-claude-sonnet-4", Model: emulator.ModelSummarizer, ServedModelName: "claude-sonnet-4"}); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.AddUser(emulator.User{Email: "Carol@Example.com", DisplayName: "Carol Example"}); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.AddEndpoint(emulator.Endpoint{Name: "bad", Model: "gpt"}); err == nil {
		t.Fatal("unknown model accepted")
	}
	carol := h.tokens(t, h.steady, "carol@example.com", nil)
	status, out, header := h.api(t, "POST", "/serving-endpoints/databricks-claude-sonnet-4/invocations", str(carol["access_token"]), `{"messages":[{"role":"user","content":"hi"}]}`)
	if status != 200 || header.Get("served-model-name") != "claude-sonnet-4" || out["model"] != "claude-sonnet-4" {
		t.Fatalf("%d %v %v", status, out, header)
	}
	status, me, _ := h.api(t, "GET", "/api/2.0/preview/scim/v2/Me", str(carol["access_token"]), "")
	if status != 200 || me["userName"] != "carol@example.com" || me["displayName"] != "Carol Example" {
		t.Fatalf("Me %d %v", status, me)
	}
	if err := h.srv.SetEndpointReady("databricks-claude-sonnet-4", false); err != nil {
		t.Fatal(err)
	}
	if status, ep, _ := h.api(t, "GET", "/api/2.0/serving-endpoints/databricks-claude-sonnet-4", str(carol["access_token"]), ""); status != 200 || ep["state"].(map[string]any)["ready"] != "NOT_READY" {
		t.Fatalf("state %d %v", status, ep)
	}
}
