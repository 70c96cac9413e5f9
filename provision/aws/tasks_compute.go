package aws

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/kubedirect/kubedirect/provision/spec"
)

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// keyPairTask imports the spec's SSH public key; a different key needs a new key pair.
type keyPairTask struct{ m *model }

func (t *keyPairTask) Key() string    { return "keypair" }
func (t *keyPairTask) Kind() string   { return "KeyPair" }
func (t *keyPairTask) Name() string   { return t.m.names.KeyPair() }
func (t *keyPairTask) Deps() []string { return nil }

func (t *keyPairTask) keyHash() string { return sha256Hex([]byte(strings.TrimSpace(t.m.sshKey))) }

func (t *keyPairTask) Desired(*run) []Field {
	return []Field{{Name: "publicKeySHA256", Value: t.keyHash(), Immutable: true}}
}

func (t *keyPairTask) Find(ctx context.Context, r *run) (*actual, error) {
	out, err := r.cl.EC2.DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{Filters: []ec2types.Filter{filter("key-name", t.Name())}})
	if err != nil || len(out.KeyPairs) == 0 {
		return nil, err
	}
	k := out.KeyPairs[0]
	a := &actual{ID: aws.ToString(k.KeyPairId)}
	for _, tag := range k.Tags {
		if aws.ToString(tag.Key) == TagPublicKey {
			a.Fields = append(a.Fields, Field{Name: "publicKeySHA256", Value: aws.ToString(tag.Value)})
		}
	}
	return a, nil
}

func (t *keyPairTask) Render(ctx context.Context, r *run, _ *actual, _ []Change) (*actual, error) {
	tags := t.m.tags(t.Name())
	tags[TagPublicKey] = t.keyHash()
	out, err := r.cl.EC2.ImportKeyPair(ctx, &ec2.ImportKeyPairInput{KeyName: aws.String(t.Name()), PublicKeyMaterial: []byte(t.m.sshKey), TagSpecifications: tagSpec(ec2types.ResourceTypeKeyPair, tags)})
	if err != nil {
		return nil, err
	}
	return &actual{ID: aws.ToString(out.KeyPairId), Fields: t.Desired(r)}, nil
}

