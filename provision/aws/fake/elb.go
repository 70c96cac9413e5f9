package fake

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

type elbState struct {
	lbs       map[string]*types.LoadBalancer // by ARN
	tgs       map[string]*types.TargetGroup
	tgAttrs   map[string]map[string]string
	listeners map[string]*types.Listener
	tags      map[string][]types.Tag // by ARN
	// lingering counts, per security group or subnet ID, the deletes still refused after a load
	// balancer using it is gone: its network interfaces take a while to be released.
	lingering map[string]int
	// health is the target health of instances that are not healthy.
	health map[string]types.TargetHealthStateEnum
}

func newELBState() *elbState {
	return &elbState{lbs: map[string]*types.LoadBalancer{}, tgs: map[string]*types.TargetGroup{}, tgAttrs: map[string]map[string]string{},
		listeners: map[string]*types.Listener{}, tags: map[string][]types.Tag{}, lingering: map[string]int{}, health: map[string]types.TargetHealthStateEnum{}}
}

func elbTagMap(tags []types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

func (s *elbState) tagged(key, value string) []string {
	var out []string
	for arn := range s.lbs {
		if tagsMatch(elbTagMap(s.tags[arn]), key, value) {
			out = append(out, "LoadBalancer "+arn)
		}
	}
	for arn := range s.tgs {
		if tagsMatch(elbTagMap(s.tags[arn]), key, value) {
			out = append(out, "TargetGroup "+arn)
		}
	}
	for arn := range s.listeners {
		if tagsMatch(elbTagMap(s.tags[arn]), key, value) {
			out = append(out, "Listener "+arn)
		}
	}
	return out
}

func (s *elbState) count(kind string) (int, bool) {
	switch kind {
	case "LoadBalancer":
		return len(s.lbs), true
	case "TargetGroup":
		return len(s.tgs), true
	case "Listener":
		return len(s.listeners), true
	}
	return 0, false
}

// linger reports whether a released load balancer's interfaces still hold id, counting down.
func (s *elbState) linger(id string) bool {
	if s.lingering[id] > 0 {
		s.lingering[id]--
		return true
	}
	return false
}

func (s *elbState) usesSubnet(id string) bool {
	for _, lb := range s.lbs {
		for _, az := range lb.AvailabilityZones {
			if aws.ToString(az.SubnetId) == id {
				return true
			}
		}
	}
	return false
}

func (s *elbState) usesSecurityGroup(id string) bool {
	for _, lb := range s.lbs {
		if contains(lb.SecurityGroups, id) {
			return true
		}
	}
	return false
}

// ELB is the fake's Elastic Load Balancing v2 API.
type ELB struct{ c *Cloud }

// ELB returns the account's Elastic Load Balancing v2 API.
func (c *Cloud) ELB() *ELB { return &ELB{c} }

// DescribeLoadBalancers lists load balancers, all or by names or ARNs (an unknown one is an error).
func (f *ELB) DescribeLoadBalancers(_ context.Context, in *elb.DescribeLoadBalancersInput, _ ...func(*elb.Options)) (*elb.DescribeLoadBalancersOutput, error) {
	err := f.c.begin("DescribeLoadBalancers")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	out := &elb.DescribeLoadBalancersOutput{}
	for _, arn := range sortedIDs(f.c.elb.lbs) {
		lb := f.c.elb.lbs[arn]
		if (len(in.Names) == 0 || contains(in.Names, aws.ToString(lb.LoadBalancerName))) && (len(in.LoadBalancerArns) == 0 || contains(in.LoadBalancerArns, arn)) {
			out.LoadBalancers = append(out.LoadBalancers, *lb)
		}
	}
	if want := len(in.Names) + len(in.LoadBalancerArns); want > 0 && len(out.LoadBalancers) < want {
		return nil, apiError("LoadBalancerNotFound", "One or more load balancers not found")
	}
	return out, nil
}

// CreateLoadBalancer checks subnets (one per zone) and security groups.
func (f *ELB) CreateLoadBalancer(_ context.Context, in *elb.CreateLoadBalancerInput, _ ...func(*elb.Options)) (*elb.CreateLoadBalancerOutput, error) {
	err := f.c.begin("CreateLoadBalancer")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	name := aws.ToString(in.Name)
	for _, lb := range f.c.elb.lbs {
		if aws.ToString(lb.LoadBalancerName) == name {
			return nil, apiError("DuplicateLoadBalancerName", "A load balancer with the same name '%s' exists", name)
		}
	}
	lb := &types.LoadBalancer{LoadBalancerName: in.Name, Type: in.Type, Scheme: in.Scheme, SecurityGroups: in.SecurityGroups,
		State: &types.LoadBalancerState{Code: types.LoadBalancerStateEnumActive}}
	zones := map[string]bool{}
	for _, s := range in.Subnets {
		sn := f.c.ec2.subnets[s]
		if sn == nil {
			return nil, apiError("SubnetNotFound", "The subnet ID '%s' is not valid", s)
		}
		if zones[aws.ToString(sn.AvailabilityZone)] {
			return nil, apiError("InvalidConfigurationRequest", "A load balancer cannot be attached to multiple subnets in the same Availability Zone")
		}
		zones[aws.ToString(sn.AvailabilityZone)] = true
		lb.VpcId = sn.VpcId
		lb.AvailabilityZones = append(lb.AvailabilityZones, types.AvailabilityZone{SubnetId: aws.String(s), ZoneName: sn.AvailabilityZone})
	}
	for _, g := range in.SecurityGroups {
		if f.c.ec2.sgs[g] == nil {
			return nil, apiError("InvalidSecurityGroup", "Security group '%s' does not exist", g)
		}
	}
	id := f.c.id("net")
	arn := "arn:aws:elasticloadbalancing:" + f.c.region + ":123456789012:loadbalancer/net/" + name + "/" + id
	lb.LoadBalancerArn = aws.String(arn)
	lb.DNSName = aws.String(name + "-" + id[4:12] + ".elb." + f.c.region + ".amazonaws.com")
	f.c.elb.lbs[arn] = lb
	f.c.elb.tags[arn] = in.Tags
	return &elb.CreateLoadBalancerOutput{LoadBalancers: []types.LoadBalancer{*lb}}, nil
}

// DeleteLoadBalancer removes a load balancer and its listeners.
func (f *ELB) DeleteLoadBalancer(_ context.Context, in *elb.DeleteLoadBalancerInput, _ ...func(*elb.Options)) (*elb.DeleteLoadBalancerOutput, error) {
	err := f.c.begin("DeleteLoadBalancer")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	arn := aws.ToString(in.LoadBalancerArn)
	for la, l := range f.c.elb.listeners {
		if aws.ToString(l.LoadBalancerArn) == arn {
			delete(f.c.elb.listeners, la)
			delete(f.c.elb.tags, la)
		}
	}
	if lb := f.c.elb.lbs[arn]; lb != nil {
		for _, g := range lb.SecurityGroups {
			f.c.elb.lingering[g] = 2
		}
		for _, az := range lb.AvailabilityZones {
			f.c.elb.lingering[aws.ToString(az.SubnetId)] = 2
		}
	}
	delete(f.c.elb.lbs, arn)
	delete(f.c.elb.tags, arn)
	return &elb.DeleteLoadBalancerOutput{}, nil
}

// DescribeTargetGroups lists target groups, all or by names (an unknown one is an error).
func (f *ELB) DescribeTargetGroups(_ context.Context, in *elb.DescribeTargetGroupsInput, _ ...func(*elb.Options)) (*elb.DescribeTargetGroupsOutput, error) {
	err := f.c.begin("DescribeTargetGroups")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	out := &elb.DescribeTargetGroupsOutput{}
	for _, arn := range sortedIDs(f.c.elb.tgs) {
		tg := f.c.elb.tgs[arn]
		if len(in.Names) == 0 || contains(in.Names, aws.ToString(tg.TargetGroupName)) {
			out.TargetGroups = append(out.TargetGroups, *tg)
		}
	}
	if len(in.Names) > 0 && len(out.TargetGroups) < len(in.Names) {
		return nil, apiError("TargetGroupNotFound", "One or more target groups not found")
	}
	return out, nil
}

// CreateTargetGroup checks the VPC; client IP preservation starts on, as for instance targets.
func (f *ELB) CreateTargetGroup(_ context.Context, in *elb.CreateTargetGroupInput, _ ...func(*elb.Options)) (*elb.CreateTargetGroupOutput, error) {
	err := f.c.begin("CreateTargetGroup")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	name := aws.ToString(in.Name)
	for _, tg := range f.c.elb.tgs {
		if aws.ToString(tg.TargetGroupName) == name {
			return nil, apiError("DuplicateTargetGroupName", "A target group with the same name '%s' exists", name)
		}
	}
	if f.c.ec2.vpcs[aws.ToString(in.VpcId)] == nil {
		return nil, apiError("ValidationError", "The VPC ID '%s' is not found", aws.ToString(in.VpcId))
	}
	arn := "arn:aws:elasticloadbalancing:" + f.c.region + ":123456789012:targetgroup/" + name + "/" + f.c.id("tg")
	// AWS's defaults for a TCP target group of a network load balancer.
	tg := &types.TargetGroup{TargetGroupArn: aws.String(arn), TargetGroupName: in.Name, VpcId: in.VpcId, Protocol: in.Protocol, Port: in.Port,
		TargetType: in.TargetType, HealthCheckProtocol: in.HealthCheckProtocol, HealthCheckIntervalSeconds: aws.Int32(30),
		HealthCheckTimeoutSeconds: aws.Int32(10), HealthyThresholdCount: aws.Int32(5), UnhealthyThresholdCount: aws.Int32(2)}
	if err := setHealthCheck(tg, in.HealthCheckIntervalSeconds, in.HealthCheckTimeoutSeconds, in.HealthyThresholdCount, in.UnhealthyThresholdCount); err != nil {
		return nil, err
	}
	f.c.elb.tgs[arn] = tg
	f.c.elb.tgAttrs[arn] = map[string]string{"preserve_client_ip.enabled": "true", "load_balancing.cross_zone.enabled": "use_load_balancer_configuration"}
	f.c.elb.tags[arn] = in.Tags
	return &elb.CreateTargetGroupOutput{TargetGroups: []types.TargetGroup{*tg}}, nil
}

// setHealthCheck changes the health check settings given, within AWS's ranges.
func setHealthCheck(tg *types.TargetGroup, interval, timeout, healthy, unhealthy *int32) error {
	check := func(name string, v *int32, lo, hi int32) error {
		if v != nil && (*v < lo || *v > hi) {
			return apiError("ValidationError", "%s must be between %d and %d", name, lo, hi)
		}
		return nil
	}
	for _, err := range []error{
		check("HealthCheckIntervalSeconds", interval, 5, 300), check("HealthCheckTimeoutSeconds", timeout, 2, 120),
		check("HealthyThresholdCount", healthy, 2, 10), check("UnhealthyThresholdCount", unhealthy, 2, 10),
	} {
		if err != nil {
			return err
		}
	}
	if interval != nil {
		tg.HealthCheckIntervalSeconds = interval
	}
	if timeout != nil {
		tg.HealthCheckTimeoutSeconds = timeout
	}
	if healthy != nil {
		tg.HealthyThresholdCount = healthy
	}
	if unhealthy != nil {
		tg.UnhealthyThresholdCount = unhealthy
	}
	return nil
}

// ModifyTargetGroup changes a target group's health check.
func (f *ELB) ModifyTargetGroup(_ context.Context, in *elb.ModifyTargetGroupInput, _ ...func(*elb.Options)) (*elb.ModifyTargetGroupOutput, error) {
	err := f.c.begin("ModifyTargetGroup")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	tg := f.c.elb.tgs[aws.ToString(in.TargetGroupArn)]
	if tg == nil {
		return nil, apiError("TargetGroupNotFound", "Target group '%s' not found", aws.ToString(in.TargetGroupArn))
	}
	if in.HealthCheckProtocol != "" {
		tg.HealthCheckProtocol = in.HealthCheckProtocol
	}
	if err := setHealthCheck(tg, in.HealthCheckIntervalSeconds, in.HealthCheckTimeoutSeconds, in.HealthyThresholdCount, in.UnhealthyThresholdCount); err != nil {
		return nil, err
	}
	return &elb.ModifyTargetGroupOutput{TargetGroups: []types.TargetGroup{*tg}}, nil
}

// DescribeTargetHealth reports the instances the auto scaling groups registered with the target group,
// each in the state SetTargetHealth gave it (healthy unless told otherwise).
func (f *ELB) DescribeTargetHealth(_ context.Context, in *elb.DescribeTargetHealthInput, _ ...func(*elb.Options)) (*elb.DescribeTargetHealthOutput, error) {
	err := f.c.begin("DescribeTargetHealth")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	arn := aws.ToString(in.TargetGroupArn)
	tg := f.c.elb.tgs[arn]
	if tg == nil {
		return nil, apiError("TargetGroupNotFound", "Target group '%s' not found", arn)
	}
	out := &elb.DescribeTargetHealthOutput{}
	for _, id := range f.c.targetGroupInstances(arn) {
		state := types.TargetHealthStateEnumHealthy
		if s, ok := f.c.elb.health[id]; ok {
			state = s
		}
		out.TargetHealthDescriptions = append(out.TargetHealthDescriptions, types.TargetHealthDescription{
			Target: &types.TargetDescription{Id: aws.String(id), Port: tg.Port}, TargetHealth: &types.TargetHealth{State: state},
		})
	}
	return out, nil
}

// SetTargetHealth makes every target group report the instances in this state (such as "initial"
// while their API server is not up yet); "" restores healthy.
func (c *Cloud) SetTargetHealth(state string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.ec2.instances {
		if state == "" {
			delete(c.elb.health, id)
		} else {
			c.elb.health[id] = types.TargetHealthStateEnum(state)
		}
	}
}

// DescribeTargetGroupAttributes returns a target group's attributes.
func (f *ELB) DescribeTargetGroupAttributes(_ context.Context, in *elb.DescribeTargetGroupAttributesInput, _ ...func(*elb.Options)) (*elb.DescribeTargetGroupAttributesOutput, error) {
	err := f.c.begin("DescribeTargetGroupAttributes")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	attrs, ok := f.c.elb.tgAttrs[aws.ToString(in.TargetGroupArn)]
	if !ok {
		return nil, apiError("TargetGroupNotFound", "Target group '%s' not found", aws.ToString(in.TargetGroupArn))
	}
	out := &elb.DescribeTargetGroupAttributesOutput{}
	for _, k := range sortedIDs(attrs) {
		out.Attributes = append(out.Attributes, types.TargetGroupAttribute{Key: aws.String(k), Value: aws.String(attrs[k])})
	}
	return out, nil
}

// ModifyTargetGroupAttributes sets attributes.
func (f *ELB) ModifyTargetGroupAttributes(_ context.Context, in *elb.ModifyTargetGroupAttributesInput, _ ...func(*elb.Options)) (*elb.ModifyTargetGroupAttributesOutput, error) {
	err := f.c.begin("ModifyTargetGroupAttributes")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	attrs, ok := f.c.elb.tgAttrs[aws.ToString(in.TargetGroupArn)]
	if !ok {
		return nil, apiError("TargetGroupNotFound", "Target group '%s' not found", aws.ToString(in.TargetGroupArn))
	}
	for _, a := range in.Attributes {
		attrs[aws.ToString(a.Key)] = aws.ToString(a.Value)
	}
	return &elb.ModifyTargetGroupAttributesOutput{}, nil
}

// DeleteTargetGroup refuses while a listener forwards to the group.
func (f *ELB) DeleteTargetGroup(_ context.Context, in *elb.DeleteTargetGroupInput, _ ...func(*elb.Options)) (*elb.DeleteTargetGroupOutput, error) {
	err := f.c.begin("DeleteTargetGroup")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	arn := aws.ToString(in.TargetGroupArn)
	for _, l := range f.c.elb.listeners {
		for _, a := range l.DefaultActions {
			if aws.ToString(a.TargetGroupArn) == arn {
				return nil, apiError("ResourceInUse", "Target group '%s' is currently in use by a listener or a rule", arn)
			}
		}
	}
	delete(f.c.elb.tgs, arn)
	delete(f.c.elb.tgAttrs, arn)
	delete(f.c.elb.tags, arn)
	return &elb.DeleteTargetGroupOutput{}, nil
}

// DescribeListeners lists a load balancer's listeners.
func (f *ELB) DescribeListeners(_ context.Context, in *elb.DescribeListenersInput, _ ...func(*elb.Options)) (*elb.DescribeListenersOutput, error) {
	err := f.c.begin("DescribeListeners")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	if f.c.elb.lbs[aws.ToString(in.LoadBalancerArn)] == nil {
		return nil, apiError("LoadBalancerNotFound", "Load balancer '%s' not found", aws.ToString(in.LoadBalancerArn))
	}
	out := &elb.DescribeListenersOutput{}
	for _, arn := range sortedIDs(f.c.elb.listeners) {
		if l := f.c.elb.listeners[arn]; aws.ToString(l.LoadBalancerArn) == aws.ToString(in.LoadBalancerArn) {
			out.Listeners = append(out.Listeners, *l)
		}
	}
	return out, nil
}

// CreateListener refuses a second listener on the same port.
func (f *ELB) CreateListener(_ context.Context, in *elb.CreateListenerInput, _ ...func(*elb.Options)) (*elb.CreateListenerOutput, error) {
	err := f.c.begin("CreateListener")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	lbArn := aws.ToString(in.LoadBalancerArn)
	if f.c.elb.lbs[lbArn] == nil {
		return nil, apiError("LoadBalancerNotFound", "Load balancer '%s' not found", lbArn)
	}
	for _, l := range f.c.elb.listeners {
		if aws.ToString(l.LoadBalancerArn) == lbArn && aws.ToInt32(l.Port) == aws.ToInt32(in.Port) {
			return nil, apiError("DuplicateListener", "A listener already exists on that port")
		}
	}
	for _, a := range in.DefaultActions {
		if f.c.elb.tgs[aws.ToString(a.TargetGroupArn)] == nil {
			return nil, apiError("TargetGroupNotFound", "Target group '%s' not found", aws.ToString(a.TargetGroupArn))
		}
	}
	arn := lbArn + "/listener/" + f.c.id("l")
	l := &types.Listener{ListenerArn: aws.String(arn), LoadBalancerArn: in.LoadBalancerArn, Port: in.Port, Protocol: in.Protocol, DefaultActions: in.DefaultActions}
	f.c.elb.listeners[arn] = l
	f.c.elb.tags[arn] = in.Tags
	return &elb.CreateListenerOutput{Listeners: []types.Listener{*l}}, nil
}

// DescribeTags returns the tags of load balancers and target groups.
func (f *ELB) DescribeTags(_ context.Context, in *elb.DescribeTagsInput, _ ...func(*elb.Options)) (*elb.DescribeTagsOutput, error) {
	err := f.c.begin("DescribeTags")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	if len(in.ResourceArns) > 20 {
		return nil, apiError("ValidationError", "at most 20 resource ARNs")
	}
	out := &elb.DescribeTagsOutput{}
	for _, arn := range in.ResourceArns {
		out.TagDescriptions = append(out.TagDescriptions, types.TagDescription{ResourceArn: aws.String(arn), Tags: f.c.elb.tags[arn]})
	}
	return out, nil
}
