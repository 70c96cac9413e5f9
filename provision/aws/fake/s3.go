package fake

import (
	"bytes"
	"context"
	"io"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

type bucket struct {
	region  string
	objects map[string][]byte
}

// AddBucket creates a bucket in region.
func (c *Cloud) AddBucket(name, region string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buckets[name] = &bucket{region: region, objects: map[string][]byte{}}
}

// PutObject stores an object directly, as a node would (the control plane's kubeconfig).
func (c *Cloud) PutObject(bucketName, key string, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buckets[bucketName].objects[key] = data
}

// DeleteObject removes an object directly.
func (c *Cloud) DeleteObject(bucketName, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.buckets[bucketName].objects, key)
}

// Object returns an object, nil when absent.
func (c *Cloud) Object(bucketName, key string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b := c.buckets[bucketName]; b != nil {
		return b.objects[key]
	}
	return nil
}

// S3 is the fake's S3 API.
type S3 struct{ c *Cloud }

// S3 returns the account's S3 API.
func (c *Cloud) S3() *S3 { return &S3{c} }

func (f *S3) bucket(name string) (*bucket, error) {
	b := f.c.buckets[name]
	if b == nil {
		return nil, apiError("NoSuchBucket", "The specified bucket does not exist")
	}
	return b, nil
}

// GetBucketLocation reports the region, "" for us-east-1 as S3 does.
func (f *S3) GetBucketLocation(_ context.Context, in *s3.GetBucketLocationInput, _ ...func(*s3.Options)) (*s3.GetBucketLocationOutput, error) {
	err := f.c.begin("GetBucketLocation")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	b, err := f.bucket(aws.ToString(in.Bucket))
	if err != nil {
		return nil, err
	}
	loc := b.region
	if loc == "us-east-1" {
		loc = ""
	}
	return &s3.GetBucketLocationOutput{LocationConstraint: s3types.BucketLocationConstraint(loc)}, nil
}

// GetObject returns an object or NoSuchKey.
func (f *S3) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	err := f.c.begin("GetObject")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	b, err := f.bucket(aws.ToString(in.Bucket))
	if err != nil {
		return nil, err
	}
	data, ok := b.objects[aws.ToString(in.Key)]
	if !ok {
		return nil, apiError("NoSuchKey", "The specified key does not exist.")
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(data)), ContentLength: aws.Int64(int64(len(data)))}, nil
}

// PutObject stores an object.
func (f *S3) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	err := f.c.begin("PutObject")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	b, err := f.bucket(aws.ToString(in.Bucket))
	if err != nil {
		return nil, err
	}
	if aws.ToString(in.IfNoneMatch) == "*" {
		if _, exists := b.objects[aws.ToString(in.Key)]; exists {
			return nil, apiError("PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
		}
	}
	data, rerr := io.ReadAll(in.Body)
	if rerr != nil {
		return nil, rerr
	}
	b.objects[aws.ToString(in.Key)] = data
	return &s3.PutObjectOutput{}, nil
}

// ListObjectsV2 lists keys under a prefix, two per page to exercise paging.
func (f *S3) ListObjectsV2(_ context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	err := f.c.begin("ListObjectsV2")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	b, err := f.bucket(aws.ToString(in.Bucket))
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range b.objects {
		if strings.HasPrefix(k, aws.ToString(in.Prefix)) && k > aws.ToString(in.ContinuationToken) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := &s3.ListObjectsV2Output{IsTruncated: aws.Bool(false)}
	if len(keys) > 2 {
		keys = keys[:2]
		out.IsTruncated, out.NextContinuationToken = aws.Bool(true), aws.String(keys[1])
	}
	for _, k := range keys {
		out.Contents = append(out.Contents, s3types.Object{Key: aws.String(k), Size: aws.Int64(int64(len(b.objects[k])))})
	}
	return out, nil
}

// DeleteObject removes an object.
func (f *S3) DeleteObject(_ context.Context, in *s3.DeleteObjectInput, _ ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	err := f.c.begin("DeleteObject")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	b, err := f.bucket(aws.ToString(in.Bucket))
	if err != nil {
		return nil, err
	}
	delete(b.objects, aws.ToString(in.Key))
	return &s3.DeleteObjectOutput{}, nil
}

// STS is the fake's STS API.
type STS struct{ c *Cloud }

// STS returns the account's STS API.
func (c *Cloud) STS() *STS { return &STS{c} }

// GetCallerIdentity names a fixed test identity.
func (f *STS) GetCallerIdentity(_ context.Context, _ *sts.GetCallerIdentityInput, _ ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error) {
	err := f.c.begin("GetCallerIdentity")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	return &sts.GetCallerIdentityOutput{Account: aws.String("123456789012"), Arn: aws.String("arn:aws:iam::123456789012:user/test")}, nil
}
