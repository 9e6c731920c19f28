package databricks

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

// Sentinel errors that *APIError matches with errors.Is, by HTTP status or by
// Databricks error code. They let callers branch on the kind of failure
// without string matching.
var (
	// ErrBadRequest matches 400 answers and INVALID_PARAMETER_VALUE, BAD_REQUEST.
	ErrBadRequest = errors.New("databricks: bad request")
	// ErrUnauthenticated matches 401 answers and UNAUTHENTICATED: the token is
	// missing, invalid or expired, or client authentication failed.
	ErrUnauthenticated = errors.New("databricks: unauthenticated")
	// ErrPermissionDenied matches 403 answers and PERMISSION_DENIED.
	ErrPermissionDenied = errors.New("databricks: permission denied")
	// ErrNotFound matches 404 answers and RESOURCE_DOES_NOT_EXIST, NOT_FOUND.
	ErrNotFound = errors.New("databricks: not found")
	// ErrConflict matches 409 answers and RESOURCE_ALREADY_EXISTS,
	// ALREADY_EXISTS, ABORTED, RESOURCE_CONFLICT.
	ErrConflict = errors.New("databricks: conflict")
	// ErrTooManyRequests matches 429 answers and REQUEST_LIMIT_EXCEEDED,
	// RESOURCE_EXHAUSTED.
	ErrTooManyRequests = errors.New("databricks: too many requests")
	// ErrInternal matches 500 answers and INTERNAL_ERROR.
	ErrInternal = errors.New("databricks: internal error")
	// ErrUnavailable matches 503 answers and TEMPORARILY_UNAVAILABLE.
	ErrUnavailable = errors.New("databricks: temporarily unavailable")
	// ErrDeadlineExceeded matches 504 answers and DEADLINE_EXCEEDED.
	ErrDeadlineExceeded = errors.New("databricks: deadline exceeded")
)

// APIError is a failed Databricks API call as the server described it. It
// carries the HTTP status, the error code (a Databricks code such as
// RESOURCE_DOES_NOT_EXIST, or an OAuth code such as invalid_grant from token
// endpoints) and the server's message. It never holds request bodies or tokens.
//
// Use errors.As to read it and errors.Is with the Err* sentinels (or the Is*
// helpers) to classify it.
type APIError struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// ErrorCode is the server's error code; when the answer had none it is
	// derived from the HTTP status text (for example NOT_FOUND).
	ErrorCode string
	// Message is the server's human-readable message, possibly empty.
	Message string
	// RetryAfter is the wait the server asked for in Retry-After, zero when
	// the header was absent or unparsable.
	RetryAfter time.Duration
}

// Error formats the status, code and message.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("databricks: HTTP ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if e.ErrorCode != "" {
		b.WriteString(" ")
		b.WriteString(e.ErrorCode)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Is reports whether target is the sentinel for e's status or error code.
func (e *APIError) Is(target error) bool {
	if s, ok := statusSentinel(e.StatusCode); ok && s == target {
		return true
	}
	if s, ok := codeSentinel(e.ErrorCode); ok && s == target {
		return true
	}
	return false
}

func statusSentinel(status int) (error, bool) {
	switch status {
	case http.StatusBadRequest:
		return ErrBadRequest, true
	case http.StatusUnauthorized:
		return ErrUnauthenticated, true
	case http.StatusForbidden:
		return ErrPermissionDenied, true
	case http.StatusNotFound:
		return ErrNotFound, true
	case http.StatusConflict:
		return ErrConflict, true
	case http.StatusTooManyRequests:
		return ErrTooManyRequests, true
	case http.StatusInternalServerError:
		return ErrInternal, true
	case http.StatusServiceUnavailable:
		return ErrUnavailable, true
	case http.StatusGatewayTimeout:
		return ErrDeadlineExceeded, true
	}
	return nil, false
}

func codeSentinel(code string) (error, bool) {
	switch code {
	case "INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST":
		return ErrBadRequest, true
	case "UNAUTHENTICATED":
		return ErrUnauthenticated, true
	case "PERMISSION_DENIED":
		return ErrPermissionDenied, true
	case "RESOURCE_DOES_NOT_EXIST", "NOT_FOUND":
		return ErrNotFound, true
	case "RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS", "ABORTED", "RESOURCE_CONFLICT":
		return ErrConflict, true
	case "REQUEST_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED", "TOO_MANY_REQUESTS":
		return ErrTooManyRequests, true
	case "INTERNAL_ERROR":
		return ErrInternal, true
	case "TEMPORARILY_UNAVAILABLE":
		return ErrUnavailable, true
	case "DEADLINE_EXCEEDED":
		return ErrDeadlineExceeded, true
	}
	return nil, false
}