func elbTags(tags map[string]string) []elbtypes.Tag {
	out := make([]elbtypes.Tag, 0, len(tags))
	for _, k := range sortedKeys(tags) {
		out = append(out, elbtypes.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return out
}

// The API's load balancers. The internet-facing one serves the operator (access.api); the internal one
// serves the nodes: they reach an internet-facing load balancer through their public addresses, which
// no security group rule naming the nodes' group matches, so they get a path inside the VPC that does
// not depend on the operator's CIDRs.
type apiLB struct {
	m        *model
	internal bool
}

// key is a task key of this load balancer's resources: "tg", "nlb", "listener" for the public one,
// with "-internal" appended for the internal one.
func (l apiLB) key(base string) string {
	if l.internal {
		return base + "-internal"
	}
	return base
}

func (l apiLB) name() string {
	if l.internal {
		return l.m.names.InternalLoadBalancer()
	}
	return l.m.names.LoadBalancer()
}

func (l apiLB) securityGroup() string {
	if l.internal {
		return "sg/" + sgAPIInternal
	}
	return "sg/" + sgAPILB
}

func (l apiLB) scheme() elbtypes.LoadBalancerSchemeEnum {
	if l.internal {
		return elbtypes.LoadBalancerSchemeEnumInternal
	}
	return elbtypes.LoadBalancerSchemeEnumInternetFacing
}

// Health checks of the API's targets: a TCP connect every 10 s, healthy or unhealthy after two in a
// row, so a new control plane serves within about 20 s of its API server listening (AWS's defaults,
// 30 s and 5 checks, take about 150 s).
const (
	healthCheckInterval  = 10
	healthCheckTimeout   = 5
	healthCheckThreshold = 2
)

var healthCheck = fmt.Sprintf("TCP every %ds, timeout %ds, healthy after %d, unhealthy after %d", healthCheckInterval, healthCheckTimeout, healthCheckThreshold, healthCheckThreshold)

// Target group attributes kubedirect sets.
const (
	attrPreserveClientIP = "preserve_client_ip.enabled"
	attrCrossZone        = "load_balancing.cross_zone.enabled"
)

// targetGroupTask is an API load balancer's target group: the control-plane instances on 6443/tcp.
// The client IP is not preserved, so the nodes' security group needs to admit only the load balancer's
// group (and a control plane reaches itself through the load balancer). Cross-zone load balancing is
// on: with one control plane, every zone's load balancer node must reach it.
type targetGroupTask struct{ apiLB }

func (t *targetGroupTask) Key() string    { return t.key("tg") }
func (t *targetGroupTask) Kind() string   { return "TargetGroup" }
func (t *targetGroupTask) Name() string   { return t.name() }
func (t *targetGroupTask) Deps() []string { return []string{"vpc"} }

func (t *targetGroupTask) Desired(r *run) []Field {
	return []Field{
		{Name: "vpc", Value: r.ref("vpc"), Immutable: true},
		{Name: "target", Value: "instance TCP 6443", Immutable: true},
		{Name: "healthCheck", Value: healthCheck},
		{Name: "preserveClientIp", Value: "false"},
		{Name: "crossZone", Value: "true"},
	}
}

func (t *targetGroupTask) Find(ctx context.Context, r *run) (*actual, error) {
	out, err := r.cl.ELB.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{t.Name()}})
	if isCode(err, "TargetGroupNotFound") {
		return nil, nil
	}
	if err != nil || len(out.TargetGroups) == 0 {
		return nil, err
	}
	tg := out.TargetGroups[0]
	arn := aws.ToString(tg.TargetGroupArn)
	attrs, err := r.cl.ELB.DescribeTargetGroupAttributes(ctx, &elb.DescribeTargetGroupAttributesInput{TargetGroupArn: aws.String(arn)})
	if err != nil {
		return nil, err
	}
	// AWS's defaults when the attributes are not listed.
	preserve, crossZone := "true", "use_load_balancer_configuration"
	for _, at := range attrs.Attributes {
		switch aws.ToString(at.Key) {
		case attrPreserveClientIP:
			preserve = aws.ToString(at.Value)
		case attrCrossZone:
			crossZone = aws.ToString(at.Value)
		}
	}
	return &actual{ID: arn, Attrs: map[string]string{"arn": arn}, Fields: []Field{
		{Name: "vpc", Value: aws.ToString(tg.VpcId)},
		{Name: "target", Value: fmt.Sprintf("%s %s %d", tg.TargetType, tg.Protocol, aws.ToInt32(tg.Port))},
		{Name: "healthCheck", Value: fmt.Sprintf("%s every %ds, timeout %ds, healthy after %d, unhealthy after %d", tg.HealthCheckProtocol,
			aws.ToInt32(tg.HealthCheckIntervalSeconds), aws.ToInt32(tg.HealthCheckTimeoutSeconds), aws.ToInt32(tg.HealthyThresholdCount), aws.ToInt32(tg.UnhealthyThresholdCount))},
		{Name: "preserveClientIp", Value: preserve},
		{Name: "crossZone", Value: crossZone},
	}}, nil
}

