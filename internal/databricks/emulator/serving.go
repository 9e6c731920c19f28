package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Chat models the emulator serves.
const (
	// ModelEcho answers with the last user message.
	ModelEcho = "echo"
	// ModelSummarizer answers with an extractive summary of the last user
	// message: its highest-scoring sentences, in their original order.
	ModelSummarizer = "summarizer"
)

// Permission is a serving endpoint permission level.
type Permission string

// Serving endpoint permission levels, weakest first.
const (
	NoPermission Permission = "NONE"
	CanView      Permission = "CAN_VIEW"
	CanQuery     Permission = "CAN_QUERY"
	CanManage    Permission = "CAN_MANAGE"
)

func (p Permission) rank() int {
	switch p {
	case CanView:
		return 1
	case CanQuery:
		return 2
	case CanManage:
		return 3
	}
	return 0
}

// Endpoint is a serving endpoint.
type Endpoint struct {
	// Name is the endpoint name in /serving-endpoints/<name>/invocations.
	Name string
	// Model is ModelEcho or ModelSummarizer.
	Model string
	// ServedModelName is sent in the served-model-name header and the
	// response's model field; empty means Name + "-" + Model.
	ServedModelName string
	// NotReady makes the endpoint report NOT_READY and refuse invocations
	// with 503.
	NotReady bool
	// DefaultPermission applies to principals without an explicit
	// permission; empty means CanQuery.
	DefaultPermission Permission
}

// DefaultEndpoints returns the endpoints "echo" and "summarizer", serving the
// models of the same names.
func DefaultEndpoints() []Endpoint {
	return []Endpoint{{Name: "echo", Model: ModelEcho}, {Name: "summarizer", Model: ModelSummarizer}}
}

type endpoint struct {
	Endpoint
	id          string
	created     time.Time
	permissions map[string]Permission // by principal (lower-case email or client id)
	faults      []*faultState
}

// AddEndpoint adds or replaces a serving endpoint.
func (e *Emulator) AddEndpoint(ep Endpoint) error {
	if ep.Name == "" {
		return errors.New("emulator: add endpoint: name is required")
	}
	if ep.Model != ModelEcho && ep.Model != ModelSummarizer {
		return fmt.Errorf("emulator: add endpoint %s: model must be %q or %q", ep.Name, ModelEcho, ModelSummarizer)
	}
	if ep.ServedModelName == "" {
		ep.ServedModelName = ep.Name + "-" + ep.Model
	}
	if ep.DefaultPermission == "" {
		ep.DefaultPermission = CanQuery
	}
	stored := &endpoint{
		Endpoint:    ep,
		id:          fmt.Sprintf("%x", e.randomBytes(16)),
		created:     e.now(),
		permissions: map[string]Permission{},
	}
	e.mu.Lock()
	e.endpoints[ep.Name] = stored
	e.mu.Unlock()
	return nil
}

// SetEndpointReady makes an endpoint report READY or NOT_READY.
func (e *Emulator) SetEndpointReady(name string, ready bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep, ok := e.endpoints[name]
	if !ok {
		return fmt.Errorf("emulator: endpoint %s does not exist", name)
	}
	ep.NotReady = !ready
	return nil
}

// SetPermission sets a principal's permission on an endpoint. The principal
// is a user's email or a service principal's client id; NoPermission denies
// everything, overriding the endpoint's default.
func (e *Emulator) SetPermission(endpointName, principal string, level Permission) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep, ok := e.endpoints[endpointName]
	if !ok {
		return fmt.Errorf("emulator: endpoint %s does not exist", endpointName)
	}
	ep.permissions[strings.ToLower(principal)] = level
	return nil
}

func (ep *endpoint) permission(principal string) Permission {
	if p, ok := ep.permissions[strings.ToLower(principal)]; ok {
		return p
	}
	return ep.DefaultPermission
}

