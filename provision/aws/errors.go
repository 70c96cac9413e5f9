package aws

import (
	"errors"
	"fmt"
	"strings"

	"github.com/aws/smithy-go"
)

// retryable reports whether err is one AWS returns while it is eventually consistent or throttling.
func retryable(err error) bool {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return false
	}
	code, msg := api.ErrorCode(), strings.ToLower(api.ErrorMessage())
	switch {
	case code == "RequestLimitExceeded", code == "Throttling", code == "ThrottlingException",
		code == "SlowDown", code == "DependencyViolation", code == "ResourceInUse",
		code == "IncorrectInstanceState":
		return true
	case strings.HasPrefix(code, "Invalid") && strings.HasSuffix(code, ".NotFound"):
		// A resource created a moment ago is not visible to every endpoint yet.
		return true
	case (strings.Contains(msg, "instance profile") || strings.Contains(msg, "iaminstanceprofile")) &&
		(strings.Contains(msg, "invalid") || strings.Contains(msg, "not exist")):
		// IAM instance profiles take a while to reach EC2 and Auto Scaling.
		return true
	}
	return false
}

// explain adds to an AWS error what it most likely means for the user.
func explain(err error) error {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return err
	}
	code := api.ErrorCode()
	var hint string
	switch {
	case code == "UnrecognizedClientException", code == "InvalidClientTokenId", code == "AuthFailure",
		code == "ExpiredToken", code == "ExpiredTokenException", code == "SignatureDoesNotMatch":
		hint = "the AWS credentials are missing, wrong or expired"
	case code == "UnauthorizedOperation", code == "AccessDenied", code == "AccessDeniedException":
		hint = "the AWS identity lacks a permission kubedirect needs (see the README's IAM section)"
	case code == "RequestLimitExceeded", code == "Throttling", code == "ThrottlingException":
		hint = "AWS throttled the requests even after retries; try again in a few minutes"
	case strings.Contains(code, "LimitExceeded") || strings.Contains(code, "QuotaExceeded") || code == "VcpuLimitExceeded":
		hint = "an AWS service quota is reached; raise it in Service Quotas or free some resources"
	case code == "InvalidParameterValue" && strings.Contains(strings.ToLower(api.ErrorMessage()), "zone"):
		hint = "an availability zone of the spec is not offered to this account"
	case code == "DependencyViolation":
		hint = "another resource still uses it"
	default:
		return err
	}
	return fmt.Errorf("%w (%s)", err, hint)
}

// unique refuses to pick one of several resources that carry the same cluster and Name tags: someone
// made them by hand or copied the tags, and guessing could change the wrong one.
func unique(kind, name string, n int) error {
	if n > 1 {
		return fmt.Errorf("find %s %s: %d carry the cluster's tags and this name; remove the extra ones", kind, name, n)
	}
	return nil
}
