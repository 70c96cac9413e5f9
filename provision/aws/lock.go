package aws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// FileLock is the state-store object a create or delete holds while it runs.
const FileLock = "lock"

// ErrLocked is returned when another run holds the cluster's lock.
var ErrLocked = errors.New("another kubedirect run holds the cluster's lock")

// lockInfo is the content of the lock object.
type lockInfo struct {
	Holder string    `json:"holder"`
	Since  time.Time `json:"since"`
}

// lock takes the cluster's lock with a conditional write (If-None-Match: *), so two runs never change
// one cluster at once. The returned function releases it.
func (s store) lock(ctx context.Context, now time.Time) (func(), error) {
	host, _ := os.Hostname()
	info, _ := json.Marshal(lockInfo{Holder: fmt.Sprintf("%s pid %d", host, os.Getpid()), Since: now.UTC()})
	key := s.names.StateKey(FileLock)
	_, err := s.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.names.Bucket()), Key: aws.String(key), Body: bytes.NewReader(info), IfNoneMatch: aws.String("*")})
	if isCode(err, "PreconditionFailed", "ConditionalRequestConflict") {
		held := "unknown"
		if b, gerr := s.get(ctx, FileLock); gerr == nil {
			var li lockInfo
			if json.Unmarshal(b, &li) == nil {
				held = fmt.Sprintf("%s since %s", li.Holder, li.Since.Format(time.RFC3339))
			}
		}
		return nil, fmt.Errorf("lock cluster %q: %w (%s); if that run is gone, delete %s%s", s.names.Cluster, ErrLocked, held, s.names.StateStore(), FileLock)
	}
	if err != nil {
		return nil, fmt.Errorf("lock cluster %q: %w", s.names.Cluster, explain(err))
	}
	return func() {
		// Release even when the run's context was cancelled.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = s.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.names.Bucket()), Key: aws.String(key)})
	}, nil
}