// servingCaller authenticates a serving call and finds the endpoint the
// caller may use at level need. On failure it writes the answer.
func (e *Emulator) servingCaller(w http.ResponseWriter, r *http.Request, need Permission) (*accessToken, endpoint, bool) {
	tok, ok := e.authenticate(w, r, audienceWorkspace)
	if !ok {
		return nil, endpoint{}, false
	}
	if !tok.canServe() {
		writeAPIError(w, http.StatusForbidden, "PERMISSION_DENIED", "Provided OAuth token does not have required scopes")
		return nil, endpoint{}, false
	}
	name := r.PathValue("name")
	e.mu.Lock()
	ep, found := e.endpoints[name]
	var copied endpoint
	var level Permission
	if found {
		copied = *ep
		level = ep.permission(tok.principal)
	}
	e.mu.Unlock()
	if !found {
		writeAPIError(w, http.StatusNotFound, "RESOURCE_DOES_NOT_EXIST", fmt.Sprintf("Endpoint with name '%s' does not exist.", name))
		return nil, endpoint{}, false
	}
	if level.rank() < need.rank() {
		writeAPIError(w, http.StatusForbidden, "PERMISSION_DENIED", fmt.Sprintf("User does not have permission '%s' on endpoint '%s'.", need, name))
		return nil, endpoint{}, false
	}
	return tok, copied, true
}

// handleServingEndpoint describes an endpoint (GET /api/2.0/serving-endpoints/<name>).
func (e *Emulator) handleServingEndpoint(w http.ResponseWriter, r *http.Request) {
	tok, ep, ok := e.servingCaller(w, r, CanView)
	if !ok {
		return
	}
	e.mu.Lock()
	level := e.endpoints[ep.Name].permission(tok.principal)
	e.mu.Unlock()
	ready := "READY"
	if ep.NotReady {
		ready = "NOT_READY"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name":                   ep.Name,
		"id":                     ep.id,
		"creator":                "emulator@databricks.local",
		"creation_timestamp":     ep.created.UnixMilli(),
		"last_updated_timestamp": ep.created.UnixMilli(),
		"state":                  map[string]string{"ready": ready, "config_update": "NOT_UPDATING"},
		"config": map[string]any{
			"served_entities": []map[string]string{{"name": ep.ServedModelName, "entity_name": "emulator." + ep.Model, "entity_version": "1"}},
		},
		"task":             "llm/v1/chat",
		"permission_level": string(level),
	})
}

// maxInvocationBody is the Model Serving payload limit.
const maxInvocationBody = 16 << 20

