package aws

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/kubedirect/kubedirect/provision/aws/fake"
	"github.com/kubedirect/kubedirect/provision/spec"
)

// The scenario suite: the same create / second create / delete / resume / control-plane scenarios
// run against the in-memory fake (TestFakeScenarios) and against moto, an AWS emulator we did not
// write (TestMotoScenarios). They look at the account only through the AWS APIs, so where the two
// disagree the fake is wrong.

// account is an AWS account a scenario runs in.
type account struct {
	clients *Clients
	// mutations counts the calls so far that create, change or delete something, by operation.
	mutations func() map[string]int
	// interruptAt makes the next call of op fail, as if the run had been killed there.
	interruptAt func(op string)
	// targetHealth makes the API's targets report this state ("" = healthy); nil where the account
	// cannot pretend (moto reports what it reports).
	targetHealth func(state string)
	// poll is how often the provider looks again while it waits.
	poll time.Duration
}

// errInterrupted is what an interrupted call returns: not an AWS error, so nothing retries it.
var errInterrupted = errors.New("interrupted: the run was killed here")

func (a *account) provider() *Provider {
	return NewProvider(WithClients(a.clients), WithBackoff(Backoff{Attempts: 8, Initial: time.Millisecond, Max: 20 * time.Millisecond}), WithPollInterval(a.poll))
}

// scenarioBucket is the state-store bucket of every scenario's account.
const scenarioBucket = "example-kubedirect-state"

// fakeAccount is a fresh in-memory account with the state-store bucket.
func fakeAccount() *account {
	cloud := fake.New("eu-west-1")
	cloud.AddBucket(scenarioBucket, "eu-west-1")
	return &account{
		clients:      &Clients{EC2: cloud.EC2(), IAM: cloud.IAM(), AutoScaling: cloud.AutoScaling(), ELB: cloud.ELB(), S3: cloud.S3(), STS: cloud.STS()},
		mutations:    cloud.MutatingCalls,
		interruptAt:  func(op string) { cloud.FailNext(op, errInterrupted) },
		targetHealth: cloud.SetTargetHealth,
		poll:         time.Millisecond,
	}
}

// scenario is one behaviour checked against an account; cluster is a name no other scenario of the
// same account uses.
type scenario struct {
	name string
	run  func(t *testing.T, a *account, cluster string)
}

var scenarios = []scenario{
	{"Lifecycle", scenarioLifecycle},
	{"ResumeAfterInterruption", scenarioResume},
	{"DeleteAfterInterruption", scenarioDeleteAfterInterruption},
	{"ThreeControlPlanes", scenarioThreeControlPlanes},
	{"WaitForTheAPI", scenarioWaitForTheAPI},
}

func TestFakeScenarios(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, fakeAccount(), "prod") })
	}
}

// scenarioCluster is the shipped examples/aws.yaml under another name.
func scenarioCluster(t *testing.T, name string) *spec.Cluster {
	t.Helper()
	c := loadExample(t)
	c.Metadata.Name = name
	return c
}

// expectedCensus is what create makes for the example: the tagged resources by kind.
func expectedCensus(controlPlanes, workers int) map[string]int {
	return map[string]int{
		"VPC": 1, "Subnet": 2, "InternetGateway": 1, "RouteTable": 1, "SecurityGroup": 3, "IAMRole": 2, "InstanceProfile": 2,
		"LoadBalancer": 2, "TargetGroup": 2, "Listener": 2, "LaunchTemplate": 2, "AutoScalingGroup": 2, "Instance": controlPlanes + workers,
	}
}

