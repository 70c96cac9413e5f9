package aws

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// vpcTask is the cluster's VPC, created with DNS hostnames on.
type vpcTask struct{ m *model }

func (t *vpcTask) Key() string    { return "vpc" }
func (t *vpcTask) Kind() string   { return "VPC" }
func (t *vpcTask) Name() string   { return t.m.names.VPC() }
func (t *vpcTask) Deps() []string { return nil }

func (t *vpcTask) Desired(*run) []Field {
	return []Field{{Name: "cidr", Value: t.m.vpcCIDR, Immutable: true}, {Name: "dnsHostnames", Value: "true"}}
}

func (t *vpcTask) Find(ctx context.Context, r *run) (*actual, error) {
	out, err := r.cl.EC2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{Filters: t.m.owned(t.Name())})
	if err != nil || len(out.Vpcs) == 0 {
		return nil, err
	}
	if err := unique("VPC", t.Name(), len(out.Vpcs)); err != nil {
		return nil, err
	}
	v := out.Vpcs[0]
	attr, err := r.cl.EC2.DescribeVpcAttribute(ctx, &ec2.DescribeVpcAttributeInput{VpcId: v.VpcId, Attribute: ec2types.VpcAttributeNameEnableDnsHostnames})
	if err != nil {
		return nil, err
	}
	dns := "false"
	if attr.EnableDnsHostnames != nil {
		dns = fmtBool(attr.EnableDnsHostnames.Value)
	}
	return &actual{ID: aws.ToString(v.VpcId), Fields: []Field{{Name: "cidr", Value: aws.ToString(v.CidrBlock)}, {Name: "dnsHostnames", Value: dns}}}, nil
}

func (t *vpcTask) Render(ctx context.Context, r *run, a *actual, _ []Change) (*actual, error) {
	if a == nil {
		out, err := r.cl.EC2.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String(t.m.vpcCIDR), TagSpecifications: tagSpec(ec2types.ResourceTypeVpc, t.m.tags(t.Name()))})
		if err != nil {
			return nil, err
		}
		a = &actual{ID: aws.ToString(out.Vpc.VpcId)}
	}
	if _, err := r.cl.EC2.ModifyVpcAttribute(ctx, &ec2.ModifyVpcAttributeInput{VpcId: aws.String(a.ID), EnableDnsHostnames: boolValue(true)}); err != nil {
		return nil, err
	}
	return &actual{ID: a.ID, Fields: t.Desired(r)}, nil
}

// existingVPCTask is a VPC the spec names by id: used as it is, never changed or deleted.
type existingVPCTask struct{ m *model }

func (t *existingVPCTask) Key() string    { return "vpc" }
func (t *existingVPCTask) Kind() string   { return "VPC (existing)" }
func (t *existingVPCTask) Name() string   { return t.m.existingVPC }
func (t *existingVPCTask) Deps() []string { return nil }
func (t *existingVPCTask) Desired(*run) []Field {
	return []Field{{Name: "contains", Value: t.m.vpcCIDR, Immutable: true}}
}
func (t *existingVPCTask) external() bool  { return true }
func (t *existingVPCTask) knownID() string { return t.m.existingVPC }
func (t *existingVPCTask) Find(ctx context.Context, r *run) (*actual, error) {
	out, err := r.cl.EC2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{Filters: []ec2types.Filter{filter("vpc-id", t.m.existingVPC)}})
	if err != nil || len(out.Vpcs) == 0 {
		return nil, err
	}
	if err := unique("VPC", t.Name(), len(out.Vpcs)); err != nil {
		return nil, err
	}
	v := out.Vpcs[0]
	contains := "(not " + aws.ToString(v.CidrBlock) + ")"
	if cidrContains(aws.ToString(v.CidrBlock), t.m.vpcCIDR) {
		contains = t.m.vpcCIDR
	}
	return &actual{ID: aws.ToString(v.VpcId), Fields: []Field{{Name: "contains", Value: contains}}}, nil
}

