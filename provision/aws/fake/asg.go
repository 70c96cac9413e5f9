package fake

import (
	"context"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

type asg struct {
	group     types.AutoScalingGroup
	tags      map[string]string
	instances []string
}

// AutoScaling is the fake's Auto Scaling API. Groups start their instances at once.
type AutoScaling struct{ c *Cloud }

// AutoScaling returns the account's Auto Scaling API.
func (c *Cloud) AutoScaling() *AutoScaling { return &AutoScaling{c} }

// DescribeAutoScalingGroups lists groups by name or by "tag:KEY" filters.
func (f *AutoScaling) DescribeAutoScalingGroups(_ context.Context, in *autoscaling.DescribeAutoScalingGroupsInput, _ ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error) {
	err := f.c.begin("DescribeAutoScalingGroups")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	out := &autoscaling.DescribeAutoScalingGroupsOutput{}
	for _, name := range sortedIDs(f.c.asgs) {
		g := f.c.asgs[name]
		if len(in.AutoScalingGroupNames) > 0 && !contains(in.AutoScalingGroupNames, name) {
			continue
		}
		ok := true
		for _, flt := range in.Filters {
			key, isTag := strings.CutPrefix(aws.ToString(flt.Name), "tag:")
			if !isTag {
				return nil, apiError("ValidationError", "unsupported filter %s", aws.ToString(flt.Name))
			}
			ok = ok && contains(flt.Values, g.tags[key]) && g.tags[key] != ""
		}
		if ok {
			out.AutoScalingGroups = append(out.AutoScalingGroups, f.c.withInstances(g))
		}
	}
	return out, nil
}

// withInstances is the group as Describe returns it: its running instances are in service at once.
func (c *Cloud) withInstances(g *asg) types.AutoScalingGroup {
	out := g.group
	out.Instances = nil
	for _, id := range g.instances {
		i := c.ec2.instances[id]
		if i == nil || i.State.Name != ec2types.InstanceStateNameRunning {
			continue
		}
		zone := ""
		if sn := c.ec2.subnets[aws.ToString(i.SubnetId)]; sn != nil {
			zone = aws.ToString(sn.AvailabilityZone)
		}
		out.Instances = append(out.Instances, types.Instance{InstanceId: aws.String(id), AvailabilityZone: aws.String(zone),
			LifecycleState: types.LifecycleStateInService, HealthStatus: aws.String("Healthy"), LaunchTemplate: g.group.LaunchTemplate})
	}
	return out
}

// AttachLoadBalancerTargetGroups adds target groups to a group.
func (f *AutoScaling) AttachLoadBalancerTargetGroups(_ context.Context, in *autoscaling.AttachLoadBalancerTargetGroupsInput, _ ...func(*autoscaling.Options)) (*autoscaling.AttachLoadBalancerTargetGroupsOutput, error) {
	err := f.c.begin("AttachLoadBalancerTargetGroups")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	g := f.c.asgs[aws.ToString(in.AutoScalingGroupName)]
	if g == nil {
		return nil, apiError("ValidationError", "AutoScalingGroup name not found - %s", aws.ToString(in.AutoScalingGroupName))
	}
	for _, tg := range in.TargetGroupARNs {
		if f.c.elb.tgs[tg] == nil {
			return nil, apiError("ValidationError", "Provided Target Groups may not be valid: %s", tg)
		}
		if !contains(g.group.TargetGroupARNs, tg) {
			g.group.TargetGroupARNs = append(g.group.TargetGroupARNs, tg)
		}
	}
	return &autoscaling.AttachLoadBalancerTargetGroupsOutput{}, nil
}

// DescribeScalingActivities lists a group's activities: one successful launch per instance.
func (f *AutoScaling) DescribeScalingActivities(_ context.Context, in *autoscaling.DescribeScalingActivitiesInput, _ ...func(*autoscaling.Options)) (*autoscaling.DescribeScalingActivitiesOutput, error) {
	err := f.c.begin("DescribeScalingActivities")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	g := f.c.asgs[aws.ToString(in.AutoScalingGroupName)]
	out := &autoscaling.DescribeScalingActivitiesOutput{}
	if g == nil {
		return out, nil
	}
	for _, id := range g.instances {
		out.Activities = append(out.Activities, types.Activity{AutoScalingGroupName: in.AutoScalingGroupName, StatusCode: types.ScalingActivityStatusCodeSuccessful,
			Description: aws.String("Launching a new EC2 instance: " + id), Cause: aws.String("an instance was started in response to a difference between desired and actual capacity")})
	}
	return out, nil
}

// TargetGroupInstances are the running instances registered with a target group through the auto
// scaling groups attached to it.
func (c *Cloud) targetGroupInstances(arn string) []string {
	var out []string
	for _, name := range sortedIDs(c.asgs) {
		g := c.asgs[name]
		if !contains(g.group.TargetGroupARNs, arn) {
			continue
		}
		for _, id := range g.instances {
			if i := c.ec2.instances[id]; i != nil && i.State.Name == ec2types.InstanceStateNameRunning {
				out = append(out, id)
			}
		}
	}
	return out
}

func (f *AutoScaling) checkSubnets(zones string) ([]string, error) {
	subnets := strings.Split(zones, ",")
	for _, s := range subnets {
		if f.c.ec2.subnets[s] == nil {
			return nil, apiError("ValidationError", "The subnet ID '%s' does not exist", s)
		}
	}
	return subnets, nil
}

// CreateAutoScalingGroup checks the launch template, subnets and target groups, and starts the
// desired number of instances, tagged with the group's tags that propagate at launch.
func (f *AutoScaling) CreateAutoScalingGroup(_ context.Context, in *autoscaling.CreateAutoScalingGroupInput, _ ...func(*autoscaling.Options)) (*autoscaling.CreateAutoScalingGroupOutput, error) {
	err := f.c.begin("CreateAutoScalingGroup")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	name := aws.ToString(in.AutoScalingGroupName)
	if f.c.asgs[name] != nil {
		return nil, apiError("AlreadyExists", "AutoScalingGroup by this name already exists")
	}
	subnets, err := f.checkSubnets(aws.ToString(in.VPCZoneIdentifier))
	if err != nil {
		return nil, err
	}
	for _, tg := range in.TargetGroupARNs {
		if f.c.elb.tgs[tg] == nil {
			return nil, apiError("ValidationError", "Provided Target Groups may not be valid: %s", tg)
		}
	}
	tags := map[string]string{}
	var ec2Tags []ec2types.Tag
	var descs []types.TagDescription
	for _, t := range in.Tags {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		descs = append(descs, types.TagDescription{Key: t.Key, Value: t.Value, PropagateAtLaunch: t.PropagateAtLaunch, ResourceId: in.AutoScalingGroupName, ResourceType: aws.String("auto-scaling-group")})
		if aws.ToBool(t.PropagateAtLaunch) {
			ec2Tags = append(ec2Tags, ec2types.Tag{Key: t.Key, Value: t.Value})
		}
	}
	if in.LaunchTemplate == nil {
		return nil, apiError("ValidationError", "Valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter.")
	}
	lt := aws.ToString(in.LaunchTemplate.LaunchTemplateId)
	ids, err := f.c.launch(lt, subnets, int(aws.ToInt32(in.DesiredCapacity)), ec2Tags)
	if err != nil {
		return nil, err
	}
	f.c.asgs[name] = &asg{tags: tags, instances: ids, group: types.AutoScalingGroup{
		AutoScalingGroupName: in.AutoScalingGroupName, MinSize: in.MinSize, MaxSize: in.MaxSize, DesiredCapacity: in.DesiredCapacity,
		VPCZoneIdentifier: in.VPCZoneIdentifier, LaunchTemplate: in.LaunchTemplate, TargetGroupARNs: in.TargetGroupARNs, Tags: descs,
	}}
	return &autoscaling.CreateAutoScalingGroupOutput{}, nil
}

// UpdateAutoScalingGroup changes sizes and subnets.
func (f *AutoScaling) UpdateAutoScalingGroup(_ context.Context, in *autoscaling.UpdateAutoScalingGroupInput, _ ...func(*autoscaling.Options)) (*autoscaling.UpdateAutoScalingGroupOutput, error) {
	err := f.c.begin("UpdateAutoScalingGroup")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	g := f.c.asgs[aws.ToString(in.AutoScalingGroupName)]
	if g == nil {
		return nil, apiError("ValidationError", "AutoScalingGroup name not found - %s", aws.ToString(in.AutoScalingGroupName))
	}
	if in.VPCZoneIdentifier != nil {
		if _, err := f.checkSubnets(aws.ToString(in.VPCZoneIdentifier)); err != nil {
			return nil, err
		}
		g.group.VPCZoneIdentifier = in.VPCZoneIdentifier
	}
	if in.MinSize != nil {
		g.group.MinSize = in.MinSize
	}
	if in.MaxSize != nil {
		g.group.MaxSize = in.MaxSize
	}
	if in.DesiredCapacity != nil {
		g.group.DesiredCapacity = in.DesiredCapacity
	}
	// Converge the running instances on the desired capacity, as the group would.
	want := int(aws.ToInt32(g.group.DesiredCapacity))
	if n := len(g.instances); want > n {
		var tags []ec2types.Tag
		for _, t := range g.group.Tags {
			if aws.ToBool(t.PropagateAtLaunch) {
				tags = append(tags, ec2types.Tag{Key: t.Key, Value: t.Value})
			}
		}
		ids, err := f.c.launch(aws.ToString(g.group.LaunchTemplate.LaunchTemplateId), strings.Split(aws.ToString(g.group.VPCZoneIdentifier), ","), want-n, tags)
		if err != nil {
			return nil, err
		}
		g.instances = append(g.instances, ids...)
	} else if want < n {
		f.c.terminate(g.instances[want:])
		g.instances = g.instances[:want]
	}
	return &autoscaling.UpdateAutoScalingGroupOutput{}, nil
}

// DeleteAutoScalingGroup refuses a group with instances unless forced; forced, it terminates them.
func (f *AutoScaling) DeleteAutoScalingGroup(_ context.Context, in *autoscaling.DeleteAutoScalingGroupInput, _ ...func(*autoscaling.Options)) (*autoscaling.DeleteAutoScalingGroupOutput, error) {
	err := f.c.begin("DeleteAutoScalingGroup")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	name := aws.ToString(in.AutoScalingGroupName)
	g := f.c.asgs[name]
	if g == nil {
		return nil, apiError("ValidationError", "AutoScalingGroup name not found - %s", name)
	}
	if len(g.instances) > 0 && !aws.ToBool(in.ForceDelete) {
		return nil, apiError("ResourceInUse", "You cannot delete an AutoScalingGroup while there are instances still in the group.")
	}
	f.c.terminate(g.instances)
	delete(f.c.asgs, name)
	return &autoscaling.DeleteAutoScalingGroupOutput{}, nil
}
