package aws

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/kubedirect/kubedirect/provision/spec"
)

// DeleteReport is what delete removed and what it could not.
type DeleteReport struct {
	// Deleted lists the removed resources as "Kind id (name)".
	Deleted []string
	// Failed holds one error per resource that is still there, naming it and the cause.
	Failed []error
}

// deleter removes the cluster's resources of one kind, found by their tags.
type deleter struct {
	r      *run
	report *DeleteReport
	poll   time.Duration
	wait   time.Duration
}

func (d *deleter) do(ctx context.Context, kind, id, name string, fn func() error) {
	err := retry(ctx, d.r.backoff, fn)
	label := kind + " " + id
	if name != "" && name != id {
		label += " (" + name + ")"
	}
	if err != nil {
		d.report.Failed = append(d.report.Failed, fmt.Errorf("delete %s: %w", label, explain(err)))
		return
	}
	d.r.log("deleted resource", "kind", kind, "id", id)
	d.report.Deleted = append(d.report.Deleted, label)
}

func (d *deleter) fail(what string, err error) {
	d.report.Failed = append(d.report.Failed, fmt.Errorf("%s: %w", what, explain(err)))
}

// Delete removes everything carrying the cluster's tag, in dependency order, waiting for instances and
// load balancers to go, and the cluster's files in the state store. It goes on past failures and returns
// them all in the report (and joined as the error).
func (p *Provider) Delete(ctx context.Context, c *spec.Cluster) (*DeleteReport, error) {
	names, cl, err := p.clusterClients(ctx, c)
	if err != nil {
		return nil, err
	}
	m := &model{spec: c, names: names, region: c.Spec.AWS.Region}
	r := &run{cl: cl, m: m, backoff: p.backoff, found: map[string]*actual{}, log: func(msg string, args ...any) { p.log.Info(msg, args...) }}
	if _, err := cl.STS.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		return nil, fmt.Errorf("check AWS credentials: %w", explain(err))
	}
	unlock, err := store{cl.S3, m.names}.lock(ctx, time.Now())
	if isCode(err, "NoSuchBucket") {
		return nil, fmt.Errorf("delete cluster %q: state store bucket s3://%s does not exist", c.Metadata.Name, names.Bucket())
	}
	if err != nil {
		return nil, err
	}
	defer unlock()
	d := &deleter{r: r, report: &DeleteReport{}, poll: p.poll, wait: 20 * time.Minute}
	for _, step := range []func(context.Context){
		d.autoScalingGroups, d.launchTemplates, d.loadBalancers, d.keyPairs, d.iam,
		d.securityGroups, d.routeTables, d.subnets, d.internetGateways, d.vpcs, d.stateStore,
	} {
		if ctx.Err() != nil {
			d.fail("delete cluster "+c.Metadata.Name, ctx.Err())
			break
		}
		step(ctx)
	}
	return d.report, errors.Join(d.report.Failed...)
}

func (d *deleter) ec2Filter() []ec2types.Filter { return d.r.m.owned("") }

// waitUntil polls cond until it is true or the wait is over.
func (d *deleter) waitUntil(ctx context.Context, what string, cond func() (bool, error)) {
	deadline := time.Now().Add(d.wait)
	for {
		done, err := cond()
		if err != nil {
			d.fail("wait for "+what, err)
			return
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			d.fail("wait for "+what, fmt.Errorf("still there after %s", d.wait))
			return
		}
		select {
		case <-ctx.Done():
			d.fail("wait for "+what, ctx.Err())
			return
		case <-time.After(d.poll):
		}
	}
}

// sweep deletes every one of the cluster's resources of one kind. list is the SDK's Describe call, run
// with in; items picks the resources out of its answer; ident gives the id and name (nil: none) the report shows;
// del removes one. kind names a resource in the report, what names them all when the list fails.
func sweep[In, Out, T, Opt any](ctx context.Context, d *deleter, kind, what string,
	list func(context.Context, *In, ...Opt) (*Out, error), in *In, items func(*Out) []T,
	ident func(T) (id, name *string), del func(T) error) {
	out, err := list(ctx, in)
	if err != nil {
		d.fail("list "+what, err)
		return
	}
	for _, it := range items(out) {
		id, name := ident(it)
		d.do(ctx, kind, aws.ToString(id), aws.ToString(name), func() error { return del(it) })
	}
}

// errOf is the error of an SDK call whose answer is not needed.
func errOf[Out any](_ Out, err error) error { return err }