func scenarioLifecycle(t *testing.T, a *account, cluster string) {
	ctx := context.Background()
	p := a.provider()
	c := scenarioCluster(t, cluster)
	names := mustNames(t, c)

	plan, err := p.Create(ctx, c)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if plan.Pending() != len(plan.Items) {
		t.Errorf("created %d of %d resources on an empty account", plan.Pending(), len(plan.Items))
	}
	for _, tag := range [][2]string{{TagCluster, cluster}, {KubernetesClusterTag(cluster), "owned"}} {
		got := census(t, a.clients, names, tag[0], tag[1])
		if want := expectedCensus(1, 3); !mapsEqual(got, want) {
			t.Errorf("resources tagged %s=%s after create: %v, want %v", tag[0], tag[1], got, want)
		}
	}
	for _, f := range []string{FileSpec, FileState, FileCACert, FileCAKey, FileCACertHash, FileToken} {
		if !slices.Contains(stateObjects(t, a.clients, names), names.StateKey(f)) {
			t.Errorf("state store lacks %s", f)
		}
	}
	checkInService(t, a.clients, names, c)

	t.Run("NodesReachTheAPIWithTheShippedAccess", func(t *testing.T) { checkNodesReachTheAPI(t, a.clients, names, c) })
	t.Run("APIHealthChecksAndCrossZone", func(t *testing.T) { checkHealthChecks(t, a.clients, names) })

	before := a.mutations()
	plan, err = p.Plan(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Pending() != 0 {
		t.Fatalf("plan on an applied cluster has %d changes:\n%s", plan.Pending(), plan)
	}
	if _, err := p.Create(ctx, c); err != nil {
		t.Fatalf("second create: %v", err)
	}
	// Only the lock is written and released.
	before["PutObject"]++
	before["DeleteObject"]++
	if after := a.mutations(); !mapsEqual(before, after) {
		t.Errorf("second create changed something: calls before (plus the lock) %v, after %v", before, after)
	}

	report, err := p.Delete(ctx, c)
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if len(report.Deleted) == 0 {
		t.Error("delete reports nothing deleted")
	}
	for _, tag := range [][2]string{{TagCluster, cluster}, {KubernetesClusterTag(cluster), "owned"}} {
		if got := census(t, a.clients, names, tag[0], tag[1]); len(got) > 0 {
			t.Errorf("resources tagged %s=%s left after delete: %v", tag[0], tag[1], got)
		}
	}
	if objs := stateObjects(t, a.clients, names); len(objs) > 0 {
		t.Errorf("state store objects left: %v", objs)
	}
	report, err = p.Delete(ctx, c)
	if err != nil || len(report.Deleted) != 0 {
		t.Errorf("second delete: %v, deleted %v", err, report.Deleted)
	}
}

// interruptions are where the resume scenario kills a create: right after a resource is made and
// before it is configured, in the middle of the security groups, and at the node groups.
var interruptions = []string{"ModifyTargetGroupAttributes", "AuthorizeSecurityGroupIngress", "CreateAutoScalingGroup"}

func scenarioResume(t *testing.T, a *account, cluster string) {
	ctx := context.Background()
	p := a.provider()
	for i, op := range interruptions {
		name := fmt.Sprintf("%s-%d", cluster, i)
		c := scenarioCluster(t, name)
		names := mustNames(t, c)
		a.interruptAt(op)
		if _, err := p.Create(ctx, c); !errors.Is(err, errInterrupted) {
			t.Fatalf("create interrupted at %s: %v", op, err)
		}
		if _, err := p.Create(ctx, c); err != nil {
			t.Fatalf("create after the interruption at %s: %v", op, err)
		}
		if got, want := census(t, a.clients, names, TagCluster, name), expectedCensus(1, 3); !mapsEqual(got, want) {
			t.Errorf("interrupted at %s, then resumed: %v, want %v", op, got, want)
		}
		if plan, err := p.Plan(ctx, c); err != nil || plan.Pending() != 0 {
			t.Errorf("plan after resuming from %s: %v, %d pending", op, err, plan.Pending())
		}
		if _, err := p.Delete(ctx, c); err != nil {
			t.Errorf("delete: %v", err)
		}
		if got := census(t, a.clients, names, TagCluster, name); len(got) > 0 {
			t.Errorf("left after delete: %v", got)
		}
	}
}

// scenarioDeleteAfterInterruption: a create killed halfway leaves resources that delete still finds
// by their tags and removes, with the state store.
func scenarioDeleteAfterInterruption(t *testing.T, a *account, cluster string) {
	ctx := context.Background()
	p := a.provider()
	c := scenarioCluster(t, cluster)
	names := mustNames(t, c)
	a.interruptAt("CreateListener")
	if _, err := p.Create(ctx, c); !errors.Is(err, errInterrupted) {
		t.Fatalf("create interrupted at CreateListener: %v", err)
	}
	if got := census(t, a.clients, names, TagCluster, cluster); got["LoadBalancer"] != 1 || got["VPC"] != 1 {
		t.Fatalf("the interrupted create made %v, want a VPC and a load balancer among them", got)
	}
	if _, err := p.Delete(ctx, c); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if got := census(t, a.clients, names, TagCluster, cluster); len(got) > 0 {
		t.Errorf("left after delete: %v", got)
	}
	if objs := stateObjects(t, a.clients, names); len(objs) > 0 {
		t.Errorf("state store objects left: %v", objs)
	}
}

func scenarioThreeControlPlanes(t *testing.T, a *account, cluster string) {
	ctx := context.Background()
	p := a.provider()
	c := scenarioCluster(t, cluster)
	c.Spec.NodeGroups[0].Count = 3
	c.Spec.NodeGroups[1].Count = 1
	names := mustNames(t, c)
	if _, err := p.Create(ctx, c); err != nil {
		t.Fatalf("create: %v", err)
	}
	if got, want := census(t, a.clients, names, TagCluster, cluster), expectedCensus(3, 1); !mapsEqual(got, want) {
		t.Errorf("census: %v, want %v", got, want)
	}
	checkInService(t, a.clients, names, c)
	// Auto Scaling spreads a group's instances over its subnets' zones (moto does not emulate that).
	asg, err := a.clients.AutoScaling.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{names.NodeGroup("control-plane")}})
	if err != nil {
		t.Fatal(err)
	}
	subnets, err := a.clients.EC2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: strings.Split(awssdk.ToString(asg.AutoScalingGroups[0].VPCZoneIdentifier), ",")})
	if err != nil {
		t.Fatal(err)
	}
	var zones []string
	for _, s := range subnets.Subnets {
		zones = append(zones, awssdk.ToString(s.AvailabilityZone))
	}
	slices.Sort(zones)
	if !slices.Equal(zones, c.Spec.AWS.Zones) {
		t.Errorf("the control planes' group spans zones %v, want %v", zones, c.Spec.AWS.Zones)
	}
	for _, lb := range []string{names.LoadBalancer(), names.InternalLoadBalancer()} {
		tgs, err := a.clients.ELB.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{lb}})
		if err != nil {
			t.Fatal(err)
		}
		h, err := a.clients.ELB.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: tgs.TargetGroups[0].TargetGroupArn})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(h.TargetHealthDescriptions); n != 3 {
			t.Errorf("target group %s has %d targets, want the 3 control planes", lb, n)
		}
	}
	if _, err := p.Delete(ctx, c); err != nil {
		t.Errorf("delete: %v", err)
	}
}