func (t *targetGroupTask) Render(ctx context.Context, r *run, a *actual, changes []Change) (*actual, error) {
	if a == nil {
		out, err := r.cl.ELB.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{
			Name: aws.String(t.Name()), VpcId: aws.String(r.ref("vpc")), TargetType: elbtypes.TargetTypeEnumInstance,
			Protocol: elbtypes.ProtocolEnumTcp, Port: aws.Int32(6443), HealthCheckProtocol: elbtypes.ProtocolEnumTcp,
			HealthCheckIntervalSeconds: aws.Int32(healthCheckInterval), HealthCheckTimeoutSeconds: aws.Int32(healthCheckTimeout),
			HealthyThresholdCount: aws.Int32(healthCheckThreshold), UnhealthyThresholdCount: aws.Int32(healthCheckThreshold),
			Tags: elbTags(t.m.tags(t.Name())),
		})
		if err != nil {
			return nil, err
		}
		arn := aws.ToString(out.TargetGroups[0].TargetGroupArn)
		a = &actual{ID: arn, Attrs: map[string]string{"arn": arn}}
	} else if slices.ContainsFunc(changes, func(c Change) bool { return c.Field == "healthCheck" }) {
		_, err := r.cl.ELB.ModifyTargetGroup(ctx, &elb.ModifyTargetGroupInput{
			TargetGroupArn: aws.String(a.ID), HealthCheckProtocol: elbtypes.ProtocolEnumTcp,
			HealthCheckIntervalSeconds: aws.Int32(healthCheckInterval), HealthCheckTimeoutSeconds: aws.Int32(healthCheckTimeout),
			HealthyThresholdCount: aws.Int32(healthCheckThreshold), UnhealthyThresholdCount: aws.Int32(healthCheckThreshold),
		})
		if err != nil {
			return nil, err
		}
	}
	if _, err := r.cl.ELB.ModifyTargetGroupAttributes(ctx, &elb.ModifyTargetGroupAttributesInput{TargetGroupArn: aws.String(a.ID), Attributes: []elbtypes.TargetGroupAttribute{
		{Key: aws.String(attrPreserveClientIP), Value: aws.String("false")},
		{Key: aws.String(attrCrossZone), Value: aws.String("true")},
	}}); err != nil {
		return nil, err
	}
	return &actual{ID: a.ID, Attrs: a.Attrs, Fields: t.Desired(r)}, nil
}

// loadBalancerTask is one of the API's network load balancers, in every zone's subnet.
type loadBalancerTask struct{ apiLB }

func (t *loadBalancerTask) Key() string  { return t.key("nlb") }
func (t *loadBalancerTask) Kind() string { return "LoadBalancer" }
func (t *loadBalancerTask) Name() string { return t.name() }
func (t *loadBalancerTask) Deps() []string {
	deps := []string{t.securityGroup()}
	for _, z := range t.m.zones {
		deps = append(deps, "subnet/"+z)
	}
	return deps
}

func (t *loadBalancerTask) Desired(r *run) []Field {
	f := []Field{
		{Name: "type", Value: "network " + string(t.scheme()), Immutable: true},
		{Name: "securityGroup", Value: r.ref(t.securityGroup()), Immutable: true},
	}
	for _, z := range t.m.zones {
		f = append(f, Field{Name: "subnet", Value: r.ref("subnet/" + z), Immutable: true})
	}
	return f
}

func (t *loadBalancerTask) Find(ctx context.Context, r *run) (*actual, error) {
	out, err := r.cl.ELB.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{Names: []string{t.Name()}})
	if isCode(err, "LoadBalancerNotFound") {
		return nil, nil
	}
	if err != nil || len(out.LoadBalancers) == 0 {
		return nil, err
	}
	lb := out.LoadBalancers[0]
	arn := aws.ToString(lb.LoadBalancerArn)
	a := &actual{ID: arn, Attrs: map[string]string{"arn": arn, "dns": aws.ToString(lb.DNSName)}, Fields: []Field{{Name: "type", Value: string(lb.Type) + " " + string(lb.Scheme)}}}
	for _, sg := range lb.SecurityGroups {
		a.Fields = append(a.Fields, Field{Name: "securityGroup", Value: sg})
	}
	for _, az := range lb.AvailabilityZones {
		a.Fields = append(a.Fields, Field{Name: "subnet", Value: aws.ToString(az.SubnetId)})
	}
	return a, nil
}

func (t *loadBalancerTask) Render(ctx context.Context, r *run, _ *actual, _ []Change) (*actual, error) {
	var subnets []string
	for _, z := range t.m.zones {
		subnets = append(subnets, r.ref("subnet/"+z))
	}
	out, err := r.cl.ELB.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{
		Name: aws.String(t.Name()), Type: elbtypes.LoadBalancerTypeEnumNetwork, Scheme: t.scheme(),
		Subnets: subnets, SecurityGroups: []string{r.ref(t.securityGroup())}, Tags: elbTags(t.m.tags(t.Name())),
	})
	if err != nil {
		return nil, err
	}
	lb := out.LoadBalancers[0]
	arn := aws.ToString(lb.LoadBalancerArn)
	return &actual{ID: arn, Attrs: map[string]string{"arn": arn, "dns": aws.ToString(lb.DNSName)}, Fields: t.Desired(r)}, nil
}