// asgFilter finds the cluster's auto scaling groups by their tag.
func (d *deleter) asgFilter() *autoscaling.DescribeAutoScalingGroupsInput {
	return &autoscaling.DescribeAutoScalingGroupsInput{Filters: []astypes.Filter{{Name: aws.String("tag:" + TagCluster), Values: []string{d.r.m.names.Cluster}}}}
}

func (d *deleter) autoScalingGroups(ctx context.Context) {
	as := d.r.cl.AutoScaling
	sweep(ctx, d, "AutoScalingGroup", "auto scaling groups", as.DescribeAutoScalingGroups, d.asgFilter(),
		func(o *autoscaling.DescribeAutoScalingGroupsOutput) []astypes.AutoScalingGroup {
			return o.AutoScalingGroups
		},
		func(g astypes.AutoScalingGroup) (*string, *string) { return g.AutoScalingGroupName, nil },
		func(g astypes.AutoScalingGroup) error {
			return errOf(as.DeleteAutoScalingGroup(ctx, &autoscaling.DeleteAutoScalingGroupInput{AutoScalingGroupName: g.AutoScalingGroupName, ForceDelete: aws.Bool(true)}))
		})
	d.waitUntil(ctx, "the cluster's instances to terminate", func() (bool, error) {
		out, err := d.r.cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: append(d.ec2Filter(),
			filter("instance-state-name", "pending", "running", "shutting-down", "stopping", "stopped"))})
		if err != nil {
			return false, err
		}
		for _, res := range out.Reservations {
			if len(res.Instances) > 0 {
				return false, nil
			}
		}
		left, err := as.DescribeAutoScalingGroups(ctx, d.asgFilter())
		return err == nil && len(left.AutoScalingGroups) == 0, err
	})
}

func (d *deleter) launchTemplates(ctx context.Context) {
	ec := d.r.cl.EC2
	sweep(ctx, d, "LaunchTemplate", "launch templates", ec.DescribeLaunchTemplates, &ec2.DescribeLaunchTemplatesInput{Filters: d.ec2Filter()},
		func(o *ec2.DescribeLaunchTemplatesOutput) []ec2types.LaunchTemplate { return o.LaunchTemplates },
		func(lt ec2types.LaunchTemplate) (*string, *string) { return lt.LaunchTemplateId, lt.LaunchTemplateName },
		func(lt ec2types.LaunchTemplate) error {
			return errOf(ec.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateId: lt.LaunchTemplateId}))
		})
}

// taggedELB returns which of the ARNs carry the cluster's tag.
func (d *deleter) taggedELB(ctx context.Context, arns []string) ([]string, error) {
	var out []string
	for i := 0; i < len(arns); i += 20 {
		tags, err := d.r.cl.ELB.DescribeTags(ctx, &elb.DescribeTagsInput{ResourceArns: arns[i:min(i+20, len(arns))]})
		if err != nil {
			return nil, err
		}
		for _, td := range tags.TagDescriptions {
			for _, t := range td.Tags {
				if aws.ToString(t.Key) == TagCluster && aws.ToString(t.Value) == d.r.m.names.Cluster {
					out = append(out, aws.ToString(td.ResourceArn))
				}
			}
		}
	}
	return out, nil
}

// sweepELB deletes those of the ELB resources whose ARNs carry the cluster's tag (the ELB API cannot
// filter by tag, so arn picks each item's ARN for a look at the tags); del removes one. It returns the
// ARNs it found.
func sweepELB[T any](ctx context.Context, d *deleter, kind, what string, items []T, arn func(T) *string, del func(string) error) []string {
	arns := make([]string, 0, len(items))
	for _, it := range items {
		arns = append(arns, aws.ToString(arn(it)))
	}
	owned, err := d.taggedELB(ctx, arns)
	if err != nil {
		d.fail("list "+what+"' tags", err)
		return nil
	}
	for _, arn := range owned {
		d.do(ctx, kind, arn, "", func() error { return del(arn) })
	}
	return owned
}

func (d *deleter) loadBalancers(ctx context.Context) {
	lb := d.r.cl.ELB
	lbs, err := lb.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{})
	if err != nil {
		d.fail("list load balancers", err)
		return
	}
	owned := sweepELB(ctx, d, "LoadBalancer", "load balancers", lbs.LoadBalancers, func(l elbtypes.LoadBalancer) *string { return l.LoadBalancerArn },
		func(arn string) error {
			return errOf(lb.DeleteLoadBalancer(ctx, &elb.DeleteLoadBalancerInput{LoadBalancerArn: aws.String(arn)}))
		})
	if len(owned) > 0 {
		d.waitUntil(ctx, "the load balancers to go", func() (bool, error) {
			out, err := lb.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{LoadBalancerArns: owned})
			if isCode(err, "LoadBalancerNotFound") {
				return true, nil
			}
			return err == nil && len(out.LoadBalancers) == 0, err
		})
	}
	tgs, err := lb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{})
	if err != nil {
		d.fail("list target groups", err)
		return
	}
	sweepELB(ctx, d, "TargetGroup", "target groups", tgs.TargetGroups, func(g elbtypes.TargetGroup) *string { return g.TargetGroupArn },
		func(arn string) error {
			return errOf(lb.DeleteTargetGroup(ctx, &elb.DeleteTargetGroupInput{TargetGroupArn: aws.String(arn)}))
		})
}