func (t *existingVPCTask) Render(context.Context, *run, *actual, []Change) (*actual, error) {
	return nil, fmt.Errorf("VPC %s does not exist in region %s", t.m.existingVPC, t.m.region)
}

// internetGatewayTask is the VPC's internet gateway; with an existing VPC, the one attached to it.
type internetGatewayTask struct{ m *model }

func (t *internetGatewayTask) Key() string  { return "igw" }
func (t *internetGatewayTask) Kind() string { return "InternetGateway" }
func (t *internetGatewayTask) Name() string {
	if t.external() {
		return "(the one attached to " + t.m.existingVPC + ")"
	}
	return t.m.names.VPC()
}
func (t *internetGatewayTask) Deps() []string { return []string{"vpc"} }
func (t *internetGatewayTask) external() bool { return t.m.existingVPC != "" }

func (t *internetGatewayTask) Desired(r *run) []Field {
	return []Field{{Name: "vpc", Value: r.ref("vpc")}}
}

func (t *internetGatewayTask) Find(ctx context.Context, r *run) (*actual, error) {
	filters := t.m.owned(t.Name())
	if t.external() {
		filters = []ec2types.Filter{filter("attachment.vpc-id", r.ref("vpc"))}
	}
	out, err := r.cl.EC2.DescribeInternetGateways(ctx, &ec2.DescribeInternetGatewaysInput{Filters: filters})
	if err != nil || len(out.InternetGateways) == 0 {
		return nil, err
	}
	if err := unique("internet gateway", t.Name(), len(out.InternetGateways)); err != nil {
		return nil, err
	}
	g := out.InternetGateways[0]
	a := &actual{ID: aws.ToString(g.InternetGatewayId)}
	for _, att := range g.Attachments {
		a.Fields = append(a.Fields, Field{Name: "vpc", Value: aws.ToString(att.VpcId)})
	}
	return a, nil
}

func (t *internetGatewayTask) Render(ctx context.Context, r *run, a *actual, _ []Change) (*actual, error) {
	if t.external() {
		return nil, fmt.Errorf("VPC %s has no internet gateway attached", t.m.existingVPC)
	}
	if a == nil {
		out, err := r.cl.EC2.CreateInternetGateway(ctx, &ec2.CreateInternetGatewayInput{TagSpecifications: tagSpec(ec2types.ResourceTypeInternetGateway, t.m.tags(t.Name()))})
		if err != nil {
			return nil, err
		}
		a = &actual{ID: aws.ToString(out.InternetGateway.InternetGatewayId)}
	}
	if _, err := r.cl.EC2.AttachInternetGateway(ctx, &ec2.AttachInternetGatewayInput{InternetGatewayId: aws.String(a.ID), VpcId: aws.String(r.ref("vpc"))}); err != nil {
		return nil, err
	}
	return &actual{ID: a.ID, Fields: t.Desired(r)}, nil
}

// subnetTask is the cluster's public subnet in one zone.
type subnetTask struct {
	m    *model
	zone string
}

func (t *subnetTask) Key() string    { return "subnet/" + t.zone }
func (t *subnetTask) Kind() string   { return "Subnet" }
func (t *subnetTask) Name() string   { return t.m.names.Subnet(t.zone) }
func (t *subnetTask) Deps() []string { return []string{"vpc"} }

func (t *subnetTask) Desired(r *run) []Field {
	return []Field{
		{Name: "vpc", Value: r.ref("vpc"), Immutable: true},
		{Name: "zone", Value: t.zone, Immutable: true},
		{Name: "cidr", Value: t.m.subnets[t.zone], Immutable: true},
		{Name: "mapPublicIpOnLaunch", Value: "true"},
	}
}