// listenerTask forwards 6443/tcp of an API load balancer to its target group.
type listenerTask struct{ apiLB }

func (t *listenerTask) Key() string    { return t.key("listener") }
func (t *listenerTask) Kind() string   { return "Listener" }
func (t *listenerTask) Name() string   { return t.name() + ":6443" }
func (t *listenerTask) Deps() []string { return []string{t.key("nlb"), t.key("tg")} }

func (t *listenerTask) Desired(r *run) []Field {
	return []Field{{Name: "forward", Value: "TCP 6443 to " + r.ref(t.key("tg")), Immutable: true}}
}

func (t *listenerTask) Find(ctx context.Context, r *run) (*actual, error) {
	out, err := r.cl.ELB.DescribeListeners(ctx, &elb.DescribeListenersInput{LoadBalancerArn: aws.String(r.ref(t.key("nlb")))})
	if err != nil {
		return nil, err
	}
	for _, l := range out.Listeners {
		if aws.ToInt32(l.Port) != 6443 {
			continue
		}
		a := &actual{ID: aws.ToString(l.ListenerArn)}
		for _, act := range l.DefaultActions {
			a.Fields = append(a.Fields, Field{Name: "forward", Value: fmt.Sprintf("%s %d to %s", l.Protocol, aws.ToInt32(l.Port), aws.ToString(act.TargetGroupArn))})
		}
		return a, nil
	}
	return nil, nil
}

func (t *listenerTask) Render(ctx context.Context, r *run, _ *actual, _ []Change) (*actual, error) {
	out, err := r.cl.ELB.CreateListener(ctx, &elb.CreateListenerInput{
		LoadBalancerArn: aws.String(r.ref(t.key("nlb"))), Protocol: elbtypes.ProtocolEnumTcp, Port: aws.Int32(6443),
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: aws.String(r.ref(t.key("tg")))}},
		Tags:           elbTags(t.m.tags("")),
	})
	if err != nil {
		return nil, err
	}
	return &actual{ID: aws.ToString(out.Listeners[0].ListenerArn), Fields: t.Desired(r)}, nil
}

// launchTemplateTask is a node group's launch template; a change makes a new default version, which
// the group's next instances use (existing ones are not replaced).
type launchTemplateTask struct {
	m     *model
	group spec.NodeGroup
}

func (t *launchTemplateTask) Key() string  { return "lt/" + t.group.Name }
func (t *launchTemplateTask) Kind() string { return "LaunchTemplate" }
func (t *launchTemplateTask) Name() string { return t.m.names.NodeGroup(t.group.Name) }
func (t *launchTemplateTask) Deps() []string {
	deps := []string{"sg/" + sgNodes, "profile/" + roleOf(t.group), "nlb", "nlb-internal"}
	if t.m.sshKey != "" {
		deps = append(deps, "keypair")
	}
	return deps
}

// Root volume of every node.
const (
	rootDevice   = "/dev/sda1"
	rootVolumeGB = 40
)

func (t *launchTemplateTask) image(r *run) string {
	a := arch(machineType(t.group))
	if id := r.images[a]; id != "" {
		return id
	}
	return "(Ubuntu 24.04 " + a + ", newest, looked up at create)"
}

func (t *launchTemplateTask) userData(r *run) (string, error) {
	b, err := RenderUserData(t.m.bootstrap(t.group, r.attr("nlb-internal", "dns"), r.attr("nlb", "dns")))
	return string(b), err
}

