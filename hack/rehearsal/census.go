package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	kdaws "github.com/kubedirect/kubedirect/provision/aws"
)

// runCensus prints every resource in moto that still carries the cluster's tag, and every object
// left in its state store; it fails when there is any.
func runCensus(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("census", flag.ExitOnError)
	url := fs.String("moto", "", "moto's URL")
	cluster := fs.String("cluster", "", "cluster name")
	bucket := fs.String("bucket", "", "state-store bucket")
	prefix := fs.String("prefix", "", "state-store prefix")
	region := fs.String("region", "eu-west-1", "region")
	_ = fs.Parse(args)
	cl := newClients(*url, *region)
	left, err := census(ctx, cl, *cluster, kdaws.NewNames(*cluster, *bucket, *prefix))
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("%d resources of cluster %s left in moto:\n  %s", len(left), *cluster, strings.Join(left, "\n  "))
	}
	fmt.Printf("no resource tagged %s=%s and no state-store object left in moto\n", kdaws.TagCluster, *cluster)
	return nil
}

// census lists "KIND ID" for what is left.
func census(ctx context.Context, cl *clients, cluster string, names kdaws.Names) ([]string, error) {
	var left []string
	// EC2 keeps the tags of terminated instances; those are gone.
	tags, err := cl.ec2.DescribeTags(ctx, &ec2.DescribeTagsInput{Filters: []ec2types.Filter{
		{Name: awssdk.String("key"), Values: []string{kdaws.TagCluster}}, {Name: awssdk.String("value"), Values: []string{cluster}}}})
	if err != nil {
		return nil, fmt.Errorf("describe EC2 tags: %w", err)
	}
	for _, t := range tags.Tags {
		id := awssdk.ToString(t.ResourceId)
		if t.ResourceType == ec2types.ResourceTypeInstance {
			out, err := cl.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
			if err == nil && len(out.Reservations) > 0 && out.Reservations[0].Instances[0].State.Name == ec2types.InstanceStateNameTerminated {
				continue
			}
		}
		left = append(left, string(t.ResourceType)+" "+id)
	}
	asgs, err := cl.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{
		Filters: []astypes.Filter{{Name: awssdk.String("tag:" + kdaws.TagCluster), Values: []string{cluster}}}})
	if err != nil {
		return nil, fmt.Errorf("describe auto scaling groups: %w", err)
	}
	for _, g := range asgs.AutoScalingGroups {
		left = append(left, "auto-scaling-group "+awssdk.ToString(g.AutoScalingGroupName))
	}
	elbLeft, err := taggedELB(ctx, cl.elb, cluster)
	if err != nil {
		return nil, err
	}
	left = append(left, elbLeft...)
	roles, err := cl.iam.ListRoles(ctx, &iam.ListRolesInput{})
	if err != nil {
		return nil, fmt.Errorf("list IAM roles: %w", err)
	}
	profiles, err := cl.iam.ListInstanceProfiles(ctx, &iam.ListInstanceProfilesInput{})
	if err != nil {
		return nil, fmt.Errorf("list instance profiles: %w", err)
	}
	var iamNames []string // "KIND NAME"
	for _, r := range roles.Roles {
		iamNames = append(iamNames, "iam-role "+awssdk.ToString(r.RoleName))
	}
	for _, p := range profiles.InstanceProfiles {
		iamNames = append(iamNames, "instance-profile "+awssdk.ToString(p.InstanceProfileName))
	}
	for _, kn := range iamNames {
		if _, name, _ := strings.Cut(kn, " "); strings.HasPrefix(name, "kubedirect-"+cluster+"-") {
			left = append(left, kn)
		}
	}
	objs, err := cl.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: awssdk.String(names.Bucket())})
	if err != nil {
		return nil, fmt.Errorf("list the state store: %w", err)
	}
	for _, o := range objs.Contents {
		if strings.HasPrefix(awssdk.ToString(o.Key), names.StateKey("")) {
			left = append(left, "state-store-object "+awssdk.ToString(o.Key))
		}
	}
	return left, nil
}

// taggedELB lists the load balancers and target groups carrying the cluster's tag.
func taggedELB(ctx context.Context, c *elb.Client, cluster string) ([]string, error) {
	var arns []string
	lbs, err := c.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{})
	if err != nil {
		return nil, fmt.Errorf("describe load balancers: %w", err)
	}
	for _, lb := range lbs.LoadBalancers {
		arns = append(arns, awssdk.ToString(lb.LoadBalancerArn))
	}
	tgs, err := c.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{})
	if err != nil {
		return nil, fmt.Errorf("describe target groups: %w", err)
	}
	for _, tg := range tgs.TargetGroups {
		arns = append(arns, awssdk.ToString(tg.TargetGroupArn))
	}
	var left []string
	for i := 0; i < len(arns); i += 20 {
		out, err := c.DescribeTags(ctx, &elb.DescribeTagsInput{ResourceArns: arns[i:min(i+20, len(arns))]})
		if err != nil {
			return nil, fmt.Errorf("describe load balancer tags: %w", err)
		}
		for _, d := range out.TagDescriptions {
			for _, t := range d.Tags {
				if awssdk.ToString(t.Key) == kdaws.TagCluster && awssdk.ToString(t.Value) == cluster {
					left = append(left, "elb "+awssdk.ToString(d.ResourceArn))
				}
			}
		}
	}
	return left, nil
}