func (t *subnetTask) Find(ctx context.Context, r *run) (*actual, error) {
	out, err := r.cl.EC2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: t.m.owned(t.Name())})
	if err != nil || len(out.Subnets) == 0 {
		return nil, err
	}
	if err := unique("subnet", t.Name(), len(out.Subnets)); err != nil {
		return nil, err
	}
	s := out.Subnets[0]
	return &actual{ID: aws.ToString(s.SubnetId), Fields: []Field{
		{Name: "vpc", Value: aws.ToString(s.VpcId)},
		{Name: "zone", Value: aws.ToString(s.AvailabilityZone)},
		{Name: "cidr", Value: aws.ToString(s.CidrBlock)},
		{Name: "mapPublicIpOnLaunch", Value: fmtBool(s.MapPublicIpOnLaunch)},
	}}, nil
}

func (t *subnetTask) Render(ctx context.Context, r *run, a *actual, _ []Change) (*actual, error) {
	if a == nil {
		out, err := r.cl.EC2.CreateSubnet(ctx, &ec2.CreateSubnetInput{
			VpcId: aws.String(r.ref("vpc")), AvailabilityZone: aws.String(t.zone), CidrBlock: aws.String(t.m.subnets[t.zone]),
			TagSpecifications: tagSpec(ec2types.ResourceTypeSubnet, t.m.tags(t.Name())),
		})
		if err != nil {
			return nil, err
		}
		a = &actual{ID: aws.ToString(out.Subnet.SubnetId)}
	}
	if _, err := r.cl.EC2.ModifySubnetAttribute(ctx, &ec2.ModifySubnetAttributeInput{SubnetId: aws.String(a.ID), MapPublicIpOnLaunch: boolValue(true)}); err != nil {
		return nil, err
	}
	return &actual{ID: a.ID, Fields: t.Desired(r)}, nil
}

// routeTableTask is the subnets' route table: a default route to the internet gateway.
type routeTableTask struct{ m *model }

func (t *routeTableTask) Key() string  { return "rtb" }
func (t *routeTableTask) Kind() string { return "RouteTable" }
func (t *routeTableTask) Name() string { return t.m.names.VPC() }
func (t *routeTableTask) Deps() []string {
	deps := []string{"vpc", "igw"}
	for _, z := range t.m.zones {
		deps = append(deps, "subnet/"+z)
	}
	return deps
}

func (t *routeTableTask) Desired(r *run) []Field {
	f := []Field{{Name: "vpc", Value: r.ref("vpc"), Immutable: true}, {Name: "route", Value: "0.0.0.0/0 via " + r.ref("igw")}}
	for _, z := range t.m.zones {
		f = append(f, Field{Name: "subnet", Value: r.ref("subnet/" + z)})
	}
	return f
}

func (t *routeTableTask) Find(ctx context.Context, r *run) (*actual, error) {
	out, err := r.cl.EC2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: t.m.owned(t.Name())})
	if err != nil || len(out.RouteTables) == 0 {
		return nil, err
	}
	if err := unique("route table", t.Name(), len(out.RouteTables)); err != nil {
		return nil, err
	}
	rt := out.RouteTables[0]
	a := &actual{ID: aws.ToString(rt.RouteTableId), Fields: []Field{{Name: "vpc", Value: aws.ToString(rt.VpcId)}}}
	for _, route := range rt.Routes {
		if aws.ToString(route.DestinationCidrBlock) == "0.0.0.0/0" {
			a.Fields = append(a.Fields, Field{Name: "route", Value: "0.0.0.0/0 via " + aws.ToString(route.GatewayId)})
		}
	}
	for _, as := range rt.Associations {
		if !aws.ToBool(as.Main) && as.SubnetId != nil {
			a.Fields = append(a.Fields, Field{Name: "subnet", Value: aws.ToString(as.SubnetId)})
		}
	}
	return a, nil
}

