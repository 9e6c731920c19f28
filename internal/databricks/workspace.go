package databricks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// WorkspaceConfig configures a WorkspaceClient.
type WorkspaceConfig struct {
	// Host is the workspace URL, e.g. https://dbc-1234abcd.cloud.databricks.com,
	// or the emulator's URL.
	Host string
	// TokenSource supplies the bearer token. It may be nil when every call
	// goes through WithToken (the web app calls with each user's token).
	TokenSource TokenSource
	// HTTPClient sends the requests; nil means http.DefaultClient. Streaming
	// calls last as long as the answer, so prefer context deadlines over
	// http.Client.Timeout.
	HTTPClient *http.Client
	// Retry governs retries of 429 and 503 answers.
	Retry RetryPolicy
	// Now is the clock for Retry-After dates; nil means time.Now.
	Now func() time.Time
}

// WorkspaceClient calls the workspace APIs: Model Serving invocations,
// serving endpoint state and SCIM Me. It is safe for concurrent use.
type WorkspaceClient struct {
	t *transport
}

// NewWorkspaceClient returns a client for one workspace.
func NewWorkspaceClient(cfg WorkspaceConfig) (*WorkspaceClient, error) {
	t, err := newTransport(cfg.Host, cfg.HTTPClient, cfg.Retry, cfg.Now, cfg.TokenSource)
	if err != nil {
		return nil, err
	}
	return &WorkspaceClient{t: t}, nil
}

// WithToken returns a client that shares c's configuration and connection
// pool but authenticates with ts, e.g. WithToken(StaticToken(userToken)).
func (c *WorkspaceClient) WithToken(ts TokenSource) *WorkspaceClient {
	t := *c.t
	t.tokens = ts
	return &WorkspaceClient{t: &t}
}

func (c *WorkspaceClient) authenticated() error {
	if c.t.tokens == nil {
		return errors.New("databricks: workspace client has no token source; use WithToken")
	}
	return nil
}

// ChatMessage is one message of a chat conversation.
type ChatMessage struct {
	// Role is system, user or assistant.
	Role string `json:"role"`
	// Content is the message text.
	Content string `json:"content"`
}

// UnmarshalJSON accepts content either as a string or as a list of content
// parts ({"type":"text","text":...}), whose texts are concatenated.
func (m *ChatMessage) UnmarshalJSON(data []byte) error {
	var raw struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	m.Role = raw.Role
	m.Content = ""
	if len(raw.Content) == 0 || string(raw.Content) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw.Content, &m.Content); err == nil {
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw.Content, &parts); err != nil {
		return fmt.Errorf("message content is neither a string nor content parts: %w", err)
	}
	for _, p := range parts {
		if p.Type == "text" || p.Type == "" {
			m.Content += p.Text
		}
	}
	return nil
}

// ChatRequest is a chat completion request for a serving endpoint.
type ChatRequest struct {
	Messages []ChatMessage `json:"messages"` // the conversation, oldest first
	// MaxTokens bounds the completion length; zero leaves it to the model.
	MaxTokens int `json:"max_tokens,omitempty"`
	// Temperature between 0 and 2; nil leaves it to the model.
	Temperature *float64 `json:"temperature,omitempty"`
	// N is the number of choices; zero means one.
	N int `json:"n,omitempty"`
	// Stop sequences end the completion early.
	Stop []string `json:"stop,omitempty"`
	// Stream is set by Stream and StreamFunc; Invoke clears it.
	Stream bool `json:"stream,omitempty"`
}

// Usage counts the tokens of a request and its completion.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`     // tokens in the request
	CompletionTokens int `json:"completion_tokens"` // tokens in the answer
	TotalTokens      int `json:"total_tokens"`      // their sum
}

// ChatChoice is one completion.
type ChatChoice struct {
	Index        int         `json:"index"`         // position among the choices
	Message      ChatMessage `json:"message"`       // the assistant message
	FinishReason string      `json:"finish_reason"` // stop, length, ...
}

