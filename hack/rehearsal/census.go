package main

import (
	"context"
	"errors"
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
	ec2Left, err := taggedEC2(ctx, cl.ec2, cluster)
	if err != nil {
		return nil, err
	}
	left = append(left, ec2Left...)
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

// taggedEC2 lists the EC2 resources carrying the cluster's tag, type by type (moto's DescribeTags
// still lists the tags of deleted resources).
func taggedEC2(ctx context.Context, c *ec2.Client, cluster string) ([]string, error) {
	f := []ec2types.Filter{{Name: awssdk.String("tag:" + kdaws.TagCluster), Values: []string{cluster}}}
	var left []string
	add := func(kind string, ids ...*string) {
		for _, id := range ids {
			left = append(left, kind+" "+awssdk.ToString(id))
		}
	}
	vpcs, err := c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{Filters: f})
	if err == nil {
		for _, v := range vpcs.Vpcs {
			add("vpc", v.VpcId)
		}
	}
	subnets, err2 := c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: f})
	if err2 == nil {
		for _, v := range subnets.Subnets {
			add("subnet", v.SubnetId)
		}
	}
	igws, err3 := c.DescribeInternetGateways(ctx, &ec2.DescribeInternetGatewaysInput{Filters: f})
	if err3 == nil {
		for _, v := range igws.InternetGateways {
			add("internet-gateway", v.InternetGatewayId)
		}
	}
	rts, err4 := c.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: f})
	if err4 == nil {
		for _, v := range rts.RouteTables {
			add("route-table", v.RouteTableId)
		}
	}
	sgs, err5 := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: f})
	if err5 == nil {
		for _, v := range sgs.SecurityGroups {
			add("security-group", v.GroupId)
		}
	}
	lts, err6 := c.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{Filters: f})
	if err6 == nil {
		for _, v := range lts.LaunchTemplates {
			add("launch-template", v.LaunchTemplateId)
		}
	}
	keys, err7 := c.DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{Filters: f})
	if err7 == nil {
		for _, v := range keys.KeyPairs {
			add("key-pair", v.KeyPairId)
		}
	}
	live := append(f, ec2types.Filter{Name: awssdk.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}})
	inst, err8 := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: live})
	if err8 == nil {
		for _, r := range inst.Reservations {
			for _, v := range r.Instances {
				add("instance", v.InstanceId)
			}
		}
	}
	if err := errors.Join(err, err2, err3, err4, err5, err6, err7, err8); err != nil {
		return nil, fmt.Errorf("describe EC2 resources: %w", err)
	}
	return left, nil
}