func (t *routeTableTask) Render(ctx context.Context, r *run, a *actual, _ []Change) (*actual, error) {
	var have []Field
	if a == nil {
		out, err := r.cl.EC2.CreateRouteTable(ctx, &ec2.CreateRouteTableInput{VpcId: aws.String(r.ref("vpc")), TagSpecifications: tagSpec(ec2types.ResourceTypeRouteTable, t.m.tags(t.Name()))})
		if err != nil {
			return nil, err
		}
		a = &actual{ID: aws.ToString(out.RouteTable.RouteTableId)}
	} else {
		have = a.Fields
	}
	hasRoute := slices.ContainsFunc(have, func(f Field) bool { return f.Name == "route" })
	route := "0.0.0.0/0 via " + r.ref("igw")
	switch {
	case !hasRoute:
		if _, err := r.cl.EC2.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(a.ID), DestinationCidrBlock: aws.String("0.0.0.0/0"), GatewayId: aws.String(r.ref("igw"))}); err != nil {
			return nil, err
		}
	case !slices.Contains(have, Field{Name: "route", Value: route}):
		if _, err := r.cl.EC2.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(a.ID), DestinationCidrBlock: aws.String("0.0.0.0/0"), GatewayId: aws.String(r.ref("igw"))}); err != nil {
			return nil, err
		}
	}
	for _, z := range t.m.zones {
		subnet := r.ref("subnet/" + z)
		if slices.Contains(have, Field{Name: "subnet", Value: subnet}) {
			continue
		}
		if _, err := r.cl.EC2.AssociateRouteTable(ctx, &ec2.AssociateRouteTableInput{RouteTableId: aws.String(a.ID), SubnetId: aws.String(subnet)}); err != nil {
			return nil, err
		}
	}
	return &actual{ID: a.ID, Fields: t.Desired(r)}, nil
}

// Security group purposes.
const (
	sgNodes       = "nodes"
	sgAPILB       = "api-lb"
	sgAPIInternal = "api-internal"
)

// securityGroupTask is one of the cluster's security groups, without its rules (securityGroupRulesTask
// adds those, once both groups exist, since they refer to each other).
type securityGroupTask struct {
	m       *model
	purpose string
	desc    string
}

func (t *securityGroupTask) Key() string    { return "sg/" + t.purpose }
func (t *securityGroupTask) Kind() string   { return "SecurityGroup" }
func (t *securityGroupTask) Name() string   { return t.m.names.SecurityGroup(t.purpose) }
func (t *securityGroupTask) Deps() []string { return []string{"vpc"} }

func (t *securityGroupTask) Desired(r *run) []Field {
	return []Field{{Name: "vpc", Value: r.ref("vpc"), Immutable: true}, {Name: "description", Value: t.desc, Immutable: true}}
}

func (t *securityGroupTask) Find(ctx context.Context, r *run) (*actual, error) {
	filters := append(t.m.owned(t.Name()), filter("vpc-id", r.ref("vpc")))
	out, err := r.cl.EC2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: filters})
	if err != nil || len(out.SecurityGroups) == 0 {
		return nil, err
	}
	if err := unique("security group", t.Name(), len(out.SecurityGroups)); err != nil {
		return nil, err
	}
	g := out.SecurityGroups[0]
	return &actual{ID: aws.ToString(g.GroupId), Fields: []Field{{Name: "vpc", Value: aws.ToString(g.VpcId)}, {Name: "description", Value: aws.ToString(g.Description)}}}, nil
}

func (t *securityGroupTask) Render(ctx context.Context, r *run, a *actual, _ []Change) (*actual, error) {
	if a != nil {
		return a, nil
	}
	out, err := r.cl.EC2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName: aws.String(t.Name()), Description: aws.String(t.desc), VpcId: aws.String(r.ref("vpc")),
		TagSpecifications: tagSpec(ec2types.ResourceTypeSecurityGroup, t.m.tags(t.Name())),
	})
	if err != nil {
		return nil, err
	}
	return &actual{ID: aws.ToString(out.GroupId), Fields: t.Desired(r)}, nil
}