// ChatResponse is a chat completion.
type ChatResponse struct {
	ID      string       `json:"id"`              // completion id
	Object  string       `json:"object"`          // "chat.completion"
	Created int64        `json:"created"`         // Unix seconds
	Model   string       `json:"model"`           // model that answered
	Choices []ChatChoice `json:"choices"`         // one per requested choice
	Usage   *Usage       `json:"usage,omitempty"` // token counts
	// ServedModel is the served-model-name response header.
	ServedModel string `json:"-"`
}

// Text returns the content of the first choice, or "".
func (r *ChatResponse) Text() string {
	if r == nil || len(r.Choices) == 0 {
		return ""
	}
	return r.Choices[0].Message.Content
}

// ChatDelta is the increment a streamed chunk adds to a choice.
type ChatDelta struct {
	Role    string `json:"role,omitempty"`    // set on the first chunk
	Content string `json:"content,omitempty"` // text to append
}

// ChatChunkChoice is one choice's increment in a streamed chunk.
type ChatChunkChoice struct {
	Index        int       `json:"index"`                   // position among the choices
	Delta        ChatDelta `json:"delta"`                   // what this chunk adds
	FinishReason string    `json:"finish_reason,omitempty"` // set on the last chunk
}

// ChatChunk is one server-sent event of a streamed chat completion.
type ChatChunk struct {
	ID      string            `json:"id"`              // completion id, the same on every chunk
	Object  string            `json:"object"`          // "chat.completion.chunk"
	Created int64             `json:"created"`         // Unix seconds
	Model   string            `json:"model"`           // model that answers
	Choices []ChatChunkChoice `json:"choices"`         // increments per choice
	Usage   *Usage            `json:"usage,omitempty"` // token counts, usually on the last chunk
	// ServedModel is the served-model-name response header.
	ServedModel string `json:"-"`
}

// Text returns the first choice's delta content, or "".
func (c ChatChunk) Text() string {
	if len(c.Choices) == 0 {
		return ""
	}
	return c.Choices[0].Delta.Content
}

// RawResponse is an invocation answer left undecoded.
type RawResponse struct {
	// Body is the JSON answer.
	Body json.RawMessage
	// ServedModel is the served-model-name response header.
	ServedModel string
}

func invocationsPath(endpoint string) string {
	return "/serving-endpoints/" + url.PathEscape(endpoint) + "/invocations"
}

// Invoke sends a chat request to a serving endpoint and returns the
// completion. The caller's token needs CAN_QUERY on the endpoint.
func (c *WorkspaceClient) Invoke(ctx context.Context, endpoint string, req ChatRequest) (*ChatResponse, error) {
	op := fmt.Sprintf("invoke serving endpoint %q", endpoint)
	req.Stream = false
	body, err := json.Marshal(req)
	if err != nil {
		return nil, opError(op, fmt.Errorf("encode request: %w", err))
	}
	raw, err := c.InvokeRaw(ctx, endpoint, body)
	if err != nil {
		return nil, err
	}
	var out ChatResponse
	if err := json.Unmarshal(raw.Body, &out); err != nil {
		return nil, opError(op, fmt.Errorf("decode response: %w", err))
	}
	out.ServedModel = raw.ServedModel
	return &out, nil
}

// InvokeRaw posts a JSON body (any model input: chat, completions,
// embeddings, dataframe_split, instances...) to a serving endpoint and
// returns the JSON answer undecoded.
func (c *WorkspaceClient) InvokeRaw(ctx context.Context, endpoint string, body []byte) (*RawResponse, error) {
	op := fmt.Sprintf("invoke serving endpoint %q", endpoint)
	if err := c.authenticated(); err != nil {
		return nil, opError(op, err)
	}
	resp, err := c.t.do(ctx, request{
		method:      http.MethodPost,
		path:        invocationsPath(endpoint),
		body:        body,
		contentType: "application/json",
	})
	if err != nil {
		return nil, opError(op, err)
	}
	defer drainAndClose(resp.Body)
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, opError(op, fmt.Errorf("read response: %w", err))
	}
	if !json.Valid(data) {
		return nil, opError(op, errors.New("response is not valid JSON"))
	}
	return &RawResponse{Body: data, ServedModel: resp.Header.Get("served-model-name")}, nil
}