func (t *launchTemplateTask) Desired(r *run) []Field {
	ud, err := t.userData(r)
	if err != nil {
		ud = "(" + err.Error() + ")"
	}
	f := []Field{
		{Name: "image", Value: t.image(r)},
		{Name: "instanceType", Value: machineType(t.group)},
		{Name: "instanceProfile", Value: t.m.names.Role(roleOf(t.group))},
		{Name: "securityGroup", Value: r.ref("sg/" + sgNodes)},
		{Name: "metadata", Value: "IMDSv2 required, hop limit 1"},
		{Name: "rootVolume", Value: fmt.Sprintf("%s gp3 %d GiB encrypted", rootDevice, rootVolumeGB)},
		{Name: "userDataSHA256", Value: sha256Hex([]byte(ud))},
	}
	if t.m.sshKey != "" {
		f = append(f, Field{Name: "keyName", Value: t.m.names.KeyPair()})
	}
	return f
}

func (t *launchTemplateTask) Find(ctx context.Context, r *run) (*actual, error) {
	out, err := r.cl.EC2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{Filters: append(t.m.owned(""), filter("launch-template-name", t.Name()))})
	if err != nil || len(out.LaunchTemplates) == 0 {
		return nil, err
	}
	if err := unique("launch template", t.Name(), len(out.LaunchTemplates)); err != nil {
		return nil, err
	}
	id := aws.ToString(out.LaunchTemplates[0].LaunchTemplateId)
	v, err := r.cl.EC2.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateId: aws.String(id), Versions: []string{"$Default"}})
	if err != nil {
		return nil, err
	}
	a := &actual{ID: id}
	if len(v.LaunchTemplateVersions) == 0 || v.LaunchTemplateVersions[0].LaunchTemplateData == nil {
		return a, nil
	}
	d := v.LaunchTemplateVersions[0].LaunchTemplateData
	ud, _ := base64.StdEncoding.DecodeString(aws.ToString(d.UserData))
	a.Fields = []Field{
		{Name: "image", Value: aws.ToString(d.ImageId)},
		{Name: "instanceType", Value: string(d.InstanceType)},
		{Name: "userDataSHA256", Value: sha256Hex(ud)},
	}
	if d.IamInstanceProfile != nil {
		a.Fields = append(a.Fields, Field{Name: "instanceProfile", Value: aws.ToString(d.IamInstanceProfile.Name)})
	}
	for _, sg := range d.SecurityGroupIds {
		a.Fields = append(a.Fields, Field{Name: "securityGroup", Value: sg})
	}
	if mo := d.MetadataOptions; mo != nil {
		a.Fields = append(a.Fields, Field{Name: "metadata", Value: fmt.Sprintf("IMDSv2 %s, hop limit %d", mo.HttpTokens, aws.ToInt32(mo.HttpPutResponseHopLimit))})
	}
	for _, bd := range d.BlockDeviceMappings {
		if e := bd.Ebs; e != nil && aws.ToString(bd.DeviceName) == rootDevice {
			enc := ""
			if aws.ToBool(e.Encrypted) {
				enc = " encrypted"
			}
			a.Fields = append(a.Fields, Field{Name: "rootVolume", Value: fmt.Sprintf("%s %s %d GiB%s", rootDevice, e.VolumeType, aws.ToInt32(e.VolumeSize), enc)})
		}
	}
	if d.KeyName != nil {
		a.Fields = append(a.Fields, Field{Name: "keyName", Value: aws.ToString(d.KeyName)})
	}
	return a, nil
}

