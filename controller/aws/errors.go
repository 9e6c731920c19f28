package aws

import (
	"errors"
	"fmt"
	"strings"

	"github.com/aws/smithy-go"

	"github.com/servingapp/servingapp/controller/model"
)

// ErrNotFound is returned by SetDesiredCount and SetBlocked when the app has
// no service or listener rules of this controller (yet).
var ErrNotFound = errors.New("not found")

// errorCode returns the AWS error code of err, "" when it is not an API error.
func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// errorMessage returns the AWS error message of err in lower case, "" when
// it is not an API error: ECS tells some passing states from bad requests
// by the message alone.
func errorMessage(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return strings.ToLower(apiErr.ErrorMessage())
	}
	return ""
}

// isCode reports whether err is an AWS API error with one of codes.
func isCode(err error, codes ...string) bool {
	c := errorCode(err)
	for _, want := range codes {
		if c == want {
			return true
		}
	}
	return false
}

// Terminal reasons for errors retrying will not fix.
const (
	reasonAccessDenied     = "AccessDenied"
	reasonInvalidParameter = "InvalidParameter"
	reasonQuotaExceeded    = "QuotaExceeded"
	reasonConfiguration    = "InvalidConfiguration"
	reasonNameConflict     = "NameConflict"
)

// classify wraps err with what was being done and marks AWS errors that
// retrying will not fix as model.TerminalError, so the controller reports
// them and backs off instead of hot-looping.
func classify(what string, err error) error {
	if err == nil {
		return nil
	}
	wrapped := fmt.Errorf("%s: %w", what, err)
	code := errorCode(err)
	switch code {
	case "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
		"InvalidClientTokenId", "AuthFailure", "ExpiredTokenException", "NotAuthorized":
		return model.Terminal(reasonAccessDenied, wrapped)
	case "TooManyRules", "TooManyTargetGroups", "TooManyUniqueTargetGroupsPerLoadBalancer", "TooManyTags",
		"TooManyActions", "TooManyTargets", "LimitExceededException", "TooManyLoadBalancers":
		return model.Terminal(reasonQuotaExceeded, wrapped)
	case "ClusterNotFoundException", "ListenerNotFound", "LoadBalancerNotFound":
		return model.Terminal(reasonConfiguration, fmt.Errorf("%w: check the aws section of the controller config", wrapped))
	case "ClientException":
		if transientClientException(errorMessage(err)) {
			return wrapped
		}
		return model.Terminal(reasonInvalidParameter, wrapped)
	case "InvalidParameterException", "ValidationError", "ValidationException",
		"InvalidParameterValue", "InvalidConfigurationRequest", "UnsupportedProtocol", "MalformedPolicyDocumentException":
		if transientInvalidParameter(errorMessage(err)) {
			return wrapped
		}
		return model.Terminal(reasonInvalidParameter, wrapped)
	}
	return wrapped
}

// transientClientException recognises, by their message msg (lower case),
// the ECS ClientException answers that describe contention rather than a
// bad request. ECS uses ClientException for both, so the message is the only
// signal. Known so far:
//
//   - RegisterTaskDefinition: "Too many concurrent attempts to create a new
//     revision of the specified family." (another writer registered a
//     revision of the same family at the same moment; the next try succeeds)
//
// Anything else stays terminal: a ClientException that is really a bad
// request would otherwise be retried forever.
func transientClientException(msg string) bool {
	return strings.Contains(msg, "too many concurrent attempts")
}

// transientInvalidParameter recognises, by their message msg (lower case),
// the ECS InvalidParameterException answers that describe a passing state
// rather than a bad request: a service of the same name still draining, and
// a target group whose listener rule ELBv2 has not propagated yet. ECS gives
// them no code of their own, so the message is the only signal.
func transientInvalidParameter(msg string) bool {
	return strings.Contains(msg, "draining") || strings.Contains(msg, "does not have an associated load balancer") ||
		strings.Contains(msg, "not idempotent")
}