// EndpointState is the readiness of a serving endpoint.
type EndpointState struct {
	// Ready is READY or NOT_READY.
	Ready string `json:"ready"`
	// ConfigUpdate is e.g. NOT_UPDATING, IN_PROGRESS, UPDATE_FAILED.
	ConfigUpdate string `json:"config_update,omitempty"`
}

// Endpoint readiness values.
const (
	EndpointReady    = "READY"
	EndpointNotReady = "NOT_READY"
)

// ServedEntity is a model served by an endpoint.
type ServedEntity struct {
	Name          string `json:"name"`                     // served entity name
	EntityName    string `json:"entity_name,omitempty"`    // registered model or foundation model
	EntityVersion string `json:"entity_version,omitempty"` // model version
}

// EndpointConfig is a serving endpoint's current configuration.
type EndpointConfig struct {
	ServedEntities []ServedEntity `json:"served_entities,omitempty"` // what the endpoint serves
}

// ServingEndpoint describes a serving endpoint.
type ServingEndpoint struct {
	Name                 string          `json:"name"`                             // endpoint name
	ID                   string          `json:"id,omitempty"`                     // endpoint id
	Creator              string          `json:"creator,omitempty"`                // user who created it
	CreationTimestamp    int64           `json:"creation_timestamp,omitempty"`     // Unix milliseconds
	LastUpdatedTimestamp int64           `json:"last_updated_timestamp,omitempty"` // Unix milliseconds
	State                EndpointState   `json:"state"`                            // readiness
	Config               *EndpointConfig `json:"config,omitempty"`                 // current configuration
	Task                 string          `json:"task,omitempty"`                   // e.g. llm/v1/chat
	PermissionLevel      string          `json:"permission_level,omitempty"`       // the caller's permission, e.g. CAN_QUERY
}

// IsReady reports whether the endpoint can serve requests.
func (e *ServingEndpoint) IsReady() bool { return e != nil && e.State.Ready == EndpointReady }

// ServingEndpoint reads a serving endpoint's description and state.
func (c *WorkspaceClient) ServingEndpoint(ctx context.Context, name string) (*ServingEndpoint, error) {
	op := fmt.Sprintf("get serving endpoint %q", name)
	if err := c.authenticated(); err != nil {
		return nil, opError(op, err)
	}
	var out ServingEndpoint
	if err := callJSON(ctx, c.t, http.MethodGet, "/api/2.0/serving-endpoints/"+url.PathEscape(name), nil, nil, &out); err != nil {
		return nil, opError(op, err)
	}
	return &out, nil
}

// PersonName is a SCIM user's structured name.
type PersonName struct {
	GivenName  string `json:"givenName,omitempty"`  // first name
	FamilyName string `json:"familyName,omitempty"` // last name
}

// Email is one SCIM email address.
type Email struct {
	Value   string `json:"value"`             // the address
	Type    string `json:"type,omitempty"`    // e.g. work
	Primary bool   `json:"primary,omitempty"` // whether it is the primary address
}

// User is the SCIM representation of the calling principal.
type User struct {
	ID          string     `json:"id"`                    // SCIM id
	UserName    string     `json:"userName"`              // login name, an email for users, the application id for service principals
	DisplayName string     `json:"displayName,omitempty"` // human-readable name
	Name        PersonName `json:"name,omitzero"`         // structured name
	Emails      []Email    `json:"emails,omitempty"`      // email addresses
	Active      bool       `json:"active"`                // whether the principal is active
}

// PrimaryEmail returns the primary email, else the first one, else the user name.
func (u *User) PrimaryEmail() string {
	for _, e := range u.Emails {
		if e.Primary {
			return e.Value
		}
	}
	if len(u.Emails) > 0 {
		return u.Emails[0].Value
	}
	return u.UserName
}

// Me returns the principal the token belongs to (GET /api/2.0/preview/scim/v2/Me),
// the reliable source of a user's identity.
func (c *WorkspaceClient) Me(ctx context.Context) (*User, error) {
	if err := c.authenticated(); err != nil {
		return nil, opError("get current user", err)
	}
	var out User
	if err := callJSON(ctx, c.t, http.MethodGet, "/api/2.0/preview/scim/v2/Me", nil, nil, &out); err != nil {
		return nil, opError("get current user", err)
	}
	return &out, nil
}