func (t *launchTemplateTask) data(r *run) (*ec2types.RequestLaunchTemplateData, error) {
	ud, err := t.userData(r)
	if err != nil {
		return nil, err
	}
	instanceTags := t.m.tags(t.Name())
	instanceTags[TagRole] = string(t.group.Role)
	d := &ec2types.RequestLaunchTemplateData{
		ImageId:            aws.String(t.image(r)),
		InstanceType:       ec2types.InstanceType(machineType(t.group)),
		IamInstanceProfile: &ec2types.LaunchTemplateIamInstanceProfileSpecificationRequest{Name: aws.String(t.m.names.Role(roleOf(t.group)))},
		SecurityGroupIds:   []string{r.ref("sg/" + sgNodes)},
		UserData:           aws.String(base64.StdEncoding.EncodeToString([]byte(ud))),
		MetadataOptions: &ec2types.LaunchTemplateInstanceMetadataOptionsRequest{
			HttpTokens: ec2types.LaunchTemplateHttpTokensStateRequired, HttpPutResponseHopLimit: aws.Int32(1),
			HttpEndpoint: ec2types.LaunchTemplateInstanceMetadataEndpointStateEnabled,
		},
		BlockDeviceMappings: []ec2types.LaunchTemplateBlockDeviceMappingRequest{{
			DeviceName: aws.String(rootDevice),
			Ebs:        &ec2types.LaunchTemplateEbsBlockDeviceRequest{VolumeSize: aws.Int32(rootVolumeGB), VolumeType: ec2types.VolumeTypeGp3, Encrypted: aws.Bool(true), DeleteOnTermination: aws.Bool(true)},
		}},
		TagSpecifications: []ec2types.LaunchTemplateTagSpecificationRequest{
			{ResourceType: ec2types.ResourceTypeInstance, Tags: ec2Tags(instanceTags)},
			{ResourceType: ec2types.ResourceTypeVolume, Tags: ec2Tags(instanceTags)},
		},
	}
	if t.m.sshKey != "" {
		d.KeyName = aws.String(t.m.names.KeyPair())
	}
	return d, nil
}

func (t *launchTemplateTask) Render(ctx context.Context, r *run, a *actual, _ []Change) (*actual, error) {
	d, err := t.data(r)
	if err != nil {
		return nil, err
	}
	if a == nil {
		out, err := r.cl.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
			LaunchTemplateName: aws.String(t.Name()), LaunchTemplateData: d,
			TagSpecifications: tagSpec(ec2types.ResourceTypeLaunchTemplate, t.m.tags(t.Name())),
		})
		if err != nil {
			return nil, err
		}
		return &actual{ID: aws.ToString(out.LaunchTemplate.LaunchTemplateId), Fields: t.Desired(r)}, nil
	}
	out, err := r.cl.EC2.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{LaunchTemplateId: aws.String(a.ID), LaunchTemplateData: d})
	if err != nil {
		return nil, err
	}
	version := strconv.FormatInt(aws.ToInt64(out.LaunchTemplateVersion.VersionNumber), 10)
	if _, err := r.cl.EC2.ModifyLaunchTemplate(ctx, &ec2.ModifyLaunchTemplateInput{LaunchTemplateId: aws.String(a.ID), DefaultVersion: aws.String(version)}); err != nil {
		return nil, err
	}
	return &actual{ID: a.ID, Fields: t.Desired(r)}, nil
}

// apiTargetGroups are the keys of the target groups the control planes register with.
var apiTargetGroups = []string{"tg", "tg-internal"}

// autoScalingGroupTask keeps a node group's instances running: count of them over the zones' subnets;
// the control plane's group registers them with the API's target group.
type autoScalingGroupTask struct {
	m     *model
	group spec.NodeGroup
}

func (t *autoScalingGroupTask) Key() string  { return "asg/" + t.group.Name }
func (t *autoScalingGroupTask) Kind() string { return "AutoScalingGroup" }
func (t *autoScalingGroupTask) Name() string { return t.m.names.NodeGroup(t.group.Name) }
func (t *autoScalingGroupTask) Deps() []string {
	deps := []string{"lt/" + t.group.Name}
	for _, z := range t.m.zones {
		deps = append(deps, "subnet/"+z)
	}
	if t.group.Role == spec.RoleControlPlane {
		deps = append(deps, apiTargetGroups...)
	}
	return deps
}

func (t *autoScalingGroupTask) subnets(r *run) []string {
	var s []string
	for _, z := range t.m.zones {
		s = append(s, r.ref("subnet/"+z))
	}
	return s
}

