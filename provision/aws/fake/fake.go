// Package fake is a stateful, in-memory imitation of the AWS APIs the aws provider uses (EC2, IAM,
// Auto Scaling, Elastic Load Balancing v2, S3, STS), in the spirit of kOps' cloudmock. It keeps IDs,
// tags and the links between resources, refuses what AWS refuses (deleting a VPC that still has
// subnets, a security group another one refers to, a role still in an instance profile, ...), and can
// fail any call on demand to test resuming. Nothing in it touches the network.
package fake

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/aws/smithy-go"
)

// Cloud is one fake AWS account in one region. Its zero value is not usable; use New.
type Cloud struct {
	mu      sync.Mutex
	region  string
	zones   []string
	seq     int
	fail    map[string][]error
	calls   map[string]int
	ec2     *ec2State
	iam     *iamState
	asgs    map[string]*asg
	elb     *elbState
	buckets map[string]*bucket
}

// New returns an empty account in region with zones a, b and c.
func New(region string) *Cloud {
	c := &Cloud{
		region: region, zones: []string{region + "a", region + "b", region + "c"},
		fail: map[string][]error{}, calls: map[string]int{}, asgs: map[string]*asg{}, buckets: map[string]*bucket{},
	}
	c.ec2 = newEC2State()
	c.iam = newIAMState()
	c.elb = newELBState()
	return c
}

// FailNext makes the next call of the operation (such as "CreateAutoScalingGroup") return err, once per
// call of FailNext.
func (c *Cloud) FailNext(op string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail[op] = append(c.fail[op], err)
}

// Calls is how often the operation was called.
func (c *Cloud) Calls(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[op]
}

// MutatingCalls counts the calls that create, change or delete something, by operation.
func (c *Cloud) MutatingCalls() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for op, n := range c.calls {
		if !strings.HasPrefix(op, "Describe") && !strings.HasPrefix(op, "Get") && !strings.HasPrefix(op, "List") {
			out[op] = n
		}
	}
	return out
}

// begin locks the account and counts the call; it returns the error injected for it, if any.
func (c *Cloud) begin(op string) error {
	c.mu.Lock()
	c.calls[op]++
	if errs := c.fail[op]; len(errs) > 0 {
		c.fail[op] = errs[1:]
		return errs[0]
	}
	return nil
}

func (c *Cloud) end() { c.mu.Unlock() }

func (c *Cloud) id(prefix string) string {
	c.seq++
	return fmt.Sprintf("%s-%017x", prefix, c.seq)
}

// apiError is an error as the SDK returns one from AWS.
func apiError(code, format string, args ...any) error {
	return &smithy.GenericAPIError{Code: code, Message: fmt.Sprintf(format, args...), Fault: smithy.FaultClient}
}

// Tagged lists every resource (and state-store object) that carries the tag key=value: "Kind id".
func (c *Cloud) Tagged(key, value string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	out = append(out, c.ec2.tagged(key, value)...)
	out = append(out, c.iam.tagged(key, value)...)
	out = append(out, c.elb.tagged(key, value)...)
	for name, g := range c.asgs {
		if g.tags[key] == value {
			out = append(out, "AutoScalingGroup "+name)
		}
	}
	sort.Strings(out)
	return out
}

// Count is the number of resources of a kind ("VPC", "Subnet", "Instance", ...), tagged or not, that
// are not deleted (instances: not terminated).
func (c *Cloud) Count(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch kind {
	case "AutoScalingGroup":
		return len(c.asgs)
	}
	if n, ok := c.ec2.count(kind); ok {
		return n
	}
	if n, ok := c.iam.count(kind); ok {
		return n
	}
	if n, ok := c.elb.count(kind); ok {
		return n
	}
	panic("fake: unknown kind " + kind)
}

// Objects lists the keys of a bucket under prefix.
func (c *Cloud) Objects(bucketName, prefix string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.buckets[bucketName]
	if b == nil {
		return nil
	}
	var out []string
	for k := range b.objects {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func tagsMatch(tags map[string]string, key, value string) bool {
	v, ok := tags[key]
	return ok && v == value
}
