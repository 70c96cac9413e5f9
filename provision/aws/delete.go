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
	"github.com/aws/aws-sdk-go-v2/service/iam"
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
	names, err := clusterNames(c)
	if err != nil {
		return nil, err
	}
	cl, err := p.clientsFor(ctx, c.Spec.AWS.Region)
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

func (d *deleter) autoScalingGroups(ctx context.Context) {
	as := d.r.cl.AutoScaling
	out, err := as.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{Filters: []astypes.Filter{{Name: aws.String("tag:" + TagCluster), Values: []string{d.r.m.names.Cluster}}}})
	if err != nil {
		d.fail("list auto scaling groups", err)
		return
	}
	for _, g := range out.AutoScalingGroups {
		name := aws.ToString(g.AutoScalingGroupName)
		d.do(ctx, "AutoScalingGroup", name, "", func() error {
			_, err := as.DeleteAutoScalingGroup(ctx, &autoscaling.DeleteAutoScalingGroupInput{AutoScalingGroupName: aws.String(name), ForceDelete: aws.Bool(true)})
			return err
		})
	}
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
		left, err := as.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{Filters: []astypes.Filter{{Name: aws.String("tag:" + TagCluster), Values: []string{d.r.m.names.Cluster}}}})
		return err == nil && len(left.AutoScalingGroups) == 0, err
	})
}

func (d *deleter) launchTemplates(ctx context.Context) {
	out, err := d.r.cl.EC2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{Filters: d.ec2Filter()})
	if err != nil {
		d.fail("list launch templates", err)
		return
	}
	for _, lt := range out.LaunchTemplates {
		id := aws.ToString(lt.LaunchTemplateId)
		d.do(ctx, "LaunchTemplate", id, aws.ToString(lt.LaunchTemplateName), func() error {
			_, err := d.r.cl.EC2.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateId: aws.String(id)})
			return err
		})
	}
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

func (d *deleter) loadBalancers(ctx context.Context) {
	lbs, err := d.r.cl.ELB.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{})
	if err != nil {
		d.fail("list load balancers", err)
		return
	}
	var arns []string
	for _, lb := range lbs.LoadBalancers {
		arns = append(arns, aws.ToString(lb.LoadBalancerArn))
	}
	owned, err := d.taggedELB(ctx, arns)
	if err != nil {
		d.fail("list load balancers' tags", err)
		return
	}
	for _, arn := range owned {
		d.do(ctx, "LoadBalancer", arn, "", func() error {
			_, err := d.r.cl.ELB.DeleteLoadBalancer(ctx, &elb.DeleteLoadBalancerInput{LoadBalancerArn: aws.String(arn)})
			return err
		})
	}
	if len(owned) > 0 {
		d.waitUntil(ctx, "the load balancers to go", func() (bool, error) {
			out, err := d.r.cl.ELB.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{LoadBalancerArns: owned})
			if isCode(err, "LoadBalancerNotFound") {
				return true, nil
			}
			return err == nil && len(out.LoadBalancers) == 0, err
		})
	}
	tgs, err := d.r.cl.ELB.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{})
	if err != nil {
		d.fail("list target groups", err)
		return
	}
	arns = arns[:0]
	for _, tg := range tgs.TargetGroups {
		arns = append(arns, aws.ToString(tg.TargetGroupArn))
	}
	owned, err = d.taggedELB(ctx, arns)
	if err != nil {
		d.fail("list target groups' tags", err)
		return
	}
	for _, arn := range owned {
		d.do(ctx, "TargetGroup", arn, "", func() error {
			_, err := d.r.cl.ELB.DeleteTargetGroup(ctx, &elb.DeleteTargetGroupInput{TargetGroupArn: aws.String(arn)})
			return err
		})
	}
}

func (d *deleter) keyPairs(ctx context.Context) {
	out, err := d.r.cl.EC2.DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{Filters: d.ec2Filter()})
	if err != nil {
		d.fail("list key pairs", err)
		return
	}
	for _, k := range out.KeyPairs {
		id := aws.ToString(k.KeyPairId)
		d.do(ctx, "KeyPair", id, aws.ToString(k.KeyName), func() error {
			_, err := d.r.cl.EC2.DeleteKeyPair(ctx, &ec2.DeleteKeyPairInput{KeyPairId: aws.String(id)})
			return err
		})
	}
}