func (t *autoScalingGroupTask) Desired(r *run) []Field {
	n := strconv.Itoa(t.group.Count)
	f := []Field{
		{Name: "launchTemplate", Value: r.ref("lt/"+t.group.Name) + " $Default", Immutable: true},
		{Name: "size", Value: fmt.Sprintf("min %s max %s desired %s", n, n, n)},
	}
	for _, s := range t.subnets(r) {
		f = append(f, Field{Name: "subnet", Value: s})
	}
	if t.group.Role == spec.RoleControlPlane {
		for _, tg := range apiTargetGroups {
			f = append(f, Field{Name: "targetGroup", Value: r.ref(tg)})
		}
	}
	return f
}

func (t *autoScalingGroupTask) Find(ctx context.Context, r *run) (*actual, error) {
	out, err := r.cl.AutoScaling.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{t.Name()}})
	if err != nil || len(out.AutoScalingGroups) == 0 {
		return nil, err
	}
	g := out.AutoScalingGroups[0]
	if g.Status != nil {
		return nil, fmt.Errorf("auto scaling group %s is %s; wait until it is gone", t.Name(), aws.ToString(g.Status))
	}
	a := &actual{ID: t.Name(), Fields: []Field{{Name: "size", Value: fmt.Sprintf("min %d max %d desired %d", aws.ToInt32(g.MinSize), aws.ToInt32(g.MaxSize), aws.ToInt32(g.DesiredCapacity))}}}
	if lt := g.LaunchTemplate; lt != nil {
		a.Fields = append(a.Fields, Field{Name: "launchTemplate", Value: aws.ToString(lt.LaunchTemplateId) + " " + aws.ToString(lt.Version)})
	}
	for _, s := range strings.Split(aws.ToString(g.VPCZoneIdentifier), ",") {
		if s != "" {
			a.Fields = append(a.Fields, Field{Name: "subnet", Value: s})
		}
	}
	for _, tg := range g.TargetGroupARNs {
		a.Fields = append(a.Fields, Field{Name: "targetGroup", Value: tg})
	}
	return a, nil
}

func (t *autoScalingGroupTask) Render(ctx context.Context, r *run, a *actual, _ []Change) (*actual, error) {
	n := aws.Int32(int32(t.group.Count))
	zones := aws.String(strings.Join(t.subnets(r), ","))
	if a != nil {
		_, err := r.cl.AutoScaling.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String(t.Name()), MinSize: n, MaxSize: n, DesiredCapacity: n, VPCZoneIdentifier: zones})
		if err != nil {
			return nil, err
		}
		// A control plane made before the internal load balancer existed registers with it now.
		var attach []string
		for _, f := range t.Desired(r) {
			if f.Name == "targetGroup" && !slices.Contains(a.Fields, f) {
				attach = append(attach, f.Value)
			}
		}
		if len(attach) > 0 {
			if _, err := r.cl.AutoScaling.AttachLoadBalancerTargetGroups(ctx, &autoscaling.AttachLoadBalancerTargetGroupsInput{AutoScalingGroupName: aws.String(t.Name()), TargetGroupARNs: attach}); err != nil {
				return nil, err
			}
		}
		return &actual{ID: a.ID, Fields: t.Desired(r)}, nil
	}
	tags := t.m.tags(t.Name())
	tags[TagRole] = string(t.group.Role)
	var asTags []astypes.Tag
	for _, k := range sortedKeys(tags) {
		asTags = append(asTags, astypes.Tag{Key: aws.String(k), Value: aws.String(tags[k]), PropagateAtLaunch: aws.Bool(true)})
	}
	in := &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(t.Name()), MinSize: n, MaxSize: n, DesiredCapacity: n, VPCZoneIdentifier: zones,
		LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(r.ref("lt/" + t.group.Name)), Version: aws.String("$Default")},
		Tags:           asTags,
	}
	if t.group.Role == spec.RoleControlPlane {
		for _, tg := range apiTargetGroups {
			in.TargetGroupARNs = append(in.TargetGroupARNs, r.ref(tg))
		}
	}
	if _, err := r.cl.AutoScaling.CreateAutoScalingGroup(ctx, in); err != nil {
		return nil, err
	}
	return &actual{ID: t.Name(), Fields: t.Desired(r)}, nil
}
