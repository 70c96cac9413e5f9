package fake

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// DescribeSecurityGroups lists security groups by id or filters.
func (e *EC2) DescribeSecurityGroups(_ context.Context, in *ec2.DescribeSecurityGroupsInput, _ ...func(*ec2.Options)) (*ec2.DescribeSecurityGroupsOutput, error) {
	err := e.c.begin("DescribeSecurityGroups")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	for _, id := range in.GroupIds {
		if e.c.ec2.sgs[id] == nil {
			return nil, apiError("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
		}
	}
	out := &ec2.DescribeSecurityGroupsOutput{}
	for _, id := range sortedIDs(e.c.ec2.sgs) {
		g := e.c.ec2.sgs[id]
		if len(in.GroupIds) > 0 && !contains(in.GroupIds, id) {
			continue
		}
		ok, err := matches(in.Filters, g.Tags, map[string]string{"vpc-id": aws.ToString(g.VpcId), "group-name": aws.ToString(g.GroupName), "group-id": id})
		if err != nil {
			return nil, err
		}
		if ok {
			cp := *g
			cp.IpPermissions = append([]types.IpPermission(nil), g.IpPermissions...)
			out.SecurityGroups = append(out.SecurityGroups, cp)
		}
	}
	return out, nil
}

// CreateSecurityGroup refuses a duplicate name in the VPC.
func (e *EC2) CreateSecurityGroup(_ context.Context, in *ec2.CreateSecurityGroupInput, _ ...func(*ec2.Options)) (*ec2.CreateSecurityGroupOutput, error) {
	err := e.c.begin("CreateSecurityGroup")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	if e.c.ec2.vpcs[aws.ToString(in.VpcId)] == nil {
		return nil, apiError("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", aws.ToString(in.VpcId))
	}
	for _, g := range e.c.ec2.sgs {
		if aws.ToString(g.VpcId) == aws.ToString(in.VpcId) && aws.ToString(g.GroupName) == aws.ToString(in.GroupName) {
			return nil, apiError("InvalidGroup.Duplicate", "The security group '%s' already exists for VPC '%s'", aws.ToString(in.GroupName), aws.ToString(in.VpcId))
		}
	}
	id := e.c.id("sg")
	e.c.ec2.sgs[id] = &types.SecurityGroup{GroupId: aws.String(id), GroupName: in.GroupName, Description: in.Description, VpcId: in.VpcId,
		Tags:                specTags(in.TagSpecifications, types.ResourceTypeSecurityGroup),
		IpPermissionsEgress: []types.IpPermission{{IpProtocol: aws.String("-1"), IpRanges: []types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}}
	return &ec2.CreateSecurityGroupOutput{GroupId: aws.String(id)}, nil
}

// singles splits permissions into one source each, as AWS stores rules.
func singles(perms []types.IpPermission) []types.IpPermission {
	var out []types.IpPermission
	for _, p := range perms {
		for _, r := range p.IpRanges {
			out = append(out, types.IpPermission{IpProtocol: p.IpProtocol, FromPort: p.FromPort, ToPort: p.ToPort, IpRanges: []types.IpRange{r}})
		}
		for _, g := range p.UserIdGroupPairs {
			out = append(out, types.IpPermission{IpProtocol: p.IpProtocol, FromPort: p.FromPort, ToPort: p.ToPort, UserIdGroupPairs: []types.UserIdGroupPair{g}})
		}
	}
	return out
}

// ruleKey identifies a rule regardless of its description.
func ruleKey(p types.IpPermission) string {
	src := ""
	if len(p.IpRanges) > 0 {
		src = aws.ToString(p.IpRanges[0].CidrIp)
	} else if len(p.UserIdGroupPairs) > 0 {
		src = aws.ToString(p.UserIdGroupPairs[0].GroupId)
	}
	from, to := aws.ToInt32(p.FromPort), aws.ToInt32(p.ToPort)
	if aws.ToString(p.IpProtocol) == "-1" {
		from, to = 0, 0
	}
	return fmt.Sprintf("%s/%d/%d/%s", aws.ToString(p.IpProtocol), from, to, src)
}

// AuthorizeSecurityGroupIngress adds rules; a duplicate or a rule naming an unknown group is refused.
func (e *EC2) AuthorizeSecurityGroupIngress(_ context.Context, in *ec2.AuthorizeSecurityGroupIngressInput, _ ...func(*ec2.Options)) (*ec2.AuthorizeSecurityGroupIngressOutput, error) {
	err := e.c.begin("AuthorizeSecurityGroupIngress")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	g := e.c.ec2.sgs[aws.ToString(in.GroupId)]
	if g == nil {
		return nil, apiError("InvalidGroup.NotFound", "The security group '%s' does not exist", aws.ToString(in.GroupId))
	}
	have := map[string]bool{}
	for _, p := range g.IpPermissions {
		have[ruleKey(p)] = true
	}
	add := singles(in.IpPermissions)
	for _, p := range add {
		for _, pair := range p.UserIdGroupPairs {
			if e.c.ec2.sgs[aws.ToString(pair.GroupId)] == nil {
				return nil, apiError("InvalidGroup.NotFound", "The security group '%s' does not exist", aws.ToString(pair.GroupId))
			}
		}
		if have[ruleKey(p)] {
			return nil, apiError("InvalidPermission.Duplicate", "the specified rule %q already exists", ruleKey(p))
		}
	}
	g.IpPermissions = append(g.IpPermissions, add...)
	return &ec2.AuthorizeSecurityGroupIngressOutput{Return: aws.Bool(true)}, nil
}

// RevokeSecurityGroupIngress removes rules.
func (e *EC2) RevokeSecurityGroupIngress(_ context.Context, in *ec2.RevokeSecurityGroupIngressInput, _ ...func(*ec2.Options)) (*ec2.RevokeSecurityGroupIngressOutput, error) {
	err := e.c.begin("RevokeSecurityGroupIngress")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	g := e.c.ec2.sgs[aws.ToString(in.GroupId)]
	if g == nil {
		return nil, apiError("InvalidGroup.NotFound", "The security group '%s' does not exist", aws.ToString(in.GroupId))
	}
	drop := map[string]bool{}
	for _, p := range singles(in.IpPermissions) {
		drop[ruleKey(p)] = true
	}
	var keep []types.IpPermission
	for _, p := range g.IpPermissions {
		if !drop[ruleKey(p)] {
			keep = append(keep, p)
		}
	}
	g.IpPermissions = keep
	return &ec2.RevokeSecurityGroupIngressOutput{Return: aws.Bool(true)}, nil
}

// DeleteSecurityGroup refuses while another group's rule, an instance or a load balancer uses the group.
func (e *EC2) DeleteSecurityGroup(_ context.Context, in *ec2.DeleteSecurityGroupInput, _ ...func(*ec2.Options)) (*ec2.DeleteSecurityGroupOutput, error) {
	err := e.c.begin("DeleteSecurityGroup")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	id := aws.ToString(in.GroupId)
	if e.c.ec2.sgs[id] == nil {
		return nil, apiError("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
	}
	for gid, g := range e.c.ec2.sgs {
		for _, p := range g.IpPermissions {
			for _, pair := range p.UserIdGroupPairs {
				if aws.ToString(pair.GroupId) == id && gid != id {
					return nil, apiError("DependencyViolation", "resource %s has a dependent object", id)
				}
			}
		}
	}
	for _, i := range e.c.ec2.instances {
		if i.State.Name == types.InstanceStateNameTerminated {
			continue
		}
		for _, g := range i.SecurityGroups {
			if aws.ToString(g.GroupId) == id {
				return nil, apiError("DependencyViolation", "resource %s has a dependent object", id)
			}
		}
	}
	if e.c.elb.usesSecurityGroup(id) || e.c.elb.linger(id) {
		return nil, apiError("DependencyViolation", "resource %s has a dependent object", id)
	}
	delete(e.c.ec2.sgs, id)
	return &ec2.DeleteSecurityGroupOutput{}, nil
}

// DescribeKeyPairs lists key pairs by filters.
func (e *EC2) DescribeKeyPairs(_ context.Context, in *ec2.DescribeKeyPairsInput, _ ...func(*ec2.Options)) (*ec2.DescribeKeyPairsOutput, error) {
	err := e.c.begin("DescribeKeyPairs")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	out := &ec2.DescribeKeyPairsOutput{}
	for _, id := range sortedIDs(e.c.ec2.keys) {
		k := e.c.ec2.keys[id]
		ok, err := matches(in.Filters, k.Tags, map[string]string{"key-name": aws.ToString(k.KeyName), "key-pair-id": id})
		if err != nil {
			return nil, err
		}
		if ok {
			out.KeyPairs = append(out.KeyPairs, *k)
		}
	}
	return out, nil
}

// ImportKeyPair refuses a duplicate name.
func (e *EC2) ImportKeyPair(_ context.Context, in *ec2.ImportKeyPairInput, _ ...func(*ec2.Options)) (*ec2.ImportKeyPairOutput, error) {
	err := e.c.begin("ImportKeyPair")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	for _, k := range e.c.ec2.keys {
		if aws.ToString(k.KeyName) == aws.ToString(in.KeyName) {
			return nil, apiError("InvalidKeyPair.Duplicate", "The keypair '%s' already exists.", aws.ToString(in.KeyName))
		}
	}
	id := e.c.id("key")
	sum := md5.Sum(in.PublicKeyMaterial)
	e.c.ec2.keys[id] = &types.KeyPairInfo{KeyPairId: aws.String(id), KeyName: in.KeyName, KeyFingerprint: aws.String(hex.EncodeToString(sum[:])), Tags: specTags(in.TagSpecifications, types.ResourceTypeKeyPair)}
	return &ec2.ImportKeyPairOutput{KeyPairId: aws.String(id), KeyName: in.KeyName}, nil
}

// DeleteKeyPair removes a key pair by id.
func (e *EC2) DeleteKeyPair(_ context.Context, in *ec2.DeleteKeyPairInput, _ ...func(*ec2.Options)) (*ec2.DeleteKeyPairOutput, error) {
	err := e.c.begin("DeleteKeyPair")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	delete(e.c.ec2.keys, aws.ToString(in.KeyPairId))
	return &ec2.DeleteKeyPairOutput{}, nil
}

// DescribeLaunchTemplates lists launch templates by filters.
func (e *EC2) DescribeLaunchTemplates(_ context.Context, in *ec2.DescribeLaunchTemplatesInput, _ ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplatesOutput, error) {
	err := e.c.begin("DescribeLaunchTemplates")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	out := &ec2.DescribeLaunchTemplatesOutput{}
	for _, id := range sortedIDs(e.c.ec2.lts) {
		lt := e.c.ec2.lts[id]
		ok, err := matches(in.Filters, lt.Tags, map[string]string{"launch-template-name": aws.ToString(lt.LaunchTemplateName)})
		if err != nil {
			return nil, err
		}
		if ok {
			out.LaunchTemplates = append(out.LaunchTemplates, *lt)
		}
	}
	return out, nil
}

// DescribeLaunchTemplateVersions returns the $Default or $Latest version of one template.
func (e *EC2) DescribeLaunchTemplateVersions(_ context.Context, in *ec2.DescribeLaunchTemplateVersionsInput, _ ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplateVersionsOutput, error) {
	err := e.c.begin("DescribeLaunchTemplateVersions")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	id := aws.ToString(in.LaunchTemplateId)
	lt := e.c.ec2.lts[id]
	if lt == nil {
		return nil, apiError("InvalidLaunchTemplateId.NotFound", "The specified launch template, with template ID %s, does not exist.", id)
	}
	out := &ec2.DescribeLaunchTemplateVersionsOutput{}
	for _, v := range in.Versions {
		want := aws.ToInt64(lt.DefaultVersionNumber)
		if v == "$Latest" {
			want = aws.ToInt64(lt.LatestVersionNumber)
		}
		out.LaunchTemplateVersions = append(out.LaunchTemplateVersions, e.c.ec2.versions[id][want-1])
	}
	return out, nil
}

// responseData is what DescribeLaunchTemplateVersions returns of a request's data.
func responseData(d *types.RequestLaunchTemplateData) *types.ResponseLaunchTemplateData {
	r := &types.ResponseLaunchTemplateData{ImageId: d.ImageId, InstanceType: d.InstanceType, KeyName: d.KeyName, SecurityGroupIds: d.SecurityGroupIds, UserData: d.UserData}
	if p := d.IamInstanceProfile; p != nil {
		r.IamInstanceProfile = &types.LaunchTemplateIamInstanceProfileSpecification{Name: p.Name, Arn: p.Arn}
	}
	if m := d.MetadataOptions; m != nil {
		r.MetadataOptions = &types.LaunchTemplateInstanceMetadataOptions{HttpTokens: m.HttpTokens, HttpPutResponseHopLimit: m.HttpPutResponseHopLimit, HttpEndpoint: m.HttpEndpoint}
	}
	for _, b := range d.BlockDeviceMappings {
		rb := types.LaunchTemplateBlockDeviceMapping{DeviceName: b.DeviceName}
		if b.Ebs != nil {
			rb.Ebs = &types.LaunchTemplateEbsBlockDevice{VolumeSize: b.Ebs.VolumeSize, VolumeType: b.Ebs.VolumeType, Encrypted: b.Ebs.Encrypted, DeleteOnTermination: b.Ebs.DeleteOnTermination}
		}
		r.BlockDeviceMappings = append(r.BlockDeviceMappings, rb)
	}
	for _, t := range d.TagSpecifications {
		r.TagSpecifications = append(r.TagSpecifications, types.LaunchTemplateTagSpecification{ResourceType: t.ResourceType, Tags: t.Tags})
	}
	return r
}

// CreateLaunchTemplate makes a template with version 1 as default; a duplicate name is refused.
func (e *EC2) CreateLaunchTemplate(_ context.Context, in *ec2.CreateLaunchTemplateInput, _ ...func(*ec2.Options)) (*ec2.CreateLaunchTemplateOutput, error) {
	err := e.c.begin("CreateLaunchTemplate")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	for _, lt := range e.c.ec2.lts {
		if aws.ToString(lt.LaunchTemplateName) == aws.ToString(in.LaunchTemplateName) {
			return nil, apiError("InvalidLaunchTemplateName.AlreadyExistsException", "Launch template name already in use.")
		}
	}
	id := e.c.id("lt")
	lt := &types.LaunchTemplate{LaunchTemplateId: aws.String(id), LaunchTemplateName: in.LaunchTemplateName, DefaultVersionNumber: aws.Int64(1), LatestVersionNumber: aws.Int64(1), Tags: specTags(in.TagSpecifications, types.ResourceTypeLaunchTemplate)}
	e.c.ec2.lts[id] = lt
	e.c.ec2.versions[id] = []types.LaunchTemplateVersion{{LaunchTemplateId: aws.String(id), VersionNumber: aws.Int64(1), LaunchTemplateData: responseData(in.LaunchTemplateData)}}
	return &ec2.CreateLaunchTemplateOutput{LaunchTemplate: lt}, nil
}

// CreateLaunchTemplateVersion adds a version.
func (e *EC2) CreateLaunchTemplateVersion(_ context.Context, in *ec2.CreateLaunchTemplateVersionInput, _ ...func(*ec2.Options)) (*ec2.CreateLaunchTemplateVersionOutput, error) {
	err := e.c.begin("CreateLaunchTemplateVersion")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	id := aws.ToString(in.LaunchTemplateId)
	lt := e.c.ec2.lts[id]
	if lt == nil {
		return nil, apiError("InvalidLaunchTemplateId.NotFound", "The specified launch template, with template ID %s, does not exist.", id)
	}
	n := aws.ToInt64(lt.LatestVersionNumber) + 1
	lt.LatestVersionNumber = aws.Int64(n)
	v := types.LaunchTemplateVersion{LaunchTemplateId: aws.String(id), VersionNumber: aws.Int64(n), LaunchTemplateData: responseData(in.LaunchTemplateData)}
	e.c.ec2.versions[id] = append(e.c.ec2.versions[id], v)
	return &ec2.CreateLaunchTemplateVersionOutput{LaunchTemplateVersion: &v}, nil
}

// ModifyLaunchTemplate sets the default version.
func (e *EC2) ModifyLaunchTemplate(_ context.Context, in *ec2.ModifyLaunchTemplateInput, _ ...func(*ec2.Options)) (*ec2.ModifyLaunchTemplateOutput, error) {
	err := e.c.begin("ModifyLaunchTemplate")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	lt := e.c.ec2.lts[aws.ToString(in.LaunchTemplateId)]
	if lt == nil {
		return nil, apiError("InvalidLaunchTemplateId.NotFound", "The specified launch template does not exist.")
	}
	var n int64
	if _, err := fmt.Sscan(aws.ToString(in.DefaultVersion), &n); err != nil || n < 1 || n > aws.ToInt64(lt.LatestVersionNumber) {
		return nil, apiError("InvalidLaunchTemplateId.VersionNotFound", "Could not find launch template version %s.", aws.ToString(in.DefaultVersion))
	}
	lt.DefaultVersionNumber = aws.Int64(n)
	return &ec2.ModifyLaunchTemplateOutput{LaunchTemplate: lt}, nil
}

// DeleteLaunchTemplate removes a template and its versions.
func (e *EC2) DeleteLaunchTemplate(_ context.Context, in *ec2.DeleteLaunchTemplateInput, _ ...func(*ec2.Options)) (*ec2.DeleteLaunchTemplateOutput, error) {
	err := e.c.begin("DeleteLaunchTemplate")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	id := aws.ToString(in.LaunchTemplateId)
	if e.c.ec2.lts[id] == nil {
		return nil, apiError("InvalidLaunchTemplateId.NotFound", "The specified launch template does not exist.")
	}
	delete(e.c.ec2.lts, id)
	delete(e.c.ec2.versions, id)
	return &ec2.DeleteLaunchTemplateOutput{}, nil
}

// DescribeInstances lists instances by filters. Instances shutting down are reported once so, then
// they are terminated, as a waiting caller would see.
func (e *EC2) DescribeInstances(_ context.Context, in *ec2.DescribeInstancesInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	err := e.c.begin("DescribeInstances")
	defer e.c.end()
	if err != nil {
		return nil, err
	}
	res := types.Reservation{ReservationId: aws.String("r-fake")}
	for _, id := range sortedIDs(e.c.ec2.instances) {
		i := e.c.ec2.instances[id]
		ok, err := matches(in.Filters, i.Tags, map[string]string{"instance-state-name": string(i.State.Name), "vpc-id": aws.ToString(i.VpcId), "subnet-id": aws.ToString(i.SubnetId)})
		if err != nil {
			return nil, err
		}
		if ok {
			res.Instances = append(res.Instances, *i)
		}
		if i.State.Name == types.InstanceStateNameShuttingDown {
			i.State = &types.InstanceState{Name: types.InstanceStateNameTerminated, Code: aws.Int32(48)}
		}
	}
	return &ec2.DescribeInstancesOutput{Reservations: []types.Reservation{res}}, nil
}

// launch starts count instances of a launch template's default version in subnets (called by the
// fake Auto Scaling with the account locked).
func (c *Cloud) launch(ltID string, subnets []string, count int, tags []types.Tag) ([]string, error) {
	lt := c.ec2.lts[ltID]
	if lt == nil {
		return nil, apiError("ValidationError", "The specified launch template, with template ID %s, does not exist.", ltID)
	}
	d := c.ec2.versions[ltID][aws.ToInt64(lt.DefaultVersionNumber)-1].LaunchTemplateData
	if d.IamInstanceProfile != nil && !c.iam.profileExists(aws.ToString(d.IamInstanceProfile.Name)) {
		return nil, apiError("ValidationError", "Invalid IamInstanceProfile: %s", aws.ToString(d.IamInstanceProfile.Name))
	}
	var ids []string
	for n := range count {
		sn := c.ec2.subnets[subnets[n%len(subnets)]]
		id := c.id("i")
		var groups []types.GroupIdentifier
		for _, g := range d.SecurityGroupIds {
			groups = append(groups, types.GroupIdentifier{GroupId: aws.String(g)})
		}
		c.ec2.instances[id] = &types.Instance{InstanceId: aws.String(id), ImageId: d.ImageId, InstanceType: d.InstanceType, SubnetId: sn.SubnetId, VpcId: sn.VpcId,
			SecurityGroups: groups, Tags: tags, LaunchTime: aws.Time(time.Unix(0, 0)), State: &types.InstanceState{Name: types.InstanceStateNameRunning, Code: aws.Int32(16)}}
		ids = append(ids, id)
	}
	return ids, nil
}

// terminate starts shutting the instances down.
func (c *Cloud) terminate(ids []string) {
	for _, id := range ids {
		if i := c.ec2.instances[id]; i != nil && i.State.Name != types.InstanceStateNameTerminated {
			i.State = &types.InstanceState{Name: types.InstanceStateNameShuttingDown, Code: aws.Int32(32)}
		}
	}
}

// AddVPC makes a VPC that is not the cluster's, with an internet gateway attached, as a user's
// existing network; it returns their IDs.
func (c *Cloud) AddVPC(cidr string) (vpcID, igwID string) {
	ctx := context.Background()
	e := c.EC2()
	v, err := e.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String(cidr)})
	if err != nil {
		panic(err)
	}
	g, _ := e.CreateInternetGateway(ctx, &ec2.CreateInternetGatewayInput{})
	if _, err := e.AttachInternetGateway(ctx, &ec2.AttachInternetGatewayInput{InternetGatewayId: g.InternetGateway.InternetGatewayId, VpcId: v.Vpc.VpcId}); err != nil {
		panic(err)
	}
	return aws.ToString(v.Vpc.VpcId), aws.ToString(g.InternetGateway.InternetGatewayId)
}
