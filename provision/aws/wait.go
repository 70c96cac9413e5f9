package aws

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/kubedirect/kubedirect/provision/spec"
	"k8s.io/apimachinery/pkg/util/wait"
)

// How long create waits for the node groups' instances to be in service.
const inServiceTimeout = 10 * time.Minute

// ErrNotInService is returned when a node group's instances are not all in service in time.
var ErrNotInService = errors.New("node group instances not in service")

// ErrAPIUnhealthy is returned when the API's load balancers have no healthy control plane in time.
var ErrAPIUnhealthy = errors.New("no healthy control plane behind the API's load balancers")

// waitInService waits until every node group's auto scaling group has its count of instances in
// service. On timeout the error names each group that is short and its latest scaling activity (an
// instance type without capacity, a quota, an image that cannot launch).
func (r *run) waitInService(ctx context.Context, poll, timeout time.Duration) error {
	short := map[string]string{}
	err := wait.PollUntilContextTimeout(ctx, poll, timeout, true, func(ctx context.Context) (bool, error) {
		clear(short)
		for _, g := range r.m.groups {
			name := r.m.names.NodeGroup(g.Name)
			out, err := r.cl.AutoScaling.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
			if err != nil {
				if retryable(err) {
					return false, nil
				}
				return false, fmt.Errorf("describe auto scaling group %s: %w", name, explain(err))
			}
			n := 0
			if len(out.AutoScalingGroups) == 1 {
				for _, i := range out.AutoScalingGroups[0].Instances {
					if i.LifecycleState == astypes.LifecycleStateInService {
						n++
					}
				}
			}
			if n < g.Count {
				short[name] = fmt.Sprintf("%s: %d of %d in service", name, n, g.Count)
			}
		}
		return len(short) == 0, nil
	})
	if err == nil || len(short) == 0 {
		return err
	}
	var lines []string
	for _, name := range sortedKeys(short) {
		line := short[name]
		if act := r.lastActivity(ctx, name); act != "" {
			line += "; latest activity: " + act
		}
		lines = append(lines, line)
	}
	return fmt.Errorf("wait %s: %w: %s", timeout, ErrNotInService, strings.Join(lines, "; "))
}

// lastActivity describes a group's most recent scaling activity, "" when there is none to tell.
func (r *run) lastActivity(ctx context.Context, group string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	out, err := r.cl.AutoScaling.DescribeScalingActivities(ctx, &autoscaling.DescribeScalingActivitiesInput{AutoScalingGroupName: aws.String(group), MaxRecords: aws.Int32(1)})
	if err != nil || len(out.Activities) == 0 {
		return ""
	}
	a := out.Activities[0]
	s := fmt.Sprintf("%s (%s)", aws.ToString(a.Description), a.StatusCode)
	if msg := aws.ToString(a.StatusMessage); msg != "" {
		s += ": " + msg
	}
	return s
}

// WaitAPIHealthy waits up to timeout until both of the API's load balancers (the operator's and the
// nodes') have at least one healthy control plane, which happens about 20 s after an API server
// starts listening. The error names the targets and their states.
func (p *Provider) WaitAPIHealthy(ctx context.Context, c *spec.Cluster, timeout time.Duration) error {
	names, cl, err := p.clusterClients(ctx, c)
	if err != nil {
		return err
	}
	states := map[string][]string{}
	err = wait.PollUntilContextTimeout(ctx, p.poll, timeout, true, func(ctx context.Context) (bool, error) {
		clear(states)
		ready := true
		for _, name := range []string{names.LoadBalancer(), names.InternalLoadBalancer()} {
			tgs, err := cl.ELB.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{name}})
			if err != nil || len(tgs.TargetGroups) == 0 {
				return false, fmt.Errorf("describe target group %s: %w", name, explain(err))
			}
			h, err := cl.ELB.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: tgs.TargetGroups[0].TargetGroupArn})
			if err != nil {
				if retryable(err) {
					return false, nil
				}
				return false, fmt.Errorf("describe target health of %s: %w", name, explain(err))
			}
			healthy := false
			for _, d := range h.TargetHealthDescriptions {
				state := elbtypes.TargetHealthStateEnumUnavailable
				if d.TargetHealth != nil {
					state = d.TargetHealth.State
				}
				healthy = healthy || state == elbtypes.TargetHealthStateEnumHealthy
				target := "?"
				if d.Target != nil {
					target = aws.ToString(d.Target.Id)
				}
				states[name] = append(states[name], target+" "+string(state))
			}
			ready = ready && healthy
		}
		return ready, nil
	})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil || len(states) == 0 && !wait.Interrupted(err) {
		return err
	}
	var lines []string
	for _, name := range []string{names.LoadBalancer(), names.InternalLoadBalancer()} {
		targets := "no targets"
		if len(states[name]) > 0 {
			targets = strings.Join(states[name], ", ")
		}
		lines = append(lines, name+": "+targets)
	}
	return fmt.Errorf("wait %s: %w (%s); the control planes log their bootstrap to /var/log/kubedirect-bootstrap.log", timeout, ErrAPIUnhealthy, strings.Join(lines, "; "))
}
