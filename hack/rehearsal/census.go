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
	live := append(f, ec2types.Filter{Name: awssdk.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}})
	var left []string
	err := errors.Join(
		listTagged(ctx, &left, "vpc", c.DescribeVpcs, &ec2.DescribeVpcsInput{Filters: f},
			func(o *ec2.DescribeVpcsOutput) []ec2types.Vpc { return o.Vpcs }, func(v ec2types.Vpc) *string { return v.VpcId }),
		listTagged(ctx, &left, "subnet", c.DescribeSubnets, &ec2.DescribeSubnetsInput{Filters: f},
			func(o *ec2.DescribeSubnetsOutput) []ec2types.Subnet { return o.Subnets }, func(v ec2types.Subnet) *string { return v.SubnetId }),
		listTagged(ctx, &left, "internet-gateway", c.DescribeInternetGateways, &ec2.DescribeInternetGatewaysInput{Filters: f},
			func(o *ec2.DescribeInternetGatewaysOutput) []ec2types.InternetGateway { return o.InternetGateways },
			func(v ec2types.InternetGateway) *string { return v.InternetGatewayId }),
		listTagged(ctx, &left, "route-table", c.DescribeRouteTables, &ec2.DescribeRouteTablesInput{Filters: f},
			func(o *ec2.DescribeRouteTablesOutput) []ec2types.RouteTable { return o.RouteTables },
			func(v ec2types.RouteTable) *string { return v.RouteTableId }),
		listTagged(ctx, &left, "security-group", c.DescribeSecurityGroups, &ec2.DescribeSecurityGroupsInput{Filters: f},
			func(o *ec2.DescribeSecurityGroupsOutput) []ec2types.SecurityGroup { return o.SecurityGroups },
			func(v ec2types.SecurityGroup) *string { return v.GroupId }),
		listTagged(ctx, &left, "launch-template", c.DescribeLaunchTemplates, &ec2.DescribeLaunchTemplatesInput{Filters: f},
			func(o *ec2.DescribeLaunchTemplatesOutput) []ec2types.LaunchTemplate { return o.LaunchTemplates },
			func(v ec2types.LaunchTemplate) *string { return v.LaunchTemplateId }),
		listTagged(ctx, &left, "key-pair", c.DescribeKeyPairs, &ec2.DescribeKeyPairsInput{Filters: f},
			func(o *ec2.DescribeKeyPairsOutput) []ec2types.KeyPairInfo { return o.KeyPairs },
			func(v ec2types.KeyPairInfo) *string { return v.KeyPairId }),
		listTagged(ctx, &left, "instance", c.DescribeInstances, &ec2.DescribeInstancesInput{Filters: live},
			func(o *ec2.DescribeInstancesOutput) []ec2types.Instance {
				var all []ec2types.Instance
				for _, r := range o.Reservations {
					all = append(all, r.Instances...)
				}
				return all
			},
			func(v ec2types.Instance) *string { return v.InstanceId }),
	)
	if err != nil {
		return nil, fmt.Errorf("describe EC2 resources: %w", err)
	}
	return left, nil
}

// listTagged calls describe with in and adds "kind id" to *left for every item of its answer.
func listTagged[In, Out, Item any](ctx context.Context, left *[]string, kind string,
	describe func(context.Context, In, ...func(*ec2.Options)) (Out, error), in In,
	items func(Out) []Item, id func(Item) *string) error {
	out, err := describe(ctx, in)
	if err != nil {
		return fmt.Errorf("%s: %w", kind, err)
	}
	for _, it := range items(out) {
		*left = append(*left, kind+" "+awssdk.ToString(id(it)))
	}
	return nil
}
