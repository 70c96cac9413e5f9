package fake

import (
	"context"
	"net/netip"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

type ec2State struct {
	vpcs      map[string]*types.Vpc
	dnsNames  map[string]bool // VPC id -> enableDnsHostnames
	subnets   map[string]*types.Subnet
	igws      map[string]*types.InternetGateway
	rtbs      map[string]*types.RouteTable
	sgs       map[string]*types.SecurityGroup
	keys      map[string]*types.KeyPairInfo
	lts       map[string]*types.LaunchTemplate
	versions  map[string][]types.LaunchTemplateVersion
	instances map[string]*types.Instance
	images    []types.Image
}

func newEC2State() *ec2State {
	return &ec2State{
		vpcs: map[string]*types.Vpc{}, dnsNames: map[string]bool{}, subnets: map[string]*types.Subnet{},
		igws: map[string]*types.InternetGateway{}, rtbs: map[string]*types.RouteTable{}, sgs: map[string]*types.SecurityGroup{},
		keys: map[string]*types.KeyPairInfo{}, lts: map[string]*types.LaunchTemplate{}, versions: map[string][]types.LaunchTemplateVersion{},
		instances: map[string]*types.Instance{},
		images: []types.Image{
			{ImageId: aws.String("ami-0000000000000noble1"), Name: aws.String("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250101"), CreationDate: aws.String("2025-01-01T00:00:00.000Z"), OwnerId: aws.String("099720109477"), State: types.ImageStateAvailable},
			{ImageId: aws.String("ami-0000000000000noble2"), Name: aws.String("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20260101"), CreationDate: aws.String("2026-01-01T00:00:00.000Z"), OwnerId: aws.String("099720109477"), State: types.ImageStateAvailable},
			{ImageId: aws.String("ami-00000000000noblearm"), Name: aws.String("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-20260101"), CreationDate: aws.String("2026-01-01T00:00:00.000Z"), OwnerId: aws.String("099720109477"), State: types.ImageStateAvailable},
		},
	}
}

func tagMap(tags []types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

func specTags(specs []types.TagSpecification, rt types.ResourceType) []types.Tag {
	var out []types.Tag
	for _, s := range specs {
		if s.ResourceType == rt {
			out = append(out, s.Tags...)
		}
	}
	return out
}

// matches applies EC2 filters: "tag:KEY", "tag-key" and the attributes a resource offers.
func matches(filters []types.Filter, tags []types.Tag, attrs map[string]string) (bool, error) {
	tm := tagMap(tags)
	for _, f := range filters {
		name := aws.ToString(f.Name)
		var have string
		var ok bool
		switch {
		case strings.HasPrefix(name, "tag:"):
			have, ok = tm[strings.TrimPrefix(name, "tag:")]
		case name == "tag-key":
			ok = false
			for _, v := range f.Values {
				if _, has := tm[v]; has {
					ok = true
				}
			}
			if !ok {
				return false, nil
			}
			continue
		default:
			var known bool
			have, known = attrs[name]
			if !known {
				return false, apiError("InvalidParameterValue", "The filter '%s' is invalid", name)
			}
			ok = true
		}
		if !ok {
			return false, nil
		}
		hit := false
		for _, v := range f.Values {
			if v == have || (strings.HasSuffix(v, "*") && strings.HasPrefix(have, strings.TrimSuffix(v, "*"))) {
				hit = true
			}
		}
		if !hit {
			return false, nil
		}
	}
	return true, nil
}

func sortedIDs[V any](m map[string]V) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (s *ec2State) tagged(key, value string) []string {
	var out []string
	add := func(kind, id string, tags []types.Tag) {
		if tagsMatch(tagMap(tags), key, value) {
			out = append(out, kind+" "+id)
		}
	}
	for id, v := range s.vpcs {
		add("VPC", id, v.Tags)
	}
	for id, v := range s.subnets {
		add("Subnet", id, v.Tags)
	}
	for id, v := range s.igws {
		add("InternetGateway", id, v.Tags)
	}
	for id, v := range s.rtbs {
		add("RouteTable", id, v.Tags)
	}
	for id, v := range s.sgs {
		add("SecurityGroup", id, v.Tags)
	}
	for id, v := range s.keys {
		add("KeyPair", id, v.Tags)
	}
	for id, v := range s.lts {
		add("LaunchTemplate", id, v.Tags)
	}
	for id, v := range s.instances {
		if v.State.Name != types.InstanceStateNameTerminated {
			add("Instance", id, v.Tags)
		}
	}
	return out
}

func (s *ec2State) count(kind string) (int, bool) {
	switch kind {
	case "VPC":
		return len(s.vpcs), true
	case "Subnet":
		return len(s.subnets), true
	case "InternetGateway":
		return len(s.igws), true
	case "RouteTable":
		return len(s.rtbs), true
	case "SecurityGroup":
		return len(s.sgs), true
	case "KeyPair":
		return len(s.keys), true
	case "LaunchTemplate":
		return len(s.lts), true
	case "Instance":
		n := 0
		for _, i := range s.instances {
			if i.State.Name != types.InstanceStateNameTerminated {
				n++
			}
		}
		return n, true
	}
	return 0, false
}

// EC2 is the fake's EC2 API.
type EC2 struct{ c *Cloud }

// EC2 returns the account's EC2 API.
func (c *Cloud) EC2() *EC2 { return &EC2{c} }

// DescribeAvailabilityZones fails for a zone the region does not have.
func (e *EC2) DescribeAvailabilityZones(_ context.Context, in *ec2.DescribeAvailabilityZonesInput, _ ...func(*ec2.Options)) (*ec2.DescribeAvailabilityZonesOutput, error) {
	err := e.c.begin("DescribeAvailabilityZones")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	out := &ec2.DescribeAvailabilityZonesOutput{}
	for _, z := range in.ZoneNames {
		found := false
		for _, have := range e.c.zones {
			found = found || have == z
		}
		if !found {
			return nil, apiError("InvalidParameterValue", "The zone '%s' does not exist.", z)
		}
		out.AvailabilityZones = append(out.AvailabilityZones, types.AvailabilityZone{ZoneName: aws.String(z), RegionName: aws.String(e.c.region), State: types.AvailabilityZoneStateAvailable})
	}
	return out, nil
}

// DescribeImages filters the account's few Ubuntu images by owner, name and state.
func (e *EC2) DescribeImages(_ context.Context, in *ec2.DescribeImagesInput, _ ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error) {
	err := e.c.begin("DescribeImages")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	out := &ec2.DescribeImagesOutput{}
	for _, img := range e.c.ec2.images {
		if len(in.Owners) > 0 && in.Owners[0] != aws.ToString(img.OwnerId) {
			continue
		}
		ok, err := matches(in.Filters, img.Tags, map[string]string{"name": aws.ToString(img.Name), "state": string(img.State)})
		if err != nil {
			return nil, err
		}
		if ok {
			out.Images = append(out.Images, img)
		}
	}
	return out, nil
}

// DescribeVpcs lists VPCs by id or filters.
func (e *EC2) DescribeVpcs(_ context.Context, in *ec2.DescribeVpcsInput, _ ...func(*ec2.Options)) (*ec2.DescribeVpcsOutput, error) {
	err := e.c.begin("DescribeVpcs")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	out := &ec2.DescribeVpcsOutput{}
	for _, id := range in.VpcIds {
		if e.c.ec2.vpcs[id] == nil {
			return nil, apiError("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", id)
		}
	}
	for _, id := range sortedIDs(e.c.ec2.vpcs) {
		v := e.c.ec2.vpcs[id]
		if len(in.VpcIds) > 0 && !contains(in.VpcIds, id) {
			continue
		}
		ok, err := matches(in.Filters, v.Tags, map[string]string{"vpc-id": id, "cidr": aws.ToString(v.CidrBlock)})
		if err != nil {
			return nil, err
		}
		if ok {
			out.Vpcs = append(out.Vpcs, *v)
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// CreateVpc makes a VPC with, as AWS does, a main route table and a default security group.
func (e *EC2) CreateVpc(_ context.Context, in *ec2.CreateVpcInput, _ ...func(*ec2.Options)) (*ec2.CreateVpcOutput, error) {
	err := e.c.begin("CreateVpc")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	p, perr := netip.ParsePrefix(aws.ToString(in.CidrBlock))
	if perr != nil || p.Bits() < 16 || p.Bits() > 28 {
		return nil, apiError("InvalidVpc.Range", "The CIDR '%s' is invalid.", aws.ToString(in.CidrBlock))
	}
	id := e.c.id("vpc")
	v := &types.Vpc{VpcId: aws.String(id), CidrBlock: in.CidrBlock, State: types.VpcStateAvailable, Tags: specTags(in.TagSpecifications, types.ResourceTypeVpc)}
	e.c.ec2.vpcs[id] = v
	rtb := e.c.id("rtb")
	e.c.ec2.rtbs[rtb] = &types.RouteTable{RouteTableId: aws.String(rtb), VpcId: aws.String(id),
		Associations: []types.RouteTableAssociation{{Main: aws.Bool(true), RouteTableAssociationId: aws.String(e.c.id("rtbassoc")), RouteTableId: aws.String(rtb)}},
		Routes:       []types.Route{{DestinationCidrBlock: in.CidrBlock, GatewayId: aws.String("local")}}}
	sg := e.c.id("sg")
	e.c.ec2.sgs[sg] = &types.SecurityGroup{GroupId: aws.String(sg), GroupName: aws.String("default"), VpcId: aws.String(id), Description: aws.String("default VPC security group")}
	return &ec2.CreateVpcOutput{Vpc: v}, nil
}

// DescribeVpcAttribute reports enableDnsHostnames.
func (e *EC2) DescribeVpcAttribute(_ context.Context, in *ec2.DescribeVpcAttributeInput, _ ...func(*ec2.Options)) (*ec2.DescribeVpcAttributeOutput, error) {
	err := e.c.begin("DescribeVpcAttribute")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	id := aws.ToString(in.VpcId)
	if e.c.ec2.vpcs[id] == nil {
		return nil, apiError("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", id)
	}
	return &ec2.DescribeVpcAttributeOutput{VpcId: in.VpcId, EnableDnsHostnames: &types.AttributeBooleanValue{Value: aws.Bool(e.c.ec2.dnsNames[id])}}, nil
}

// ModifyVpcAttribute sets enableDnsHostnames.
func (e *EC2) ModifyVpcAttribute(_ context.Context, in *ec2.ModifyVpcAttributeInput, _ ...func(*ec2.Options)) (*ec2.ModifyVpcAttributeOutput, error) {
	err := e.c.begin("ModifyVpcAttribute")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	id := aws.ToString(in.VpcId)
	if e.c.ec2.vpcs[id] == nil {
		return nil, apiError("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", id)
	}
	if in.EnableDnsHostnames != nil {
		e.c.ec2.dnsNames[id] = aws.ToBool(in.EnableDnsHostnames.Value)
	}
	return &ec2.ModifyVpcAttributeOutput{}, nil
}

// DeleteVpc refuses while the VPC has subnets, an internet gateway, security groups or route tables
// of its own; it removes its main route table and default security group.
func (e *EC2) DeleteVpc(_ context.Context, in *ec2.DeleteVpcInput, _ ...func(*ec2.Options)) (*ec2.DeleteVpcOutput, error) {
	err := e.c.begin("DeleteVpc")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	id := aws.ToString(in.VpcId)
	s := e.c.ec2
	if s.vpcs[id] == nil {
		return nil, apiError("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", id)
	}
	for _, sn := range s.subnets {
		if aws.ToString(sn.VpcId) == id {
			return nil, apiError("DependencyViolation", "The vpc '%s' has dependencies and cannot be deleted.", id)
		}
	}
	for _, g := range s.igws {
		for _, a := range g.Attachments {
			if aws.ToString(a.VpcId) == id {
				return nil, apiError("DependencyViolation", "The vpc '%s' has dependencies and cannot be deleted.", id)
			}
		}
	}
	for _, g := range s.sgs {
		if aws.ToString(g.VpcId) == id && aws.ToString(g.GroupName) != "default" {
			return nil, apiError("DependencyViolation", "The vpc '%s' has dependencies and cannot be deleted.", id)
		}
	}
	for _, rt := range s.rtbs {
		if aws.ToString(rt.VpcId) == id && !isMain(rt) {
			return nil, apiError("DependencyViolation", "The vpc '%s' has dependencies and cannot be deleted.", id)
		}
	}
	for rid, rt := range s.rtbs {
		if aws.ToString(rt.VpcId) == id {
			delete(s.rtbs, rid)
		}
	}
	for gid, g := range s.sgs {
		if aws.ToString(g.VpcId) == id {
			delete(s.sgs, gid)
		}
	}
	delete(s.vpcs, id)
	delete(s.dnsNames, id)
	return &ec2.DeleteVpcOutput{}, nil
}

func isMain(rt *types.RouteTable) bool {
	for _, a := range rt.Associations {
		if aws.ToBool(a.Main) {
			return true
		}
	}
	return false
}

// DescribeSubnets lists subnets by filters.
func (e *EC2) DescribeSubnets(_ context.Context, in *ec2.DescribeSubnetsInput, _ ...func(*ec2.Options)) (*ec2.DescribeSubnetsOutput, error) {
	err := e.c.begin("DescribeSubnets")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	out := &ec2.DescribeSubnetsOutput{}
	for _, id := range sortedIDs(e.c.ec2.subnets) {
		sn := e.c.ec2.subnets[id]
		if len(in.SubnetIds) > 0 && !contains(in.SubnetIds, id) {
			continue
		}
		ok, err := matches(in.Filters, sn.Tags, map[string]string{"vpc-id": aws.ToString(sn.VpcId), "availability-zone": aws.ToString(sn.AvailabilityZone)})
		if err != nil {
			return nil, err
		}
		if ok {
			out.Subnets = append(out.Subnets, *sn)
		}
	}
	return out, nil
}

// CreateSubnet checks the zone, that the CIDR is inside the VPC's and overlaps no other subnet.
func (e *EC2) CreateSubnet(_ context.Context, in *ec2.CreateSubnetInput, _ ...func(*ec2.Options)) (*ec2.CreateSubnetOutput, error) {
	err := e.c.begin("CreateSubnet")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	v := e.c.ec2.vpcs[aws.ToString(in.VpcId)]
	if v == nil {
		return nil, apiError("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", aws.ToString(in.VpcId))
	}
	if !contains(e.c.zones, aws.ToString(in.AvailabilityZone)) {
		return nil, apiError("InvalidParameterValue", "Value (%s) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: %s.", aws.ToString(in.AvailabilityZone), strings.Join(e.c.zones, ", "))
	}
	outer, _ := netip.ParsePrefix(aws.ToString(v.CidrBlock))
	p, perr := netip.ParsePrefix(aws.ToString(in.CidrBlock))
	if perr != nil || !outer.Contains(p.Addr()) || p.Bits() < outer.Bits() {
		return nil, apiError("InvalidSubnet.Range", "The CIDR '%s' is invalid.", aws.ToString(in.CidrBlock))
	}
	for _, sn := range e.c.ec2.subnets {
		if o, _ := netip.ParsePrefix(aws.ToString(sn.CidrBlock)); aws.ToString(sn.VpcId) == aws.ToString(in.VpcId) && o.Overlaps(p) {
			return nil, apiError("InvalidSubnet.Conflict", "The CIDR '%s' conflicts with another subnet", aws.ToString(in.CidrBlock))
		}
	}
	id := e.c.id("subnet")
	sn := &types.Subnet{SubnetId: aws.String(id), VpcId: in.VpcId, CidrBlock: in.CidrBlock, AvailabilityZone: in.AvailabilityZone,
		MapPublicIpOnLaunch: aws.Bool(false), State: types.SubnetStateAvailable, Tags: specTags(in.TagSpecifications, types.ResourceTypeSubnet)}
	e.c.ec2.subnets[id] = sn
	return &ec2.CreateSubnetOutput{Subnet: sn}, nil
}

// ModifySubnetAttribute sets mapPublicIpOnLaunch.
func (e *EC2) ModifySubnetAttribute(_ context.Context, in *ec2.ModifySubnetAttributeInput, _ ...func(*ec2.Options)) (*ec2.ModifySubnetAttributeOutput, error) {
	err := e.c.begin("ModifySubnetAttribute")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	sn := e.c.ec2.subnets[aws.ToString(in.SubnetId)]
	if sn == nil {
		return nil, apiError("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", aws.ToString(in.SubnetId))
	}
	if in.MapPublicIpOnLaunch != nil {
		sn.MapPublicIpOnLaunch = aws.Bool(aws.ToBool(in.MapPublicIpOnLaunch.Value))
	}
	return &ec2.ModifySubnetAttributeOutput{}, nil
}

// DeleteSubnet refuses while an instance or a load balancer is in the subnet.
func (e *EC2) DeleteSubnet(_ context.Context, in *ec2.DeleteSubnetInput, _ ...func(*ec2.Options)) (*ec2.DeleteSubnetOutput, error) {
	err := e.c.begin("DeleteSubnet")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	id := aws.ToString(in.SubnetId)
	if e.c.ec2.subnets[id] == nil {
		return nil, apiError("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", id)
	}
	for _, i := range e.c.ec2.instances {
		if aws.ToString(i.SubnetId) == id && i.State.Name != types.InstanceStateNameTerminated {
			return nil, apiError("DependencyViolation", "The subnet '%s' has dependencies and cannot be deleted.", id)
		}
	}
	if e.c.elb.usesSubnet(id) || e.c.elb.linger(id) {
		return nil, apiError("DependencyViolation", "The subnet '%s' has dependencies and cannot be deleted.", id)
	}
	delete(e.c.ec2.subnets, id)
	return &ec2.DeleteSubnetOutput{}, nil
}

// DescribeInternetGateways lists internet gateways by filters.
func (e *EC2) DescribeInternetGateways(_ context.Context, in *ec2.DescribeInternetGatewaysInput, _ ...func(*ec2.Options)) (*ec2.DescribeInternetGatewaysOutput, error) {
	err := e.c.begin("DescribeInternetGateways")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	out := &ec2.DescribeInternetGatewaysOutput{}
	for _, id := range sortedIDs(e.c.ec2.igws) {
		g := e.c.ec2.igws[id]
		attached := ""
		if len(g.Attachments) > 0 {
			attached = aws.ToString(g.Attachments[0].VpcId)
		}
		ok, err := matches(in.Filters, g.Tags, map[string]string{"attachment.vpc-id": attached})
		if err != nil {
			return nil, err
		}
		if ok {
			out.InternetGateways = append(out.InternetGateways, *g)
		}
	}
	return out, nil
}

// CreateInternetGateway makes a detached gateway.
func (e *EC2) CreateInternetGateway(_ context.Context, in *ec2.CreateInternetGatewayInput, _ ...func(*ec2.Options)) (*ec2.CreateInternetGatewayOutput, error) {
	err := e.c.begin("CreateInternetGateway")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	id := e.c.id("igw")
	g := &types.InternetGateway{InternetGatewayId: aws.String(id), Tags: specTags(in.TagSpecifications, types.ResourceTypeInternetGateway)}
	e.c.ec2.igws[id] = g
	return &ec2.CreateInternetGatewayOutput{InternetGateway: g}, nil
}

// AttachInternetGateway attaches a gateway to a VPC; one gateway per VPC.
func (e *EC2) AttachInternetGateway(_ context.Context, in *ec2.AttachInternetGatewayInput, _ ...func(*ec2.Options)) (*ec2.AttachInternetGatewayOutput, error) {
	err := e.c.begin("AttachInternetGateway")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	g := e.c.ec2.igws[aws.ToString(in.InternetGatewayId)]
	if g == nil {
		return nil, apiError("InvalidInternetGatewayID.NotFound", "The internetGateway ID '%s' does not exist", aws.ToString(in.InternetGatewayId))
	}
	if e.c.ec2.vpcs[aws.ToString(in.VpcId)] == nil {
		return nil, apiError("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", aws.ToString(in.VpcId))
	}
	if len(g.Attachments) > 0 {
		return nil, apiError("Resource.AlreadyAssociated", "resource %s is already attached to network %s", aws.ToString(in.InternetGatewayId), aws.ToString(g.Attachments[0].VpcId))
	}
	g.Attachments = []types.InternetGatewayAttachment{{VpcId: in.VpcId, State: types.AttachmentStatusAttached}}
	return &ec2.AttachInternetGatewayOutput{}, nil
}

// DetachInternetGateway detaches a gateway from its VPC.
func (e *EC2) DetachInternetGateway(_ context.Context, in *ec2.DetachInternetGatewayInput, _ ...func(*ec2.Options)) (*ec2.DetachInternetGatewayOutput, error) {
	err := e.c.begin("DetachInternetGateway")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	g := e.c.ec2.igws[aws.ToString(in.InternetGatewayId)]
	if g == nil {
		return nil, apiError("InvalidInternetGatewayID.NotFound", "The internetGateway ID '%s' does not exist", aws.ToString(in.InternetGatewayId))
	}
	if len(g.Attachments) == 0 || aws.ToString(g.Attachments[0].VpcId) != aws.ToString(in.VpcId) {
		return nil, apiError("Gateway.NotAttached", "resource %s is not attached to network %s", aws.ToString(in.InternetGatewayId), aws.ToString(in.VpcId))
	}
	g.Attachments = nil
	return &ec2.DetachInternetGatewayOutput{}, nil
}

// DeleteInternetGateway refuses while the gateway is attached.
func (e *EC2) DeleteInternetGateway(_ context.Context, in *ec2.DeleteInternetGatewayInput, _ ...func(*ec2.Options)) (*ec2.DeleteInternetGatewayOutput, error) {
	err := e.c.begin("DeleteInternetGateway")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	id := aws.ToString(in.InternetGatewayId)
	g := e.c.ec2.igws[id]
	if g == nil {
		return nil, apiError("InvalidInternetGatewayID.NotFound", "The internetGateway ID '%s' does not exist", id)
	}
	if len(g.Attachments) > 0 {
		return nil, apiError("DependencyViolation", "The internetGateway '%s' has dependencies and cannot be deleted.", id)
	}
	delete(e.c.ec2.igws, id)
	return &ec2.DeleteInternetGatewayOutput{}, nil
}

// DescribeRouteTables lists route tables by filters.
func (e *EC2) DescribeRouteTables(_ context.Context, in *ec2.DescribeRouteTablesInput, _ ...func(*ec2.Options)) (*ec2.DescribeRouteTablesOutput, error) {
	err := e.c.begin("DescribeRouteTables")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	out := &ec2.DescribeRouteTablesOutput{}
	for _, id := range sortedIDs(e.c.ec2.rtbs) {
		rt := e.c.ec2.rtbs[id]
		ok, err := matches(in.Filters, rt.Tags, map[string]string{"vpc-id": aws.ToString(rt.VpcId)})
		if err != nil {
			return nil, err
		}
		if ok {
			out.RouteTables = append(out.RouteTables, *rt)
		}
	}
	return out, nil
}

// CreateRouteTable makes a route table with the VPC's local route.
func (e *EC2) CreateRouteTable(_ context.Context, in *ec2.CreateRouteTableInput, _ ...func(*ec2.Options)) (*ec2.CreateRouteTableOutput, error) {
	err := e.c.begin("CreateRouteTable")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	v := e.c.ec2.vpcs[aws.ToString(in.VpcId)]
	if v == nil {
		return nil, apiError("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", aws.ToString(in.VpcId))
	}
	id := e.c.id("rtb")
	rt := &types.RouteTable{RouteTableId: aws.String(id), VpcId: in.VpcId, Tags: specTags(in.TagSpecifications, types.ResourceTypeRouteTable),
		Routes: []types.Route{{DestinationCidrBlock: v.CidrBlock, GatewayId: aws.String("local")}}}
	e.c.ec2.rtbs[id] = rt
	return &ec2.CreateRouteTableOutput{RouteTable: rt}, nil
}

func (e *EC2) routeTable(id string) (*types.RouteTable, error) {
	rt := e.c.ec2.rtbs[id]
	if rt == nil {
		return nil, apiError("InvalidRouteTableID.NotFound", "The routeTable ID '%s' does not exist", id)
	}
	return rt, nil
}

// CreateRoute adds a route to an internet gateway; a route for the same destination is refused.
func (e *EC2) CreateRoute(_ context.Context, in *ec2.CreateRouteInput, _ ...func(*ec2.Options)) (*ec2.CreateRouteOutput, error) {
	err := e.c.begin("CreateRoute")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	rt, err := e.routeTable(aws.ToString(in.RouteTableId))
	if err != nil {
		return nil, err
	}
	if e.c.ec2.igws[aws.ToString(in.GatewayId)] == nil {
		return nil, apiError("InvalidGatewayID.NotFound", "The gateway ID '%s' does not exist", aws.ToString(in.GatewayId))
	}
	for _, r := range rt.Routes {
		if aws.ToString(r.DestinationCidrBlock) == aws.ToString(in.DestinationCidrBlock) {
			return nil, apiError("RouteAlreadyExists", "The route identified by %s already exists.", aws.ToString(in.DestinationCidrBlock))
		}
	}
	rt.Routes = append(rt.Routes, types.Route{DestinationCidrBlock: in.DestinationCidrBlock, GatewayId: in.GatewayId, State: types.RouteStateActive})
	return &ec2.CreateRouteOutput{Return: aws.Bool(true)}, nil
}

// ReplaceRoute changes the target of a route.
func (e *EC2) ReplaceRoute(_ context.Context, in *ec2.ReplaceRouteInput, _ ...func(*ec2.Options)) (*ec2.ReplaceRouteOutput, error) {
	err := e.c.begin("ReplaceRoute")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	rt, err := e.routeTable(aws.ToString(in.RouteTableId))
	if err != nil {
		return nil, err
	}
	for i, r := range rt.Routes {
		if aws.ToString(r.DestinationCidrBlock) == aws.ToString(in.DestinationCidrBlock) {
			rt.Routes[i].GatewayId = in.GatewayId
			return &ec2.ReplaceRouteOutput{}, nil
		}
	}
	return nil, apiError("InvalidRoute.NotFound", "no route with destination-cidr-block %s in route table %s", aws.ToString(in.DestinationCidrBlock), aws.ToString(in.RouteTableId))
}

// AssociateRouteTable associates a subnet; a subnet has at most one explicit association.
func (e *EC2) AssociateRouteTable(_ context.Context, in *ec2.AssociateRouteTableInput, _ ...func(*ec2.Options)) (*ec2.AssociateRouteTableOutput, error) {
	err := e.c.begin("AssociateRouteTable")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	rt, err := e.routeTable(aws.ToString(in.RouteTableId))
	if err != nil {
		return nil, err
	}
	if e.c.ec2.subnets[aws.ToString(in.SubnetId)] == nil {
		return nil, apiError("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", aws.ToString(in.SubnetId))
	}
	for _, other := range e.c.ec2.rtbs {
		for _, a := range other.Associations {
			if aws.ToString(a.SubnetId) == aws.ToString(in.SubnetId) {
				return nil, apiError("Resource.AlreadyAssociated", "the specified association for route table %s conflicts with an existing association", aws.ToString(other.RouteTableId))
			}
		}
	}
	id := e.c.id("rtbassoc")
	rt.Associations = append(rt.Associations, types.RouteTableAssociation{RouteTableAssociationId: aws.String(id), RouteTableId: in.RouteTableId, SubnetId: in.SubnetId, Main: aws.Bool(false)})
	return &ec2.AssociateRouteTableOutput{AssociationId: aws.String(id)}, nil
}

// DisassociateRouteTable removes an explicit association.
func (e *EC2) DisassociateRouteTable(_ context.Context, in *ec2.DisassociateRouteTableInput, _ ...func(*ec2.Options)) (*ec2.DisassociateRouteTableOutput, error) {
	err := e.c.begin("DisassociateRouteTable")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	for _, rt := range e.c.ec2.rtbs {
		for i, a := range rt.Associations {
			if aws.ToString(a.RouteTableAssociationId) == aws.ToString(in.AssociationId) && !aws.ToBool(a.Main) {
				rt.Associations = append(rt.Associations[:i], rt.Associations[i+1:]...)
				return &ec2.DisassociateRouteTableOutput{}, nil
			}
		}
	}
	return nil, apiError("InvalidAssociationID.NotFound", "The association ID '%s' does not exist", aws.ToString(in.AssociationId))
}

// DeleteRouteTable refuses the main route table and one that still has associations.
func (e *EC2) DeleteRouteTable(_ context.Context, in *ec2.DeleteRouteTableInput, _ ...func(*ec2.Options)) (*ec2.DeleteRouteTableOutput, error) {
	err := e.c.begin("DeleteRouteTable")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	id := aws.ToString(in.RouteTableId)
	rt, err := e.routeTable(id)
	if err != nil {
		return nil, err
	}
	if len(rt.Associations) > 0 {
		return nil, apiError("DependencyViolation", "The routeTable '%s' has dependencies and cannot be deleted.", id)
	}
	delete(e.c.ec2.rtbs, id)
	return &ec2.DeleteRouteTableOutput{}, nil
}