// IsNotFound reports whether err is a Databricks "does not exist" answer.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsPermissionDenied reports whether err says the caller lacks permission.
func IsPermissionDenied(err error) bool { return errors.Is(err, ErrPermissionDenied) }

// IsUnauthenticated reports whether err says the credentials were missing,
// invalid or expired.
func IsUnauthenticated(err error) bool { return errors.Is(err, ErrUnauthenticated) }

// IsTooManyRequests reports whether err is a rate-limit answer.
func IsTooManyRequests(err error) bool { return errors.Is(err, ErrTooManyRequests) }

// IsUnavailable reports whether err says the service is temporarily unavailable.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// IsBadRequest reports whether err says the request was invalid.
func IsBadRequest(err error) bool { return errors.Is(err, ErrBadRequest) }

// IsConflict reports whether err says the request conflicted with existing state.
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// errorBody is the union of the error shapes Databricks answers with: the
// REST shape {error_code, message} (error_code is sometimes a number), the
// OAuth shape {error, error_description}, the SCIM shape {detail, status,
// scimType} and the OpenAI-compatible {error: {message, code}}.
type errorBody struct {
	ErrorCode        json.RawMessage `json:"error_code"`
	Message          string          `json:"message"`
	Error            json.RawMessage `json:"error"`
	ErrorDescription string          `json:"error_description"`
	Detail           string          `json:"detail"`
	Status           json.RawMessage `json:"status"`
	ScimType         string          `json:"scimType"`
}

// decodeError turns a non-2xx answer into an *APIError. It reads (a bounded
// part of) the body but does not close it. now resolves HTTP-date Retry-After
// values.
func decodeError(resp *http.Response, now func() time.Time) *APIError {
	apiErr := &APIError{
		StatusCode: resp.StatusCode,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), now),
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body errorBody
	if len(raw) > 0 && json.Unmarshal(raw, &body) == nil {
		apiErr.ErrorCode = rawString(body.ErrorCode)
		apiErr.Message = body.Message
		if len(body.Error) > 0 {
			var s string
			if json.Unmarshal(body.Error, &s) == nil {
				// A string "error" is an OAuth 2.0 code (RFC 6749 section
				// 5.2) or, in the old API 1.2 shape, a message.
				oauth := body.ErrorDescription != "" || isOAuthCode(s)
				switch {
				case oauth && apiErr.ErrorCode == "":
					apiErr.ErrorCode = s
					if apiErr.Message == "" {
						apiErr.Message = body.ErrorDescription
					}
				case !oauth && apiErr.Message == "":
					apiErr.Message = s
				}
			} else {
				var nested struct {
					Message string          `json:"message"`
					Code    json.RawMessage `json:"code"`
					Type    string          `json:"type"`
				}
				if json.Unmarshal(body.Error, &nested) == nil {
					if apiErr.Message == "" {
						apiErr.Message = nested.Message
					}
					if apiErr.ErrorCode == "" {
						apiErr.ErrorCode = rawString(nested.Code)
					}
					if apiErr.ErrorCode == "" {
						apiErr.ErrorCode = nested.Type
					}
				}
			}
		}
		if apiErr.Message == "" && body.Detail != "" {
			apiErr.Message = strings.TrimSpace(body.ScimType + " " + body.Detail)
			if apiErr.ErrorCode == "" {
				apiErr.ErrorCode = "SCIM_" + rawString(body.Status)
			}
		}
	}
	if apiErr.ErrorCode == "" {
		apiErr.ErrorCode = statusCode(resp.StatusCode)
	}
	if apiErr.Message == "" {
		apiErr.Message = http.StatusText(resp.StatusCode)
	}
	return apiErr
}

// isOAuthCode reports whether s is one of the RFC 6749 error codes.
func isOAuthCode(s string) bool {
	switch s {
	case "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
		"unsupported_grant_type", "invalid_scope", "access_denied",
		"unsupported_response_type", "server_error", "temporarily_unavailable":
		return true
	}
	return false
}

// rawString renders a JSON string or number as a string; anything else is "".
func rawString(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// statusCode derives an error code from the HTTP status text, e.g. 404 → NOT_FOUND.
func statusCode(status int) string {
	text := http.StatusText(status)
	if text == "" {
		return "UNKNOWN"
	}
	return strings.ReplaceAll(strings.ToUpper(text), " ", "_")
}

// parseRetryAfter reads a Retry-After value in delay-seconds or HTTP-date form.
func parseRetryAfter(v string, now func() time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil {
		if d := at.Sub(now()); d > 0 {
			return d
		}
	}
	return 0
}

// opError wraps err with the operation that failed, for messages such as
// "get custom app integration 1234: databricks: HTTP 404 ...".
func opError(op string, err error) error {
	return fmt.Errorf("%s: %w", op, err)
}