func scenarioWaitForTheAPI(t *testing.T, a *account, cluster string) {
	ctx := context.Background()
	p := a.provider()
	c := scenarioCluster(t, cluster)
	if _, err := p.Create(ctx, c); err != nil {
		t.Fatalf("create: %v", err)
	}
	defer func() {
		if _, err := p.Delete(ctx, c); err != nil {
			t.Errorf("delete: %v", err)
		}
	}()
	if a.targetHealth != nil {
		a.targetHealth("initial")
		err := p.WaitAPIHealthy(ctx, c, 20*a.poll)
		if !errors.Is(err, ErrAPIUnhealthy) || !strings.Contains(err.Error(), "initial") {
			t.Errorf("wait while the API server is not up: %v, want %v naming the targets' state", err, ErrAPIUnhealthy)
		}
		a.targetHealth("")
	}
	if err := p.WaitAPIHealthy(ctx, c, time.Minute); err != nil {
		t.Errorf("wait for healthy targets: %v", err)
	}
}

func mustNames(t *testing.T, c *spec.Cluster) Names {
	t.Helper()
	n, err := clusterNames(c)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// census counts the resources carrying the tag key=value by kind, asking the account's APIs.
func census(t *testing.T, cl *Clients, names Names, key, value string) map[string]int {
	t.Helper()
	ctx := context.Background()
	out := map[string]int{}
	add := func(kind string, n int) {
		if n > 0 {
			out[kind] += n
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("census: %v", err)
		}
	}
	f := []ec2types.Filter{filter("tag:"+key, value)}
	vpcs, err := cl.EC2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{Filters: f})
	must(err)
	add("VPC", len(vpcs.Vpcs))
	subnets, err := cl.EC2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: f})
	must(err)
	add("Subnet", len(subnets.Subnets))
	igws, err := cl.EC2.DescribeInternetGateways(ctx, &ec2.DescribeInternetGatewaysInput{Filters: f})
	must(err)
	add("InternetGateway", len(igws.InternetGateways))
	rts, err := cl.EC2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: f})
	must(err)
	add("RouteTable", len(rts.RouteTables))
	sgs, err := cl.EC2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: f})
	must(err)
	add("SecurityGroup", len(sgs.SecurityGroups))
	lts, err := cl.EC2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{Filters: f})
	must(err)
	add("LaunchTemplate", len(lts.LaunchTemplates))
	keys, err := cl.EC2.DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{Filters: f})
	must(err)
	add("KeyPair", len(keys.KeyPairs))
	inst, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: append(f, filter("instance-state-name", "pending", "running", "stopping", "stopped"))})
	must(err)
	for _, r := range inst.Reservations {
		add("Instance", len(r.Instances))
	}
	asgs, err := cl.AutoScaling.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{Filters: []astypes.Filter{{Name: awssdk.String("tag:" + key), Values: []string{value}}}})
	must(err)
	add("AutoScalingGroup", len(asgs.AutoScalingGroups))

	lbs, err := cl.ELB.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{})
	must(err)
	var lbArns []string
	for _, lb := range lbs.LoadBalancers {
		lbArns = append(lbArns, awssdk.ToString(lb.LoadBalancerArn))
	}
	tgs, err := cl.ELB.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{})
	must(err)
	var tgArns []string
	for _, tg := range tgs.TargetGroups {
		tgArns = append(tgArns, awssdk.ToString(tg.TargetGroupArn))
	}
	var listenerArns []string
	for _, arn := range lbArns {
		ls, err := cl.ELB.DescribeListeners(ctx, &elb.DescribeListenersInput{LoadBalancerArn: awssdk.String(arn)})
		must(err)
		for _, l := range ls.Listeners {
			listenerArns = append(listenerArns, awssdk.ToString(l.ListenerArn))
		}
	}
	for kind, arns := range map[string][]string{"LoadBalancer": lbArns, "TargetGroup": tgArns, "Listener": listenerArns} {
		for i := 0; i < len(arns); i += 20 {
			tags, err := cl.ELB.DescribeTags(ctx, &elb.DescribeTagsInput{ResourceArns: arns[i:min(i+20, len(arns))]})
			must(err)
			for _, td := range tags.TagDescriptions {
				for _, tag := range td.Tags {
					if awssdk.ToString(tag.Key) == key && awssdk.ToString(tag.Value) == value {
						add(kind, 1)
					}
				}
			}
		}
	}

	for _, role := range []string{roleControlPlane, roleNodes} {
		name := names.Role(role)
		r, err := cl.IAM.GetRole(ctx, &iam.GetRoleInput{RoleName: awssdk.String(name)})
		if !isCode(err, "NoSuchEntity") {
			must(err)
			if hasIAMTag(r.Role.Tags, key, value) {
				add("IAMRole", 1)
			}
		}
		p, err := cl.IAM.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: awssdk.String(name)})
		if !isCode(err, "NoSuchEntity") {
			must(err)
			if hasIAMTag(p.InstanceProfile.Tags, key, value) {
				add("InstanceProfile", 1)
			}
		}
	}
	return out
}