// rule is one ingress permission: a protocol and port range from one CIDR or one security group.
type rule struct {
	proto    string // tcp, udp or -1 (all)
	from, to int32
	cidr     string
	group    string // a key of a security group task
	desc     string
}

// text is the rule as the plan prints and compare checks it; groups appear by name.
func (ru rule) text(groupName string) string {
	ports := fmt.Sprintf("%s %d", ru.proto, ru.from)
	if ru.to != ru.from {
		ports = fmt.Sprintf("%s %d-%d", ru.proto, ru.from, ru.to)
	}
	if ru.proto == "-1" {
		ports = "all traffic"
	}
	src := ru.cidr
	if src == "" {
		src = "sg " + groupName
	}
	return fmt.Sprintf("%s from %s (%s)", ports, src, ru.desc)
}

func (ru rule) permission(groupID string) ec2types.IpPermission {
	p := ec2types.IpPermission{IpProtocol: aws.String(ru.proto)}
	if ru.proto != "-1" {
		p.FromPort, p.ToPort = aws.Int32(ru.from), aws.Int32(ru.to)
	}
	if ru.cidr != "" {
		p.IpRanges = []ec2types.IpRange{{CidrIp: aws.String(ru.cidr), Description: aws.String(ru.desc)}}
	} else {
		p.UserIdGroupPairs = []ec2types.UserIdGroupPair{{GroupId: aws.String(groupID), Description: aws.String(ru.desc)}}
	}
	return p
}

// rules are the ingress rules of a security group of the cluster.
func (m *model) rules(purpose string) []rule {
	a := m.spec.Spec.AWS.Access
	var out []rule
	switch purpose {
	case sgNodes:
		out = append(out,
			rule{proto: "-1", group: "sg/" + sgNodes, desc: "between the cluster's nodes: kubelet, API server, pod traffic"},
			rule{proto: "udp", from: 8472, to: 8472, group: "sg/" + sgNodes, desc: "VXLAN between the cluster's nodes"},
			rule{proto: "tcp", from: 6443, to: 6443, group: "sg/" + sgAPILB, desc: "Kubernetes API through its load balancer"},
			rule{proto: "tcp", from: 6443, to: 6443, group: "sg/" + sgAPIInternal, desc: "Kubernetes API through its internal load balancer"},
		)
		for _, c := range a.SSH {
			out = append(out, rule{proto: "tcp", from: 22, to: 22, cidr: c, desc: "SSH"})
		}
		for _, c := range a.NodePort {
			for _, proto := range []string{"tcp", "udp"} {
				out = append(out, rule{proto: proto, from: int32(m.nodePortFirst), to: int32(m.nodePortLast), cidr: c, desc: "NodePort services"})
			}
		}
	case sgAPILB:
		// The operator's CIDRs only: nodes reach this internet-facing load balancer from their public
		// addresses, which a rule naming their security group would never match.
		for _, c := range a.API {
			out = append(out, rule{proto: "tcp", from: 6443, to: 6443, cidr: c, desc: "Kubernetes API"})
		}
	case sgAPIInternal:
		out = append(out, rule{proto: "tcp", from: 6443, to: 6443, group: "sg/" + sgNodes, desc: "Kubernetes API from the cluster's nodes"})
	}
	return out
}

// securityGroupRulesTask keeps a security group's ingress rules exactly as the spec says.
type securityGroupRulesTask struct {
	m       *model
	purpose string
}

func (t *securityGroupRulesTask) Key() string  { return "sgrules/" + t.purpose }
func (t *securityGroupRulesTask) Kind() string { return "SecurityGroupRules" }
func (t *securityGroupRulesTask) Name() string { return t.m.names.SecurityGroup(t.purpose) }
func (t *securityGroupRulesTask) Deps() []string {
	return []string{"sg/" + sgNodes, "sg/" + sgAPILB, "sg/" + sgAPIInternal}
}

func (t *securityGroupRulesTask) groupName(key string) string {
	return t.m.names.SecurityGroup(strings.TrimPrefix(key, "sg/"))
}

