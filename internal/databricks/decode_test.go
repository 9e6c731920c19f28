package databricks

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestDecodeErrorUnderstandsEveryDatabricksErrorShape(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		body        string
		wantCode    string
		wantMessage string
		wantIs      error
	}{
		{"rest shape", 404, `{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"Endpoint with name 'x' does not exist."}`, "RESOURCE_DOES_NOT_EXIST", "Endpoint with name 'x' does not exist.", ErrNotFound},
		{"numeric error code", 401, `{"error_code":401,"message":"Credential was not sent or was of an unsupported type for this API."}`, "401", "Credential was not sent or was of an unsupported type for this API.", ErrUnauthenticated},
		{"oauth shape", 400, `{"error":"invalid_grant","error_description":"PKCE verification failed"}`, "invalid_grant", "PKCE verification failed", ErrBadRequest},
		{"oauth code without description", 401, `{"error":"invalid_client"}`, "invalid_client", "Unauthorized", ErrUnauthenticated},
		{"api 1.2 shape", 500, `{"error":"something broke"}`, "INTERNAL_SERVER_ERROR", "something broke", ErrInternal},
		{"scim shape", 403, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"detail":"User not allowed","status":"403"}`, "SCIM_403", "User not allowed", ErrPermissionDenied},
		{"openai nested", 429, `{"error":{"message":"slow down","code":"rate_limit_exceeded"}}`, "rate_limit_exceeded", "slow down", ErrTooManyRequests},
		{"html", 502, `<html><body>Bad gateway</body></html>`, "BAD_GATEWAY", "Bad Gateway", nil},
		{"empty", 503, ``, "SERVICE_UNAVAILABLE", "Service Unavailable", ErrUnavailable},
		{"code sentinel wins without status mapping", 400, `{"error_code":"REQUEST_LIMIT_EXCEEDED","message":"quota"}`, "REQUEST_LIMIT_EXCEEDED", "quota", ErrTooManyRequests},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(tt.body))}
			got := decodeError(resp, time.Now)
			if got.StatusCode != tt.status || got.ErrorCode != tt.wantCode || got.Message != tt.wantMessage {
				t.Fatalf("decodeError = {%d %q %q}, want {%d %q %q}", got.StatusCode, got.ErrorCode, got.Message, tt.status, tt.wantCode, tt.wantMessage)
			}
			if tt.wantIs != nil && !errors.Is(got, tt.wantIs) {
				t.Fatalf("errors.Is(%v, %v) = false", got, tt.wantIs)
			}
		})
	}
}

func TestParseRetryAfterAcceptsSecondsAndDates(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{" 0 ", 0},
		{"-3", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.value, clock); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.value, got, tt.want)
		}
	}
}

func TestRetryDelayNeverUndercutsRetryAfterAndGrows(t *testing.T) {
	p := RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	tests := []struct {
		retry      int
		retryAfter time.Duration
		min, max   time.Duration
	}{
		{1, 0, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 0, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 0, 200 * time.Millisecond, 400 * time.Millisecond},
		{10, 0, 500 * time.Millisecond, time.Second},
		{1, 3 * time.Second, 3 * time.Second, 3 * time.Second},
	}
	for _, tt := range tests {
		for range 20 {
			if d := p.delay(tt.retry, tt.retryAfter); d < tt.min || d > tt.max {
				t.Fatalf("delay(%d, %v) = %v, want within [%v, %v]", tt.retry, tt.retryAfter, d, tt.min, tt.max)
			}
		}
	}
}

func TestReadEventsParsesServerSentEvents(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   []string
	}{
		{"simple", "data: a\n\ndata: b\n\n", []string{"a", "b"}},
		{"no space and crlf", "data:a\r\n\r\ndata:b\r\n\r\n", []string{"a", "b"}},
		{"multi-line data", "data: one\ndata: two\n\n", []string{"one\ntwo"}},
		{"comments and other fields", ": keepalive\nevent: message\nid: 7\ndata: x\n\n", []string{"x"}},
		{"last event without blank line", "data: a\n\ndata: tail", []string{"a", "tail"}},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := readEvents(strings.NewReader(tt.stream), func(d []byte) error {
				got = append(got, string(d))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Fatalf("events = %q, want %q", got, tt.want)
			}
		})
	}
}