func (d *deleter) keyPairs(ctx context.Context) {
	ec := d.r.cl.EC2
	sweep(ctx, d, "KeyPair", "key pairs", ec.DescribeKeyPairs, &ec2.DescribeKeyPairsInput{Filters: d.ec2Filter()},
		func(o *ec2.DescribeKeyPairsOutput) []ec2types.KeyPairInfo { return o.KeyPairs },
		func(k ec2types.KeyPairInfo) (*string, *string) { return k.KeyPairId, k.KeyName },
		func(k ec2types.KeyPairInfo) error {
			return errOf(ec.DeleteKeyPair(ctx, &ec2.DeleteKeyPairInput{KeyPairId: k.KeyPairId}))
		})
}

// iam removes the cluster's instance profiles and roles. IAM cannot be searched by tag cheaply, so they
// are found by their names and deleted only when they carry the cluster's tag.
func (d *deleter) iam(ctx context.Context) {
	cl := d.r.cl.IAM
	for _, role := range []string{roleControlPlane, roleNodes} {
		name := d.r.m.names.Role(role)
		prof, err := cl.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(name)})
		d.dropIAM(ctx, "InstanceProfile", "instance profile", name, err, func() []iamtypes.Tag { return prof.InstanceProfile.Tags }, func() error {
			for _, ro := range prof.InstanceProfile.Roles {
				_, err := cl.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{InstanceProfileName: aws.String(name), RoleName: ro.RoleName})
				if err != nil && !isCode(err, "NoSuchEntity") {
					return err
				}
			}
			return errOf(cl.DeleteInstanceProfile(ctx, &iam.DeleteInstanceProfileInput{InstanceProfileName: aws.String(name)}))
		})
		ro, err := cl.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
		d.dropIAM(ctx, "IAMRole", "IAM role", name, err, func() []iamtypes.Tag { return ro.Role.Tags }, func() error {
			pols, err := cl.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(name)})
			if err != nil {
				return err
			}
			for _, p := range pols.PolicyNames {
				if _, err := cl.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String(p)}); err != nil {
					return err
				}
			}
			return errOf(cl.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(name)}))
		})
	}
}

// dropIAM deletes the IAM resource of this name with del when its Get call (getErr) found it and tags
// shows it carries the cluster's tag; one without the tag is not the cluster's and is left alone.
func (d *deleter) dropIAM(ctx context.Context, kind, what, name string, getErr error, tags func() []iamtypes.Tag, del func() error) {
	switch {
	case isCode(getErr, "NoSuchEntity"):
	case getErr != nil:
		d.fail("get "+what+" "+name, getErr)
	case !ownedByCluster(tags(), d.r.m.names.Cluster):
		d.fail("delete "+what+" "+name, fmt.Errorf("not tagged %s=%s, left alone", TagCluster, d.r.m.names.Cluster))
	default:
		d.do(ctx, kind, name, "", del)
	}
}

// securityGroups first revokes every rule of the cluster's groups (they refer to each other), then
// deletes them; a load balancer's network interfaces may hold a group for a while after it is gone.
func (d *deleter) securityGroups(ctx context.Context) {
	ec := d.r.cl.EC2
	sweep(ctx, d, "SecurityGroup", "security groups", ec.DescribeSecurityGroups, &ec2.DescribeSecurityGroupsInput{Filters: d.ec2Filter()},
		func(o *ec2.DescribeSecurityGroupsOutput) []ec2types.SecurityGroup {
			for _, g := range o.SecurityGroups {
				if len(g.IpPermissions) == 0 {
					continue
				}
				if _, err := ec.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: g.GroupId, IpPermissions: g.IpPermissions}); err != nil {
					d.fail("revoke rules of security group "+aws.ToString(g.GroupId), err)
				}
			}
			return o.SecurityGroups
		},
		func(g ec2types.SecurityGroup) (*string, *string) { return g.GroupId, g.GroupName },
		func(g ec2types.SecurityGroup) error {
			return errOf(ec.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: g.GroupId}))
		})
}

