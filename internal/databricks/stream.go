package databricks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
)

// errStop ends a StreamFunc early without an error.
var errStop = errors.New("stop")

// ErrIncompleteStream is returned when a stream ends without "data: [DONE]"
// and before any choice had a finish_reason: the answer was cut off.
var ErrIncompleteStream = errors.New("the stream ended before the answer was complete")

// Stream sends a chat request with "stream": true and yields the chunks as
// the server sends them (OpenAI-style server-sent events ending with
// "data: [DONE]"). [DONE] comes from OpenAI compatibility and no Databricks
// source promises it, so a stream that ends without it still ends cleanly
// once a choice has had its finish_reason; one that ends before that yields
// ErrIncompleteStream.
// Stopping the iteration closes the connection. An error is yielded at most
// once, as the last element. Retries happen only before the stream starts.
func (c *WorkspaceClient) Stream(ctx context.Context, endpoint string, req ChatRequest) iter.Seq2[ChatChunk, error] {
	return func(yield func(ChatChunk, error) bool) {
		err := c.stream(ctx, endpoint, req, func(chunk ChatChunk) error {
			if !yield(chunk, nil) {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			yield(ChatChunk{}, err)
		}
	}
}

// StreamFunc is Stream with a callback: fn is called for every chunk and an
// error from fn stops the stream and is returned (wrapped).
func (c *WorkspaceClient) StreamFunc(ctx context.Context, endpoint string, req ChatRequest, fn func(ChatChunk) error) error {
	return c.stream(ctx, endpoint, req, fn)
}

func (c *WorkspaceClient) stream(ctx context.Context, endpoint string, req ChatRequest, fn func(ChatChunk) error) error {
	op := fmt.Sprintf("stream from serving endpoint %q", endpoint)
	if err := c.authenticated(); err != nil {
		return opError(op, err)
	}
	req.Stream = true
	body, err := json.Marshal(req)
	if err != nil {
		return opError(op, fmt.Errorf("encode request: %w", err))
	}
	resp, err := c.t.do(ctx, request{
		method:      http.MethodPost,
		path:        invocationsPath(endpoint),
		body:        body,
		contentType: "application/json",
		accept:      "text/event-stream",
	})
	if err != nil {
		return opError(op, err)
	}
	defer func() { _ = resp.Body.Close() }()
	served := resp.Header.Get("served-model-name")
	finished := false
	err = readEvents(resp.Body, func(data []byte) error {
		if bytes.Equal(data, []byte("[DONE]")) {
			return io.EOF
		}
		if apiErr := streamError(data, resp.StatusCode); apiErr != nil {
			return apiErr
		}
		var chunk ChatChunk
		if err := json.Unmarshal(data, &chunk); err != nil {
			return fmt.Errorf("decode chunk: %w", err)
		}
		chunk.ServedModel = served
		for _, ch := range chunk.Choices {
			finished = finished || ch.FinishReason != ""
		}
		return fn(chunk)
	})
	if errors.Is(err, io.EOF) || err == nil && finished {
		return nil
	}
	if err == nil {
		return opError(op, ErrIncompleteStream)
	}
	if errors.Is(err, errStop) {
		return err
	}
	return opError(op, err)
}

// streamError recognises an error sent as an event instead of a chunk.
func streamError(data []byte, status int) *APIError {
	var probe struct {
		ErrorCode json.RawMessage `json:"error_code"`
		Message   string          `json:"message"`
		Error     *struct {
			Message string          `json:"message"`
			Code    json.RawMessage `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &probe) != nil {
		return nil
	}
	if code := rawString(probe.ErrorCode); code != "" {
		return &APIError{StatusCode: status, ErrorCode: code, Message: probe.Message}
	}
	if probe.Error != nil {
		return &APIError{StatusCode: status, ErrorCode: rawString(probe.Error.Code), Message: probe.Error.Message}
	}
	return nil
}

// maxEventSize bounds one server-sent event line.
const maxEventSize = 4 << 20

// readEvents parses a text/event-stream body and calls fn with the data of
// each event (multi-line data joined with "\n"). Comments and other fields
// are ignored. It returns fn's first error, a read error, or nil at EOF.
func readEvents(r io.Reader, fn func(data []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventSize)
	var data []byte
	have := false
	dispatch := func() error {
		if !have {
			return nil
		}
		d := data
		data, have = nil, false
		return fn(d)
	}
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			if err := dispatch(); err != nil {
				return err
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		if string(field) != "data" {
			continue
		}
		if have {
			data = append(data, '\n')
		}
		data = append(data, value...)
		have = true
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read event stream: %w", err)
	}
	return dispatch()
}