// iam removes the cluster's instance profiles and roles. IAM cannot be searched by tag cheaply, so they
// are found by their names and deleted only when they carry the cluster's tag.
func (d *deleter) iam(ctx context.Context) {
	cl := d.r.cl.IAM
	for _, role := range []string{roleControlPlane, roleNodes} {
		name := d.r.m.names.Role(role)
		prof, err := cl.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(name)})
		switch {
		case isCode(err, "NoSuchEntity"):
		case err != nil:
			d.fail("get instance profile "+name, err)
		case !ownedByCluster(prof.InstanceProfile.Tags, d.r.m.names.Cluster):
			d.fail("delete instance profile "+name, fmt.Errorf("not tagged %s=%s, left alone", TagCluster, d.r.m.names.Cluster))
		default:
			d.do(ctx, "InstanceProfile", name, "", func() error {
				for _, ro := range prof.InstanceProfile.Roles {
					_, err := cl.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{InstanceProfileName: aws.String(name), RoleName: ro.RoleName})
					if err != nil && !isCode(err, "NoSuchEntity") {
						return err
					}
				}
				_, err := cl.DeleteInstanceProfile(ctx, &iam.DeleteInstanceProfileInput{InstanceProfileName: aws.String(name)})
				return err
			})
		}
		ro, err := cl.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
		switch {
		case isCode(err, "NoSuchEntity"):
		case err != nil:
			d.fail("get IAM role "+name, err)
		case !ownedByCluster(ro.Role.Tags, d.r.m.names.Cluster):
			d.fail("delete IAM role "+name, fmt.Errorf("not tagged %s=%s, left alone", TagCluster, d.r.m.names.Cluster))
		default:
			d.do(ctx, "IAMRole", name, "", func() error {
				pols, err := cl.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(name)})
				if err != nil {
					return err
				}
				for _, p := range pols.PolicyNames {
					if _, err := cl.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String(p)}); err != nil {
						return err
					}
				}
				_, err = cl.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(name)})
				return err
			})
		}
	}
}

// securityGroups first revokes every rule of the cluster's groups (they refer to each other), then
// deletes them; a load balancer's network interfaces may hold a group for a while after it is gone.
func (d *deleter) securityGroups(ctx context.Context) {
	out, err := d.r.cl.EC2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: d.ec2Filter()})
	if err != nil {
		d.fail("list security groups", err)
		return
	}
	for _, g := range out.SecurityGroups {
		if len(g.IpPermissions) == 0 {
			continue
		}
		if _, err := d.r.cl.EC2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: g.GroupId, IpPermissions: g.IpPermissions}); err != nil {
			d.fail("revoke rules of security group "+aws.ToString(g.GroupId), err)
		}
	}
	for _, g := range out.SecurityGroups {
		id := aws.ToString(g.GroupId)
		d.do(ctx, "SecurityGroup", id, aws.ToString(g.GroupName), func() error {
			_, err := d.r.cl.EC2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: aws.String(id)})
			return err
		})
	}
}

func (d *deleter) routeTables(ctx context.Context) {
	out, err := d.r.cl.EC2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: d.ec2Filter()})
	if err != nil {
		d.fail("list route tables", err)
		return
	}
	for _, rt := range out.RouteTables {
		id := aws.ToString(rt.RouteTableId)
		d.do(ctx, "RouteTable", id, "", func() error {
			for _, as := range rt.Associations {
				if aws.ToBool(as.Main) {
					continue
				}
				_, err := d.r.cl.EC2.DisassociateRouteTable(ctx, &ec2.DisassociateRouteTableInput{AssociationId: as.RouteTableAssociationId})
				if err != nil && !isCode(err, "InvalidAssociationID.NotFound") {
					return err
				}
			}
			_, err := d.r.cl.EC2.DeleteRouteTable(ctx, &ec2.DeleteRouteTableInput{RouteTableId: aws.String(id)})
			return err
		})
	}
}

func (d *deleter) subnets(ctx context.Context) {
	out, err := d.r.cl.EC2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: d.ec2Filter()})
	if err != nil {
		d.fail("list subnets", err)
		return
	}
	for _, s := range out.Subnets {
		id := aws.ToString(s.SubnetId)
		d.do(ctx, "Subnet", id, aws.ToString(s.AvailabilityZone), func() error {
			_, err := d.r.cl.EC2.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: aws.String(id)})
			return err
		})
	}
}

func (d *deleter) internetGateways(ctx context.Context) {
	out, err := d.r.cl.EC2.DescribeInternetGateways(ctx, &ec2.DescribeInternetGatewaysInput{Filters: d.ec2Filter()})
	if err != nil {
		d.fail("list internet gateways", err)
		return
	}
	for _, g := range out.InternetGateways {
		id := aws.ToString(g.InternetGatewayId)
		d.do(ctx, "InternetGateway", id, "", func() error {
			for _, att := range g.Attachments {
				_, err := d.r.cl.EC2.DetachInternetGateway(ctx, &ec2.DetachInternetGatewayInput{InternetGatewayId: aws.String(id), VpcId: att.VpcId})
				if err != nil && !isCode(err, "Gateway.NotAttached") {
					return err
				}
			}
			_, err := d.r.cl.EC2.DeleteInternetGateway(ctx, &ec2.DeleteInternetGatewayInput{InternetGatewayId: aws.String(id)})
			return err
		})
	}
}

// vpcs deletes the cluster's VPC; an existing VPC named in the spec carries no tag and stays.
func (d *deleter) vpcs(ctx context.Context) {
	out, err := d.r.cl.EC2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{Filters: d.ec2Filter()})
	if err != nil {
		d.fail("list VPCs", err)
		return
	}
	for _, v := range out.Vpcs {
		id := aws.ToString(v.VpcId)
		d.do(ctx, "VPC", id, "", func() error {
			_, err := d.r.cl.EC2.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: aws.String(id)})
			return err
		})
	}
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