func hasIAMTag(tags []iamtypes.Tag, key, value string) bool {
	return slices.ContainsFunc(tags, func(t iamtypes.Tag) bool { return awssdk.ToString(t.Key) == key && awssdk.ToString(t.Value) == value })
}

// stateObjects lists the cluster's objects in the state store.
func stateObjects(t *testing.T, cl *Clients, names Names) []string {
	t.Helper()
	var keys []string
	var token *string
	for {
		out, err := cl.S3.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: awssdk.String(names.Bucket()), Prefix: awssdk.String(names.StateKey("")), ContinuationToken: token})
		if err != nil {
			t.Fatalf("list state store: %v", err)
		}
		for _, o := range out.Contents {
			keys = append(keys, awssdk.ToString(o.Key))
		}
		if !awssdk.ToBool(out.IsTruncated) {
			return keys
		}
		token = out.NextContinuationToken
	}
}

// checkInService checks that every node group's auto scaling group has its count of instances in
// service.
func checkInService(t *testing.T, cl *Clients, names Names, c *spec.Cluster) {
	t.Helper()
	for _, g := range c.Spec.NodeGroups {
		out, err := cl.AutoScaling.DescribeAutoScalingGroups(context.Background(), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{names.NodeGroup(g.Name)}})
		if err != nil || len(out.AutoScalingGroups) != 1 {
			t.Fatalf("auto scaling group %s: %v", names.NodeGroup(g.Name), err)
		}
		n := 0
		for _, i := range out.AutoScalingGroups[0].Instances {
			if i.LifecycleState == astypes.LifecycleStateInService {
				n++
			}
		}
		if n != g.Count {
			t.Errorf("node group %s: %d instances in service, want %d", g.Name, n, g.Count)
		}
	}
}