func (t *securityGroupRulesTask) Desired(*run) []Field {
	var f []Field
	for _, ru := range t.m.rules(t.purpose) {
		f = append(f, Field{Name: "ingress", Value: ru.text(t.groupName(ru.group))})
	}
	return f
}

// groupNames maps the IDs of the cluster's security groups to their names.
func (t *securityGroupRulesTask) groupNames(r *run) map[string]string {
	names := map[string]string{}
	for _, key := range t.Deps() {
		names[r.ref(key)] = t.groupName(key)
	}
	return names
}

func (t *securityGroupRulesTask) Find(ctx context.Context, r *run) (*actual, error) {
	id := r.ref("sg/" + t.purpose)
	out, err := r.cl.EC2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{id}})
	if err != nil || len(out.SecurityGroups) == 0 {
		return nil, err
	}
	names := t.groupNames(r)
	perms := map[string]ec2types.IpPermission{}
	a := &actual{ID: id}
	for _, p := range out.SecurityGroups[0].IpPermissions {
		base := rule{proto: aws.ToString(p.IpProtocol), from: aws.ToInt32(p.FromPort), to: aws.ToInt32(p.ToPort)}
		add := func(ru rule, groupName string, single ec2types.IpPermission) {
			text := ru.text(groupName)
			a.Fields = append(a.Fields, Field{Name: "ingress", Value: text})
			perms[text] = single
		}
		for _, ipr := range p.IpRanges {
			if strings.HasPrefix(aws.ToString(ipr.Description), cloudControllerRulePrefix) {
				continue // the cloud controller's, for a Service's load balancer
			}
			ru := base
			ru.cidr, ru.desc = aws.ToString(ipr.CidrIp), aws.ToString(ipr.Description)
			add(ru, "", ec2types.IpPermission{IpProtocol: p.IpProtocol, FromPort: p.FromPort, ToPort: p.ToPort, IpRanges: []ec2types.IpRange{ipr}})
		}
		for _, pair := range p.UserIdGroupPairs {
			ru := base
			ru.desc = aws.ToString(pair.Description)
			name, ok := names[aws.ToString(pair.GroupId)]
			if !ok {
				name = aws.ToString(pair.GroupId)
			}
			add(ru, name, ec2types.IpPermission{IpProtocol: p.IpProtocol, FromPort: p.FromPort, ToPort: p.ToPort, UserIdGroupPairs: []ec2types.UserIdGroupPair{pair}})
		}
	}
	a.data = perms
	return a, nil
}

func (t *securityGroupRulesTask) Render(ctx context.Context, r *run, a *actual, _ []Change) (*actual, error) {
	id := r.ref("sg/" + t.purpose)
	have := map[string]ec2types.IpPermission{}
	if a != nil {
		have = a.data.(map[string]ec2types.IpPermission)
	}
	want := map[string]bool{}
	var add []ec2types.IpPermission
	for _, ru := range t.m.rules(t.purpose) {
		text := ru.text(t.groupName(ru.group))
		want[text] = true
		if _, ok := have[text]; !ok {
			add = append(add, ru.permission(r.ref(ru.group)))
		}
	}
	var remove []ec2types.IpPermission
	for _, text := range sortedKeys(toSet(have)) {
		if !want[text] {
			remove = append(remove, have[text])
		}
	}
	if len(remove) > 0 {
		if _, err := r.cl.EC2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: aws.String(id), IpPermissions: remove}); err != nil {
			return nil, err
		}
	}
	if len(add) > 0 {
		if _, err := r.cl.EC2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(id), IpPermissions: add}); err != nil {
			return nil, err
		}
	}
	return &actual{ID: id, Fields: t.Desired(r)}, nil
}

func toSet[V any](m map[string]V) map[string]string {
	out := make(map[string]string, len(m))
	for k := range m {
		out[k] = k
	}
	return out
}