// routeTables deletes the cluster's route tables, each after its subnet associations.
func (d *deleter) routeTables(ctx context.Context) {
	ec := d.r.cl.EC2
	sweep(ctx, d, "RouteTable", "route tables", ec.DescribeRouteTables, &ec2.DescribeRouteTablesInput{Filters: d.ec2Filter()},
		func(o *ec2.DescribeRouteTablesOutput) []ec2types.RouteTable { return o.RouteTables },
		func(rt ec2types.RouteTable) (*string, *string) { return rt.RouteTableId, nil },
		func(rt ec2types.RouteTable) error {
			for _, as := range rt.Associations {
				if aws.ToBool(as.Main) {
					continue
				}
				_, err := ec.DisassociateRouteTable(ctx, &ec2.DisassociateRouteTableInput{AssociationId: as.RouteTableAssociationId})
				if err != nil && !isCode(err, "InvalidAssociationID.NotFound") {
					return err
				}
			}
			return errOf(ec.DeleteRouteTable(ctx, &ec2.DeleteRouteTableInput{RouteTableId: rt.RouteTableId}))
		})
}

func (d *deleter) subnets(ctx context.Context) {
	ec := d.r.cl.EC2
	sweep(ctx, d, "Subnet", "subnets", ec.DescribeSubnets, &ec2.DescribeSubnetsInput{Filters: d.ec2Filter()},
		func(o *ec2.DescribeSubnetsOutput) []ec2types.Subnet { return o.Subnets },
		func(s ec2types.Subnet) (*string, *string) { return s.SubnetId, s.AvailabilityZone },
		func(s ec2types.Subnet) error {
			return errOf(ec.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: s.SubnetId}))
		})
}

// internetGateways deletes the cluster's internet gateways, each after detaching it from its VPC.
func (d *deleter) internetGateways(ctx context.Context) {
	ec := d.r.cl.EC2
	sweep(ctx, d, "InternetGateway", "internet gateways", ec.DescribeInternetGateways, &ec2.DescribeInternetGatewaysInput{Filters: d.ec2Filter()},
		func(o *ec2.DescribeInternetGatewaysOutput) []ec2types.InternetGateway { return o.InternetGateways },
		func(g ec2types.InternetGateway) (*string, *string) { return g.InternetGatewayId, nil },
		func(g ec2types.InternetGateway) error {
			for _, att := range g.Attachments {
				_, err := ec.DetachInternetGateway(ctx, &ec2.DetachInternetGatewayInput{InternetGatewayId: g.InternetGatewayId, VpcId: att.VpcId})
				if err != nil && !isCode(err, "Gateway.NotAttached") {
					return err
				}
			}
			return errOf(ec.DeleteInternetGateway(ctx, &ec2.DeleteInternetGatewayInput{InternetGatewayId: g.InternetGatewayId}))
		})
}

// vpcs deletes the cluster's VPC; an existing VPC named in the spec carries no tag and stays.
func (d *deleter) vpcs(ctx context.Context) {
	ec := d.r.cl.EC2
	sweep(ctx, d, "VPC", "VPCs", ec.DescribeVpcs, &ec2.DescribeVpcsInput{Filters: d.ec2Filter()},
		func(o *ec2.DescribeVpcsOutput) []ec2types.Vpc { return o.Vpcs },
		func(v ec2types.Vpc) (*string, *string) { return v.VpcId, nil },
		func(v ec2types.Vpc) error { return errOf(ec.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: v.VpcId})) })
}

// stateStore removes the cluster's directory of the state store, last: a failed delete can be re-run.
func (d *deleter) stateStore(ctx context.Context) {
	if len(d.report.Failed) > 0 {
		d.fail("keep state store "+d.r.m.names.StateStore(), errors.New("resources remain; delete again once they are gone"))
		return
	}
	names := d.r.m.names
	var token *string
	for {
		out, err := d.r.cl.S3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(names.Bucket()), Prefix: aws.String(names.StateKey("")), ContinuationToken: token})
		if err != nil {
			d.fail("list state store "+names.StateStore(), err)
			return
		}
		for _, o := range out.Contents {
			key := aws.ToString(o.Key)
			if key == names.StateKey(FileLock) {
				continue // released last, by Delete
			}
			d.do(ctx, "StateFile", "s3://"+names.Bucket()+"/"+key, "", func() error {
				_, err := d.r.cl.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(names.Bucket()), Key: aws.String(key)})
				return err
			})
		}
		if !aws.ToBool(out.IsTruncated) {
			return
		}
		token = out.NextContinuationToken
	}
}