// checkNodesReachTheAPI follows, through the rendered resources, the path a node takes to the API
// server with the spec's own access.api: the endpoint in the node groups' user-data must be a load
// balancer inside the VPC whose security group admits the nodes' group on 6443, with a listener that
// forwards to a target group the control planes register with, and the nodes' group must admit that
// load balancer's group on 6443.
func checkNodesReachTheAPI(t *testing.T, cl *Clients, names Names, c *spec.Cluster) {
	ctx := context.Background()
	sgID := func(purpose string) string {
		out, err := cl.EC2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{filter("tag:"+tagName, names.SecurityGroup(purpose)), filter("tag:"+TagCluster, names.Cluster)}})
		if err != nil || len(out.SecurityGroups) != 1 {
			t.Fatalf("security group %s: %v", purpose, err)
		}
		return awssdk.ToString(out.SecurityGroups[0].GroupId)
	}
	nodes := sgID(sgNodes)
	admits := func(group, fromGroup string) bool {
		out, err := cl.EC2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{group}})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range out.SecurityGroups[0].IpPermissions {
			proto := awssdk.ToString(p.IpProtocol)
			if proto != "-1" && !(proto == "tcp" && awssdk.ToInt32(p.FromPort) <= 6443 && awssdk.ToInt32(p.ToPort) >= 6443) {
				continue
			}
			for _, pair := range p.UserIdGroupPairs {
				if awssdk.ToString(pair.GroupId) == fromGroup {
					return true
				}
			}
		}
		return false
	}
	for _, g := range c.Spec.NodeGroups {
		lts, err := cl.EC2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{Filters: []ec2types.Filter{filter("launch-template-name", names.NodeGroup(g.Name))}})
		if err != nil || len(lts.LaunchTemplates) != 1 {
			t.Fatalf("launch template of %s: %v", g.Name, err)
		}
		v, err := cl.EC2.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateId: lts.LaunchTemplates[0].LaunchTemplateId, Versions: []string{"$Default"}})
		if err != nil {
			t.Fatal(err)
		}
		endpoint := userDataValue(t, awssdk.ToString(v.LaunchTemplateVersions[0].LaunchTemplateData.UserData), "API_ENDPOINT")
		lbs, err := cl.ELB.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{})
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(lbs.LoadBalancers, func(lb elbtypes.LoadBalancer) bool { return awssdk.ToString(lb.DNSName) == endpoint })
		if i < 0 {
			t.Fatalf("node group %s: user-data names API endpoint %q, which no load balancer has", g.Name, endpoint)
		}
		lb := lbs.LoadBalancers[i]
		if lb.Scheme != "internal" {
			t.Errorf("node group %s reaches the API through the %s load balancer %s: from its public address, which the access rules do not admit", g.Name, lb.Scheme, awssdk.ToString(lb.LoadBalancerName))
		}
		if !slices.ContainsFunc(lb.SecurityGroups, func(sg string) bool { return admits(sg, nodes) }) {
			t.Errorf("no security group of %s admits the nodes' group on 6443", awssdk.ToString(lb.LoadBalancerName))
		}
		if !slices.ContainsFunc(lb.SecurityGroups, func(sg string) bool { return admits(nodes, sg) }) {
			t.Errorf("the nodes' group does not admit %s's group on 6443", awssdk.ToString(lb.LoadBalancerName))
		}
		ls, err := cl.ELB.DescribeListeners(ctx, &elb.DescribeListenersInput{LoadBalancerArn: lb.LoadBalancerArn})
		if err != nil {
			t.Fatal(err)
		}
		var tg string
		for _, l := range ls.Listeners {
			if awssdk.ToInt32(l.Port) == 6443 && len(l.DefaultActions) == 1 {
				tg = awssdk.ToString(l.DefaultActions[0].TargetGroupArn)
			}
		}
		cp, err := cl.AutoScaling.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{names.NodeGroup(c.Spec.NodeGroups[0].Name)}})
		if err != nil {
			t.Fatal(err)
		}
		if tg == "" || !slices.Contains(cp.AutoScalingGroups[0].TargetGroupARNs, tg) {
			t.Errorf("%s:6443 does not forward to a target group of the control planes (%q)", awssdk.ToString(lb.LoadBalancerName), tg)
		}
	}
}