// chatRequest is the wire form of a chat invocation.
type chatRequest struct {
	Messages    []chatMessage   `json:"messages"`
	MaxTokens   *int            `json:"max_tokens"`
	Temperature *float64        `json:"temperature"`
	N           *int            `json:"n"`
	Stop        json.RawMessage `json:"stop"`
	Stream      bool            `json:"stream"`
	// Inputs of other model kinds, refused by chat endpoints.
	Prompt           json.RawMessage `json:"prompt"`
	Input            json.RawMessage `json:"input"`
	DataframeSplit   json.RawMessage `json:"dataframe_split"`
	DataframeRecords json.RawMessage `json:"dataframe_records"`
	Instances        json.RawMessage `json:"instances"`
	Inputs           json.RawMessage `json:"inputs"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// text returns a message's content, a string or a list of text parts.
func (m chatMessage) text() (string, error) {
	if len(m.Content) == 0 || string(m.Content) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(m.Content, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(m.Content, &parts); err != nil {
		return "", errors.New("content must be a string or a list of content parts")
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String(), nil
}

// completion is the model output for one request.
type completion struct {
	text         string
	finishReason string
	promptTokens int
}

// parseChat validates a chat request and runs the model.
func parseChat(ep endpoint, req *chatRequest) (completion, string) {
	if len(req.Messages) == 0 {
		if req.Prompt != nil || req.Input != nil || req.DataframeSplit != nil || req.DataframeRecords != nil || req.Instances != nil || req.Inputs != nil {
			return completion{}, "This endpoint serves a chat model: send \"messages\"."
		}
		return completion{}, "\"messages\" is required and must not be empty."
	}
	if req.Temperature != nil && (*req.Temperature < 0 || *req.Temperature > 2) {
		return completion{}, "\"temperature\" must be between 0 and 2."
	}
	if req.MaxTokens != nil && *req.MaxTokens < 1 {
		return completion{}, "\"max_tokens\" must be at least 1."
	}
	if req.N != nil && (*req.N < 1 || *req.N > 16) {
		return completion{}, "\"n\" must be between 1 and 16."
	}
	var stops []string
	if len(req.Stop) > 0 && string(req.Stop) != "null" {
		var one string
		if json.Unmarshal(req.Stop, &one) == nil {
			stops = []string{one}
		} else if json.Unmarshal(req.Stop, &stops) != nil {
			return completion{}, "\"stop\" must be a string or a list of strings."
		}
	}
	var lastUser string
	var prompt int
	for i, m := range req.Messages {
		switch m.Role {
		case "system", "user", "assistant":
		default:
			return completion{}, fmt.Sprintf("messages[%d].role %q must be system, user or assistant.", i, m.Role)
		}
		text, err := m.text()
		if err != nil {
			return completion{}, fmt.Sprintf("messages[%d]: %v.", i, err)
		}
		prompt += countTokens(text)
		if m.Role == "user" {
			lastUser = text
		}
	}
	if strings.TrimSpace(lastUser) == "" {
		return completion{}, "The conversation needs a non-empty user message."
	}
	var out string
	switch ep.Model {
	case ModelSummarizer:
		out = Summarize(lastUser)
	default:
		out = lastUser
	}
	c := completion{text: out, finishReason: "stop", promptTokens: prompt}
	for _, s := range stops {
		if s == "" {
			continue
		}
		if i := strings.Index(c.text, s); i >= 0 {
			c.text = c.text[:i]
		}
	}
	if req.MaxTokens != nil {
		if cut, truncated := truncateTokens(c.text, *req.MaxTokens); truncated {
			c.text, c.finishReason = cut, "length"
		}
	}
	return c, ""
}

// handleInvocations serves POST /serving-endpoints/<name>/invocations.
func (e *Emulator) handleInvocations(w http.ResponseWriter, r *http.Request) {
	_, ep, ok := e.servingCaller(w, r, CanQuery)
	if !ok {
		return
	}
	if f, ok := e.takeEndpointFault(ep.Name); ok && e.applyFault(w, r, f) {
		return
	}
	if ep.NotReady {
		writeAPIError(w, http.StatusServiceUnavailable, "TEMPORARILY_UNAVAILABLE", fmt.Sprintf("Endpoint '%s' is not ready.", ep.Name))
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInvocationBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeAPIError(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "The request payload exceeds the 16 MB limit.")
			return
		}
		writeAPIError(w, http.StatusBadRequest, "MALFORMED_REQUEST", "Could not read the request body.")
		return
	}
	var req chatRequest
	if err := json.Unmarshal(data, &req); err != nil {
		writeAPIError(w, http.StatusBadRequest, "MALFORMED_REQUEST", "Could not parse request body as JSON: "+err.Error())
		return
	}
	c, problem := parseChat(ep, &req)
	if problem != "" {
		writeAPIError(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", problem)
		return
	}
	n := 1
	if req.N != nil {
		n = *req.N
	}
	id := "chatcmpl_" + b64(e.randomBytes(12))
	created := e.now().Unix()
	usage := map[string]int{
		"prompt_tokens":     c.promptTokens,
		"completion_tokens": countTokens(c.text) * n,
		"total_tokens":      c.promptTokens + countTokens(c.text)*n,
	}
	w.Header().Set("served-model-name", ep.ServedModelName)
	if req.Stream {
		e.streamCompletion(w, r, ep, id, created, n, c, usage)
		return
	}
	choices := make([]map[string]any, n)
	for i := range choices {
		choices[i] = map[string]any{
			"index":         i,
			"message":       map[string]string{"role": "assistant", "content": c.text},
			"finish_reason": c.finishReason,
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id":      id,
		"object":  "chat.completion",
		"created": created,
		"model":   ep.ServedModelName,
		"choices": choices,
		"usage":   usage,
	})
}

// streamCompletion sends the completion as OpenAI-style server-sent events:
// a chunk per token piece, a final chunk with finish_reason and usage, then
// "data: [DONE]".
func (e *Emulator) streamCompletion(w http.ResponseWriter, r *http.Request, ep endpoint, id string, created int64, n int, c completion, usage map[string]int) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(delta map[string]string, finish any, withUsage bool) bool {
		choices := make([]map[string]any, n)
		for i := range choices {
			choices[i] = map[string]any{"index": i, "delta": delta, "finish_reason": finish}
		}
		chunk := map[string]any{
			"id":      id,
			"object":  "chat.completion.chunk",
			"created": created,
			"model":   ep.ServedModelName,
			"choices": choices,
		}
		if withUsage {
			chunk["usage"] = usage
		}
		data, err := json.Marshal(chunk)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", data); err != nil {
			return false
		}
		return rc.Flush() == nil && r.Context().Err() == nil
	}
	pieces := splitPieces(c.text)
	if len(pieces) == 0 {
		pieces = []string{""}
	}
	for i, piece := range pieces {
		delta := map[string]string{"content": piece}
		if i == 0 {
			delta["role"] = "assistant"
		}
		if !send(delta, nil, false) {
			return
		}
	}
	if !send(map[string]string{}, c.finishReason, true) {
		return
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	_ = rc.Flush()
}

// Fault is a failure injected into requests: latency, an error answer, or
// both (latency first).
type Fault struct {
	// StatusCode is the error status to answer with (e.g. 429, 503); zero
	// means no error, only latency.
	StatusCode int
	// RetryAfter, when positive, is sent as Retry-After (whole seconds,
	// rounded up).
	RetryAfter time.Duration
	// Latency delays the answer (using Options.Sleep).
	Latency time.Duration
	// Times is how many requests the fault affects; zero means every
	// request until ClearFaults.
	Times int
	// Message overrides the error message.
	Message string
}

type faultState struct {
	Fault
	remaining int
}

// InjectFault queues a fault for invocations of a serving endpoint. Faults
// apply in the order injected, after authentication and permission checks.
func (e *Emulator) InjectFault(endpointName string, f Fault) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep, ok := e.endpoints[endpointName]
	if !ok {
		return fmt.Errorf("emulator: endpoint %s does not exist", endpointName)
	}
	ep.faults = append(ep.faults, &faultState{Fault: f, remaining: f.Times})
	return nil
}

// InjectRouteFault queues a fault for every request to a route (one of the
// Route constants), before the route's own handling, e.g. 503 answers from
// RouteAccountToken.
func (e *Emulator) InjectRouteFault(route string, f Fault) error {
	if _, ok := e.counts[route]; !ok {
		return fmt.Errorf("emulator: unknown route %q", route)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.routeFaults[route] = append(e.routeFaults[route], &faultState{Fault: f, remaining: f.Times})
	return nil
}

// ClearFaults removes every injected fault.
func (e *Emulator) ClearFaults() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.routeFaults)
	for _, ep := range e.endpoints {
		ep.faults = nil
	}
}

// takeFault consumes one use of the first fault in queue.
func takeFault(queue *[]*faultState) (Fault, bool) {
	if len(*queue) == 0 {
		return Fault{}, false
	}
	f := (*queue)[0]
	if f.Times > 0 {
		f.remaining--
		if f.remaining <= 0 {
			*queue = (*queue)[1:]
		}
	}
	return f.Fault, true
}

func (e *Emulator) takeEndpointFault(name string) (Fault, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep, ok := e.endpoints[name]
	if !ok {
		return Fault{}, false
	}
	return takeFault(&ep.faults)
}

func (e *Emulator) takeRouteFault(route string) (Fault, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	queue := e.routeFaults[route]
	if len(queue) == 0 {
		return Fault{}, false
	}
	f, ok := takeFault(&queue)
	e.routeFaults[route] = queue
	return f, ok
}

// applyFault delays and/or fails the request; it reports whether it answered.
func (e *Emulator) applyFault(w http.ResponseWriter, r *http.Request, f Fault) bool {
	if f.Latency > 0 {
		if err := e.sleep(r.Context(), f.Latency); err != nil {
			return true // the client went away
		}
	}
	if f.StatusCode == 0 {
		return false
	}
	if f.RetryAfter > 0 {
		secs := int64((f.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	code, msg := faultCode(f.StatusCode)
	if f.Message != "" {
		msg = f.Message
	}
	writeAPIError(w, f.StatusCode, code, msg)
	return true
}

func faultCode(status int) (string, string) {
	switch status {
	case http.StatusTooManyRequests:
		return "REQUEST_LIMIT_EXCEEDED", "The request rate limit for this endpoint has been exceeded."
	case http.StatusServiceUnavailable:
		return "TEMPORARILY_UNAVAILABLE", "The service is temporarily unavailable. Please try again later."
	case http.StatusGatewayTimeout:
		return "DEADLINE_EXCEEDED", "The request timed out."
	case http.StatusInternalServerError:
		return "INTERNAL_ERROR", "Internal error."
	case http.StatusBadRequest:
		return "BAD_REQUEST", "Bad request."
	case http.StatusForbidden:
		return "PERMISSION_DENIED", "Permission denied."
	case http.StatusNotFound:
		return "RESOURCE_DOES_NOT_EXIST", "Not found."
	}
	return strings.ReplaceAll(strings.ToUpper(http.StatusText(status)), " ", "_"), http.StatusText(status)
}

// writeJSON writes v as a JSON answer.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeAPIError writes a Databricks error {"error_code", "message"}; code is
// usually a string, but Databricks sends some as numbers.
func writeAPIError(w http.ResponseWriter, status int, code any, message string) {
	writeJSON(w, status, map[string]any{"error_code": code, "message": message})
}
