package aws

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestRealSDKErrorsAreUnderstood runs the real SDK clients against a loopback server that answers as
// AWS does on errors, to check that the provider recognises the codes through the SDK's wrapping.
func TestRealSDKErrorsAreUnderstood(t *testing.T) {
	var status int
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	creds := credentials.NewStaticCredentialsProvider("AKIDTEST", "SECRETTEST", "")
	ec2c := ec2.New(ec2.Options{Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL), Credentials: creds, RetryMaxAttempts: 1})
	s3c := s3.New(s3.Options{Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL), Credentials: creds, UsePathStyle: true, RetryMaxAttempts: 1})
	ctx := context.Background()

	ec2Error := func(code string) string {
		return `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>` + code + `</Code><Message>test</Message></Error></Errors><RequestID>r</RequestID></Response>`
	}
	status, body = http.StatusForbidden, ec2Error("UnauthorizedOperation")
	_, err := ec2c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if !isCode(err, "UnauthorizedOperation") || retryable(err) || !strings.Contains(explain(err).Error(), "permission") {
		t.Errorf("UnauthorizedOperation: code %v, retryable %v, %v", isCode(err, "UnauthorizedOperation"), retryable(err), explain(err))
	}
	status, body = http.StatusServiceUnavailable, ec2Error("RequestLimitExceeded")
	_, err = ec2c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if !retryable(err) {
		t.Errorf("RequestLimitExceeded is not retried: %v", err)
	}
	status, body = http.StatusBadRequest, ec2Error("InvalidGroup.NotFound")
	_, err = ec2c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{"sg-1"}})
	if !retryable(err) {
		t.Errorf("InvalidGroup.NotFound right after create is not retried: %v", err)
	}

	status, body = http.StatusNotFound, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>`
	_, err = store{s3c, NewNames("prod", "bucket", "p")}.get(ctx, FileState)
	if !errors.Is(err, errNoObject) {
		t.Errorf("missing object: %v", err)
	}
	status, body = http.StatusPreconditionFailed, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>`
	_, err = store{s3c, NewNames("prod", "bucket", "p")}.lock(ctx, testTime)
	if !errors.Is(err, ErrLocked) {
		t.Errorf("held lock: %v", err)
	}
}
