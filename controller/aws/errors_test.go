package aws

import (
	"errors"
	"fmt"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"

	"github.com/servingapp/servingapp/controller/model"
)

// TestClassifyRetriesOnlyTransientClientExceptions: ECS answers both bad
// requests and contention with ClientException; only the messages known to
// mean contention are retried, everything else stays terminal so a bad
// request is reported instead of retried forever.
func TestClassifyRetriesOnlyTransientClientExceptions(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		reason string // "" means retryable (not terminal)
	}{
		{"concurrent revision registration (typed)",
			&ecstypes.ClientException{Message: awssdk.String("Too many concurrent attempts to create a new revision of the specified family.")}, ""},
		{"concurrent revision registration (generic, other case)",
			&smithy.GenericAPIError{Code: "ClientException", Message: "too many concurrent attempts to create a new revision of the specified family"}, ""},
		{"concurrent revision registration, wrapped",
			fmt.Errorf("register: %w", &ecstypes.ClientException{Message: awssdk.String("Too many concurrent attempts to create a new revision of the specified family.")}), ""},
		{"inactive task definition",
			&ecstypes.ClientException{Message: awssdk.String("TaskDefinition is inactive")}, reasonInvalidParameter},
		{"unknown task definition",
			&ecstypes.ClientException{Message: awssdk.String("Unable to describe task definition.")}, reasonInvalidParameter},
		{"ClientException without a message",
			&ecstypes.ClientException{}, reasonInvalidParameter},
		{"invalid parameter, service draining",
			&ecstypes.InvalidParameterException{Message: awssdk.String("Unable to Start a service that is still Draining.")}, ""},
		{"invalid parameter",
			&ecstypes.InvalidParameterException{Message: awssdk.String("Invalid revision number.")}, reasonInvalidParameter},
		{"throttling", &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}, ""},
		{"access denied", &ecstypes.AccessDeniedException{Message: awssdk.String("not allowed")}, reasonAccessDenied},
		{"not an API error", errors.New("connection reset"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := classify("register task definition for team/web", tc.err)
			var term *model.TerminalError
			isTerm := errors.As(err, &term)
			switch {
			case tc.reason == "" && isTerm:
				t.Errorf("classify(%v) is terminal (%s), want retryable", tc.err, term.Reason)
			case tc.reason != "" && !isTerm:
				t.Errorf("classify(%v) is retryable, want terminal %s", tc.err, tc.reason)
			case tc.reason != "" && term.Reason != tc.reason:
				t.Errorf("classify(%v) reason %s, want %s", tc.err, term.Reason, tc.reason)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("classify lost the cause: %v", err)
			}
		})
	}
}