// checkHealthChecks: the API's target groups check every 10 s and decide after 2 checks, and spread
// over the zones.
func checkHealthChecks(t *testing.T, cl *Clients, names Names) {
	ctx := context.Background()
	for _, name := range []string{names.LoadBalancer(), names.InternalLoadBalancer()} {
		out, err := cl.ELB.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{name}})
		if err != nil {
			t.Fatal(err)
		}
		tg := out.TargetGroups[0]
		if got := [3]int32{awssdk.ToInt32(tg.HealthCheckIntervalSeconds), awssdk.ToInt32(tg.HealthyThresholdCount), awssdk.ToInt32(tg.UnhealthyThresholdCount)}; got != [3]int32{10, 2, 2} {
			t.Errorf("target group %s: health check interval, healthy and unhealthy thresholds %v, want [10 2 2]", name, got)
		}
		attrs, err := cl.ELB.DescribeTargetGroupAttributes(ctx, &elb.DescribeTargetGroupAttributesInput{TargetGroupArn: tg.TargetGroupArn})
		if err != nil {
			t.Fatal(err)
		}
		crossZone := ""
		for _, a := range attrs.Attributes {
			if awssdk.ToString(a.Key) == attrCrossZone {
				crossZone = awssdk.ToString(a.Value)
			}
		}
		if crossZone != "true" {
			t.Errorf("target group %s: cross-zone load balancing %q, want true", name, crossZone)
		}
	}
}

// userDataValue is the value of the shell assignment NAME=value in base64 user-data.
func userDataValue(t *testing.T, b64, name string) string {
	t.Helper()
	ud, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(ud), "\n") {
		if v, ok := strings.CutPrefix(line, name+"="); ok {
			return v
		}
	}
	t.Fatalf("user-data sets no %s", name)
	return ""
}

// callRecorder counts the mutating calls made through SDK clients and interrupts the ones asked for.
type callRecorder struct {
	mu         sync.Mutex
	calls      map[string]int
	interrupts map[string]int
}

func (r *callRecorder) record(op string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !strings.HasPrefix(op, "Describe") && !strings.HasPrefix(op, "Get") && !strings.HasPrefix(op, "List") {
		r.calls[op]++
	}
	if r.interrupts[op] > 0 {
		r.interrupts[op]--
		return errInterrupted
	}
	return nil
}

func (r *callRecorder) mutations() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.calls {
		out[k] = v
	}
	return out
}

func (r *callRecorder) interruptAt(op string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.interrupts[op]++
}
